"""``blockdns check NAME``: explain the decision for one name."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated

import dns.exception
import dns.rdatatype
import typer

from blockdns import dnsname
from blockdns.cli.check_dnssec import dnssec_report, print_report
from blockdns.cli.common import ConfigOption, JsonOption, load_settings, user_errors
from blockdns.dnsname import text_key
from blockdns.errors import InvalidName, UserError
from blockdns.names import query_name
from blockdns.policy import Decision
from blockdns.resolve.explain import Route, decision_evidence, route
from blockdns.resolve.localzones import ZoneTable
from blockdns.runtime import build_policy, load_local


@user_errors
def check(
    name: Annotated[str, typer.Argument(help="The domain name to explain.")],
    client: Annotated[
        str | None, typer.Option("--client", help="Client IP address (picks its group).")
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    dnssec: Annotated[
        bool,
        typer.Option("--dnssec", help="Also resolve NAME and show whether DNSSEC validates it, and why."),
    ] = False,
    rdtype: Annotated[str, typer.Option("--type", help="The record type --dnssec asks for.")] = "A",
) -> None:
    """Explain the decision for NAME: a local record, or allowed or blocked (the matching rule, vendor,
    category, group), and where an allowed name is answered (a locally served zone, a forward zone)."""
    try:
        wire = query_name(name)
        key = text_key(wire)
    except InvalidName as err:
        raise UserError(str(err)) from None
    if client is not None:
        try:
            ipaddress.ip_address(client)
        except ValueError:
            raise UserError(f"--client: not an IP address: {client!r}") from None
    try:
        qtype = int(dns.rdatatype.from_text(rdtype.upper()))
    except dns.exception.DNSException:
        raise UserError(f"--type: not a record type: {rdtype!r}") from None
    settings = load_settings(config)
    group = build_policy(settings).group_for(client)
    forward = {dnsname.from_text(zone.name): zone.upstreams for zone in settings.forward_zones}
    zones = ZoneTable.build(settings.local.private_reverse, list(forward))
    where = route(wire, load_local(settings), zones, forward)
    decision = group.decide(key)
    # Local records are the administrator's own word: policy decides only where a CNAME chain leads out.
    decisive = decision
    if where.target is not None:
        decisive = group.decide(where.target)
    elif where.kind == "local-record":
        decisive = Decision(key, group.name, "none")
    if json_output:
        # The policy's view of the name itself, with what actually happens to it.
        data = decision.to_json() | {"blocked": decisive.blocked, "action": decisive.action}
        data["evidence"] = decision_evidence(decision)
        if where.target is not None:
            data["target_decision"] = decisive.to_json() | {"evidence": decision_evidence(decisive)}
        data["answered_by"] = where.to_json()
        if dnssec:
            data["dnssec"] = dnssec_report(settings, wire, qtype)
        print(json.dumps(data, indent=2))
        return
    _print(key, decision, decisive, where)
    if dnssec:
        print_report(key, dnssec_report(settings, wire, qtype))


def _print(name: str, decision: Decision, decisive: Decision, where: Route) -> None:
    if where.kind == "local-record":
        verdict = "BLOCKED" if decisive.blocked else "answered by a local record"
        print(f"{name}: {verdict} (group {decision.group})")
        for record, source in where.records:
            print(f"  {record}    ({source})")
        if where.target is None:
            print(
                "  a local record for the name itself is the administrator's own word: policy does not apply"
            )
            if decision.blocked:
                print(f"  (without it: {decision.reason})")
            return
        print(f"  the CNAME chain leaves the local data at {where.target}, which policy decides:")
        _print_decision(decisive)
        if not decisive.blocked and where.target_route is not None:
            _print_route(where.target_route)
        return
    verdict = "BLOCKED" if decision.blocked else "allowed"
    print(f"{name}: {verdict} (group {decision.group})")
    _print_decision(decision)
    if not decision.blocked:
        _print_route(where)


def _print_decision(decision: Decision) -> None:
    data = decision.to_json()
    print(f"  {decision.reason}")
    if decision.entry:
        print(f"  rule: {decision.entry}")
    for key in ("vendor_name", "category", "jurisdiction", "feed"):
        if data[key]:
            print(f"  {key.replace('_name', '')}: {data[key]}")
    evidence = decision_evidence(decision)
    if evidence:
        print(f"  evidence: {evidence}")


def _print_route(where: Route) -> None:
    if where.kind == "local-zone":
        print(f"  answered here: locally served zone {where.zone} ({where.why})")
    elif where.kind == "forward-zone":
        print(f"  forward zone {where.zone}: resolved by {', '.join(where.upstreams)}")
