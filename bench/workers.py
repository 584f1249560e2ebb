"""``[server] workers``: q/s and CPU per answer with 1 and 2 worker processes, and each process's memory with
the policy compiled once before the fork (shared copy-on-write) and compiled again by every worker (after a
reload).

bench/run.py's inputs (a 100,000-entry blocklist, 80% cached allowed names, 20% blocked) and upstream.
CPU per answer is the whole process tree's (supervisor, zygote, workers) over the answers dnsperf got.
Two placements, because this machine has two cores: "pinned" puts the whole server on core 0 and dnsperf on
core 1 (as bench/run.py does; two workers then share one core: what the supervision costs); "unpinned" lets
the server and dnsperf run anywhere (two workers can use both cores, and compete with dnsperf for them).
Memory: Rss and Pss (a shared page counted as a share per process) from /proc/PID/smaps_rollup.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path

from run import (
    OUT,
    Layout,
    Server,
    blockdns_server,
    cpu_seconds,
    dnsperf,
    start_fake_upstream,
    write_inputs,
)

# "pinned", as make bench's one-core runs: the server on core 0, dnsperf and the fake upstream on core 1.
PINNED = Layout("0", "1")
START_TIMEOUT = 120.0


def unpinned() -> Layout:
    """The server and dnsperf each on every core this process may use: they compete for them."""
    cores = ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))
    return Layout(cores, cores)


def memory_mb(pid: int) -> tuple[float, float]:
    """(Rss, Pss) of ``pid`` in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def measure(server: Server, queries: Path, seconds: float) -> tuple[float, float]:
    """One run: (q/s, CPU µs per answer) of a freshly started server with warm caches."""
    cores = server.layout.load_cores
    try:
        server.start(START_TIMEOUT)
        dnsperf(server.port, queries, 2, cores, "-n", "1")  # warm the caches of every worker
        pids = server.pids()
        before = cpu_seconds(pids)
        output = dnsperf(server.port, queries, seconds, cores, "-c", "8", "-q", "400").output
        cpu = cpu_seconds(pids) - before
    finally:
        server.stop()
    completed = int(re.search(r"Queries completed:\s+(\d+)", output).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", output).group(1))
    return qps, cpu / max(completed, 1) * 1e6


def memory(server: Server, queries: Path) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Each process's (Rss, Pss) after the start (one compile, shared) and after a reload (one each)."""
    cores = server.layout.load_cores
    results = []
    try:
        server.start(START_TIMEOUT)
        assert server.process is not None
        dnsperf(server.port, queries, 2, cores, "-n", "1")
        results.append(("one compile before the fork", _processes(server)))
        server.process.send_signal(signal.SIGHUP)
        time.sleep(15)  # three compiles of a 100,000-entry policy on two cores (bench only: no test waits so)
        dnsperf(server.port, queries, 2, cores, "-n", "1")
        results.append(("compiled by every process (after a reload)", _processes(server)))
    finally:
        server.stop()
    return results


def _processes(server: Server) -> list[tuple[str, float, float]]:
    pids = server.pids()
    names = ["supervisor", "zygote"] + [f"worker {index}" for index in range(len(pids) - 2)]
    return [(name, *memory_mb(each)) for name, each in zip(names, pids, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    inputs = write_inputs(OUT)
    upstream, upstream_port = start_fake_upstream(PINNED.load_cores)
    servers: dict[tuple[int, bool], Server] = {}
    for workers in (1, 2):  # one config each (workers = 1 is the default: the key is left out)
        server = blockdns_server(OUT, inputs, upstream_port, PINNED, querylog=False, workers=workers)
        servers[(workers, True)] = server
        servers[(workers, False)] = dataclasses.replace(server, layout=unpinned())
    figures: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    try:
        time.sleep(0.5)
        for round_ in range(args.runs):  # rounds alternate the servers: this machine's load drifts
            for pinned in (True, False):
                for workers in (1, 2):
                    where = "pinned" if pinned else "unpinned"
                    print(f"bench: round {round_ + 1}, workers = {workers}, {where} ...", file=sys.stderr)
                    run = measure(servers[(workers, pinned)], inputs["queries"], args.seconds)
                    figures.setdefault((workers, pinned), []).append(run)
        print("bench: memory ...", file=sys.stderr)
        memories = memory(servers[(2, False)], inputs["queries"])
    finally:
        upstream.terminate()
        upstream.wait(5)
    print(f"{'workers':>7} {'placement':10} {'q/s':>8} {'CPU µs/answer':>14}")
    for (workers, pinned), runs in figures.items():
        placement = "pinned" if pinned else "unpinned"
        qps = statistics.median(run[0] for run in runs)
        cpu = statistics.median(run[1] for run in runs)
        print(f"{workers:>7} {placement:10} {qps:8.0f} {cpu:14.1f}   runs: {[round(run[0]) for run in runs]}")
    for label, processes in memories:
        print(f"\nworkers = 2, {label}:")
        for name, rss, pss in processes:
            print(f"  {name:12} Rss {rss:6.1f} MB  Pss {pss:6.1f} MB")
        print(f"  {'total':12} Pss {sum(pss for _, _, pss in processes):6.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
