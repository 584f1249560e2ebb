"""What the PostgreSQL query log costs DNS, and how many rows two replicas write to it.

All on loopback, bounded in time; PostgreSQL is the Debian package's, started as in the tests
(tests/pgserver.py: a temporary data directory, fsync off).

1. blockdns with the query log off, on in SQLite, and on in PostgreSQL, one after the other in one run, each
   measured as ``make bench`` measures it (bench/run.py: dnsperf at full load, medians of ``--runs``): q/s and
   server CPU per answer.
2. Two replicas writing one PostgreSQL log, each driven by its own dnsperf for ``--seconds``: the rows stored
   per second (counted in the database, per replica), beside the queries per second dnsperf got answered and
   the rows each replica dropped.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from run import (
    HERE,
    OUT,
    Layout,
    Result,
    Server,
    blockdns_server,
    dnsperf,
    latency,
    start_fake_upstream,
    throughput,
    write_inputs,
)

sys.path.insert(0, str(HERE.parent / "tests"))
from pgserver import PostgresServer, unavailable

# As make bench's one-core runs: the server on core 0, the load (dnsperf, the fake upstream) on core 1.
ONE_CORE = Layout("0", "1")
START_TIMEOUT = 60.0
LATENCY_RATE = 20000  # q/s of the latency run, as make bench's cache-hit mix


def postgres_server(out: Path, inputs: dict[str, Path], upstream_port: int, url: str, replica: str) -> Server:
    """blockdns from this checkout logging to ``url`` (bench/run.py's config with the log's path replaced)."""
    server = blockdns_server(out, inputs, upstream_port, ONE_CORE, querylog=True)
    conf = Path(server.command[-1])
    sqlite_path = str(out / "querylog-log-on.sqlite")
    conf_pg = conf.with_name(f"blockdns-pg-{replica}.toml")
    conf_pg.write_text(
        conf.read_text().replace(f'path = "{sqlite_path}"', f'path = "{url}"\nreplica = "{replica}"')
    )
    server.command[-1] = str(conf_pg)
    server.name = f"blockdns (query log in PostgreSQL, {replica})"
    server.stderr_path = conf_pg.with_suffix(".stderr")
    return server


def measure(server: Server, queries: Path, runs: int, seconds: float, upstream: int) -> Result:
    """One server: started, warmed with one pass, ``runs`` full-load runs (bench/run.py's throughput), then
    latency at LATENCY_RATE (bench/run.py's latency); stopped whatever happened."""
    result = Result(server.name)
    try:
        server.start(START_TIMEOUT)
        dnsperf(server.port, queries, 2, server.layout.load_cores, "-n", "1")  # warm the cache and the memos
        for index in range(runs):
            result.runs[index] = throughput(server, queries, seconds, upstream, once=False)
        result.p50_ms, result.p99_ms = latency(server, queries, LATENCY_RATE, 3, once=False)
    finally:
        server.stop()
    return result


def settled_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per replica once the writers have caught up (they flush every half second): when two counts a
    second apart agree, or after 15 s."""
    query = "SELECT replica, count(*) FROM blockdns_queries GROUP BY 1"
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(1.0)
        latest = {str(replica): int(count) for replica, count in conn.execute(query).fetchall()}
        if latest == counts:
            break
        counts = latest
    return counts


def load(port: int, queries: Path, seconds: float) -> subprocess.Popen[str]:
    """dnsperf at full load on the load core, as bench/run.py's throughput run (half its clients)."""
    command = ["taskset", "-c", ONE_CORE.load_cores, "dnsperf", "-s", "127.0.0.1", "-p", str(port)]
    command += ["-d", str(queries), "-l", str(seconds), "-c", "4", "-q", "200"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def two_replicas(
    out: Path, inputs: dict[str, Path], upstream_port: int, url: str, seconds: float
) -> tuple[dict[str, float], float]:
    """Rows/s each replica stored, and the q/s the two dnsperf runs got answered."""
    servers = [postgres_server(out, inputs, upstream_port, url, name) for name in ("replica-a", "replica-b")]
    try:
        for server in servers:
            server.start(START_TIMEOUT)
        for server in servers:
            dnsperf(server.port, inputs["queries"], 2, server.layout.load_cores, "-n", "1")  # warm the caches
        with psycopg.connect(url, autocommit=True) as conn:
            before = settled_counts(conn)  # the warm-up's rows are in
            runs = [load(server.port, inputs["queries"], seconds) for server in servers]
            outputs = [run.communicate(timeout=seconds + 30)[0] for run in runs]
            after = settled_counts(conn)
    finally:
        for server in servers:
            server.stop()
    rows = {name: (count - before.get(name, 0)) / seconds for name, count in after.items()}
    qps = sum(
        float(line.split(":")[1])
        for output in outputs
        for line in output.splitlines()
        if "Queries per second:" in line
    )
    return rows, qps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    reason = unavailable()
    if reason is not None or shutil.which("dnsperf") is None:
        print(f"bench: {reason or 'dnsperf is not installed'}", file=sys.stderr)
        return 2
    inputs = write_inputs(OUT)
    upstream, upstream_port = start_fake_upstream(ONE_CORE.load_cores)
    postgres = PostgresServer().start()
    results: list[Result] = []
    try:
        time.sleep(0.5)
        # postgres_server rewrites run.py's log-on config on its way: the SQLite server's comes after it.
        on_postgres = postgres_server(OUT, inputs, upstream_port, postgres.create_database("one"), "single")
        servers = [
            blockdns_server(OUT, inputs, upstream_port, ONE_CORE, querylog=False),
            blockdns_server(OUT, inputs, upstream_port, ONE_CORE, querylog=True),
            on_postgres,
        ]
        for server in servers:
            print(f"bench: {server.name} ...", file=sys.stderr, flush=True)
            results.append(measure(server, inputs["queries"], args.runs, args.seconds, upstream.pid))
        print("bench: two replicas writing one PostgreSQL log ...", file=sys.stderr, flush=True)
        per_replica, qps = two_replicas(
            OUT, inputs, upstream_port, postgres.create_database("shared"), args.seconds
        )
    finally:
        upstream.terminate()
        upstream.wait(5)
        postgres.remove()
    print(f"{'server':46} {'q/s':>8} {'CPU µs/answer':>14} {'p50 ms':>7} {'p99 ms':>7}")
    for result in results:
        median_qps, cpu_us = result.median(lambda run: run.qps), result.median(lambda run: run.cpu_us)
        figures = f"{median_qps:8.0f} {cpu_us:14.1f} {result.p50_ms:7.2f} {result.p99_ms:7.2f}"
        print(f"{result.name:46} {figures}")
    print(
        f"\ntwo replicas, one PostgreSQL log: {sum(per_replica.values()):.0f} rows/s stored ("
        + ", ".join(f"{name} {rate:.0f}" for name, rate in sorted(per_replica.items()))
        + f") while dnsperf got {qps:.0f} q/s answered by the two"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
