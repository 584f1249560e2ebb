"""Names seen for the first time: a blocked one is answered by the fast path (no task, no slow chain), and
floods of one-off names (random subdomains, cache misses) leave the memos bounded without pushing out the
names clients repeat (blockdns/memo.py)."""

from __future__ import annotations

import asyncio
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from blockdns import config
from blockdns.memo import TwoGenerations
from blockdns.policy import GroupPolicy
from blockdns.resolve import blocking
from blockdns.runtime import build_policy
from blockdns.server import questions
from blockdns.server.engine import Engine
from blockdns.server.generation import Shared, build_generation
from blockdns.server.tasks import TaskSet

from conftest import TEST_CATALOG


def packet(name: str, qid: int = 1) -> bytes:
    wire = b"".join(bytes((len(label),)) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + b"\x00\x01\x00\x01"


@pytest.fixture
def engine() -> Iterator[Engine]:
    yield from engine_blocking(["domain:blocked.example", "vendor:openai"])


def engine_blocking(selectors: list[str]) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as data_dir:
        raw = {
            "server": {"listen": ["127.0.0.1:0"]},
            "resolver": {"mode": "forward", "upstreams": ["udp://127.0.0.1:9"]},
            "policy": {"block": selectors},
            "lists": {
                "refresh": "0",
                "data_dir": data_dir,
                "catalog": str(TEST_CATALOG / "vendors"),
                "guard": str(TEST_CATALOG / "guard.toml"),
                "feeds": str(TEST_CATALOG / "feeds.toml"),
            },
            "querylog": {"path": ""},
            "api": {"listen": ""},
        }
        settings = config.from_dict(raw, source=Path(data_dir) / "blockdns.toml")
        shared = Shared()
        yield Engine(build_generation(settings, build_policy(settings), shared), shared.stats, TaskSet(16))


async def first_client_query(engine: Engine) -> None:
    """The client's first query takes the slow path (its access verdict is not known yet)."""
    task = engine.serve(packet("first.blocked.example"), "127.0.0.1", "udp")
    assert isinstance(task, asyncio.Task)
    await task


def test_a_first_seen_blocked_name_is_answered_by_the_fast_path(engine: Engine) -> None:
    async def serve_all() -> None:
        await first_client_query(engine)
        for index, prefix in enumerate(("a", "bb", "c.ddd", "e")):  # several lengths: the SOA's pointer
            name = f"{prefix}.blocked.example"
            out = engine.serve(packet(name, index), "127.0.0.1", "udp")
            assert isinstance(out, bytes), f"{name} took the slow path"
            response = dns.message.from_wire(out)
            assert response.id == index and response.rcode() == dns.rcode.NXDOMAIN
            assert response.question[0].name.to_text() == f"{name}."
            (soa,) = response.authority
            assert soa.name.to_text() == "blocked.example."

    asyncio.run(serve_all())


def test_one_blocked_reply_serves_names_under_different_entries_of_one_rule(engine: Engine) -> None:
    """openai.com and chatgpt.com are one rule (vendor:openai): at the same depth the reply is shared, and
    its SOA still names each query's own entry (the owner is a pointer into the question)."""

    async def serve_both() -> list[dns.message.Message]:
        await first_client_query(engine)
        return [
            dns.message.from_wire(engine.serve(packet(name), "127.0.0.1", "udp"))  # type: ignore[arg-type]
            for name in ("ab.openai.com", "ab.chatgpt.com", "abc.de.openai.com")
        ]

    responses = asyncio.run(serve_both())
    owners = [response.authority[0].name.to_text() for response in responses]
    assert owners == ["openai.com.", "chatgpt.com.", "openai.com."]
    blocking_handler = engine.generation.handlers["blocking"]
    replies = {
        id(answer.reply) for memo in blocking_handler._memos.values() for answer in memo.answers.values()
    }  # type: ignore[attr-defined]
    assert len(replies) == 3  # first.blocked.example's, the two at depth 1 shared, abc.de's


def test_random_subdomains_do_not_push_out_a_name_asked_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood ten times the memo's bound, a name asked between every ten: decided once, parsed once."""
    monkeypatch.setattr(blocking, "MEMO_LIMIT", 100)
    engine.questions = questions.QuestionMemo(100)
    decided: list[str] = []
    parsed: list[bytes] = []
    decide, parse = GroupPolicy.decide, questions.parse_question

    def counting_decide(group: GroupPolicy, name: str) -> object:
        decided.append(name)
        return decide(group, name)

    def counting_parse(data: bytes) -> object:
        parsed.append(data)
        return parse(data)

    monkeypatch.setattr(GroupPolicy, "decide", counting_decide)
    monkeypatch.setattr(questions, "parse_question", counting_parse)

    async def flood() -> None:
        await first_client_query(engine)
        for index in range(1000):
            name = "www.blocked.example" if index % 10 == 0 else f"r{index}.blocked.example"
            assert isinstance(engine.serve(packet(name), "127.0.0.1", "udp"), bytes)

    asyncio.run(flood())
    assert decided.count("www.blocked.example") == 1
    assert sum(1 for data in parsed if b"\x03www\x07blocked" in data) == 1
    assert len(decided) == 902  # every other name once, and the first client query's
    (memo,) = engine.generation.handlers["blocking"]._memos.values()  # type: ignore[attr-defined]
    assert memo.decisions.entries() <= 100 and memo.answers.entries() <= 100
    assert engine.questions.entries() <= 100


def test_two_generations_stay_within_their_bound() -> None:
    memo: TwoGenerations[int, int] = TwoGenerations(10)
    for key in range(100):
        memo.remember(key, key)
        assert memo.entries() <= 10
        assert memo.recall(key) == key
    assert memo.recall(0) is None  # long gone
    memo.remember(1000, 1)
    for key in range(2000, 2004):  # 1000 moves to the older generation, then is recalled into the current
        memo.remember(key, key)
    assert memo.recall(1000) == 1 and 1000 in memo
