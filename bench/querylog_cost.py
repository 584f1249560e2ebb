"""What the query log costs DNS: blockdns with the log off and on, in one run, alternating.

All on loopback, bounded in time. Each server is started as ``make bench`` starts it (bench/run.py's config,
pinned to core 0 with taskset, the fake upstream and dnsperf on core 1). All of them run side by side; the
dnsperf throughput runs go to them in turn (off, on, off, on, ...), so a change in the machine's load touches
both alike. After each run the script waits until the server's CPU time stops growing (the query log's
writer catching up), and counts that CPU against the run too.

Printed per server: median q/s, and CPU µs per answer split into the server's main thread (the event loop,
where a row is built and queued), its other threads (the query log's writer thread, when it has one) and its
child processes (the query log's writer process, when it has one); then each checkout's log-on / log-off q/s.

``--before DIR`` adds the blockdns package of another checkout (say, main) to the same run.
``--writer-core N`` moves the servers' child processes (a writer process) to core N after start: the server
keeps core 0 to itself, as on a machine with a core to spare. Without it they inherit core 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from run import (
    OUT,
    Layout,
    Server,
    blockdns_server,
    dnsperf,
    start_fake_upstream,
    write_inputs,
)

TICK = os.sysconf("SC_CLK_TCK")
# As make bench's one-core runs: the server on core 0, the load (dnsperf, the fake upstream) on core 1.
ONE_CORE = Layout("0", "1")


def _stat_cpu(path: Path) -> float:
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found + [grandchild for child in found for grandchild in children(child)]


@dataclass
class Cpu:
    main: float = 0.0  # the server's main thread: the event loop
    threads: float = 0.0  # its other threads
    processes: float = 0.0  # its child processes (live ones)

    @property
    def total(self) -> float:
        return self.main + self.threads + self.processes

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.main - other.main, self.threads - other.threads, self.processes - other.processes)


def cpu(pid: int) -> Cpu:
    result = Cpu()
    for task in Path(f"/proc/{pid}/task").iterdir():
        seconds = _stat_cpu(task / "stat")
        if int(task.name) == pid:
            result.main += seconds
        else:
            result.threads += seconds
    for child in children(pid):
        result.processes += _stat_cpu(Path(f"/proc/{child}/stat"))
    return result


def settle(pid: int, limit: float = 15.0) -> None:
    """Wait until the server's CPU time stops growing: the writer has stored what it was given."""
    deadline = time.monotonic() + limit
    last = cpu(pid).total
    while time.monotonic() < deadline:
        time.sleep(0.7)  # longer than the writer's flush interval (0.5 s)
        now = cpu(pid).total
        if now - last < 0.02:
            return
        last = now


@dataclass
class Measured:
    server: Server
    qps: list[float] = field(default_factory=list)
    cpu: list[Cpu] = field(default_factory=list)  # per answer, µs

    def median_cpu(self) -> Cpu:
        return Cpu(
            *(
                statistics.median(getattr(c, part) for c in self.cpu)
                for part in ("main", "threads", "processes")
            )
        )


def throughput(measured: Measured, queries: Path, seconds: float) -> None:
    server = measured.server
    assert server.process is not None
    pid = server.process.pid
    before = cpu(pid)
    output = dnsperf(server.port, queries, seconds, ONE_CORE.load_cores, "-c", "8", "-q", "400").output
    settle(pid)
    used = cpu(pid) - before
    completed = int(re.search(r"Queries completed:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    scale = 1e6 / max(completed, 1)
    measured.qps.append(qps)
    measured.cpu.append(Cpu(used.main * scale, used.threads * scale, used.processes * scale))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--before", type=Path, help="another checkout (its directory holding blockdns/)")
    parser.add_argument("--writer-core", help="move the servers' child processes to this core")
    args = parser.parse_args()
    if shutil.which("dnsperf") is None:
        print("bench: dnsperf is not installed (make system-deps)", file=sys.stderr)
        return 2
    inputs = write_inputs(OUT)
    upstream, upstream_port = start_fake_upstream(ONE_CORE.load_cores)
    measured: list[Measured] = []
    checkouts: list[Path | None] = [args.before.resolve(), None] if args.before else [None]
    for source in checkouts:
        for querylog in (False, True):
            server = blockdns_server(OUT, inputs, upstream_port, ONE_CORE, querylog=querylog, source=source)
            measured.append(Measured(server))
    try:
        for entry in measured:
            entry.server.start(60.0)
            assert entry.server.process is not None
            if args.writer_core is not None:
                for child in children(entry.server.process.pid):
                    subprocess.run(["taskset", "-p", "-c", args.writer_core, str(child)], check=True,
                                   capture_output=True)  # fmt: skip
            dnsperf(
                entry.server.port, inputs["queries"], 2, ONE_CORE.load_cores, "-n", "1"
            )  # warm the cache and the memos
        for round_number in range(args.runs):
            print(f"bench: round {round_number + 1} of {args.runs} ...", file=sys.stderr, flush=True)
            for entry in measured:
                throughput(entry, inputs["queries"], args.seconds)
    finally:
        for entry in measured:
            entry.server.stop()
        upstream.terminate()
        upstream.wait(5)
    print(
        f"{'server':44} {'q/s':>8}  {'CPU µs/answer: total':>20} {'main':>6} {'threads':>7} {'children':>8}"
    )
    for entry in measured:
        used = entry.median_cpu()
        print(
            f"{entry.server.name:44} {statistics.median(entry.qps):8.0f}  {used.total:20.1f} {used.main:6.1f}"
            f" {used.threads:7.1f} {used.processes:8.1f}"
        )
    print()
    for index in range(0, len(measured), 2):
        off, on = measured[index], measured[index + 1]
        ratios = [b / a for a, b in zip(off.qps, on.qps, strict=True)]
        print(
            f"{on.server.name.split(' (')[0]:44} log on / log off q/s: median {statistics.median(ratios):.2f}"
            f" (per round: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
