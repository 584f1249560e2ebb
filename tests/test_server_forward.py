"""Forward mode against real fake upstreams: failover, timeouts, TCP retry on TC, ID/port randomisation,
spoofed replies, coalescing, SERVFAIL with EDE when everything fails."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dns.rcode
import pytest
from dnslib import DNSRecord

from conftest import base_config, ede_of
from fakedns import FakeDNS


@pytest.fixture
def two_upstreams():
    first = FakeDNS("127.0.0.2").start()
    second = FakeDNS("127.0.0.3").start()
    yield first, second
    first.stop()
    second.stop()


def forward_config(*upstreams: FakeDNS | str, **sections):
    raw = base_config(None, **sections)
    raw["resolver"]["upstreams"] = [u if isinstance(u, str) else u.url for u in upstreams]
    raw["policy"] = {"block": []}
    return raw


def test_udp_and_tcp_upstreams(start_server, fake_upstream):
    fake_upstream.answer("example.com", "A", "192.0.2.1")
    for scheme in ("udp", "tcp"):
        server = start_server(forward_config(f"{scheme}://127.0.0.2:{fake_upstream.port}"))
        assert server.query("example.com").answer[0][0].address == "192.0.2.1"
    assert [call[2] for call in fake_upstream.calls] == ["udp", "tcp"]


def test_failover_to_next_upstream_on_timeout_and_servfail(start_server, two_upstreams):
    first, second = two_upstreams
    first.silence("quiet.example").rcode("broken.example", "SERVFAIL")
    second.answer("quiet.example", "A", "192.0.2.2").answer("broken.example", "A", "192.0.2.3")
    server = start_server(forward_config(first, second, resolver={"timeout": 0.3}))
    assert server.query("quiet.example").answer[0][0].address == "192.0.2.2"
    assert server.query("broken.example").answer[0][0].address == "192.0.2.3"
    assert first.count("quiet.example") == 1 and second.count("quiet.example") == 1


def test_a_failed_upstream_is_tried_last_for_a_while(start_server, two_upstreams):
    first, second = two_upstreams
    first.silence("a.example")
    second.answer("a.example", "A", "192.0.2.4").answer("b.example", "A", "192.0.2.5")
    server = start_server(forward_config(first, second, resolver={"timeout": 0.3}))
    server.query("a.example")
    started = time.monotonic()
    assert server.query("b.example").answer[0][0].address == "192.0.2.5"
    assert time.monotonic() - started < 0.25  # did not wait for the dead first upstream again
    assert first.count("b.example") == 0


def test_tcp_retry_when_the_udp_answer_is_truncated(start_server, fake_upstream):
    fake_upstream.answer("big.example", "TXT", *[f'"{"x" * 200} {i}"' for i in range(10)]).truncate(
        "big.example"
    )
    server = start_server(forward_config(fake_upstream))
    response = server.query("big.example", "TXT", tcp=True)
    assert len(response.answer[0]) == 10
    assert [c[2] for c in fake_upstream.calls] == ["udp", "tcp"]


def test_every_upstream_failing_gives_servfail_with_ede_never_nxdomain(start_server, two_upstreams):
    first, second = two_upstreams
    first.silence("down.example")
    second.silence("down.example")
    server = start_server(forward_config(first, second, resolver={"timeout": 0.2, "total_timeout": 1.0}))
    response = server.query("down.example")
    assert response.rcode() == dns.rcode.SERVFAIL
    assert ede_of(response)[0][0] == 22  # No Reachable Authority
    closed = start_server(forward_config("udp://127.0.0.4:9", resolver={"timeout": 0.2}))
    response = closed.query("refused.example")
    assert response.rcode() == dns.rcode.SERVFAIL and ede_of(response)[0][0] == 23  # Network Error


def test_garbage_from_upstream_is_not_accepted(start_server, two_upstreams):
    first, second = two_upstreams
    first.garbage("junk.example")
    second.answer("junk.example", "A", "192.0.2.6")
    server = start_server(forward_config(first, second, resolver={"timeout": 0.3}))
    assert server.query("junk.example").answer[0][0].address == "192.0.2.6"


def test_query_ids_and_source_ports_are_random(start_server, fake_upstream):
    """IDs are random; the first queries each open a pooled socket of their own (more rotation:
    tests/test_server_udppool.py)."""
    server = start_server(forward_config(fake_upstream))
    for i in range(16):
        server.query(f"n{i}.example")
    assert len(set(fake_upstream.ids)) >= 14  # 16 draws from 65536: collisions are rare
    assert len({port for _, port in fake_upstream.sources}) == 16  # the pool's 16 sockets, 16 ports


def test_spoofed_replies_with_wrong_id_or_question_are_dropped_and_counted(start_server):
    """A fake upstream that first sends a reply with the wrong ID and one with the wrong question, then
    the real one: only the real one may be used."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.5", 0))
    port = sock.getsockname()[1]

    def serve() -> None:
        data, addr = sock.recvfrom(4096)
        request = DNSRecord.parse(data)
        wrong_id = request.reply()
        wrong_id.header.id = (request.header.id + 1) % 65536
        wrong_id.add_answer(*__import__("dnslib").RR.fromZone("spoof.example. 60 IN A 6.6.6.6"))
        sock.sendto(bytes(wrong_id.pack()), addr)
        wrong_question = DNSRecord.question("other.example")
        wrong_question.header.id = request.header.id
        wrong_question = wrong_question.reply()
        sock.sendto(bytes(wrong_question.pack()), addr)
        good = request.reply()
        good.add_answer(*__import__("dnslib").RR.fromZone("spoof.example. 60 IN A 192.0.2.7"))
        sock.sendto(bytes(good.pack()), addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    server = start_server(forward_config(f"udp://127.0.0.5:{port}"))
    assert server.query("spoof.example").answer[0][0].address == "192.0.2.7"
    assert server.server.stats.upstream.mismatched == 2
    thread.join(2)
    sock.close()


def test_identical_queries_in_flight_are_coalesced(start_server, fake_upstream):
    fake_upstream.answer("slow.example", "A", "192.0.2.8").delay("slow.example", 0.5)
    server = start_server(forward_config(fake_upstream))
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: server.query("slow.example"), range(10)))
    assert all(a.answer[0][0].address == "192.0.2.8" for a in answers)
    # One resolution for the ten: its first query, and any sent again because the reply was late.
    assert fake_upstream.count("slow.example") == 1 + server.server.stats.upstream.retransmits
