"""Compare blockdns's recursive resolver with Unbound on the same fake DNS hierarchy.

    sudo .venv/bin/python bench/recursion_compare.py [--repeat 5] [--unbound /usr/sbin/unbound]

Starts the hierarchy of fake authoritative servers the tests use (``tests/fakeauth.py``: root, test.,
example. and second-level zones on port 53 of a 127.0.0.0/8 network it picks — root is needed to bind
port 53), then resolves each name cold, ``--repeat`` times, with:

* blockdns: a fresh ``RecursiveResolver`` (primed), timed around ``resolve()`` in-process;
* Unbound: a fresh ``unbound`` process (iterator only, ``qname-minimisation: yes``,
  ``do-not-query-localhost: no``, ``root-hints`` pointing at the fake root, and the built-in ``test.``
  local zone lifted), primed with a ``. NS`` query,
  timed from a dnspython client over loopback UDP (so its figure includes one client round trip, ~0.1 ms).

The fake servers run in a child process of their own, so their threads do not compete with blockdns's
event loop for the GIL (Unbound is a process of its own too). Upstream queries are counted at the fake
servers (a TCP retry after truncation counts as a query), after priming, so both start from the same
state: the root NS set known, nothing else. Both talk IPv4 only. Then every name is resolved once more
in sequence on one warm instance of each, to compare the work shared through the cache. Loopback only;
nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from blockdns.config import ResolverSettings
from blockdns.dnsname import from_text
from blockdns.errors import UpstreamError
from blockdns.resolve.recursive import RecursiveResolver

from fakeauth import ROOT_SERVERS, build_test_hierarchy

UNBOUND_ADDRESS = "127.53.9.1"
UNBOUND_PORT = 5399
MAX_COMMANDS = 1_000_000  # far more than one run sends to the hierarchy process

NAMES: list[tuple[str, str, str]] = [
    ("www.glue.test", "A", "delegation with glue"),
    ("host.sub.glue.test", "A", "empty non-terminal on the way"),
    ("a.b.c.d.e.f.g.h.i.j.k.glue.test", "A", "13 labels: minimisation limits"),
    ("www.glueless.test", "A", "glueless delegation"),
    ("alias.glue.test", "A", "CNAME into another TLD"),
    ("www.legacy.target.example", "A", "DNAME into another TLD"),
    ("www.target.example", "AAAA", "NODATA"),
    ("nonexistent.target.example", "A", "NXDOMAIN"),
    ("a.b.nonexistent.target.example", "A", "NXDOMAIN, two labels below"),
    ("big.target.example", "TXT", "5 kB answer: UDP then TCP"),
    ("www.lame.test", "A", "one lame server of two"),
    ("www.sub.evil.test", "A", "referral with poison"),
    ("www.loop1.test", "A", "delegation loop (fails)"),
]


class Hierarchy:
    """The fake hierarchy, served from a child process; ``reset()`` and ``total()`` ask it over a pipe."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")  # the parent has no threads yet: forking is safe
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve_hierarchy, args=(child,), daemon=True)

    def __enter__(self) -> Hierarchy:
        self._process.start()
        if self._pipe.recv() != "ready":
            raise RuntimeError("the fake hierarchy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._pipe.send("stop")
        self._process.join(10)

    def reset(self) -> None:
        self._pipe.send("reset")
        self._pipe.recv()

    def total(self) -> int:
        self._pipe.send("total")
        return int(self._pipe.recv())


def _serve_hierarchy(pipe: Connection) -> None:
    with build_test_hierarchy() as hierarchy:
        pipe.send("ready")
        for _ in range(MAX_COMMANDS):
            try:
                command = pipe.recv()
            except EOFError:  # the parent is gone
                return
            if command == "stop":
                return
            pipe.send(hierarchy.reset() if command == "reset" else hierarchy.total())


@dataclass
class Run:
    queries: int
    seconds: float
    outcome: str


# ------------------------------------------------------------------------------------------ blockdns


def rdtype(text: str) -> int:
    return int(dns.rdatatype.from_text(text))


def blockdns_settings() -> ResolverSettings:
    return ResolverSettings(
        root_hints=ROOT_SERVERS, timeout=1.0, total_timeout=5.0, ipv6=False, dnssec="off"
    )  # an unsigned private root: bench/dnssec_compare.py measures validation


async def blockdns_cold(hierarchy: Hierarchy, name: str, qtype: str) -> Run:
    resolver = RecursiveResolver(blockdns_settings())
    await resolver.start()
    hierarchy.reset()
    started = time.perf_counter()
    try:
        answer = await resolver.resolve(from_text(name), rdtype(qtype), 1, do=False, cd=False)
        outcome = dns.rcode.to_text(answer.response.rcode)
    except UpstreamError:
        outcome = "SERVFAIL"
    elapsed = time.perf_counter() - started
    await resolver.close()
    return Run(hierarchy.total(), elapsed, outcome)


async def blockdns_sequence(hierarchy: Hierarchy) -> tuple[int, float]:
    resolver = RecursiveResolver(blockdns_settings())
    await resolver.start()
    hierarchy.reset()
    started = time.perf_counter()
    for name, qtype, _ in NAMES:
        with contextlib.suppress(UpstreamError):
            await resolver.resolve(from_text(name), rdtype(qtype), 1, do=False, cd=False)
    elapsed = time.perf_counter() - started
    await resolver.close()
    return hierarchy.total(), elapsed


# ------------------------------------------------------------------------------------------- Unbound


class Unbound:
    """One unbound process with a generated config; ``with Unbound(...) as u: u.query(...)``."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        hints = self.workdir / "root.hints"
        lines = []
        for letter, address in zip("ab", ROOT_SERVERS, strict=True):
            lines.append(f". 3600000 NS {letter}.root-servers.test.")
            lines.append(f"{letter}.root-servers.test. 3600000 A {address}")
        hints.write_text("\n".join(lines) + "\n")
        config = self.workdir / "unbound.conf"
        config.write_text(
            f"""server:
    interface: {UNBOUND_ADDRESS}
    port: {UNBOUND_PORT}
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    directory: "{self.workdir}"
    pidfile: "{self.workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-daemonize: no
    root-hints: "{hints}"
    do-not-query-localhost: no
    qname-minimisation: yes
    module-config: "iterator"
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    # test. is one of Unbound's built-in RFC 6761 local zones (answered NXDOMAIN without asking): lift it.
    local-zone: "test." nodefault
remote-control:
    control-enable: no
"""
        )
        return config

    def __enter__(self) -> Unbound:
        config = self.write_config()
        self.process = subprocess.Popen(
            [self.binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"unbound exited: {error}")
            try:
                self.query(".", "NS", timeout=0.2)  # also primes the root NS set
                return self
            except dns.exception.Timeout:
                continue
        raise RuntimeError("unbound did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def query(self, name: str, qtype: str, *, timeout: float = 6.0) -> dns.message.Message:
        request = dns.message.make_query(name, qtype, use_edns=0, payload=1232)
        response = dns.query.udp(request, UNBOUND_ADDRESS, port=UNBOUND_PORT, timeout=timeout)
        if response.flags & 0x0200:
            response = dns.query.tcp(request, UNBOUND_ADDRESS, port=UNBOUND_PORT, timeout=timeout)
        return response


def settle(hierarchy: Hierarchy, quiet: float = 0.15, limit: float = 2.0) -> None:
    """Wait until the fake servers have seen no query for ``quiet`` seconds (Unbound may still be
    fetching NS addresses in the background after it answered)."""
    deadline = time.monotonic() + limit
    last = hierarchy.total()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = hierarchy.total()
        if now == last:
            return
        last = now


def unbound_cold(binary: str, hierarchy: Hierarchy, name: str, qtype: str) -> Run:
    with tempfile.TemporaryDirectory() as workdir, Unbound(binary, Path(workdir)) as unbound:
        settle(hierarchy)
        hierarchy.reset()
        started = time.perf_counter()
        try:
            outcome = dns.rcode.to_text(unbound.query(name, qtype).rcode())
        except dns.exception.Timeout:
            outcome = "timeout"
        elapsed = time.perf_counter() - started
        settle(hierarchy)  # count what the answer caused, background fetches included
        return Run(hierarchy.total(), elapsed, outcome)


def unbound_sequence(binary: str, hierarchy: Hierarchy) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as workdir, Unbound(binary, Path(workdir)) as unbound:
        settle(hierarchy)
        hierarchy.reset()
        started = time.perf_counter()
        for name, qtype, _ in NAMES:
            with contextlib.suppress(dns.exception.Timeout):
                unbound.query(name, qtype)
        elapsed = time.perf_counter() - started
        settle(hierarchy)
        return hierarchy.total(), elapsed


# ---------------------------------------------------------------------------------------------- main


def summary(runs: list[Run]) -> tuple[str, str, str]:
    counts = sorted({run.queries for run in runs})
    queries = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    latency = f"{statistics.median(run.seconds for run in runs) * 1000:.1f}"
    outcomes = sorted({run.outcome for run in runs})
    return queries, latency, "/".join(outcomes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="cold runs per name (median latency)")
    parser.add_argument("--unbound", default=shutil.which("unbound") or "/usr/sbin/unbound")
    args = parser.parse_args()
    have_unbound = Path(args.unbound).exists()
    if not have_unbound:
        print(f"unbound not found at {args.unbound}: blockdns figures only", file=sys.stderr)

    with Hierarchy() as hierarchy:
        columns = ("blockdns q", "ms", "unbound q", "ms")
        header = f"{'name':34} {'type':5} {'what':32} " + "{:>10} {:>7} {:>10} {:>7}  rcode".format(*columns)
        print(header)
        print("-" * len(header))
        totals = [0, 0]
        for name, qtype, what in NAMES:
            ours = [asyncio.run(blockdns_cold(hierarchy, name, qtype)) for _ in range(args.repeat)]
            q1, ms1, rc1 = summary(ours)
            q2 = ms2 = rc2 = "-"
            if have_unbound:
                theirs = [unbound_cold(args.unbound, hierarchy, name, qtype) for _ in range(args.repeat)]
                q2, ms2, rc2 = summary(theirs)
                totals[1] += min(run.queries for run in theirs)
            totals[0] += min(run.queries for run in ours)
            rcode = rc1 if rc1 == rc2 or rc2 == "-" else f"{rc1} vs {rc2}"
            print(f"{name:34} {qtype:5} {what:32} {q1:>10} {ms1:>7} {q2:>10} {ms2:>7}  {rcode}")
        print("-" * len(header))
        print(f"{'sum of cold query counts (min per name)':73} {totals[0]:>10} {'':>7} {totals[1]:>10}")
        seq_ours = asyncio.run(blockdns_sequence(hierarchy))
        line = f"{'all names in sequence, one warm instance':73} {seq_ours[0]:>10} {seq_ours[1] * 1000:>7.1f}"
        if have_unbound:
            seq_theirs = unbound_sequence(args.unbound, hierarchy)
            line += f" {seq_theirs[0]:>10} {seq_theirs[1] * 1000:>7.1f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
