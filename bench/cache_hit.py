"""What a cache hit costs through ``Engine.serve`` (the fast path: parse memo, chain, render memo and
accounting), in one process, without sockets: one cached A answer asked 200,000 times a round, best and
median of 7 rounds. With ``--before DIR`` another checkout is measured too, alternately with this one,
three times each, so both see the same machine.

    python bench/cache_hit.py [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUNDS, PER_ROUND = 7, 200_000


async def measure() -> tuple[float, float]:
    from blockdns import config
    from blockdns.resolve.base import Answer, Outcome
    from blockdns.runtime import build_policy
    from blockdns.server.engine import Engine
    from blockdns.server.generation import Shared, build_generation
    from blockdns.server.tasks import TaskSet
    from blockdns.wire import Reply

    with tempfile.TemporaryDirectory() as data_dir:
        raw = {
            "server": {"listen": ["127.0.0.1:0"]},
            "resolver": {"mode": "forward", "upstreams": ["udp://127.0.0.1:9"]},
            "policy": {"block": []},
            "lists": {"refresh": "0", "data_dir": data_dir},
            "querylog": {"path": ""},
            "api": {"listen": ""},
        }
        settings = config.from_dict(raw, source=Path(data_dir) / "blockdns.toml")
        shared = Shared()
        generation = build_generation(settings, build_policy(settings), shared)
        engine = Engine(generation, shared.stats, TaskSet(16))
        opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
        data = (
            struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 1)
            + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
            + opt
        )
        question = engine.questions[data[2:]]
        assert question is not None
        record = b"\xc0\x0c\x00\x01\x00\x01" + struct.pack(">IH", 3600, 4) + bytes([192, 0, 2, 1])
        answer = Answer(Outcome.RESOLVED, Reply(0, (1, 0, 0), record, ((6, 3600),)), ttl=3600)
        generation.cache.put(question.cache_key, answer, time.monotonic())
        first = engine.serve(data, "127.0.0.1", "udp")
        if isinstance(first, asyncio.Task):
            await first  # the slow path fills the policy memos the fast path reads
        assert isinstance(engine.serve(data, "127.0.0.1", "udp"), bytes), "not answered by the fast path"
        serve = engine.serve
        rounds = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(PER_ROUND):
                serve(data, "127.0.0.1", "udp")
            rounds.append((time.perf_counter() - started) / PER_ROUND * 1e6)
    rounds.sort()
    return rounds[0], rounds[len(rounds) // 2]


def run_in(checkout: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-P", __file__, "--measure"], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        raise SystemExit(f"{checkout}: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to measure alternately with this one")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        best, median = asyncio.run(measure())
        print(f"best {best:.3f} µs, median {median:.3f} µs")
        return
    checkouts = [("before", arguments.before.resolve())] if arguments.before else []
    checkouts.append(("this checkout", ROOT))
    print(f"a cache hit through Engine.serve ({ROUNDS} rounds of {PER_ROUND:,} queries)")
    for _ in range(3 if arguments.before else 1):
        for label, checkout in checkouts:
            print(f"  {label:13}  {run_in(checkout)}")


if __name__ == "__main__":
    main()
