"""Rate limiting figures (issue 16): what a flooding client gets against its limit, what the other clients'
latency is meanwhile, and what the limiter costs a cache hit.

1. Floods, all on loopback, each bounded in time and count: one Python process sends one cached name as fast
   as it can, never waiting for replies (a flood does not), from one client address or round-robin from four
   in four /24s, for FLOOD_SECONDS, while a probe client in another /24 asks PROBE_RATE cached names a
   second. (dnsperf is no flooder here: it waits for every dropped query to time out.) Run with
   ``[ratelimit]`` off and on (client_qps = LIMIT, burst = 0 so a bucket holds 2 × LIMIT, slip = 2).
   Figures: what the flood sent, what it got answered per second (from the server's own counters,
   /metrics), slipped and dropped, the probes' p50/p99 and losses, the kernel's receive drops.
2. The cost on the cache-hit path, in process: Engine.serve on a cached answer, a million calls, the best
   CPU time of 5 × 3 rounds (the modes take turns), with the limiter off, on (an admitted client: a bucket
   taken from) and on for a limited client (the drop path); ``--before DIR`` adds another checkout's
   Engine.serve (off) to the rounds.

    python bench/ratelimit.py [--before DIR]

The server runs on core 0; the flood, the probe and the fake upstream on core 1, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hardening import free_port, percentile, query, receive_drops, start_upstream
from run import PYTHON, Layout, Server

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "ratelimit"
ROOT = HERE.parent

LIMIT = 100  # client_qps in the limited runs
PACED = 30_000  # q/s of the paced floods (in all, whatever the number of sources)
FLOOD_SECONDS, PROBE_RATE, PROBE_GRACE = 8, 50, 1.0
PROBE = "127.0.0.2"  # its own /24, away from every flooder
FLOODERS = ("127.0.10.1", "127.0.11.1", "127.0.12.1", "127.0.13.1")
NAME = "cached.flood.test"
# As make bench's one-core runs: the server on core 0, the load (flood, probe, fake upstream) on core 1.
ONE_CORE = Layout("0", "1")
START_TIMEOUT = 60.0

# The flood: one cached query, sent round-robin from sockets bound to the given sources, never waiting for a
# reply (a flood does not), at a rate (0: as fast as one Python process can), for a fixed time and at most
# MAX_FLOOD packets.
MAX_FLOOD = 5_000_000
FLOODER = """
import socket, struct, sys, time
port, seconds, rate, sources = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
name = b"".join(bytes([len(p)]) + p.encode() for p in "%s".split(".")) + b"\\x00"
socks = []
for source in sources:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    socks.append(sock)
sent, started = 0, time.monotonic()
while sent < %d and time.monotonic() < started + seconds:
    for sock in socks:
        for _ in range(16):
            header = struct.pack(">HHHHHH", sent & 0xFFFF, 0x0100, 1, 0, 0, 0)
            sock.send(header + name + b"\\x00\\x01\\x00\\x01")
            sent += 1
        if rate:  # paced: sleep until this many should have gone
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
print(sent)
"""

MICRO_CALLS, MICRO_REPEATS, MICRO_ROUNDS = 1_000_000, 5, 3
MICRO = """
import asyncio, sys, time
from blockdns import config
from blockdns.resolve.base import Answer, Outcome
from blockdns.runtime import build_policy
from blockdns.server.engine import Engine
from blockdns.server.generation import Shared, build_generation
from blockdns.server.tasks import TaskSet
from blockdns.wire import Reply

mode, calls, repeats, catalog = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
raw = {
    "resolver": {"mode": "forward", "upstreams": ["udp://127.0.0.1:9"]},
    "policy": {"block": []},
    "lists": {"refresh": "0", "catalog": catalog + "/vendors", "guard": catalog + "/guard.toml",
              "feeds": catalog + "/feeds.toml"},
    "querylog": {"path": ""}, "api": {"listen": ""},
}
if mode != "off":
    raw["ratelimit"] = {"client_qps": 10**9 if mode == "on" else 1, "burst": 1, "slip": 0}
settings = config.from_dict(raw)
shared = Shared()
engine = Engine(build_generation(settings, build_policy(settings), shared), shared.stats, TaskSet(16))
data = bytes.fromhex("abcd01000001000000000001") + b"\\x06cached\\x05flood\\x04test\\x00\\x00\\x01\\x00\\x01"
data += bytes.fromhex("0000291000000000000000")
question = engine.questions[data[2:]]
answer = Answer(Outcome.RESOLVED, Reply(0, (0, 0, 0)), ttl=3600)
engine.generation.cache.put(question.cache_key, answer, time.monotonic())
serve = engine.serve


async def warm() -> None:  # the slow path once: the handlers before the cache fill their memos
    out = serve(data, "127.0.0.1", "udp")
    if out is not None and type(out) is not bytes:
        await out


asyncio.run(warm())
expect = type(None) if mode == "limited" else bytes
for _ in range(3):
    serve(data, "127.0.0.1", "udp")
assert type(serve(data, "127.0.0.1", "udp")) is expect, mode
best = float("inf")
for _ in range(repeats):
    started = time.process_time()  # CPU time: other processes on a shared machine do not count
    for _ in range(calls):
        serve(data, "127.0.0.1", "udp")
    best = min(best, time.process_time() - started)
print(best / calls * 1e9)
"""


def micro(source: Path, mode: str) -> float:
    """Nanoseconds per Engine.serve call on a cache hit (best of MICRO_REPEATS)."""
    catalog = ROOT / "tests" / "data" / "catalog"
    command = ["taskset", "-c", ONE_CORE.server_cores, PYTHON, "-P", "-c", MICRO]
    command += [mode, str(MICRO_CALLS), str(MICRO_REPEATS), str(catalog)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(source)}
    )
    if result.returncode:
        raise RuntimeError(f"the micro benchmark failed ({source}, {mode}): {result.stderr[-2000:]}")
    return float(result.stdout.strip())


# ------------------------------------------------------------------------------------------- floods


def blockdns(upstream_port: int, label: str, client_qps: int) -> tuple[Server, int]:
    port, api_port = free_port(), free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    conf = OUT / f"{label}.toml"
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
        data_dir = "{OUT / "lists"}"
        refresh = "0"
        [querylog]
        path = ""
        [api]
        listen = "127.0.0.1:{api_port}"
        [ratelimit]
        client_qps = {client_qps}
        slip = 2
        """)
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    command = [PYTHON, "-P", "-m", "blockdns", "serve", "--config", str(conf)]
    server = Server(label, command, port, ONE_CORE, OUT / f"{label}.stderr", env)
    return server, api_port


def counters(api_port: int) -> dict[str, float]:
    """The server's answered and rate-limited counts, from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=10).read().decode()
    found = {"answered": 0.0, "slip": 0.0, "drop": 0.0}
    for line in text.splitlines():
        if line.startswith("blockdns_queries_total{"):
            found["answered"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("blockdns_ratelimited_total{"):
            found["slip" if 'action="slip"' in line else "drop"] += float(line.rsplit(" ", 1)[1])
    return found


@dataclass
class Probes:
    ms: list[float] = field(default_factory=list)
    sent: int = 0


def probe(port: int, stop: threading.Event, result: Probes) -> None:
    """PROBE_RATE queries a second on a fixed schedule whatever happens to them (a lost one does not hold
    up the next); a reply is matched by its ID; PROBE_GRACE seconds after the flood for the last ones."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((PROBE, 0))
        started = time.monotonic()
        sent_at: dict[int, float] = {}
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            if deadline is None and stop.is_set():
                deadline = time.monotonic() + PROBE_GRACE
            due = started + result.sent / PROBE_RATE
            if deadline is None and time.monotonic() >= due:
                qid = result.sent & 0xFFFF
                sent_at[qid] = time.monotonic()
                sock.sendto(query(NAME, qid), ("127.0.0.1", port))
                result.sent += 1
                continue
            sock.settimeout(max(0.001, (deadline or due) - time.monotonic()))
            try:
                reply = sock.recv(4096)
            except OSError:
                continue
            asked = sent_at.pop(int.from_bytes(reply[:2], "big"), None)
            if asked is not None:
                result.ms.append((time.monotonic() - asked) * 1000)


def flood(port: int, api_port: int, sources: tuple[str, ...], rate: int) -> dict[str, str]:
    for _ in range(3):  # cache the name (from the probe's address: it has tokens to spare)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((PROBE, 0))
            sock.settimeout(1)
            sock.sendto(query(NAME, 1), ("127.0.0.1", port))
            try:
                sock.recv(512)
                break
            except OSError:
                continue
    time.sleep(1)  # a benchmark, not a test: the probe's bucket fills up again
    before, drops_before = counters(api_port), receive_drops(port)
    probes, stop = Probes(), threading.Event()
    prober = threading.Thread(target=probe, args=(port, stop, probes), daemon=True)
    prober.start()
    code = FLOODER % (NAME, MAX_FLOOD)
    command = ["taskset", "-c", ONE_CORE.load_cores, PYTHON, "-c", code]
    command += [str(port), str(FLOOD_SECONDS), str(rate), *sources]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FLOOD_SECONDS + 30)
        sent = int(result.stdout.strip() or 0)
    finally:
        stop.set()
        prober.join(5)
    after = counters(api_port)
    answered = after["answered"] - before["answered"] - len(probes.ms)
    return {
        "flood sent q/s": f"{sent / FLOOD_SECONDS:,.0f}",
        "flood answered q/s": f"{answered / FLOOD_SECONDS:,.0f}",
        "flood slipped / dropped q/s": (
            f"{(after['slip'] - before['slip']) / FLOOD_SECONDS:,.0f} / "
            f"{(after['drop'] - before['drop']) / FLOOD_SECONDS:,.0f}"
        ),
        "probe p50 / p99 ms": f"{percentile(probes.ms, 0.5):.2f} / {percentile(probes.ms, 0.99):.2f}",
        "probes unanswered": f"{probes.sent - len(probes.ms)}/{probes.sent}",
        "kernel receive drops": f"{receive_drops(port) - drops_before:,}",
    }


def floods() -> list[tuple[str, dict[str, str]]]:
    upstream, upstream_port = start_upstream(0.0)
    results = []
    try:
        for label, client_qps, sources, rate in (
            (f"off, 1 at {PACED:,}/s", 0, FLOODERS[:1], PACED),
            (f"{LIMIT}/s, 1 at {PACED:,}/s", LIMIT, FLOODERS[:1], PACED),
            (f"{LIMIT}/s, 4 at {PACED:,}/s", LIMIT, FLOODERS, PACED),
            ("off, 1 at full speed", 0, FLOODERS[:1], 0),
            (f"{LIMIT}/s, 1 at full speed", LIMIT, FLOODERS[:1], 0),
        ):
            print(f"ratelimit: flood, {label} ...", file=sys.stderr, flush=True)
            server, api_port = blockdns(
                upstream_port, f"flood-{client_qps}-{len(sources)}-{rate}", client_qps
            )
            try:
                server.start(START_TIMEOUT)
                results.append((label, flood(server.port, api_port, sources, rate)))
            finally:
                server.stop()
    finally:
        upstream.terminate()
        upstream.wait(5)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, metavar="DIR", help="another checkout's Engine.serve, first")
    parser.add_argument("--no-flood", action="store_true", help="only the cache-hit cost")
    parser.add_argument("--no-micro", action="store_true", help="only the floods")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(ONE_CORE.load_cores)})  # the probe thread too: core 0 is the server's
    if shutil.which("taskset") is None:
        print("ratelimit: taskset is not installed (util-linux)", file=sys.stderr)
        return 2
    if not args.no_micro:
        print("ratelimit: Engine.serve on a cache hit ...", file=sys.stderr, flush=True)
    modes = [("off (client_qps = 0)", ROOT, "off"), ("on, client admitted", ROOT, "on")]
    modes.append(("on, client limited (drop)", ROOT, "limited"))
    if args.before:
        modes.insert(0, ("before (no limiter)", args.before.resolve(), "off"))
    best: dict[str, float] = {}
    # the modes in turn, so that a busy spell of the machine hits them all
    for _ in range(0 if args.no_micro else MICRO_ROUNDS):
        for label, source, mode in modes:
            best[label] = min(best.get(label, float("inf")), micro(source, mode))
    costs = list(best.items())
    if not args.no_flood:
        results = floods()
        keys = list(results[0][1])
        print(f"\n{'':<28}" + "".join(f"{label:>24}" for label, _ in results))
        for key in keys:
            print(f"{key:<28}" + "".join(f"{figures.get(key, ''):>24}" for _, figures in results))
        print(
            f"(limit {LIMIT} q/s per /24, bucket {2 * LIMIT}, slip 2; {FLOOD_SECONDS} s floods; "
            f"probe {PROBE_RATE} q/s)"
        )
    if costs:
        print(
            f"\nEngine.serve, cache hit, CPU time per call ({MICRO_CALLS:,} calls, "
            f"best of {MICRO_REPEATS} × {MICRO_ROUNDS} rounds)"
        )
    for label, nanoseconds in costs:
        print(f"  {label:<30}{nanoseconds:>8.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
