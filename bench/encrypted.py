"""Encrypted DNS for clients: blockdns beside Unbound serving DoT (``tls-port``) and DoH (``https-port``) in
the same run, driven by dnsperf ``-m dot`` and ``-m doh`` (HTTP/2, POST).

For each transport two loads: **reused** connections (8 clients, 100 queries in flight, every query on a
connection already open) and **new** connections (``-O num-queries-per-conn=1``: a TCP connection and a TLS
handshake for every query, 8 at a time). Each row gives the median over ``--runs`` rounds of q/s and of the
server's CPU per answer (its process tree's user+system time over the run, divided by the answers dnsperf
counted); the servers take turns within a round. "new − reused" is what the first query on a connection
costs beyond a reused one's: the TCP and TLS setup.

The names (200, asked over and over) are cache hits after the first pass: the figures are the transports'
cost, not resolution's. Both servers forward to ``upstream.py`` and have the same throwaway certificate (an
ECDSA P-256 key). Server and load are pinned to different cores (``taskset``) as in ``run.py``.

    bench/encrypted.py [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from run import (  # noqa: E402 - after the path
    PYTHON,
    Layout,
    Server,
    blockdns_command,
    blockdns_config,
    cpu_seconds,
    dnsperf,
    figure,
    free_port,
    wait_for_upstream,
)

from tlscerts import ThrowawayCA  # noqa: E402

NAMES = 200
LATENCY_SAMPLES = 200
QUERY = bytes.fromhex("abcd01000001000000000000") + b"\x05host0\x07allowed\x04test\x00\x00\x01\x00\x01"


@dataclass
class Endpoints:
    server: Server
    tls_port: int
    https_port: int


@dataclass
class Row:
    server: str
    transport: str
    connections: str
    qps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)


LOADS = {  # (transport, connections) -> dnsperf options
    ("dot", "reused"): ("-m", "dot", "-c", "8", "-q", "100"),
    ("doh", "reused"): ("-m", "doh", "-c", "8", "-q", "100"),
    ("dot", "new"): ("-m", "dot", "-c", "8", "-q", "8", "-O", "num-queries-per-conn=1"),
    ("doh", "new"): ("-m", "doh", "-c", "8", "-q", "8", "-O", "num-queries-per-conn=1"),
}


def write_queries(path: Path) -> Path:
    path.write_text("".join(f"host{index}.allowed.test A\n" for index in range(NAMES)))
    return path


def blockdns_endpoints(out: Path, upstream: int, layout: Layout, cert: Path, key: Path) -> Endpoints:
    tls_port, https_port = free_port(), free_port()
    conf, port = blockdns_config(
        out, "encrypted", "", "block = []", upstream,
        tls_listen=[f"127.0.0.1:{tls_port}"], https_listen=[f"127.0.0.1:{https_port}"],
        tls_cert=str(cert), tls_key=str(key), tcp_max_per_client=64, tcp_max_connections=1024,
    )  # fmt: skip
    command, env = blockdns_command(conf, None)
    return Endpoints(
        Server("blockdns", command, port, layout, out / "blockdns.stderr", env), tls_port, https_port
    )


def unbound_endpoints(out: Path, upstream: int, layout: Layout, cert: Path, key: Path) -> Endpoints:
    port, tls_port, https_port = free_port(), free_port(), free_port()
    conf = out / "unbound-encrypted.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        server:
            interface: 127.0.0.1@{port}
            interface: 127.0.0.1@{tls_port}
            interface: 127.0.0.1@{https_port}
            tls-port: {tls_port}
            https-port: {https_port}
            tls-service-key: "{key}"
            tls-service-pem: "{cert}"
            num-threads: 1
            do-daemonize: no
            username: ""
            chroot: ""
            directory: "{out}"
            pidfile: ""
            use-syslog: no
            logfile: ""
            verbosity: 0
            do-ip6: no
            access-control: 127.0.0.0/8 allow
            do-not-query-localhost: no
            module-config: "iterator"
            incoming-num-tcp: 1024
            local-zone: "test." nodefault
        forward-zone:
            name: "."
            forward-addr: 127.0.0.1@{upstream}
        """)
    )
    command = ["unbound", "-d", "-c", str(conf)]
    return Endpoints(Server("unbound", command, port, layout, out / "unbound.stderr"), tls_port, https_port)


def measure(
    endpoints: Endpoints, transport: str, connections: str, queries: Path, seconds: float
) -> tuple[float, float, float]:
    server = endpoints.server
    port = endpoints.tls_port if transport == "dot" else endpoints.https_port
    extra: tuple[str, ...] = LOADS[(transport, connections)]
    if transport == "doh":
        extra += ("-O", f"doh-uri=https://127.0.0.1:{port}/dns-query", "-O", "doh-method=POST")
    pids = server.pids()
    before = cpu_seconds(pids)
    run = dnsperf(port, queries, seconds, server.layout.load_cores, "-t", "2", *extra)
    cpu = cpu_seconds(pids) - before
    answered = max(figure(r"Queries completed:\s+(\d+)", run.output), 1)
    qps = figure(r"Queries per second:\s+([\d.]+)", run.output)
    lost = figure(r"Queries lost:\s+\d+ \(([\d.]+)%\)", run.output)
    return qps, cpu / answered * 1e6, lost


def dot_latency(port: int, context: ssl.SSLContext) -> tuple[float, float]:
    """Median ms of (connect + TLS handshake + one answered query) on a new connection, and of one answered
    query on an open one: what a client waits for its first query and for the next."""
    framed = struct.pack(">H", len(QUERY)) + QUERY

    def ask(sock: ssl.SSLSocket) -> None:
        sock.sendall(framed)
        size = struct.unpack(">H", sock.recv(2))[0]
        while size:
            size -= len(sock.recv(size))

    first, reused = [], []
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as kept:
        for _ in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            with (
                socket.create_connection(("127.0.0.1", port)) as raw_new,
                context.wrap_socket(raw_new) as new,
            ):
                ask(new)
                first.append(time.perf_counter() - started)
            started = time.perf_counter()
            ask(kept)
            reused.append(time.perf_counter() - started)
    return statistics.median(first) * 1000, statistics.median(reused) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    layout = Layout("0", "1")
    with tempfile.TemporaryDirectory(prefix="bench-encrypted-") as work:
        out = Path(work)
        ca = ThrowawayCA.create(out)
        cert, key = ca.issue(out)
        queries = write_queries(out / "queries.txt")
        upstream_port = free_port()
        upstream = subprocess.Popen(
            ["taskset", "-c", layout.load_cores, PYTHON, str(HERE / "upstream.py"), str(upstream_port)]
        )
        servers = [
            blockdns_endpoints(out, upstream_port, layout, cert, key),
            unbound_endpoints(out, upstream_port, layout, cert, key),
        ]
        rows: dict[tuple[str, str, str], Row] = {}
        latencies: dict[str, tuple[float, float]] = {}
        context = ssl.create_default_context(cafile=str(ca.ca_file))
        context.check_hostname = False  # the certificate names dns.test; the bench connects to 127.0.0.1
        try:
            wait_for_upstream(upstream_port)
            for endpoints in servers:
                endpoints.server.start(120)
            for endpoints in servers:  # warm: every name cached, both listeners' code paths run once
                for transport in ("dot", "doh"):
                    measure(endpoints, transport, "reused", queries, 1.0)
            for round_index in range(args.runs):
                for transport, connections in LOADS:
                    order = servers[round_index % 2 :] + servers[: round_index % 2]
                    for endpoints in order:
                        qps, cpu_us, lost = measure(endpoints, transport, connections, queries, args.seconds)
                        key_ = (endpoints.server.name, transport, connections)
                        row = rows.setdefault(key_, Row(*key_))
                        row.qps.append(qps)
                        row.cpu_us.append(cpu_us)
                        row.lost.append(lost)
                        time.sleep(0.5)  # closed connections leave TIME_WAIT; let the servers settle
            for endpoints in servers:
                latencies[endpoints.server.name] = dot_latency(endpoints.tls_port, context)
        finally:
            for endpoints in servers:
                endpoints.server.stop()
            upstream.terminate()
            upstream.wait(5)
    report(rows, latencies, args)
    return 0


def report(
    rows: dict[tuple[str, str, str], Row], latencies: dict[str, tuple[float, float]], args: argparse.Namespace
) -> None:
    print(f"\nEncrypted DNS, cache hits, medians of {args.runs} rounds of {args.seconds:.0f} s")
    print("(server on core 0, dnsperf on core 1)")
    print(f"{'server':10} {'transport':9} {'connections':11} {'q/s':>9} {'µs CPU/answer':>14} {'lost %':>7}")
    for row in rows.values():
        print(
            f"{row.server:10} {row.transport:9} {row.connections:11} {statistics.median(row.qps):9.0f} "
            f"{statistics.median(row.cpu_us):14.1f} {statistics.median(row.lost):7.2f}"
        )
    print("\nfirst query on a new connection, beyond a reused one (µs of server CPU):")
    for server in ("blockdns", "unbound"):
        for transport in ("dot", "doh"):
            new, reused = rows.get((server, transport, "new")), rows.get((server, transport, "reused"))
            if new and reused:
                extra = statistics.median(new.cpu_us) - statistics.median(reused.cpu_us)
                print(f"  {server:10} {transport}: {extra:8.1f}")
    print(f"\nDoT as one Python client waits for it, median of {LATENCY_SAMPLES} (ms):")
    for server, (first, reused) in latencies.items():
        print(f"  {server:10} first query on a new connection {first:6.2f}   on an open one {reused:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
