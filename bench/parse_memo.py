"""How often the question memo (server/questions.py) hits, and what it holds, under a mix spread over many
names: the choice of its bound and its eviction.

The mix: 1,000,000 packets; 90% drawn from 100,000 names with Zipf popularity (s = 1, as DNS names are
asked), 10% names never seen before (misses, random subdomains). Each scheme is the real memo class (or
the old one: cleared when full) fed the same packets; a hit is a packet not parsed (found in the memo, in
either generation); memory is the peak tracemalloc saw while the memo was fed.

    python bench/parse_memo.py
"""

from __future__ import annotations

import itertools
import random
import struct
import tracemalloc
from collections.abc import Callable, MutableMapping

from blockdns.resolve.base import Question
from blockdns.server import questions
from blockdns.server.questions import QuestionMemo

PARSED = [0]


def parse_question(data: bytes) -> Question | None:
    """The memo's parser, counted: a packet the memo did not know."""
    PARSED[0] += 1
    return _parse(data)


_parse = questions.parse_question
questions.parse_question = parse_question

PACKETS, NAMES, ONE_OFF = 1_000_000, 100_000, 0.10
_NO_ID = b"\x00\x00"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def packet(name: str) -> bytes:
    wire = b"".join(bytes((len(label),)) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack(">HHHHH", 0x0100, 1, 0, 0, 1) + wire + b"\x00\x01\x00\x01" + OPT


def stream(seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    names = [packet(f"host{i}.example{i % 977}.com") for i in range(NAMES)]
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(NAMES)))
    chosen = rng.choices(names, cum_weights=weights, k=PACKETS)
    return [
        packet(f"r{rng.getrandbits(40):x}.random.example") if rng.random() < ONE_OFF else after_id
        for after_id in chosen
    ]


class ClearedWhenFull(dict[bytes, Question]):
    """The memo before: cleared when full."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, after_id: bytes) -> Question | None:
        question = parse_question(_NO_ID + after_id)
        if question is not None:
            if len(self) >= self.limit:
                self.clear()
            self[after_id] = question
        return question


def measure(make: Callable[[], MutableMapping[bytes, Question | None]], packets: list[bytes]) -> str:
    tracemalloc.start()
    memo = make()
    PARSED[0] = 0
    for after_id in packets:
        memo[after_id]
    size = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hits = 1 - PARSED[0] / len(packets)
    return f"not parsed again {hits:6.1%}   memory at most {size / 2**20:5.1f} MiB"


def main() -> None:
    packets = stream()
    ideal = sum(1 for seen, after_id in _seen(packets) if seen) / len(packets)
    print(f"{PACKETS:,} packets, {NAMES:,} names (Zipf), {ONE_OFF:.0%} one-off; unbounded memo: {ideal:.1%}")
    for label, make in (
        ("cleared when full, 65,536", lambda: ClearedWhenFull(65_536)),
        ("two generations, 65,536 in all", lambda: QuestionMemo(65_536)),
        ("cleared when full, 131,072", lambda: ClearedWhenFull(131_072)),
        ("two generations, 131,072 in all", lambda: QuestionMemo(131_072)),
    ):
        print(f"  {label:34} {measure(make, packets)}")  # type: ignore[arg-type]


def _seen(packets: list[bytes]) -> list[tuple[bool, bytes]]:
    known: set[bytes] = set()
    out = []
    for after_id in packets:
        out.append((after_id in known, after_id))
        known.add(after_id)
    return out


if __name__ == "__main__":
    main()
