"""Hardening figures (issue 14): what a hostile client or a lossy path costs the legitimate clients.

Three measurements, all on loopback, each bounded in count and time:

1. TCP slots: a client outside ``allow_clients`` (127.0.0.7) opens 400 TCP connections and holds them; an
   allowed client (127.0.0.1) then makes 200 queries over TCP, a new connection each: how many succeed.
2. Upstream packet loss: the fake upstream drops 10% of the queries it gets, at random; 400 distinct names,
   16 in flight: median, p90 and p99 answer time, and the share answered SERVFAIL or not at all.
3. Cache-miss flood: dnsperf sends random names from 127.0.0.1 for 10 s; meanwhile a probe client
   (127.0.0.2) asks 20 fresh names a second: the flood's answered q/s, the probes' p50/p99 and losses, and
   the kernel's receive drops on the server's UDP socket (read from /proc/net/udp, so the same figure for
   any version).

    python bench/hardening.py                      # this checkout
    python bench/hardening.py --before DIR         # another checkout's blockdns first, then this one

The server runs on core 0, the load (dnsperf, probes, fake upstreams) on core 1, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from run import PYTHON, Layout, Server, dnsperf, free_port

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "hardening"
ROOT = HERE.parent

REFUSED_HOLDER, ALLOWED, PROBE = "127.0.0.7", "127.0.0.1", "127.0.0.2"
HELD_CONNECTIONS, TCP_ATTEMPTS = 400, 200
LOSS, LOSS_NAMES, LOSS_CONCURRENCY = 0.1, 400, 16
FLOOD_SECONDS, FLOOD_NAMES, PROBE_RATE = 10, 200_000, 20
# As make bench's one-core runs: the server on core 0, the load (dnsperf, probes, fake upstreams) on core 1.
ONE_CORE = Layout("0", "1")
START_TIMEOUT = 60.0


def query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def rcode(reply: bytes) -> int:
    return reply[3] & 0x0F


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


# -------------------------------------------------------------------------------------------- server


def start_upstream(loss: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", ONE_CORE.load_cores, PYTHON, str(HERE / "upstream.py"), str(port), str(loss)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while time.monotonic() < deadline:  # a lossy upstream answers most of these
            sock.sendto(query("ready.test", 1), ("127.0.0.1", port))
            try:
                sock.recv(512)
                return process, port
            except OSError:
                continue
    process.kill()
    raise RuntimeError("the fake upstream did not start")


def blockdns(source: Path, upstream_port: int, label: str) -> Server:
    port = free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    conf = OUT / f"{label}.toml"
    conf.write_text(
        textwrap.dedent(f"""\
        [server]
        listen = ["127.0.0.1:{port}"]
        allow_clients = ["{ALLOWED}/32", "{PROBE}/32"]
        [resolver]
        mode = "forward"
        upstreams = ["udp://127.0.0.1:{upstream_port}"]
        [policy]
        block = []
        [lists]
        data_dir = "{OUT / "lists"}"
        refresh = "0"
        [querylog]
        path = ""
        [api]
        listen = ""
        """)
    )
    env = {"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"}
    command = [PYTHON, "-P", "-m", "blockdns", "serve", "--config", str(conf)]
    return Server(label, command, port, ONE_CORE, OUT / f"{label}.stderr", env)


def receive_drops(port: int) -> int:
    """The kernel's drop count of the UDP socket bound to ``port`` on 127.0.0.1 (/proc/net/udp)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted:
            return int(fields[-1])
    return 0


# ------------------------------------------------------------------------------------ 1. TCP slots


def tcp_slots(port: int) -> float:
    held: list[socket.socket] = []
    try:
        for _ in range(HELD_CONNECTIONS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(2)
            sock.bind((REFUSED_HOLDER, 0))
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        time.sleep(0.5)  # a benchmark, not a test: let the server take in the backlog
        answered = 0
        for index in range(TCP_ATTEMPTS):
            wire = query(f"tcp{index}.test", index)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(struct.pack(">H", len(wire)) + wire)
                    reply = conn.recv(4096)
                    answered += len(reply) > 2 and reply[2:4] == wire[:2]
            except OSError:
                pass
        return answered / TCP_ATTEMPTS
    finally:
        for sock in held:
            sock.close()


# -------------------------------------------------------------------------------------- 2. loss


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)
    servfail: int = 0
    unanswered: int = 0


async def lossy_queries(port: int) -> Timings:
    loop = asyncio.get_running_loop()
    timings = Timings()
    names = iter(range(LOSS_NAMES))

    async def worker() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(("127.0.0.1", port))
            for index in names:
                started = time.monotonic()
                await loop.sock_sendall(sock, query(f"loss{index}.test", index))
                try:
                    reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 12)
                except TimeoutError:
                    timings.unanswered += 1
                    continue
                timings.seconds.append(time.monotonic() - started)
                timings.servfail += rcode(reply) == 2

    await asyncio.gather(*(worker() for _ in range(LOSS_CONCURRENCY)))
    return timings


# ------------------------------------------------------------------------------------- 3. flood


@dataclass
class Flood:
    qps: float = 0.0
    flood_lost: str = ""
    probe_ms: list[float] = field(default_factory=list)
    probes: int = 0
    kernel_drops: int = 0


def probe(port: int, stop: threading.Event, result: Flood) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((PROBE, 0))
        sock.settimeout(1)
        started = time.monotonic()
        index = 0
        while not stop.is_set():
            wire = query(f"p{index}.probe.test", index)
            sent = time.monotonic()
            sock.sendto(wire, ("127.0.0.1", port))
            result.probes += 1
            try:
                while True:
                    reply = sock.recv(4096)
                    if reply[:2] == wire[:2]:
                        result.probe_ms.append((time.monotonic() - sent) * 1000)
                        break
            except OSError:
                pass
            index += 1
            time.sleep(max(0.0, started + index / PROBE_RATE - time.monotonic()))


def flood(port: int) -> Flood:
    names = OUT / "flood-names.txt"
    rng = random.Random(14)
    names.write_text("".join(f"r{rng.getrandbits(48):012x}.flood.test A\n" for _ in range(FLOOD_NAMES)))
    result = Flood()
    drops_before = receive_drops(port)
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(port, stop, result), daemon=True)
    prober.start()
    try:
        run = dnsperf(port, names, FLOOD_SECONDS, ONE_CORE.load_cores, "-a", ALLOWED, "-q", "2000", "-t", "2")
    finally:
        stop.set()
        prober.join(5)
    result.kernel_drops = receive_drops(port) - drops_before
    for line in run.output.splitlines():
        if "Queries per second" in line:
            result.qps = float(line.split(":")[1])
        elif "Queries lost" in line:
            result.flood_lost = line.split(":")[1].strip()
    return result


# ---------------------------------------------------------------------------------------------- main


def measure(source: Path, label: str) -> dict[str, str]:
    figures: dict[str, str] = {}
    clean, clean_port = start_upstream(0.0)
    lossy, lossy_port = start_upstream(LOSS)
    try:
        for upstream_port, runs in ((clean_port, ("tcp", "flood")), (lossy_port, ("loss",))):
            server = blockdns(source, upstream_port, f"{label}-{runs[0]}")
            try:
                server.start(START_TIMEOUT)
                if "tcp" in runs:
                    figures["allowed TCP queries answered"] = f"{tcp_slots(server.port):.0%}"
                if "flood" in runs:
                    time.sleep(1)
                    result = flood(server.port)
                    lost = result.probes - len(result.probe_ms)
                    figures["flood: answered q/s (one client)"] = f"{result.qps:,.0f}"
                    figures["flood: dnsperf lost"] = result.flood_lost
                    figures["flood: probe p50 / p99 ms"] = (
                        f"{percentile(result.probe_ms, 0.5):.1f} / {percentile(result.probe_ms, 0.99):.1f}"
                    )
                    figures["flood: probes unanswered (1 s)"] = f"{lost}/{result.probes}"
                    figures["flood: kernel receive drops"] = f"{result.kernel_drops:,}"
                if "loss" in runs:
                    timings = asyncio.run(lossy_queries(server.port))
                    seconds = timings.seconds
                    figures["10% loss: p50 / p90 / p99 ms"] = (
                        f"{statistics.median(seconds) * 1000:.1f} / {percentile(seconds, 0.9) * 1000:.1f}"
                        f" / {percentile(seconds, 0.99) * 1000:.1f}"
                    )
                    figures["10% loss: SERVFAIL / unanswered"] = (
                        f"{timings.servfail}/{LOSS_NAMES} / {timings.unanswered}/{LOSS_NAMES}"
                    )
            finally:
                server.stop()
    finally:
        for process in (clean, lossy):
            process.terminate()
            process.wait(5)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, metavar="DIR", help="another checkout, measured first")
    args = parser.parse_args()
    for tool in ("dnsperf", "taskset"):
        if shutil.which(tool) is None:
            print(f"hardening: {tool} is not installed (make system-deps installs it)", file=sys.stderr)
            return 2
    runs = [(args.before.resolve(), "before")] if args.before else []
    runs.append((ROOT, "after" if args.before else "this"))
    results = []
    for source, label in runs:
        print(f"hardening: {label} ({source}) ...", file=sys.stderr, flush=True)
        results.append((label, measure(source, label)))
    keys = list(results[0][1])
    print(f"\n{'':<36}" + "".join(f"{label:>24}" for label, _ in results))
    for key in keys:
        print(f"{key:<36}" + "".join(f"{figures.get(key, ''):>24}" for _, figures in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
