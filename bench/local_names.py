"""Local names under load: what a local-record answer costs beside a cached one, and what a big hosts file
costs to load.

1. One blockdns (forward mode to bench/upstream.py, the query log off, 200 local names from a hosts file and
   records) pinned to core 0, driven by dnsperf on core 1 with one kind of query at a time: a cached
   answer, a local record, a name in home.arpa without a record (NXDOMAIN), a PTR made for a local address,
   a local CNAME to a cached outside name. Median of ``--runs`` throughput runs of ``--seconds``, then
   latency at a fixed rate. ``--compare-with DIR`` runs another checkout's blockdns on the cached kind, in
   the same run, for the fast path's cost before and after.
2. ``load_local`` and the generation's local handlers for hosts files of 10,000 and 100,000 lines, in a
   child process: seconds and resident megabytes, before and after every name has been asked once.

Bounded: dnsperf -l, and every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # bench/run.py is a script beside this one, not a package
    HERE,
    OUT,
    PYTHON,
    Layout,
    Run,
    Server,
    blockdns_command,
    dnsperf,
    free_port,
    latency,
    start_fake_upstream,
    throughput,
)

NAMES = 200
# As make bench's one-core runs: the server on core 0, the load (dnsperf, the fake upstream) on core 1.
ONE_CORE = Layout("0", "1")
START_TIMEOUT = 60.0

KINDS = {
    "cached answer": lambda i: f"host{i}.allowed.test A",
    "local record": lambda i: f"nas{i}.home.arpa A",
    "local zone, NXDOMAIN": lambda i: f"nothing{i}.home.arpa A",
    "PTR of a local address": lambda i: f"{i}.1.168.192.in-addr.arpa PTR",
    "local CNAME to a cached name": lambda i: f"alias{i}.home.arpa A",
}


def write_config(out: Path, upstream_port: int, local: bool) -> tuple[Path, int]:
    port = free_port()
    hosts = out / "local-bench.hosts"
    hosts.write_text("".join(f"192.168.1.{i} nas{i}.home.arpa\n" for i in range(NAMES)))
    records = ",\n  ".join(f'"alias{i}.home.arpa. CNAME host{i}.allowed.test."' for i in range(NAMES))
    local_section = f'[local]\nhosts_files = ["{hosts}"]\nrecords = [\n  {records}\n]\n' if local else ""
    conf = out / f"local-bench-{'local' if local else 'plain'}.toml"
    conf.write_text(
        textwrap.dedent(f"""\
        [server]
        listen = ["127.0.0.1:{port}"]
        [resolver]
        mode = "forward"
        upstreams = ["udp://127.0.0.1:{upstream_port}"]
        [policy]
        block = []
        [lists]
        refresh = "0"
        data_dir = "{out / "empty-lists"}"
        [querylog]
        path = ""
        [api]
        listen = ""
        """)
        + local_section
    )
    return conf, port


def query_file(kind: str) -> Path:
    queries = OUT / f"local-bench-{kind.replace(' ', '-').replace(',', '')}.txt"
    queries.write_text("".join(KINDS[kind](i) + "\n" for i in range(NAMES)))
    return queries


def run_kinds(
    servers: list[tuple[str, Server, list[str]]], upstream: int, args: argparse.Namespace
) -> list[tuple[str, str, dict[str, float]]]:
    """Each server's kinds of query: the throughput runs of all of them interleaved (so a neighbour's load on
    this machine falls on every one alike), then latency at a fixed rate."""
    plan = [(who, server, kind, query_file(kind)) for who, server, kinds in servers for kind in kinds]
    for _, server, _, queries in plan:
        dnsperf(server.port, queries, 2, server.layout.load_cores, "-n", "1")  # warm the cache and every memo
    runs: list[list[Run]] = [[] for _ in plan]
    for _ in range(args.runs):
        for index, (_, server, _, queries) in enumerate(plan):
            runs[index].append(throughput(server, queries, args.seconds, upstream, once=False))
    rows = []
    for (who, server, kind, queries), done in zip(plan, runs, strict=True):
        p50, p99 = latency(server, queries, args.rate, 3, once=False)
        figures = {
            "qps": statistics.median(run.qps for run in done),
            "cpu_us": statistics.median(run.cpu_us for run in done),
            "p50_ms": p50,
            "p99_ms": p99,
        }
        rows.append((who, kind, figures))
    return rows


LOAD_PROBE = """
import gc, json, sys, tempfile, time
from pathlib import Path
from blockdns import config
from blockdns.runtime import load_local
from blockdns.resolve.local import LocalAnswers
from blockdns.resolve.localzones import LocalZonesHandler, ZoneTable

def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024

lines = int(sys.argv[1])
directory = Path(tempfile.mkdtemp())
hosts = directory / "hosts"
hosts.write_text("".join(
    f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} host{i} host{i}.lab.home.arpa\\n" for i in range(lines)))
settings = config.from_dict({"local": {"hosts_files": [str(hosts)]}}, source=directory / "blockdns.toml")
gc.collect()
before = rss()
started = time.perf_counter()
local = load_local(settings)
loaded = time.perf_counter()
zones = ZoneTable.build(True, [])
answers = LocalAnswers(local, zones, canaries=True)
handler = LocalZonesHandler(zones, local)
ready = time.perf_counter()
gc.collect()
loaded_mb = rss() - before
for owner in local.rrsets:  # every name asked once: every answer built
    answers.build(owner)
every = time.perf_counter() - ready
gc.collect()
print(json.dumps({"lines": lines, "names": len(local), "load_s": ready - started, "mb": loaded_mb,
                  "build_all_s": every, "all_mb": rss() - before}))
"""


def hosts_load(lines: int) -> dict[str, float]:
    # -P and PYTHONPATH: this checkout's blockdns, not one the working directory or the venv would import.
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    output = subprocess.run(
        [PYTHON, "-P", "-c", LOAD_PROBE, str(lines)], capture_output=True, text=True, timeout=600, env=env
    )
    if output.returncode:
        raise RuntimeError(output.stderr[-2000:])
    return json.loads(output.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rate", type=int, default=20000)
    parser.add_argument("--compare-with", type=Path, metavar="DIR")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "empty-lists").mkdir(exist_ok=True)
    upstream, upstream_port = start_fake_upstream(ONE_CORE.load_cores)
    servers: list[tuple[str, Server, list[str]]] = []
    try:
        time.sleep(0.5)
        conf, port = write_config(OUT, upstream_port, local=True)
        command, env = blockdns_command(conf, None)  # this checkout's blockdns, whatever the directory
        this = Server("blockdns", command, port, ONE_CORE, conf.with_suffix(".stderr"), env)
        servers.append(("this checkout", this, list(KINDS)))
        if args.compare_with is not None:
            conf, port = write_config(OUT, upstream_port, local=False)
            source = args.compare_with.resolve()
            command, env = blockdns_command(conf, source)
            other = Server(source.name, command, port, ONE_CORE, conf.with_suffix(".stderr"), env)
            servers.append((source.name, other, ["cached answer"]))
        for _, server, _ in servers:
            server.start(START_TIMEOUT)
        print("bench: running ...", file=sys.stderr, flush=True)
        rows = run_kinds(servers, upstream.pid, args)
    finally:
        for _, server, _ in servers:
            server.stop()  # a server that never answered too: it may still be running
        upstream.terminate()
        upstream.wait(5)
    print(
        f"\none kind of query at a time, {NAMES} names; median of {args.runs} interleaved runs of "
        f"{args.seconds:.0f} s; latency at {args.rate:,} q/s\n"
    )
    print(f"{'blockdns':<16} {'query':<30} {'q/s':>9} {'CPU µs/q':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for who, kind, figures in rows:
        print(
            f"{who:<16} {kind:<30} {figures['qps']:>9,.0f} {figures['cpu_us']:>9.1f} "
            f"{figures['p50_ms']:>7.3f} {figures['p99_ms']:>7.3f}"
        )
    print()
    for lines in (10_000, 100_000):
        figures = hosts_load(lines)
        print(
            f"hosts file of {lines:,} lines ({figures['names']:,} local names with the PTRs): loaded and "
            f"ready in {figures['load_s']:.2f} s, {figures['mb']:.0f} MB resident; every answer built (every "
            f"name asked once) in {figures['build_all_s']:.2f} s more, {figures['all_mb']:.0f} MB resident"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
