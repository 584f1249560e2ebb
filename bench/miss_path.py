"""What a forwarded cache miss costs the server's Python, in one process on one core: every query a new name,
through ``Engine.serve``, the chain, the real forwarder and its UDP socket pool, to an echo upstream served by
the same event loop (its cost is the same for every checkout; the server's own client socket is left out).
200 queries in flight; CPU µs per miss, best and median of 9 rounds of 20,000, and the time the cyclic
garbage collector took per miss, by generation. ``--before DIR`` measures another checkout too, alternately
with this one, three times each. Lower noise than bench/miss.py's dnsperf runs on a shared machine (a round's
best is the figure to compare), but not the whole cost: no client socket, no second process to wake.

    python bench/miss_path.py [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROUNDS, PER_ROUND, IN_FLIGHT, WARM_UP = 9, 20_000, 200, 5_000
_ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01"  # A 192.0.2.1, TTL 3600


def echo_upstream(loop: asyncio.AbstractEventLoop) -> socket.socket:
    """A UDP upstream on 127.0.0.1 read by ``loop``: every query gets one A record for its name."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def readable() -> None:
        for _ in range(64):
            try:
                data, source = sock.recvfrom(2048)
            except BlockingIOError:
                return
            end = 12
            while data[end]:
                end += data[end] + 1
            end += 5  # the root label, type and class; the OPT record after them is not echoed
            sock.sendto(
                data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:end] + _ANSWER, source
            )

    loop.add_reader(sock.fileno(), readable)
    return sock


class CollectorTime:
    """Seconds the cyclic collector ran, and collections, by generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.count[info["generation"]] += 1


async def measure() -> str:
    from blockdns import config
    from blockdns.runtime import build_policy
    from blockdns.server import heap
    from blockdns.server.engine import Engine
    from blockdns.server.generation import Shared, build_generation
    from blockdns.server.tasks import TaskSet

    loop = asyncio.get_running_loop()
    upstream = echo_upstream(loop)
    with tempfile.TemporaryDirectory() as data_dir:
        raw = {
            "server": {"listen": ["127.0.0.1:0"]},
            "resolver": {"mode": "forward", "upstreams": [f"udp://127.0.0.1:{upstream.getsockname()[1]}"]},
            "policy": {"block": []},
            "lists": {"refresh": "0", "data_dir": data_dir},
            "querylog": {"path": ""},
            "api": {"listen": ""},
        }
        settings = config.from_dict(raw, source=Path(data_dir) / "blockdns.toml")
        shared = Shared()
        generation = build_generation(settings, build_policy(settings), shared)
        engine = Engine(generation, shared.stats, TaskSet(4 * IN_FLIGHT))
        heap.settle()  # as the server does once it has started
        serial = 0

        def packet() -> bytes:
            nonlocal serial
            serial += 1
            label = f"m{serial:08x}".encode()
            header = struct.pack(">HHHHHH", serial & 0xFFFF, 0x0100, 1, 0, 0, 0)
            return header + bytes([len(label)]) + label + b"\x04miss\x07example\x03net\x00\x00\x01\x00\x01"

        async def run(count: int) -> int:
            slots = asyncio.Semaphore(IN_FLIGHT)
            pending: set[asyncio.Task[bytes | None]] = set()
            answered = 0

            def finished(task: asyncio.Task[bytes | None]) -> None:
                nonlocal answered
                pending.discard(task)
                slots.release()
                answered += task.result() is not None

            for _ in range(count):
                await slots.acquire()
                task = engine.serve(packet(), "127.0.0.1", "udp")
                if not isinstance(task, asyncio.Task):
                    raise RuntimeError(f"a miss was not sent down the slow path: {task!r}")
                pending.add(task)
                task.add_done_callback(finished)
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            return answered

        await run(WARM_UP)
        collector = CollectorTime()
        rounds = []
        for _ in range(ROUNDS):
            started = time.process_time()
            answered = await run(PER_ROUND)
            rounds.append((time.process_time() - started) / PER_ROUND * 1e6)
            if answered != PER_ROUND:
                raise RuntimeError(f"{PER_ROUND - answered} of {PER_ROUND} misses got no answer")
        upstream.close()
    rounds.sort()
    misses = ROUNDS * PER_ROUND
    by_generation = " ".join(
        f"{n}×{seconds / max(n, 1) * 1e3:.0f} ms"
        for n, seconds in zip(collector.count, collector.seconds, strict=True)
    )
    return (
        f"best {rounds[0]:.1f} µs, median {rounds[len(rounds) // 2]:.1f} µs; "
        f"collector {sum(collector.seconds) / misses * 1e6:.1f} µs per miss "
        f"(generations 0, 1, 2: {by_generation})"
    )


def run_in(checkout: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = ["taskset", "-c", "0", sys.executable, "-P", __file__, "--measure"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"{checkout}: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to measure alternately with this one")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        import uvloop

        print(uvloop.run(measure()))
        return
    checkouts = [("before", arguments.before.resolve())] if arguments.before else []
    checkouts.append(("this checkout", ROOT))
    print(f"a forwarded miss in process, core 0 ({ROUNDS} rounds of {PER_ROUND:,}, {IN_FLIGHT} in flight)")
    for _ in range(3 if arguments.before else 1):
        for label, checkout in checkouts:
            print(f"  {label:13}  {run_in(checkout)}", flush=True)


if __name__ == "__main__":
    main()
