"""What a metrics scrape costs DNS: series count, /metrics size and render time after a flood of queries with
random query types, and the DNS latency other clients see while /metrics or /api/stats is being rendered.

All on loopback, bounded in count and time:

1. starts ``blockdns serve`` (from this checkout, or ``--checkout DIR``) with the query log off, one blocked
   domain, ``allow_clients = 127.0.0.1/32`` and the admin API on a free port;
2. sends ``--queries`` one-packet queries for the blocked name with random query types, half from 127.0.0.1
   (blocked answers) and half from 127.0.0.2 (refused clients), a window of them at a time;
3. measures DNS latency with queries at a fixed rate (500 per second, replies collected by another thread):
   for ``--seconds`` idle, then for ``--seconds`` of back-to-back renders of /metrics, then of /api/stats;
4. prints the series count, the /metrics size, the render times and the latency percentiles.

``--checkout /work/main`` runs another checkout's code under the same load, for a before/after figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"
BLOCKED = "x.bench.test"
WINDOW = 256  # queries in flight during the flood
PROBE_INTERVAL = 0.002  # one latency probe every 2 ms (500 queries per second)
DEADLINE = 600.0  # the whole run, seconds


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query(qid: int, name: str, qtype: int) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", qtype, 1)


def write_config(directory: Path, dns_port: int, api_port: int) -> Path:
    (directory / "feeds.toml").write_text("feeds = []\n")
    config = directory / "blockdns.toml"
    config.write_text(
        f"""\
[server]
listen = ["127.0.0.1:{dns_port}"]
allow_clients = ["127.0.0.1/32"]

[resolver]
mode = "forward"
upstreams = ["udp://127.0.0.1:9"]

[policy]
block = ["domain:bench.test"]

[lists]
feeds = "feeds.toml"
data_dir = "lists"
refresh = "0"

[querylog]
path = ""

[api]
listen = "127.0.0.1:{api_port}"
token = "{TOKEN}"
"""
    )
    return config


class Server:
    def __init__(self, checkout: Path, config: Path, port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
        command = [*pin, sys.executable, "-m", "blockdns", "serve", "--config", str(config)]
        self.process = subprocess.Popen(  # cwd: `python -m` would put the current directory first
            command, env=env, cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.port = port
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None:
                assert self.process.stderr is not None
                raise SystemExit(f"blockdns exited: {self.process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit("blockdns did not start answering within 60 s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            try:
                sock.sendto(query(7, BLOCKED, 1), ("127.0.0.1", self.port))
                return sock.recv(512)[:2] == b"\x00\x07"
            except OSError:
                return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def flood(port: int, count: int, seed: int) -> int:
    """Send ``count`` queries of random types, half from a refused source; returns how many were answered."""
    rng = random.Random(seed)
    sockets = []
    for source in ("127.0.0.1", "127.0.0.2"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        sock.settimeout(0.5)
        sockets.append(sock)
    answered = 0
    try:
        for start in range(0, count, WINDOW):
            batch = min(WINDOW, count - start)
            for index in range(batch):
                sock = sockets[index % 2]
                sock.sendto(query(index, BLOCKED, rng.randrange(1, 65536)), ("127.0.0.1", port))
            for offset, sock in enumerate(sockets):
                expected = (batch + 1 - offset) // 2
                for _ in range(expected):
                    try:
                        sock.recv(512)
                        answered += 1
                    except TimeoutError:
                        break
    finally:
        for sock in sockets:
            sock.close()
    return answered


class Prober:
    """Queries at a fixed rate from one thread, replies collected by another: a stalled server delays every
    query sent meanwhile, as it would real clients' (a client that waits for each answer before asking again
    would see one slow query per stall). ``window`` gives the latencies of the queries sent in a period."""

    def __init__(self, port: int, interval: float = PROBE_INTERVAL) -> None:
        self.port, self.interval = port, interval
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.sent: dict[int, float] = {}  # query ID -> when it was sent
        self.answered: dict[int, float] = {}  # query ID -> latency, seconds
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._send), threading.Thread(target=self._receive)]

    def start(self) -> Prober:
        for thread in self.threads:
            thread.start()
        return self

    def _send(self) -> None:
        qid = 0
        next_send = time.perf_counter()
        while not self.stopping.is_set() and qid < 65535:
            qid += 1
            self.sent[qid] = time.perf_counter()
            self.sock.sendto(query(qid, BLOCKED, 1), ("127.0.0.1", self.port))
            next_send += self.interval
            time.sleep(max(0.0, next_send - time.perf_counter()))

    def _receive(self) -> None:
        while not self.stopping.is_set() or len(self.answered) < len(self.sent):
            try:
                data = self.sock.recv(512)
            except TimeoutError:
                if self.stopping.is_set():
                    break
                continue
            now = time.perf_counter()
            qid = int.from_bytes(data[:2], "big")
            if qid in self.sent:
                self.answered[qid] = now - self.sent[qid]

    def stop(self) -> None:
        time.sleep(0.5)  # replies to the last queries are on their way
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)
        self.sock.close()

    def window(self, start: float, end: float) -> tuple[list[float], int]:
        """Latencies (ms) of the queries sent between ``start`` and ``end``, and how many got no reply."""
        ids = [qid for qid, sent in self.sent.items() if start <= sent <= end]
        latencies = [1000 * self.answered[qid] for qid in ids if qid in self.answered]
        return latencies, len(ids) - len(latencies)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def get(url: str) -> tuple[float, bytes, int]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.perf_counter()
    with opener.open(request, timeout=120) as response:
        body = response.read()
        return time.perf_counter() - started, body, response.status


def latency(prober: Prober, start: float, end: float, prefix: str) -> dict[str, float]:
    latencies, lost = prober.window(start, end)
    return {
        f"{prefix}_n": len(latencies),
        f"{prefix}_lost": lost,
        f"{prefix}_p50_ms": percentile(latencies, 0.50),
        f"{prefix}_p99_ms": percentile(latencies, 0.99),
        f"{prefix}_max_ms": max(latencies, default=float("nan")),
    }


def measure_render(prober: Prober, url: str, seconds: float) -> dict[str, float]:
    """Render ``url`` back to back for ``seconds`` (at least once); DNS latency of the queries sent
    meanwhile."""
    times: list[float] = []
    size = 0
    start = time.perf_counter()
    while not times or time.perf_counter() - start < seconds:
        elapsed, body, _ = get(url)
        times.append(elapsed)
        size = len(body)
    end = time.perf_counter()
    return {
        "renders": len(times),
        "render_s_median": statistics.median(times),
        "render_s_max": max(times),
        "bytes": size,
        **latency(prober, start, end, "dns_during"),
    }


def series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkout", type=Path, default=HERE.parent, help="the blockdns source tree to run")
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measured period")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("bench/scrape.py: over its time bound"))
    signal.alarm(int(DEADLINE))
    with tempfile.TemporaryDirectory(prefix="blockdns-scrape-") as tmp:
        dns_port, api_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        config = write_config(Path(tmp), dns_port, api_port)
        server = Server(args.checkout.resolve(), config, dns_port)
        try:
            started = time.monotonic()
            answered = flood(dns_port, args.queries, args.seed)
            flood_seconds = time.monotonic() - started
            base = f"http://127.0.0.1:{api_port}"
            _, text, _ = get(base + "/metrics")
            prober = Prober(dns_port).start()
            try:
                idle_start = time.perf_counter()
                time.sleep(args.seconds)
                idle = latency(prober, idle_start, time.perf_counter(), "dns_idle")
                metrics = measure_render(prober, base + "/metrics", args.seconds)
                stats = measure_render(prober, base + "/api/stats", args.seconds)
            finally:
                prober.stop()
            result = {
                "checkout": str(args.checkout.resolve()),
                "queries": args.queries,
                "answered": answered,
                "flood_s": round(flood_seconds, 2),
                "series": series(text.decode()),
                "queries_series": sum(
                    1 for line in text.decode().splitlines() if line.startswith("blockdns_queries_total{")
                ),
                "idle": idle,
                "metrics": metrics,
                "stats": stats,
            }
        finally:
            server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
