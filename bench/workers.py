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
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import HERE, LOAD_CORE, OUT, PYTHON, SERVER_CORE, answers, blockdns_server, free_port, write_inputs


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(Rss, Pss) of ``pid`` in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def dnsperf(port: int, queries: Path, seconds: float, pinned: bool, *extra: str) -> str:
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds), *extra]
    if pinned:
        command = ["taskset", "-c", LOAD_CORE, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout


def start(config: Path, port: int, pinned: bool) -> subprocess.Popen[bytes]:
    command = [PYTHON, "-P", "-m", "blockdns", "serve", "--config", str(config)]
    if pinned:
        command = ["taskset", "-c", SERVER_CORE, *command]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"blockdns with {config} did not start")
        time.sleep(0.05)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def measure(config: Path, port: int, queries: Path, pinned: bool, seconds: float) -> tuple[float, float]:
    """One run: (q/s, CPU µs per answer) of a freshly started server with warm caches."""
    process = start(config, port, pinned)
    try:
        dnsperf(port, queries, 2, pinned, "-n", "1")  # warm the caches of every worker
        pids = tree(process.pid)
        before = cpu_seconds(pids)
        output = dnsperf(port, queries, seconds, pinned, "-c", "8", "-q", "400")
        cpu = cpu_seconds(pids) - before
    finally:
        stop(process)
    completed = int(re.search(r"Queries completed:\s+(\d+)", output).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", output).group(1))
    return qps, cpu / max(completed, 1) * 1e6


def memory(config: Path, port: int, queries: Path) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Each process's (Rss, Pss) after the start (one compile, shared) and after a reload (one each)."""
    process = start(config, port, pinned=False)
    results = []
    try:
        dnsperf(port, queries, 2, False, "-n", "1")
        results.append(("one compile before the fork", _processes(process.pid)))
        process.send_signal(signal.SIGHUP)
        time.sleep(15)  # three compiles of a 100,000-entry policy on two cores (bench only: no test waits so)
        dnsperf(port, queries, 2, False, "-n", "1")
        results.append(("compiled by every process (after a reload)", _processes(process.pid)))
    finally:
        stop(process)
    return results


def _processes(pid: int) -> list[tuple[str, float, float]]:
    pids = tree(pid)
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
    upstream_port = free_port()
    upstream = subprocess.Popen(
        ["taskset", "-c", LOAD_CORE, PYTHON, str(HERE / "upstream.py"), str(upstream_port)],
        stdout=subprocess.DEVNULL,
    )
    configs: dict[int, tuple[Path, int]] = {}
    base = blockdns_server(OUT, inputs, upstream_port, querylog=False)
    for workers in (1, 2):
        config = OUT / f"blockdns-workers-{workers}.toml"
        port = free_port()
        text = Path(base.command[-1]).read_text().replace(f"127.0.0.1:{base.port}", f"127.0.0.1:{port}")
        config.write_text(text.replace("[server]\n", f"[server]\nworkers = {workers}\n", 1))
        configs[workers] = (config, port)
    figures: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    try:
        time.sleep(0.5)
        for round_ in range(args.runs):  # rounds alternate the servers: this machine's load drifts
            for pinned in (True, False):
                for workers, (config, port) in configs.items():
                    where = "pinned" if pinned else "unpinned"
                    print(f"bench: round {round_ + 1}, workers = {workers}, {where} ...", file=sys.stderr)
                    run = measure(config, port, inputs["queries"], pinned, args.seconds)
                    figures.setdefault((workers, pinned), []).append(run)
        print("bench: memory ...", file=sys.stderr)
        memories = memory(*configs[2], inputs["queries"])
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
