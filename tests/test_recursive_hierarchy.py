"""The recursive resolver against a fake DNS hierarchy of real authoritative servers on loopback:
root → test./example. → second-level zones, on port 53 of addresses in a network of 127.0.0.0/8 picked
per run (see fakeauth)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import dns.message
import dns.rcode
import pytest

from blockdns.config import ResolverSettings
from blockdns.dnsname import ROOT, from_text
from blockdns.errors import UpstreamError
from blockdns.resolve.recursive import RecursiveResolver
from blockdns.resolve.recursive.cache import RANK_ANSWER
from blockdns.wire import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_OTHER,
    TYPE_A,
    TYPE_AAAA,
    TYPE_NS,
    parse_reply,
)

from conftest import response_wire
from fakeauth import (
    BIG_TXT_STRINGS,
    EVIL_SERVER,
    EVIL_SUB_SERVER,
    GLUE_SERVERS,
    HOSTING_SERVERS,
    LAME_SERVER,
    ROOT_SERVERS,
    TARGET_SERVER,
    TEST_SERVERS,
    FakeAuthServer,
    FakeHierarchy,
    build_test_hierarchy,
)

TYPE_TXT = 16
TIMEOUT = 0.3
# Tests that count the queries sent give every server time to answer: on a busy machine a fake authority
# can stall past a short per-try timeout, and the resolver would rightly ask another server.
SETTINGS = ResolverSettings(root_hints=ROOT_SERVERS, timeout=2.0, total_timeout=6.0, ipv6=False)
# Tests of silent and garbling servers want the timeout short, to be quick and to bound the time taken.
QUICK = SETTINGS.model_copy(update={"timeout": TIMEOUT, "total_timeout": 3.0})


@pytest.fixture(scope="module")
def servers() -> Iterator[FakeHierarchy]:
    with build_test_hierarchy() as hierarchy:
        yield hierarchy


@pytest.fixture
def hierarchy(servers: FakeHierarchy) -> FakeHierarchy:
    servers.reset()
    return servers


async def primed(settings: ResolverSettings = SETTINGS, **options: object) -> RecursiveResolver:
    resolver = RecursiveResolver(settings, rng=random.Random(5), **options)  # type: ignore[arg-type]
    await resolver.start()
    return resolver


async def ask(
    resolver: RecursiveResolver, name: str, qtype: int = TYPE_A, *, do: bool = False
) -> dns.message.Message:
    answer = await resolver.resolve(from_text(name), qtype, 1, do=do, cd=False)
    message = dns.message.from_wire(response_wire(answer, from_text(name), qtype, do=do))
    assert str(message.question[0].name) == name + "." and message.question[0].rdtype == qtype
    assert message.flags & 0x0180 == 0x0180  # RD and RA
    return message


def addresses(message: dns.message.Message) -> list[str]:
    return [rdata.address for rrset in message.answer if rrset.rdtype in (1, 28) for rdata in rrset]


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- priming


def test_start_primes_the_root_ns_set_from_the_hints(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> RecursiveResolver:
        resolver = await primed()
        await resolver.close()
        return resolver

    resolver = run(scenario())
    assert isinstance(resolver, RecursiveResolver)
    asked = [query for address in ROOT_SERVERS for query in hierarchy[address].asked()]
    assert asked == [(".", "NS")]
    root_ns = resolver.cache.get_rrset(ROOT, TYPE_NS, 1, 0.0, min_rank=RANK_ANSWER)
    assert root_ns is not None and len(root_ns.rdatas) == 2


def test_start_never_raises_when_no_root_answers() -> None:
    async def scenario() -> None:
        resolver = await primed(ResolverSettings(root_hints=["127.53.99.1"], timeout=TIMEOUT, ipv6=False))
        with pytest.raises(UpstreamError) as caught:
            await ask(resolver, "www.glue.test")
        assert caught.value.ede_code == EDE_NETWORK_ERROR  # nothing listens there: connection refused
        await resolver.close()

    run(scenario())


def test_an_expired_root_ns_set_is_primed_again_in_the_background(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        resolver.cache._entries.clear()  # as if a day had passed
        resolver._primed_at = -1e9
        hierarchy.reset()
        assert addresses(await ask(resolver, "www.glue.test")) == ["192.0.2.1"]  # from the hints meanwhile
        assert resolver._priming is not None
        await resolver._priming
        assert resolver.cache.get_rrset(ROOT, TYPE_NS, 1, 0.0, min_rank=RANK_ANSWER) is not None
        await resolver.close()

    run(scenario())
    asked = [query for address in ROOT_SERVERS for query in hierarchy[address].asked()]
    assert (".", "NS") in asked


# ------------------------------------------------------------------------------ cold and warm costs

COLD_COSTS = [
    # name, type, queries for a cold resolution (after priming), answer
    ("www.glue.test", TYPE_A, 3, ["192.0.2.1"]),  # root, test., glue.test.
    ("host.sub.glue.test", TYPE_A, 4, ["192.0.2.2"]),  # + sub.glue.test (an empty non-terminal)
    ("www.glueless.test", TYPE_A, 6, ["192.0.2.20"]),  # + example., hosting.example. for the NS address
    ("alias.glue.test", TYPE_A, 6, ["192.0.2.50"]),  # a CNAME to target.example: example., target.example.
    ("www.target.example", TYPE_AAAA, 3, []),  # NODATA
    ("www.legacy.target.example", TYPE_A, 7, ["192.0.2.1"]),  # a DNAME to glue.test
    ("big.target.example", TYPE_TXT, 4, []),  # UDP truncated, then TCP
]


@pytest.mark.parametrize(("name", "qtype", "cost", "expected"), COLD_COSTS, ids=[c[0] for c in COLD_COSTS])
def test_a_cold_resolution_costs_a_known_number_of_queries_and_a_warm_one_none(
    hierarchy: FakeHierarchy, name: str, qtype: int, cost: int, expected: list[str]
) -> None:
    async def scenario() -> None:
        resolver = await primed()
        hierarchy.reset()
        cold = await ask(resolver, name, qtype)
        assert cold.rcode() == dns.rcode.NOERROR
        if expected:
            assert addresses(cold) == expected
        assert hierarchy.total() == cost, hierarchy.counts()
        warm = await ask(resolver, name, qtype)
        assert hierarchy.total() == cost  # answered from the resolver's cache
        assert warm.answer == cold.answer and warm.rcode() == cold.rcode()
        await resolver.close()

    run(scenario())


# ----------------------------------------------------------------------------------------- privacy


def test_each_server_sees_only_the_labels_it_needs(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        hierarchy.reset()
        await ask(resolver, "host.sub.glue.test")
        await resolver.close()

    run(scenario())
    seen = {address: hierarchy[address].asked() for address in hierarchy.counts()}
    root = [query for address in ROOT_SERVERS for query in seen.get(address, [])]
    tld = [query for address in TEST_SERVERS for query in seen.get(address, [])]
    zone = [query for address in GLUE_SERVERS for query in seen.get(address, [])]
    assert root == [("test.", "A")]
    assert tld == [("glue.test.", "A")]
    assert zone == [("sub.glue.test.", "A"), ("host.sub.glue.test.", "A")]
    for server in hierarchy:
        for query in server.queries:
            assert not query.rd and query.edns and not query.do


def test_without_minimisation_the_root_sees_the_full_name(hierarchy: FakeHierarchy) -> None:
    settings = SETTINGS.model_copy(update={"qname_minimisation": False})

    async def scenario() -> None:
        resolver = await primed(settings)
        hierarchy.reset()
        await ask(resolver, "www.glue.test")
        await resolver.close()

    run(scenario())
    root = [query for address in ROOT_SERVERS for query in hierarchy[address].asked()]
    assert root == [("www.glue.test.", "A")]


# --------------------------------------------------------------------------------- answers of all kinds


def test_a_cname_into_another_zone_comes_back_as_one_chain(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> dns.message.Message:
        resolver = await primed()
        message = await ask(resolver, "alias.glue.test")
        await resolver.close()
        return message

    message = run(scenario())
    assert isinstance(message, dns.message.Message)
    assert [(str(rrset.name), rrset.rdtype) for rrset in message.answer] == [
        ("alias.glue.test.", 5),
        ("www.target.example.", 1),
    ]


def test_a_dname_answer_carries_the_dname_and_the_synthesized_cname(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> dns.message.Message:
        resolver = await primed()
        message = await ask(resolver, "www.legacy.target.example")
        await resolver.close()
        return message

    message = run(scenario())
    assert isinstance(message, dns.message.Message)
    assert [(str(rrset.name), rrset.rdtype) for rrset in message.answer] == [
        ("legacy.target.example.", 39),
        ("www.legacy.target.example.", 5),
        ("www.glue.test.", 1),
    ]


def test_an_answer_too_big_for_udp_is_fetched_over_tcp(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> dns.message.Message:
        resolver = await primed()
        message = await ask(resolver, "big.target.example", TYPE_TXT)
        await resolver.close()
        return message

    message = run(scenario())
    assert isinstance(message, dns.message.Message)
    assert len(message.answer[0][0].strings) == BIG_TXT_STRINGS
    # big.target.example is one label below its zone, so it is asked in full at once: UDP, truncated, TCP.
    assert [query.transport for query in hierarchy[TARGET_SERVER].queries] == ["udp", "tcp"]


def test_nxdomain_carries_the_soa_and_denies_names_below_it_without_asking(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        nx = await ask(resolver, "nonexistent.target.example")
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert [str(rrset.name) for rrset in nx.authority] == ["target.example."]
        assert nx.authority[0].ttl <= 300
        hierarchy.reset()
        below = await ask(resolver, "a.b.nonexistent.target.example", TYPE_AAAA)
        assert below.rcode() == dns.rcode.NXDOMAIN
        assert hierarchy.total() == 0  # RFC 8020
        await resolver.close()

    run(scenario())


def test_nodata_carries_the_soa(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        message = await ask(resolver, "www.target.example", TYPE_AAAA)
        assert message.rcode() == dns.rcode.NOERROR and not message.answer
        assert message.authority[0].rdtype == 6
        await resolver.close()

    run(scenario())


def test_the_response_suits_the_servers_cache(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        answer = await resolver.resolve(from_text("alias.glue.test"), TYPE_A, 1, do=False, cd=False)
        parsed = answer.response
        assert parsed.cnames == ("www.target.example",) and parsed.addresses == ("192.0.2.50",)
        assert parsed.ttl is not None and 0 < parsed.ttl <= 300 and not parsed.negative
        assert answer.server.startswith("recursive (")
        # What the server's cache sees is what parsing the rendered response would give.
        rendered = response_wire(answer, from_text("alias.glue.test"), TYPE_A)
        assert parse_reply(rendered, from_text("alias.glue.test")) == parsed
        nx = await resolver.resolve(from_text("nx.glue.test"), TYPE_A, 1, do=False, cd=False)
        negative = nx.response
        assert negative.negative and negative.ttl == 300
        await resolver.close()

    run(scenario())


def test_the_do_bit_reaches_the_authorities(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        hierarchy.reset()
        await ask(resolver, "www.glue.test", do=True)
        await resolver.close()

    run(scenario())
    assert all(query.do for server in hierarchy for query in server.queries)


# --------------------------------------------------------------------------------- poisoning defence


def test_out_of_bailiwick_records_in_a_referral_do_not_poison_the_cache(hierarchy: FakeHierarchy) -> None:
    # The evil.test server's referral to sub.evil.test also claims glue.test's NS set, www.glue.test's
    # address and ns1.glue.test's address.
    async def scenario() -> None:
        resolver = await primed()
        hierarchy.reset()
        sub = await ask(resolver, "www.sub.evil.test")
        assert addresses(sub) == ["192.0.2.67"]
        assert hierarchy[EVIL_SERVER].asked() == [("sub.evil.test.", "A")]
        assert hierarchy[EVIL_SUB_SERVER].asked() == [("www.sub.evil.test.", "A")]
        hierarchy.reset()
        victim = await ask(resolver, "www.glue.test")
        assert addresses(victim) == ["192.0.2.1"]
        assert hierarchy[EVIL_SERVER].count == 0
        assert sum(hierarchy[address].count for address in GLUE_SERVERS) == 1
        await resolver.close()

    run(scenario())


def test_out_of_bailiwick_records_in_an_answer_are_dropped(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        message = await ask(resolver, "www.evil.test")
        assert [str(rrset.name) for rrset in message.answer] == ["www.evil.test."]
        hierarchy.reset()
        victim = await ask(resolver, "www.glue.test")
        assert addresses(victim) == ["192.0.2.1"] and hierarchy.total() == 2
        await resolver.close()

    run(scenario())


# --------------------------------------------------------------------------------- broken servers


def test_a_lame_server_is_passed_over_and_remembered(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        for name, expected in [("www.lame.test", "192.0.2.30"), ("www2.lame.test", "192.0.2.31")] * 2:
            resolver.cache._entries.clear()  # cold each time, but the server table remembers
            assert addresses(await ask(resolver, name)) == [expected]
        await resolver.close()

    run(scenario())
    assert hierarchy[LAME_SERVER].count <= 1


def test_a_silent_server_costs_at_most_one_timeout(hierarchy: FakeHierarchy) -> None:
    hierarchy[GLUE_SERVERS[0]].behaviour.drop = True

    async def scenario() -> None:
        resolver = await primed(QUICK)
        for name in ("www.glue.test", "host.sub.glue.test", "a.b.c.d.e.f.g.h.i.j.k.glue.test"):
            started = time.monotonic()
            assert addresses(await ask(resolver, name))
            assert time.monotonic() - started < TIMEOUT + 0.25
        await resolver.close()

    run(scenario())
    assert hierarchy[GLUE_SERVERS[0]].count <= 1


def test_garbled_and_edns_intolerant_servers_are_worked_around(hierarchy: FakeHierarchy) -> None:
    hierarchy[GLUE_SERVERS[0]].behaviour.garble = True
    hierarchy[GLUE_SERVERS[1]].behaviour.formerr_on_edns = True

    async def scenario() -> None:
        resolver = await primed(QUICK)
        assert addresses(await ask(resolver, "www.glue.test")) == ["192.0.2.1"]
        await resolver.close()

    run(scenario())
    assert [query.edns for query in hierarchy[GLUE_SERVERS[1]].queries][-2:] == [True, False]


def test_a_zone_whose_servers_are_all_silent_fails_within_the_budget(hierarchy: FakeHierarchy) -> None:
    for address in GLUE_SERVERS:
        hierarchy[address].behaviour.drop = True

    async def scenario() -> None:
        resolver = await primed(QUICK)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="no reachable authority") as caught:
            await ask(resolver, "www.glue.test")
        assert caught.value.ede_code == EDE_NO_REACHABLE_AUTHORITY
        assert time.monotonic() - started < 2 * TIMEOUT + 0.3
        await resolver.close()

    run(scenario())


def test_the_total_time_budget_ends_a_slow_resolution(hierarchy: FakeHierarchy) -> None:
    for address in GLUE_SERVERS:
        hierarchy[address].behaviour.delay = 0.25
    settings = QUICK.model_copy(update={"total_timeout": 0.2})

    async def scenario() -> None:
        resolver = await primed(settings)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="timed out"):
            await ask(resolver, "www.glue.test")
        assert time.monotonic() - started < 0.5
        await resolver.close()

    run(scenario())


# -------------------------------------------------------------------------------------------- limits


def test_a_delegation_loop_ends_at_once_with_an_error_saying_so(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        hierarchy.reset()
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="delegation loop") as caught:
            await ask(resolver, "www.loop1.test")
        assert caught.value.ede_code == EDE_OTHER
        assert time.monotonic() - started < 0.5
        assert hierarchy.total() == 3  # root, loop1.test at test., loop2.test at test.
        await resolver.close()

    run(scenario())


@pytest.mark.parametrize(
    ("name", "message"),
    [("c1.target.example", "CNAME chain too long"), ("loopa.target.example", "CNAME loop")],
)
def test_cname_chains_are_bounded(hierarchy: FakeHierarchy, name: str, message: str) -> None:
    async def scenario() -> None:
        resolver = await primed()
        with pytest.raises(UpstreamError, match=message) as caught:
            await ask(resolver, name)
        assert caught.value.ede_code == EDE_OTHER
        await resolver.close()

    run(scenario())


def test_a_small_cache_bound_is_respected(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed(cache_max_entries=4)
        for name in ("www.glue.test", "www.glueless.test", "alias.glue.test", "www.lame.test"):
            assert addresses(await ask(resolver, name))
        assert len(resolver.cache) <= 4
        await resolver.close()

    run(scenario())


# ------------------------------------------------------------------------------------------ coalescing


def test_identical_concurrent_questions_are_resolved_once(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        hierarchy.reset()
        answers = await asyncio.gather(*(ask(resolver, "www.glue.test") for _ in range(5)))
        assert all(addresses(answer) == ["192.0.2.1"] for answer in answers)
        assert hierarchy.total() == 3
        await resolver.close()

    run(scenario())


def test_concurrent_resolutions_share_one_lookup_of_an_ns_name(hierarchy: FakeHierarchy) -> None:
    async def scenario() -> None:
        resolver = await primed()
        hierarchy.reset()
        a, aaaa = await asyncio.gather(
            ask(resolver, "www.glueless1.test"), ask(resolver, "www.glueless1.test", 28)
        )
        assert addresses(a) == ["192.0.2.22"] and aaaa.rcode() == dns.rcode.NOERROR
        await resolver.close()

    run(scenario())
    lookups = [
        query
        for address in HOSTING_SERVERS
        for query in hierarchy[address].asked()
        if query == ("ns1.hosting.example.", "A")
    ]
    assert len(lookups) == 1


# -------------------------------------------------------------------------------------- private roots


def test_hints_with_a_port_are_always_used_for_the_root(hierarchy: FakeHierarchy) -> None:
    private_root = FakeAuthServer("127.53.50.1", hierarchy[ROOT_SERVERS[0]].zones, port=0).start()
    try:
        settings = SETTINGS.model_copy(update={"root_hints": [f"127.53.50.1:{private_root.port}"]})

        async def scenario() -> None:
            resolver = await primed(settings)
            assert addresses(await ask(resolver, "www.glue.test")) == ["192.0.2.1"]
            await resolver.close()

        run(scenario())
        assert private_root.asked() == [(".", "NS"), ("test.", "A")]
        assert all(hierarchy[address].count == 0 for address in ROOT_SERVERS)
    finally:
        private_root.stop()
