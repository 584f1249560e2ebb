"""The cache through the real server: positive and negative entries, TTL countdown, clamps, LRU bound,
and a key that covers case-folded name, type, class and the DO/CD bits."""

from __future__ import annotations

import time

import dns.rcode
import pytest

from conftest import base_config
from fakedns import FakeDNS


@pytest.fixture
def upstream():
    fake = FakeDNS("127.0.0.2").answer("a.example", "A", "192.0.2.1", ttl=100)
    fake.answer("short.example", "A", "192.0.2.2", ttl=1).answer("long.example", "A", "192.0.2.3", ttl=999999)
    for i in range(5):
        fake.answer(f"n{i}.example", "A", f"192.0.2.{10 + i}")
    fake.start()
    yield fake
    fake.stop()


def config(upstream: FakeDNS, **cache):
    return base_config(upstream, policy={"block": []}, cache=cache)


def test_positive_answers_are_cached_and_ttls_count_down(start_server, upstream):
    server = start_server(config(upstream))
    first = server.query("a.example")
    assert first.answer[0].ttl == 100
    time.sleep(1.1)
    second = server.query("A.EXAMPLE")  # case-folded key, same entry
    assert upstream.count("a.example") == 1
    assert second.answer[0].ttl == 99
    assert second.question[0].name.to_text() == "A.EXAMPLE."


def test_repeats_of_one_packet_get_their_own_id_and_the_ttl_of_the_moment(start_server, upstream):
    """The fast path remembers a response's bytes: never with another query's ID or an old TTL."""
    server = start_server(config(upstream))
    server.query("a.example")
    repeats = [server.query("a.example") for _ in range(5)]  # dnspython refuses a response with another ID
    assert len({response.id for response in repeats}) >= 4
    before = repeats[-1].answer[0].ttl
    time.sleep(1.1)
    after = server.query("a.example").answer[0].ttl
    assert 1 <= before - after <= 2


def test_negative_answers_are_cached_from_the_soa(start_server, upstream):
    server = start_server(config(upstream))
    assert server.query("missing.example").rcode() == dns.rcode.NXDOMAIN
    again = server.query("missing.example")
    assert again.rcode() == dns.rcode.NXDOMAIN and again.authority
    assert upstream.count("missing.example") == 1
    assert server.query("a.example", "MX").rcode() == dns.rcode.NOERROR  # NODATA
    assert server.query("a.example", "MX").authority
    assert upstream.calls.count(("a.example", "MX", "udp")) == 1


def test_min_and_max_ttl_clamp(start_server, upstream):
    server = start_server(config(upstream, min_ttl=30, max_ttl=3600))
    assert server.query("short.example").answer[0].ttl == 30
    assert server.query("long.example").answer[0].ttl == 3600
    server.query("short.example")
    assert upstream.count("short.example") == 1  # kept 30 s, not 1 s


def test_expired_entries_are_fetched_again(start_server, upstream):
    server = start_server(config(upstream))
    server.query("short.example")
    time.sleep(1.2)
    server.query("short.example")
    assert upstream.count("short.example") == 2


def test_lru_bound(start_server, upstream):
    server = start_server(config(upstream, max_entries=3))
    for i in range(5):
        server.query(f"n{i}.example")
    assert server.server.cache_size() == 3
    server.query("n4.example")
    assert upstream.count("n4.example") == 1  # recent: still cached
    server.query("n0.example")
    assert upstream.count("n0.example") == 2  # evicted first


def test_do_bit_is_part_of_the_key(start_server, upstream):
    server = start_server(config(upstream))
    server.query("a.example")
    server.query("a.example", want_dnssec=True)
    server.query("a.example", want_dnssec=True)
    assert upstream.count("a.example") == 2
