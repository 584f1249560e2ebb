"""What a forwarded miss costs over each kind of upstream: udp://, tls:// and https:// to the same Unbound.

Unbound (its own process, on another core when there is one) answers every name under ``miss.bench.`` from
a local zone, over plain DNS, DNS over TLS and DNS over HTTPS (a certificate from a throwaway CA,
tests/tlscerts.py). This process runs blockdns's real forwarder (``Forwarder.resolve``: query building, the
transport, reply matching and parsing) on one event loop, ``IN_FLIGHT`` resolutions at once, every one a new
name. Figures per transport: this process's CPU µs per miss (best and median of ``--rounds`` rounds of
``--queries``, transports alternating), answers per second, and the TLS connections opened per 10,000
queries, counted at the server side by a relay in a process of its own (tests/tcprelay.py) between the
forwarder and Unbound; the relay runs only in a separate counting round, so it costs the CPU rounds nothing.

    python bench/upstream_encrypted.py [--rounds 5] [--queries 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from blockdns import dnsname  # noqa: E402
from blockdns.config import parse_upstream  # noqa: E402
from blockdns.resolve.encrypted import TlsSetup  # noqa: E402
from blockdns.resolve.forward import Forwarder  # noqa: E402
from blockdns.resolve.transport import TransportStats  # noqa: E402

from tlscerts import ThrowawayCA  # noqa: E402
from unboundproc import UNBOUND, UnboundProcess  # noqa: E402

IN_FLIGHT = 100  # resolutions at once (--in-flight)
ZONE = """  local-zone: "miss.bench." redirect
  local-data: "miss.bench. 3600 IN A 192.0.2.1"
"""


def upstream_url(kind: str, port: int) -> str:
    return {
        "udp": f"udp://127.0.0.1:{port}",
        "tls": f"tls://127.0.0.1:{port}#dns.bench",
        "https": f"https://127.0.0.1:{port}/dns-query#dns.bench",
    }[kind]


async def resolve_all(
    url: str, ca: Path, names: list[bytes], in_flight: int
) -> tuple[float, float, TransportStats]:
    """CPU seconds and wall seconds for resolving ``names``, ``in_flight`` at a time; the counters."""
    upstreams = [parse_upstream(url)]
    stats = TransportStats()
    tls = TlsSetup.build(upstreams, ca_file=ca, bootstrap=[], own=[], timeout=2.0)
    forwarder = Forwarder(upstreams, timeout=2.0, total_timeout=4.0, stats=stats, tls=tls)
    await forwarder.resolve(b"\x04warm\x04miss\x05bench\x00", 1, 1, do=False, cd=False)  # connected
    queue = iter(names)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for name in queue:
            try:
                await forwarder.resolve(name, 1, 1, do=False, cd=False)
            except Exception:
                failures += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await forwarder.close()
    if failures:
        print(f"  {url}: {failures} resolutions failed", file=sys.stderr)
    return cpu, wall, stats


def names_for(tag: str, count: int) -> list[bytes]:
    return [dnsname.from_text(f"{tag}{i:06x}.miss.bench") for i in range(count)]


def count_connections(kind: str, port: int, ca: Path, queries: int, in_flight: int) -> int:
    """TLS connections the forwarder opens for ``queries`` misses, counted by a relay process."""
    relay = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "tcprelay.py"), "127.0.0.1", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert relay.stdin is not None and relay.stdout is not None
    relay_port = int(relay.stdout.readline())
    asyncio.run(resolve_all(upstream_url(kind, relay_port), ca, names_for(f"c{kind}", queries), in_flight))
    relay.stdin.close()
    accepted = int(relay.stdout.readline())
    relay.wait(10)
    return accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if UNBOUND is None:
        print("unbound is not installed (make system-deps)", file=sys.stderr)
        return 1
    try:
        import uvloop

        uvloop.install() if "--no-uvloop" not in sys.argv else None  # as blockdns serve runs
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as work:
        ca = ThrowawayCA.create(Path(work) / "ca")
        cert = ca.issue(names=("dns.bench",), ips=("127.0.0.1",), stem="unbound")
        unbound = UnboundProcess(Path(work) / "unbound", cert, ("127.0.0.1", 9), extra=ZONE).start()
        try:
            ports = {"udp": unbound.port, "tls": unbound.tls_port, "https": unbound.https_port}
            cpu: dict[str, list[float]] = {kind: [] for kind in ports}
            rate: dict[str, list[float]] = {kind: [] for kind in ports}
            for round_index in range(args.rounds):
                for kind, port in ports.items():
                    names = names_for(f"r{round_index}{kind}", args.queries)
                    url = upstream_url(kind, port)
                    seconds, wall, _ = asyncio.run(resolve_all(url, ca.ca_file, names, args.in_flight))
                    cpu[kind].append(seconds / args.queries * 1e6)
                    rate[kind].append(args.queries / wall)
            print(
                f"forwarded misses: {args.queries} a round, {args.in_flight} in flight, {args.rounds} rounds"
            )
            header = f"{'upstream':<8} {'CPU µs/miss best':>17} {'median':>8} {'misses/s median':>16}"
            print(f"{header} {'conns/10k':>10}")
            for kind, port in ports.items():
                connections = (
                    "-"
                    if kind == "udp"
                    else str(count_connections(kind, port, ca.ca_file, 10_000, args.in_flight))
                )
                print(
                    f"{kind:<8} {min(cpu[kind]):>17.1f} {statistics.median(cpu[kind]):>8.1f}"
                    f" {statistics.median(rate[kind]):>16.0f} {connections:>10}"
                )
        finally:
            unbound.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
