"""DNSSEC validation: blockdns's recursive resolver beside a validating Unbound on the same signed hierarchy.

    sudo .venv/bin/python bench/dnssec_compare.py [--repeat 5]

Builds and serves the signed hierarchy of the tests (``tests/signedhierarchy.py``: zones signed with
dnssec-signzone, served by NSD on port 53 of a free 127.A.B.0/24 — root is needed to bind port 53), then
resolves each name cold, ``--repeat`` times, with:

* blockdns validating: a fresh ``RecursiveResolver`` with the test root's DS as trust anchor, primed, and
  with the root's DNSKEY set validated (as Unbound's priming does), timed in-process around ``resolve()``;
  its CPU time (``time.process_time``) is the resolver's and the validator's work, NSD being other
  processes;
* blockdns not validating (``dnssec = "off"``): the same, for the cost of validation itself;
* Unbound 1.17 (``validator iterator``, ``trust-anchor`` the same DS), a fresh process per name, primed
  with a ``. NS`` query, timed from a dnspython client over loopback (one client round trip included).

Upstream queries are NSD's own count (``nsd-control stats_noreset``, all three servers), after priming.
Each line: the name, what it exercises, then the medians. Loopback only; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from signedhierarchy import SignedHierarchy, Unbound, missing_tools

from blockdns.config import ResolverSettings
from blockdns.dnsname import ROOT, from_text
from blockdns.errors import UpstreamError
from blockdns.resolve.recursive import RecursiveResolver

NAMES: list[tuple[str, str, str]] = [
    ("www.secure.test", "A", "secure, NSEC zone, ECDSA"),
    ("nope.secure.test", "A", "secure NXDOMAIN (NSEC)"),
    ("x.wild.plain3.test", "A", "secure wildcard (NSEC3)"),
    ("www.nsec3.test", "A", "secure, RSASHA256"),
    ("a.dn.secure.test", "A", "secure DNAME"),
    ("www.insecure.test", "A", "insecure delegation"),
    ("alias.secure.test", "A", "secure CNAME into an insecure zone"),
    ("www.unsigned.nsec3.test", "A", "NSEC3 opt-out insecure delegation"),
    ("www.bogus.test", "A", "bogus: altered data"),
    ("www.keytrap.test", "A", "bogus: 64 colliding keys"),
]


@dataclass
class Run:
    queries: int
    seconds: float
    cpu: float
    outcome: str


async def blockdns_cold(hierarchy: SignedHierarchy, name: str, qtype: str, *, validate: bool) -> Run:
    settings = ResolverSettings(
        root_hints=[hierarchy.root],
        ipv6=False,
        timeout=1.0,
        trust_anchors=[hierarchy.anchor] if validate else [],
        dnssec="validate" if validate else "off",
    )
    resolver = RecursiveResolver(settings)
    await resolver.start()
    if validate:  # the root's DNSKEY set, as Unbound fetches it to validate its priming answer
        await resolver.resolve(ROOT, 2, 1, do=False, cd=False)
    before = hierarchy.queries()
    cpu, started = time.process_time(), time.perf_counter()
    try:
        result = await resolver.resolve(
            from_text(name), int(dns.rdatatype.from_text(qtype)), 1, do=False, cd=False
        )
        outcome = result.security.value if validate else dns.rcode.to_text(result.response.rcode)  # type: ignore[arg-type]
    except UpstreamError:
        outcome = "bogus" if validate else "SERVFAIL"
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await resolver.close()
    return Run(hierarchy.queries() - before, elapsed, cpu, outcome)


def unbound_cold(hierarchy: SignedHierarchy, workdir: Path, name: str, qtype: str) -> Run:
    unbound = Unbound(workdir, hierarchy, hierarchy.address(11), 5300, validate=True).start()
    try:
        before = hierarchy.queries()
        query = dns.message.make_query(name, qtype, use_edns=0, payload=1232, want_dnssec=True)
        started = time.perf_counter()
        response = dns.query.udp(query, unbound.address, port=unbound.port, timeout=10)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, unbound.address, port=unbound.port, timeout=10)
        elapsed = time.perf_counter() - started
        if response.rcode() == dns.rcode.SERVFAIL:
            outcome = "bogus"
        else:
            outcome = "secure" if response.flags & dns.flags.AD else "insecure"
        return Run(hierarchy.queries() - before, elapsed, 0.0, outcome)
    finally:
        unbound.stop()


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(run, field) for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print(f"needs {', '.join(missing)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        hierarchy = SignedHierarchy(Path(tmp) / "zones").build().start()
        try:
            print(
                f"{'name':<28} {'case':<36} | blockdns validating: q  ms  cpu-ms outcome"
                " | not validating: q  ms  cpu-ms | Unbound: q  ms  outcome"
            )
            totals = {"bv": [0.0, 0.0, 0.0], "bn": [0.0, 0.0, 0.0], "ub": [0.0, 0.0]}
            for name, qtype, case in NAMES:
                valid = [
                    asyncio.run(blockdns_cold(hierarchy, name, qtype, validate=True))
                    for _ in range(args.repeat)
                ]
                plain = [
                    asyncio.run(blockdns_cold(hierarchy, name, qtype, validate=False))
                    for _ in range(args.repeat)
                ]
                unbound = [
                    unbound_cold(hierarchy, Path(tmp) / f"unbound{i}", name, qtype)
                    for i in range(args.repeat)
                ]
                row = (
                    f"{name:<28} {case:<36} | {median(valid, 'queries'):>3.0f}"
                    f" {median(valid, 'seconds') * 1e3:6.1f}"
                    f" {median(valid, 'cpu') * 1e3:6.1f} {valid[0].outcome:<9}"
                    f"| {median(plain, 'queries'):>3.0f} {median(plain, 'seconds') * 1e3:6.1f}"
                    f" {median(plain, 'cpu') * 1e3:6.1f} | {median(unbound, 'queries'):>3.0f}"
                    f" {median(unbound, 'seconds') * 1e3:6.1f} {unbound[0].outcome}"
                )
                print(row, flush=True)
                for key, runs in (("bv", valid), ("bn", plain)):
                    totals[key][0] += median(runs, "queries")
                    totals[key][1] += median(runs, "seconds")
                    totals[key][2] += median(runs, "cpu")
                totals["ub"][0] += median(unbound, "queries")
                totals["ub"][1] += median(unbound, "seconds")
            count = len(NAMES)
            print(
                f"per name (mean of medians): blockdns validating {totals['bv'][0] / count:.1f} queries,"
                f" {totals['bv'][1] / count * 1e3:.1f} ms, {totals['bv'][2] / count * 1e3:.1f} ms CPU;"
                f" not validating {totals['bn'][0] / count:.1f} queries,"
                f" {totals['bn'][1] / count * 1e3:.1f} ms,"
                f" {totals['bn'][2] / count * 1e3:.1f} ms CPU; Unbound {totals['ub'][0] / count:.1f} queries,"
                f" {totals['ub'][1] / count * 1e3:.1f} ms"
            )
        finally:
            hierarchy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
