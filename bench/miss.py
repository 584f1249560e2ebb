"""What a cache miss costs: blockdns beside dnsmasq and Unbound, every query a name never asked before.

Two loads, each a file of names no server has seen (so dnsperf never wraps around to a name it asked):

* ``miss``: random names under ``miss.example.net`` (not ``.test``: Unbound answers that special-use
  domain itself, RFC 6761), forwarded to the fast fake upstream (bench/upstream.py);
* ``blocked``: random names under the 100,000 blocked domains of ``make bench``'s list, each seen for the
  first time (what random subdomains of a blocked domain cost: answered locally, but past every memo).

Each server is started afresh for each round (empty cache), pinned to core 0, and driven by dnsperf on core 1
with a bounded number of queries in flight; CPU per answer is the server process's CPU time (user + system)
over the answers dnsperf counted. ``--before DIR`` adds another checkout's blockdns, run alternately with
this one in every round. Figures are the medians of ``--rounds`` rounds.

    python bench/miss.py [--before DIR] [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # bench/run.py's servers and inputs: the same list and settings
    BLOCKLIST_SIZE,
    OUT,
    Layout,
    Server,
    blockdns_server,
    blocked_name,
    cpu_seconds,
    dnsmasq_server,
    dnsperf,
    start_fake_upstream,
    unbound_server,
    write_inputs,
)

NAMES = 400_000  # more than any server answers in one run: no name is asked twice
LAYOUT = Layout(server_cores="0", load_cores="1")
LOAD_CORE = LAYOUT.load_cores
START_TIMEOUT = 120.0


def write_loads(out: Path) -> dict[str, Path]:
    token = secrets.token_hex(3)  # a fresh file each time: nothing from an earlier run can be cached
    miss = out / "miss-queries.txt"
    miss.write_text("".join(f"m{token}{i:06x}.miss.example.net A\n" for i in range(NAMES)))
    blocked = out / "blocked-queries.txt"
    blocked.write_text(
        "".join(f"b{token}{i:06x}.{blocked_name(i * 7919 % BLOCKLIST_SIZE)} A\n" for i in range(NAMES))
    )
    return {"miss": miss, "blocked": blocked}


@dataclass
class Figures:
    qps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)


def drive(server: Server, queries: Path, seconds: float, in_flight: int) -> tuple[float, float, float]:
    pids = server.pids()
    cpu_before = cpu_seconds(pids)
    output = dnsperf(server.port, queries, seconds, LOAD_CORE, "-c", "4", "-q", str(in_flight)).output
    cpu = cpu_seconds(pids) - cpu_before
    completed = int(re.search(r"Queries completed:\s+(\d+)", output).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", output).group(1))
    lost = float(re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", output).group(1))
    return qps, cpu / max(completed, 1) * 1e6, lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout's blockdns, run alternately")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--in-flight", type=int, default=200, help="dnsperf's queries outstanding")
    parser.add_argument("--no-others", action="store_true", help="blockdns only (no dnsmasq, Unbound)")
    args = parser.parse_args()
    for tool in ("dnsperf", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (make system-deps installs it)", file=sys.stderr)
            return 2
    inputs = write_inputs(OUT)
    upstream, upstream_port = start_fake_upstream(LOAD_CORE)
    makers = []
    if not args.no_others:
        if shutil.which("dnsmasq"):
            makers.append(lambda: dnsmasq_server(OUT, upstream_port, LAYOUT))
        if shutil.which("unbound"):
            makers.append(lambda: unbound_server(OUT, upstream_port, LAYOUT))
    if args.before is not None:
        before = args.before.resolve()
        makers.append(
            lambda: blockdns_server(OUT, inputs, upstream_port, LAYOUT, querylog=False, source=before)
        )
    makers.append(lambda: blockdns_server(OUT, inputs, upstream_port, LAYOUT, querylog=False))
    results: dict[str, dict[str, Figures]] = {}
    try:
        time.sleep(0.5)
        for round_number in range(args.rounds):
            for make in makers:
                server = make()
                print(f"bench: round {round_number + 1}: {server.name} ...", file=sys.stderr, flush=True)
                loads = write_loads(OUT)
                try:
                    server.start(START_TIMEOUT)  # inside: a server that never answers is stopped too
                    for load, queries in loads.items():
                        qps, cpu_us, lost = drive(server, queries, args.seconds, args.in_flight)
                        figures = results.setdefault(server.name, {}).setdefault(load, Figures())
                        figures.qps.append(qps)
                        figures.cpu_us.append(cpu_us)
                        figures.lost.append(lost)
                finally:
                    server.stop()
    finally:
        upstream.terminate()
        upstream.wait(5)
    report(results, args)
    return 0


def report(results: dict[str, dict[str, Figures]], args: argparse.Namespace) -> None:
    print(
        f"\nnames never asked before; server on core 0, dnsperf ({args.in_flight} in flight) on core "
        f"{LOAD_CORE}; median of {args.rounds} rounds of {args.seconds:.0f} s (load {os.getloadavg()[0]:.1f})"
    )
    base = results.get("dnsmasq")
    for load, title in (("miss", "forwarded misses"), ("blocked", "first-seen blocked names")):
        print(f"\n{title}")
        header = f"{'server':<36} {'q/s':>9} {'× dnsmasq':>9} {'CPU µs/q':>9} {'lost %':>7}   runs (q/s)"
        print(header)
        print("-" * len(header))
        for name, loads in results.items():
            figures = loads[load]
            qps = statistics.median(figures.qps)
            ratio = qps / statistics.median(base[load].qps) if base else 0.0
            runs = " ".join(f"{value:,.0f}" for value in figures.qps)
            print(
                f"{name:<36} {qps:>9,.0f} {ratio:>9.2f} {statistics.median(figures.cpu_us):>9.1f} "
                f"{max(figures.lost):>7.2f}   {runs}"
            )


if __name__ == "__main__":
    sys.exit(main())
