"""The recursive resolver's small modules: names, reply parsing, minimisation steps, the ranked cache, the
server table, the response writer and in-flight coalescing."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct

import dns.message
import dns.rdatatype
import pytest
from dnslib import RR, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from blockdns import dnsname
from blockdns.config import ResolverSettings
from blockdns.errors import WireError
from blockdns.resolve.recursive.cache import RANK_ANSWER, RANK_GLUE, RANK_REFERRAL, RecursionCache
from blockdns.resolve.recursive.flights import Flights
from blockdns.resolve.recursive.hints import IANA_ROOT_SERVERS, root_hints
from blockdns.resolve.recursive.machine import DelegationLoop, Result
from blockdns.resolve.recursive.message import parse
from blockdns.resolve.recursive.minimise import MAX_MINIMISE_COUNT, next_label_count
from blockdns.resolve.recursive.rrset import RRset, group
from blockdns.resolve.recursive.servers import HOLD_AFTER_FAILURES, ServerTable
from blockdns.resolve.rtt import MIN_RTO
from blockdns.wire import NXDOMAIN, TYPE_A, TYPE_NS

from conftest import render_result

name = dnsname.from_text

# ------------------------------------------------------------------------------------------- names


def test_subdomain_checks_go_label_by_label() -> None:
    assert dnsname.is_subdomain(name("www.example.com"), name("example.com"))
    assert dnsname.is_subdomain(name("example.com"), name("example.com"))
    assert dnsname.is_subdomain(name("example.com"), dnsname.ROOT)
    assert not dnsname.is_subdomain(name("wwwexample.com"), name("example.com"))
    assert dnsname.is_strict_subdomain(name("a.example.com"), name("example.com"))
    assert not dnsname.is_strict_subdomain(name("example.com"), name("example.com"))
    # A label whose bytes look like "\x02bc\x00" as a suffix must not pass for the zone bc.
    tricky = b"\x04x\x02bc\x00"
    assert tricky.endswith(b"\x02bc\x00") and not dnsname.is_subdomain(tricky, b"\x02bc\x00")


def test_ancestors_parent_and_suffix_replacement() -> None:
    assert dnsname.ancestors(name("a.b.c")) == [name("a.b.c"), name("b.c"), name("c"), dnsname.ROOT]
    assert dnsname.parent(name("a.b")) == name("b") and dnsname.parent(dnsname.ROOT) == dnsname.ROOT
    assert dnsname.ancestor(name("a.b.c"), 2) == name("b.c")
    assert dnsname.replace_suffix(name("www.old.example"), name("old.example"), name("new.test")) == name(
        "www.new.test"
    )
    too_long = name(".".join(["x" * 60] * 4))
    assert dnsname.replace_suffix(too_long, dnsname.ROOT, name("y" * 20)) is None


def test_names_print_with_odd_bytes_escaped() -> None:
    assert dnsname.to_text(dnsname.ROOT) == "."
    assert dnsname.to_text(b"\x03a.b\x03com\x00") == "a\\046b.com."


# ----------------------------------------------------------------------------------------- parsing


def _compressed_reply() -> bytes:
    record = DNSRecord(DNSHeader(id=7, qr=1, aa=1), q=DNSQuestion("example.com.", 2))
    for rr in RR.fromZone(
        "example.com. 300 NS ns1.example.com.\n"
        "example.com. 300 SOA ns1.example.com. hostmaster.example.com. 1 2 3 4 5\n"
        "example.com. 300 MX 10 mail.example.com.",
        ttl=300,
    ):
        record.add_answer(rr)
    return bytes(record.pack())


def test_names_inside_record_data_are_decompressed() -> None:
    data = _compressed_reply()
    assert b"\xc0" in data[30:]  # dnslib did compress
    message = parse(data)
    ns, soa, mx = message.answer
    assert ns.rdata == name("ns1.example.com")
    assert soa.rdata.startswith(name("ns1.example.com") + name("hostmaster.example.com"))
    assert len(soa.rdata) == len(name("ns1.example.com") + name("hostmaster.example.com")) + 20
    assert mx.rdata == b"\x00\x0a" + name("mail.example.com")
    assert message.question == (name("example.com"), TYPE_NS, 1)


def test_pointer_loops_and_truncation_are_wire_errors() -> None:
    header = struct.pack(">HHHHHH", 1, 0x8000, 1, 0, 0, 0)
    with pytest.raises(WireError):
        parse(header + b"\xc0\x0c\x00\x01\x00\x01")  # a pointer to itself
    with pytest.raises(WireError):
        parse(_compressed_reply()[:-3])


@given(st.binary(max_size=300))
def test_parsing_garbage_raises_only_wire_errors(data: bytes) -> None:
    with contextlib.suppress(WireError):
        parse(data)


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6), st.integers(12, 400))
def test_parsing_damaged_replies_raises_only_wire_errors(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_compressed_reply())
    for position, value in flips:
        if position < len(data):
            data[position] = value
    with contextlib.suppress(WireError):
        parse(bytes(data[:cut]))


def test_rrsigs_are_attached_to_the_set_they_cover() -> None:
    record = DNSRecord(DNSHeader(id=1, qr=1), q=DNSQuestion("www.example.com.", 1))
    for rr in RR.fromZone(
        "www.example.com. 300 A 192.0.2.1\n"
        "www.example.com. 200 A 192.0.2.2\n"
        "www.example.com. 300 A 192.0.2.1\n"
        "www.example.com. 300 RRSIG A 8 3 300 20300101000000 20200101000000 1 example.com. AAAA",
        ttl=300,
    ):
        record.add_answer(rr)
    (rrset,) = group(parse(bytes(record.pack())).answer)
    assert rrset.addresses() == ["192.0.2.1", "192.0.2.2"]  # the duplicate is gone
    assert rrset.ttl == 200 and len(rrset.sigs) == 1


# ------------------------------------------------------------------------------------ minimisation


def test_minimisation_adds_one_label_then_spreads_the_rest() -> None:
    assert next_label_count(1, 3, 0) == 2
    assert next_label_count(2, 3, 1) == 3
    assert next_label_count(3, 3, 0) == 3
    steps = []
    labels, count = 0, 0
    while labels < 20:
        labels = next_label_count(labels, 20, count)
        count += 1
        steps.append(labels)
    assert steps[:4] == [1, 2, 3, 4]
    assert len(steps) <= MAX_MINIMISE_COUNT + 1
    assert next_label_count(2, 9, MAX_MINIMISE_COUNT) == 9


# ------------------------------------------------------------------------------------------- cache


def _a(owner: str, address: str, ttl: int = 300) -> RRset:
    return RRset(name(owner), TYPE_A, 1, ttl, (bytes(int(part) for part in address.split(".")),))


def test_a_lower_rank_never_replaces_a_live_higher_one() -> None:
    cache = RecursionCache(100)
    cache.put_rrset(_a("ns.example.com", "192.0.2.1"), RANK_ANSWER, 0, dnssec=False)
    cache.put_rrset(_a("ns.example.com", "6.6.6.6"), RANK_GLUE, 1, dnssec=False)
    found = cache.get_rrset(name("ns.example.com"), TYPE_A, 1, 2, min_rank=RANK_GLUE)
    assert found is not None and found.addresses() == ["192.0.2.1"]
    cache.put_rrset(_a("ns.example.com", "192.0.2.9"), RANK_ANSWER, 3, dnssec=False)
    assert cache.get_rrset(name("ns.example.com"), TYPE_A, 1, 4, min_rank=RANK_ANSWER).addresses() == [  # type: ignore[union-attr]
        "192.0.2.9"
    ]


def test_glue_is_not_an_answer_and_ttls_count_down() -> None:
    cache = RecursionCache(100)
    cache.put_rrset(_a("ns.example.com", "192.0.2.1", ttl=10), RANK_GLUE, 100.0, dnssec=False)
    assert cache.get_rrset(name("ns.example.com"), TYPE_A, 1, 101.0, min_rank=RANK_ANSWER) is None
    assert cache.get_rrset(name("ns.example.com"), TYPE_A, 1, 104.5, min_rank=RANK_REFERRAL) is None
    found = cache.get_rrset(name("ns.example.com"), TYPE_A, 1, 104.5, min_rank=RANK_GLUE)
    assert found is not None and found.ttl == 6
    assert cache.get_rrset(name("ns.example.com"), TYPE_A, 1, 110.0, min_rank=RANK_GLUE) is None


def test_dnssec_queries_skip_entries_fetched_without_do() -> None:
    cache = RecursionCache(100)
    cache.put_rrset(_a("www.example.com", "192.0.2.1"), RANK_ANSWER, 0, dnssec=False)
    assert cache.get_rrset(name("www.example.com"), TYPE_A, 1, 1, min_rank=RANK_ANSWER, dnssec=True) is None
    assert cache.get_rrset(name("www.example.com"), TYPE_A, 1, 1, min_rank=RANK_ANSWER) is not None


def test_nxdomain_covers_names_below_and_nodata_only_its_type() -> None:
    cache = RecursionCache(100)
    cache.put_negative(NXDOMAIN, name("nx.example.com"), TYPE_A, 1, (), 60, 0, dnssec=False)
    cache.put_negative(0, name("www.example.com"), 28, 1, (), 60, 0, dnssec=False)
    assert cache.get_negative(name("a.b.nx.example.com"), 16, 1, 1) is not None
    assert cache.get_negative(name("example.com"), TYPE_A, 1, 1) is None
    assert cache.get_negative(name("www.example.com"), 28, 1, 1) is not None
    assert cache.get_negative(name("www.example.com"), TYPE_A, 1, 1) is None
    assert cache.get_negative(name("a.nx.example.com"), TYPE_A, 1, 61) is None  # expired


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = RecursionCache(3)
    for index in range(3):
        cache.put_rrset(_a(f"h{index}.example", "192.0.2.1"), RANK_ANSWER, 0, dnssec=False)
    assert cache.get_rrset(name("h0.example"), TYPE_A, 1, 1, min_rank=RANK_ANSWER) is not None  # now recent
    cache.put_rrset(_a("h3.example", "192.0.2.1"), RANK_ANSWER, 0, dnssec=False)
    assert len(cache) == 3 and cache.evictions == 1
    assert cache.get_rrset(name("h1.example"), TYPE_A, 1, 1, min_rank=RANK_ANSWER) is None
    assert cache.get_rrset(name("h0.example"), TYPE_A, 1, 1, min_rank=RANK_ANSWER) is not None
    disabled = RecursionCache(0)
    disabled.put_rrset(_a("h.example", "192.0.2.1"), RANK_ANSWER, 0, dnssec=False)
    assert len(disabled) == 0


# ----------------------------------------------------------------------------------------- servers


def test_rtt_is_smoothed_and_timeouts_back_off_then_hold() -> None:
    table = ServerTable(max_timeout=2.0)
    server = ("192.0.2.1", 53)
    assert table.timeout(server) == 1.0  # never asked
    table.record_reply(server, 0.010)
    assert table.timeout(server) == MIN_RTO
    table.record_reply(server, 0.030)
    state = table.known(server)
    assert state is not None and 0.010 < state.srtt < 0.030  # type: ignore[operator]
    rto = state.rto
    table.record_failure(server, 10.0)
    assert state.rto == pytest.approx(2 * rto) and table.usable(server, dnsname.ROOT, 10.0)
    for _ in range(HOLD_AFTER_FAILURES - 1):
        table.record_failure(server, 10.0)
    assert not table.usable(server, dnsname.ROOT, 11.0)  # held
    assert table.usable(server, dnsname.ROOT, 10.0 + 31.0)  # the hold ends
    table.record_reply(server, 0.02)
    assert state.failures == 0 and table.usable(server, dnsname.ROOT, 11.0)


def test_selection_prefers_fast_servers_within_a_band() -> None:
    table = ServerTable(max_timeout=2.0)
    fast, close, slow = ("192.0.2.1", 53), ("192.0.2.2", 53), ("192.0.2.3", 53)
    table.record_reply(fast, 0.010)
    table.record_reply(close, 0.030)
    table.record_reply(slow, 0.300)
    rng = random.Random(1)
    picks = {table.choose([fast, close, slow], rng) for _ in range(50)}
    assert picks == {fast, close}
    assert table.choose([], rng) is None


def test_lameness_is_per_zone() -> None:
    table = ServerTable(max_timeout=2.0)
    server = ("192.0.2.1", 53)
    table.record_lame(server, name("example.com"), 0.0)
    assert not table.usable(server, name("example.com"), 1.0)
    assert table.usable(server, name("example.net"), 1.0)


# ------------------------------------------------------------------------------------------- hints


def test_built_in_hints_cover_all_thirteen_roots_on_both_families() -> None:
    hints = root_hints(ResolverSettings())
    assert len(IANA_ROOT_SERVERS) == 13
    assert len(hints.servers) == 26 and not hints.pinned
    assert len(hints.usable(ipv6=False)) == 13
    assert ("198.41.0.4", 53) in hints.servers and ("2001:503:ba3e::2:30", 53) in hints.servers


def test_configured_hints_replace_the_built_in_ones() -> None:
    hints = root_hints(ResolverSettings(root_hints=["127.53.0.1", "127.0.0.1:5300"]))
    assert hints.servers == (("127.53.0.1", 53), ("127.0.0.1", 5300))
    assert hints.pinned  # a port other than 53 cannot come back from priming
    assert not root_hints(ResolverSettings(root_hints=["127.53.0.1"])).pinned


# ---------------------------------------------------------------------------------------- response


def test_the_response_is_a_complete_message_for_the_exact_question() -> None:
    cname = RRset(name("www.example.com"), 5, 1, 300, (name("cdn.example.net"),))
    result = Result(
        name("www.example.com"), TYPE_A, 1, 0, (cname, _a("cdn.example.net", "192.0.2.7", ttl=60)), (), "x"
    )
    data = render_result(result, do=False, qid=4242)
    message = dns.message.from_wire(data)
    assert message.id == 4242
    assert message.flags & 0x8180 == 0x8180 and not message.flags & 0x0400  # QR RD RA, never AA
    assert str(message.question[0].name) == "www.example.com." and message.question[0].rdtype == TYPE_A
    assert [rrset.rdtype for rrset in message.answer] == [5, 1]
    assert message.answer[1].ttl == 60
    assert data[12 : 12 + len(name("www.example.com"))] == name("www.example.com")
    assert len(data) < 12 + 17 + 4 + 2 * 17 + 40  # owner names were compressed


def test_negative_responses_carry_the_soa_and_proofs_only_with_do() -> None:
    soa_data = name("ns.example.com") + name("hostmaster.example.com") + struct.pack(">IIIII", 1, 2, 3, 4, 60)
    soa = RRset(name("example.com"), 6, 1, 60, (soa_data,))
    nsec = RRset(name("example.com"), 47, 1, 60, (name("a.example.com") + b"\x00\x01\x40",))
    result = Result(name("nx.example.com"), TYPE_A, 1, NXDOMAIN, (), (soa, nsec), "x")
    plain = dns.message.from_wire(render_result(result, do=False))
    assert plain.rcode() == NXDOMAIN
    assert [dns.rdatatype.to_text(rrset.rdtype) for rrset in plain.authority] == ["SOA"]
    signed = dns.message.from_wire(render_result(result, do=True))
    assert [dns.rdatatype.to_text(rrset.rdtype) for rrset in signed.authority] == ["SOA", "NSEC"]


# ----------------------------------------------------------------------------------------- flights


def test_identical_flights_share_one_run() -> None:
    async def scenario() -> tuple[list[int], int]:
        flights: Flights[int] = Flights()
        runs = 0

        async def work() -> int:
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.01)
            return 42

        results = await asyncio.gather(*(flights.join("k", work, waiter=None, timeout=1) for _ in range(5)))
        return list(results), runs

    results, runs = asyncio.run(scenario())
    assert results == [42] * 5 and runs == 1


def test_joining_a_flight_that_waits_on_the_joiner_is_a_loop() -> None:
    async def scenario() -> None:
        flights: Flights[int] = Flights()
        inner_started = asyncio.Event()
        outcome: list[BaseException] = []

        async def a() -> int:
            return await flights.join("b", b, waiter="a", timeout=1)

        async def b() -> int:
            inner_started.set()
            try:
                return await flights.join("a", a, waiter="b", timeout=1)
            except DelegationLoop as err:
                outcome.append(err)
                raise

        with pytest.raises(DelegationLoop):
            await flights.join("a", a, waiter=None, timeout=1)
        assert inner_started.is_set() and outcome and len(flights) == 0

    asyncio.run(scenario())
