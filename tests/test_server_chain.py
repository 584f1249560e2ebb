"""The handler chain: one order for both speeds, and a fast path that, whenever it answers, answers exactly
like the slow path.

The equivalence test builds a real generation (policy compiled from a catalogue and a feed with address
ranges, groups, a response style) in front of a real fake upstream on loopback, then drives random queries
from random clients through it. For every query it asks the fast path first; when that answers, the slow
path must give the very same bytes. It also checks that the fast path is not vacuous: once the slow path has
answered a query twice, the fast path must answer it whenever the answer could be reused (blocked, cached,
local, refused).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from blockdns import config, dnsname
from blockdns.resolve.base import Answer, Handler, Outcome, Query, chain
from blockdns.resolve.cache import AnswerCache
from blockdns.runtime import build_policy
from blockdns.server.engine import Engine
from blockdns.server.generation import CHAIN_ORDER, Shared, build_generation
from blockdns.server.responses import render_answer
from blockdns.server.tasks import TaskSet
from blockdns.wire import CD, RD, Reply, build_query

from conftest import base_config
from fakedns import FakeDNS

# ------------------------------------------------------------------------------------------ the order


class Recording(Handler):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name  # type: ignore[misc]
        self.calls = calls

    async def handle(self, query):
        self.calls.append(self.name)
        return await self.next_handler(query)

    def fast(self, query):
        self.calls.append(self.name)
        return self.next_fast(query)


class Answering(Recording):
    async def handle(self, query):
        self.calls.append(self.name)
        return Answer(Outcome.RESOLVED, Reply(rcode=0, counts=(0, 0, 0)))

    def fast(self, query):
        self.calls.append(self.name)
        return None


def test_both_speeds_run_the_chain_in_chain_order() -> None:
    calls: list[str] = []
    handlers = [Recording(name, calls) for name in CHAIN_ORDER[:-1]] + [Answering(CHAIN_ORDER[-1], calls)]
    slow, fast = chain(handlers)
    asyncio.run(slow(None))  # type: ignore[arg-type]
    assert calls == ["access", "local", "blocking", "inspection", "cache", "local_zones", "resolve"]
    calls.clear()
    assert fast(None) is None  # type: ignore[arg-type]
    assert tuple(calls) == CHAIN_ORDER


def test_a_handler_belongs_to_one_chain() -> None:
    handler = Answering("resolve", [])
    chain([handler])
    with pytest.raises(ValueError, match="already in a chain"):
        chain([Recording("access", []), handler])


def test_a_generation_is_wired_in_chain_order_with_both_speeds(tmp_path: Path) -> None:
    settings = config.from_dict(base_config(), source=tmp_path / "blockdns.toml")
    generation = build_generation(settings, build_policy(settings), Shared())
    assert tuple(generation.handlers) == CHAIN_ORDER
    for name, handler in generation.handlers.items():
        assert handler.name == name
        assert callable(handler.handle) and callable(handler.fast)


# ------------------------------------------------------------------------------------- equivalence

BLOCKED_RANGE = "192.0.2.128/25"
# (name, qtype) -> zone-file lines the upstream answers with; other names get NXDOMAIN with a SOA.
UPSTREAM = {
    ("www.example.org", "A"): ["www.example.org. 300 IN A 192.0.2.10"],
    ("www.example.org", "AAAA"): ["www.example.org. 300 IN AAAA 2001:db8::10"],
    ("alias.example.org", "A"): [
        "alias.example.org. 300 IN CNAME chat.deepseek.com.",
        "chat.deepseek.com. 300 IN A 192.0.2.11",
    ],
    ("cdn.example.org", "A"): [
        "cdn.example.org. 300 IN CNAME edge.example.net.",
        "edge.example.net. 300 IN A 192.0.2.12",
    ],
    ("ranged.example.org", "A"): ["ranged.example.org. 300 IN A 192.0.2.200"],
    ("chat.deepseek.com", "A"): ["chat.deepseek.com. 300 IN A 192.0.2.13"],
    ("api.platform.openai.com", "A"): ["api.platform.openai.com. 300 IN A 192.0.2.14"],
    ("chat.openai.com", "TXT"): ['chat.openai.com. 300 IN TXT "hello"'],
}
NAMES = [
    "www.example.org",
    "WWW.Example.ORG",  # the same name in another case: one cache entry, the client's case echoed
    "alias.example.org",
    "cdn.example.org",
    "ranged.example.org",
    "nx.example.org",
    "deepseek.com",
    "chat.deepseek.com",
    "chat.openai.com",
    "api.platform.openai.com",
    "platform.openai.com",
    "use-application-dns.net",
    "mask.icloud.com",
    "a+b.deepseek.com",  # a label no host name has
    "nas.home.arpa",  # local records
    "files.home.arpa",  # a local CNAME to a local name
    "web.home.arpa",  # a local CNAME to a name upstream
    "ai.home.arpa",  # a local CNAME to a blocked name
    "local.deepseek.com",  # a local record below a blocked vendor
    "x.home.arpa",  # in a locally served zone, without records
    "10.1.168.192.in-addr.arpa",  # the PTR made for a local address
    "99.1.168.192.in-addr.arpa",  # a private reverse zone, without records
    "app.localhost",
    "edge.example.net",  # a forward zone
]
# Local records and a forward zone (to the same upstream) beside the policy.
LOCAL = {
    "records": [
        "nas.home.arpa. 300 IN A 192.168.1.10",
        "files.home.arpa. CNAME nas.home.arpa.",
        "web.home.arpa. 60 CNAME www.example.org.",
        "ai.home.arpa. CNAME chat.deepseek.com.",
        "local.deepseek.com. A 10.0.0.5",
    ]
}
QTYPES = [1, 28, 16, 12]  # A, AAAA, TXT, PTR
CLIENTS = ["127.0.0.1", "127.0.0.17", "127.0.0.33", "192.0.2.99"]  # default, two groups, refused
REUSABLE = {Outcome.BLOCKED, Outcome.CACHED, Outcome.LOCAL, Outcome.REFUSED}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.9")
    for (name, qtype), lines in UPSTREAM.items():
        fake.answer(name, qtype, *lines)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def lists_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feed whose stored data blocks an address range and a name (no download: the data is in place)."""
    directory = tmp_path_factory.mktemp("lists")
    (directory / "feeds.toml").write_text(
        '[[feeds]]\nname = "ranges"\nurl = "https://feeds.invalid/ranges.json"\nformat = "ipranges-json"\n'
    )
    data = directory / "data"
    data.mkdir()
    (data / "ranges.list").write_text(f"%{BLOCKED_RANGE}\n+edge.example.net\n")
    return directory


def wire_name(text: str) -> bytes:
    """The wire form of ``text`` with its case kept (dnsname.from_text lowercases)."""
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".")) + b"\x00"


def query_packet(qid: int, name: str, qtype: int, *, cd: bool, do: bool, edns: bool, payload: int) -> bytes:
    packet = build_query(qid, dnsname.from_text(name), qtype, cd=cd, do=do, edns=edns, payload=payload)
    lowered = dnsname.from_text(name)
    return packet[:12] + wire_name(name) + packet[12 + len(lowered) :]


selectors = st.lists(
    st.sampled_from(["all", "vendor:deepseek", "vendor:openai", "feed:ranges", "domain:example.org"]),
    max_size=3,
    unique=True,
)
allows = st.lists(
    st.sampled_from(["domain:platform.openai.com", "domain:cdn.example.org", "domain:deepseek.com"]),
    max_size=2,
    unique=True,
)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(NAMES),
            st.sampled_from(QTYPES),
            st.sampled_from(CLIENTS),
            st.booleans(),  # CD
            st.booleans(),  # DO
            st.booleans(),  # EDNS
            st.sampled_from([512, 1232, 4096]),
            st.sampled_from(["udp", "tcp"]),
        ),
        st.sampled_from(["pause", "resume", "age", "expire"]),
    ),
    min_size=1,
    max_size=40,
)


def ask(name: str, qtype: int = 1, client: str = "127.0.0.1", *, do: bool = False) -> tuple[Any, ...]:
    return (name, qtype, client, False, do, True, 1232, "udp")


# Always run, whatever Hypothesis draws: each reaches a different fast step with something to decide.
EVERY_KIND = [
    ask("ranged.example.org"),  # blocked by its address (feed:ranges)
    ask("alias.example.org"),  # blocked through its CNAME target
    ask("cdn.example.org"),  # CNAME into a blocked feed name, lifted by an allow
    ask("chat.deepseek.com", do=True),
    ask("api.platform.openai.com"),  # allowed below a blocked vendor
    ask("www.example.org", 28),
    ask("nx.example.org", 16),
    ask("use-application-dns.net"),
    ask("chat.openai.com", 16, "127.0.0.17"),
    ask("www.example.org", 1, "192.0.2.99"),  # refused
    ask("a+b.deepseek.com"),
    ask("nas.home.arpa"),
    ask("files.home.arpa", 28),
    ask("web.home.arpa"),
    ask("ai.home.arpa"),
    ask("local.deepseek.com"),
    ask("x.home.arpa"),
    ask("10.1.168.192.in-addr.arpa", 12),
    ask("99.1.168.192.in-addr.arpa", 12),
    ask("app.localhost"),
    ask("edge.example.net", 1, "127.0.0.33"),
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(
    block=["all", "feed:ranges"],
    allow=["domain:cdn.example.org"],
    research_block=["vendor:openai"],
    research_allow=[],
    response="nxdomain",
    bypass_protection=True,
    steps=[
        *EVERY_KIND,
        "pause",
        *EVERY_KIND,
        "resume",
        *EVERY_KIND,
        "age",
        *EVERY_KIND,
        "expire",
        *EVERY_KIND,
    ],
)
@example(
    block=["domain:example.org", "feed:ranges"],
    allow=["domain:deepseek.com"],
    research_block=["all"],
    research_allow=["domain:platform.openai.com"],
    response="null",
    bypass_protection=False,
    steps=EVERY_KIND,
)
@given(
    block=selectors,
    allow=allows,
    research_block=selectors,
    research_allow=allows,
    response=st.sampled_from(["nxdomain", "null", "nodata", "refused", "custom"]),
    bypass_protection=st.booleans(),
    steps=steps,
)
def test_the_fast_path_answers_byte_for_byte_like_the_slow_path(
    upstream: FakeDNS,
    lists_dir: Path,
    tmp_path: Path,
    block: list[str],
    allow: list[str],
    research_block: list[str],
    research_allow: list[str],
    response: str,
    bypass_protection: bool,
    steps: list[Any],
) -> None:
    raw = base_config(
        upstream,
        server={"listen": ["127.0.0.1:0"], "allow_clients": ["127.0.0.0/8"]},
        policy={"block": block, "allow": allow},
        blocking={"response": response, "custom_ipv4": "192.0.2.1", "bypass_protection": bypass_protection},
        local=LOCAL,
        forward_zones=[{"name": "example.net", "upstreams": [upstream.url]}],
    )
    raw["lists"] |= {"feeds": str(lists_dir / "feeds.toml"), "data_dir": str(lists_dir / "data")}
    raw["groups"] = [
        {"name": "research", "clients": ["127.0.0.16/28"], "block": research_block, "allow": research_allow},
        {"name": "open", "clients": ["127.0.0.32/28"], "block": [], "allow": []},
    ]
    settings_ = config.from_dict(raw, source=tmp_path / "blockdns.toml")
    asyncio.run(_drive(settings_, steps))


def age_cache(cache: AnswerCache, step: str) -> None:
    """Move every cached answer back in time: into the last tenth of its TTL, where the fast step leaves it
    to the slow one to serve and prefetch ("age"), or past its expiry, where it is kept only to be served
    stale ("expire"). (The cache reads the clock itself, so the test moves the entries instead.)"""
    items = cache._entries._items
    for key, (fast_until, kept_until, answer) in list(items.items()):
        assert answer.stored is not None
        shift = answer.ttl * 0.95 if step == "age" else answer.ttl + 1.0
        aged = dataclasses.replace(answer, stored=answer.stored - shift)
        items[key] = (fast_until - shift, kept_until - shift, aged)


async def refreshed(cache: AnswerCache) -> None:
    """Wait (5 s at most) until the background refreshes the last query started are done."""
    deadline = time.monotonic() + 5.0
    while cache.refreshes.running:
        assert time.monotonic() < deadline, "a refresh did not finish"
        await asyncio.sleep(0.005)


async def _drive(settings_: config.Settings, steps: list[Any]) -> None:
    shared = Shared()
    generation = build_generation(settings_, build_policy(settings_), shared)
    engine = Engine(generation, shared.stats, TaskSet(16))
    ids = itertools.count(1)
    for step in steps:
        if step == "pause":
            shared.pause.until = time.monotonic() + 3600
            continue
        if step == "resume":
            shared.pause.until = 0.0
            continue
        if step in ("age", "expire"):
            age_cache(generation.cache, step)
            continue
        name, qtype, address, cd, do, edns, payload, transport = step
        data = query_packet(next(ids), name, qtype, cd=cd, do=do, edns=edns, payload=payload)
        question = engine.questions[data[2:]]
        assert question is not None
        assert question.flags & RD and bool(question.flags & CD) == cd
        client = generation.clients[transport][address]
        answered_fast = False
        slow_answer = None
        for _attempt in range(4):  # an aged answer: slow, then refreshed, then its inspection remembered
            query = Query(question, client, time.monotonic())
            fast_answer = generation.fast(query)
            slow_answer = await generation.slow(query)
            await refreshed(generation.cache)
            now = time.monotonic()
            if fast_answer is not None:
                answered_fast = True
                fast_bytes = engine.responses.render(data, question, fast_answer, now, transport)
                slow_bytes = render_answer(data, question, slow_answer, now, transport)
                assert fast_bytes == slow_bytes, (name, qtype, address, step)
                assert fast_answer.outcome is slow_answer.outcome
                assert fast_answer.reason == slow_answer.reason
                break
        assert slow_answer is not None
        if slow_answer.outcome in REUSABLE:
            assert answered_fast, f"the fast path never answered {step} ({slow_answer.outcome})"


def test_the_query_packets_of_the_equivalence_test_keep_the_clients_case() -> None:
    data = query_packet(7, "WWW.Example.ORG", 1, cd=False, do=False, edns=False, payload=1232)
    assert struct.unpack(">H", data[:2])[0] == 7
    assert data[12:29] == b"\x03WWW\x07Example\x03ORG\x00"
