"""``blockdns check NAME --dnssec``: resolve NAME the way the server would and say whether DNSSEC proves
it, and why — like ``delv`` or ``unbound-host -v``. The upstreams, forward zones, trust anchors and negative
trust anchors are the configuration's, wired by the same function as the server's (``make_router``)."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.rcode
import dns.rdatatype

from blockdns.config import Settings
from blockdns.errors import UpstreamError
from blockdns.resolve.transport import TransportStats
from blockdns.resolve.upstream import BogusAnswer, Security
from blockdns.server.generation import make_router, make_upstream
from blockdns.wire import CLASS_IN

_SUMMARY = {
    "secure": "fully validated",
    "insecure": "unsigned answer",
    "bogus": "validation failed",
    "indeterminate": "not validated",
    "off": "not validated",
    "error": "resolution failed",
}


def dnssec_report(settings: Settings, qname: bytes, qtype: int) -> dict[str, Any]:
    """``status`` (secure, insecure, bogus, indeterminate, off, error), ``reason``, ``ede``, ``rcode``,
    ``type`` and ``answered_by``."""
    resolver = settings.resolver
    report: dict[str, Any] = {
        "type": dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype)),
        "ede": None,
        "rcode": None,
        "answered_by": None,
    }
    if not resolver.validating():
        return report | {
            "status": "off",
            "reason": f"validation is off (resolver.dnssec in {resolver.mode} mode)",
        }
    if not resolver.anchor_lines():
        return report | {
            "status": "off",
            "reason": "custom root_hints and no trust_anchors: nothing to validate against",
        }
    return report | asyncio.run(_resolve(settings, qname, qtype))


async def _resolve(settings: Settings, qname: bytes, qtype: int) -> dict[str, Any]:
    stats = TransportStats()
    upstream = make_upstream(settings, stats)
    router = make_router(settings, upstream, stats)
    await upstream.start()
    await router.start()
    try:
        result = await router.resolve(qname, qtype, CLASS_IN, do=True, cd=False)
    except BogusAnswer as err:
        return {
            "status": "bogus",
            "reason": str(err).removeprefix("DNSSEC bogus: "),
            "ede": err.ede_code,
            "rcode": "SERVFAIL",
        }
    except UpstreamError as err:
        return {"status": "error", "reason": str(err), "ede": err.ede_code, "rcode": "SERVFAIL"}
    finally:
        await router.close()
        await upstream.close()
    security = result.security
    reason = result.validation or {
        Security.SECURE: "a chain of signatures from the trust anchor proves it",
        Security.INDETERMINATE: "no trust anchor covers the name, or its zone is not validated",
    }.get(security, "")
    return {
        "status": security.value,
        "reason": reason,
        "rcode": dns.rcode.to_text(result.response.rcode),  # type: ignore[arg-type]
        "answered_by": result.server,
    }


def print_report(name: str, report: dict[str, Any]) -> None:
    summary = _SUMMARY[report["status"]]
    line = (
        f"; {summary}" if report["status"] in ("secure", "insecure") else f"; {summary}: {report['reason']}"
    )
    print(f"{name or '.'} {report['type']}: DNSSEC {report['status']}")
    print(line)
    if report["status"] in ("secure", "insecure") and report["reason"]:
        print(f";   {report['reason']}")
    if report["ede"] is not None:
        print(f"; EDE {report['ede']}")
