"""Bad packets never hurt: a corpus of malformed queries gets FORMERR, NOTIMP or silence, never a crash;
a failing handler becomes SERVFAIL for that query alone; a failing fast path falls back to the slow one
on every transport; work in flight is bounded on every transport; a flood of bad packets logs a few
lines, not one each."""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct
import time

import dns.message
import dns.rcode
import dns.rrset
import pytest

from blockdns.errors import UpstreamError

from conftest import base_config
from fakedns import FakeDNS


def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x07example\x03com\x00\x00\x01\x00\x01"

# (name, packet, expected: None for silence, else the rcode)
CORPUS = [
    ("empty", b"", None),
    ("short header", b"\x12\x34\x01", None),
    ("header only", header(), dns.rcode.FORMERR),
    ("truncated name", header() + b"\x07exam", dns.rcode.FORMERR),
    ("truncated type", header() + b"\x07example\x03com\x00\x00", dns.rcode.FORMERR),
    ("pointer past the end", header() + b"\xc0\xff\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("pointer loop", header() + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("label of 64 bytes", header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("no question", header(qd=0), dns.rcode.FORMERR),
    ("two questions", header(qd=2) + QUESTION + QUESTION, dns.rcode.FORMERR),
    ("a response", header(flags=0x8180) + QUESTION, None),
    ("unknown opcode", header(flags=0x7900) + QUESTION, dns.rcode.NOTIMP),
    ("notify opcode", header(flags=0x2000) + QUESTION, dns.rcode.NOTIMP),
    (
        "answer in a query",
        header(an=1) + QUESTION + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04",
        dns.rcode.FORMERR,
    ),
    ("garbage with a readable header", bytes(range(256)) * 2, dns.rcode.FORMERR),
    ("garbage with QR set", b"\xff" * 300, None),
]


@pytest.fixture
def upstream():
    fake = FakeDNS("127.0.0.2").answer("example.com", "A", "192.0.2.1").start()
    yield fake
    fake.stop()


def send_raw(port: int, packet: bytes, timeout: float = 0.5) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def test_malformed_packet_corpus(start_server, upstream):
    server = start_server(base_config(upstream, policy={"block": []}))
    for name, packet, expected in CORPUS:
        reply = send_raw(server.port, packet, timeout=0.3 if expected is None else 2)
        if expected is None:
            assert reply is None, name
        else:
            assert reply is not None, name
            assert reply[:2] == packet[:2], name  # the ID is echoed
            assert struct.unpack(">H", reply[2:4])[0] & 0xF == expected, name
    assert server.query("example.com").answer[0][0].address == "192.0.2.1"  # still serving


def test_badvers_for_unknown_edns_version(start_server, upstream):
    server = start_server(base_config(upstream))
    query = dns.message.make_query("example.com", "A", use_edns=1)
    reply = send_raw(server.port, query.to_wire(), timeout=2)
    message = dns.message.from_wire(reply)
    assert message.rcode() == dns.rcode.BADVERS


def test_unusual_but_legal_query_takes_the_slow_path_and_is_answered(start_server, upstream):
    """An extra record in the additional section (besides OPT) is legal; the fast parser declines it,
    dnslib re-encodes the question, and the answer is the same."""
    server = start_server(base_config(upstream, policy={"block": []}))
    query = dns.message.make_query("example.com", "A", use_edns=0)
    query.additional.append(dns.rrset.from_text("extra.example.", 60, "IN", "TXT", '"hello"'))
    message = dns.message.from_wire(send_raw(server.port, query.to_wire(), timeout=2))
    assert message.id == query.id and message.answer[0][0].address == "192.0.2.1"
    assert message.edns == 0


def test_a_failing_handler_becomes_servfail_for_that_query_only(start_server, upstream):
    server = start_server(base_config(upstream, policy={"block": []}))
    resolver = server.server.generation.handlers["resolve"]
    real = resolver.upstream

    class Exploding:
        async def resolve(self, qname, qtype, qclass, *, do, cd):
            if qname.startswith(b"\x04boom"):
                raise RuntimeError("handler bug")
            return await real.resolve(qname, qtype, qclass, do=do, cd=cd)

    resolver.upstream = Exploding()
    assert server.query("boom.example").rcode() == dns.rcode.SERVFAIL
    assert server.query("example.com").answer[0][0].address == "192.0.2.1"
    assert server.server.stats.handler_failures == 1


def hanging_names(start_server, upstream, count: int = 30):  # type: ignore[no-untyped-def]
    """A server that may have 4 queries in flight, and names its upstream takes 1.5 s to answer."""
    raw = base_config(upstream, policy={"block": []})
    raw["server"]["max_inflight"] = 4
    server = start_server(raw)
    names = [f"q{i}.hang.example" for i in range(count)]
    for name in names:
        upstream.handle(name, lambda request, transport: time.sleep(1.5))
    return server, names


# Eight clients, so that the bound on all of them is reached before each one's share of it (a quarter).
SOURCES = [f"127.0.0.{11 + index}" for index in range(8)]


def test_work_in_flight_is_bounded(start_server, upstream):
    server, names = hanging_names(start_server, upstream)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in SOURCES]
    try:
        for sock, source in zip(senders, SOURCES, strict=True):
            sock.bind((source, 0))
        for index, name in enumerate(names):
            query = dns.message.make_query(name, "A").to_wire()
            senders[index % len(senders)].sendto(query, ("127.0.0.1", server.port))
        time.sleep(0.3)
    finally:
        for sock in senders:
            sock.close()
    stats = server.server.stats
    assert stats.dropped_overload >= 4 and stats.dropped_overload + stats.dropped_client_share >= 20
    assert len(server.server.tasks) <= 4


def test_tcp_work_in_flight_counts_against_the_same_bound(start_server, upstream):
    server, names = hanging_names(start_server, upstream)
    stats = server.server.stats
    connections = []
    try:
        for source in SOURCES:
            conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            conn.settimeout(5)
            conn.bind((source, 0))
            conn.connect(("127.0.0.1", server.port))
            connections.append(conn)
        for index, name in enumerate(names):  # pipelined: fewer per connection than its own bound of 64
            wire = dns.message.make_query(name, "A").to_wire()
            connections[index % len(connections)].sendall(struct.pack(">H", len(wire)) + wire)
        deadline = time.monotonic() + 3
        while stats.dropped_overload + stats.dropped_client_share < 26 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for conn in connections:
            conn.close()
    # 26 unless the first answers came back meanwhile
    assert stats.dropped_overload >= 1 and stats.dropped_overload + stats.dropped_client_share >= 20
    assert len(server.server.tasks) <= 4


def test_a_failing_fast_path_falls_back_to_the_slow_path_on_udp_and_tcp(start_server, upstream, caplog):
    server = start_server(base_config(upstream, policy={"block": []}))
    assert server.query("example.com").answer[0][0].address == "192.0.2.1"  # cached: the fast path's turn

    def broken(query):
        raise RuntimeError("fast path bug")

    engine = server.server.engine
    server.call(_install(engine, dataclasses.replace(engine.generation, fast=broken)))
    for tcp in (False, True):
        assert server.query("example.com", tcp=tcp).answer[0][0].address == "192.0.2.1"
    assert server.server.stats.handler_failures == 0
    assert [r.getMessage() for r in caplog.records if "fast path failed" in r.getMessage()] == [
        "fast path failed"
    ]  # rate-limited: one line for the two failures


async def _install(engine, generation) -> None:
    engine.install(generation)


def test_a_flood_of_bad_packets_logs_a_few_lines(start_server, upstream, caplog):
    server = start_server(base_config(upstream))
    caplog.set_level(logging.WARNING, logger="blockdns.server")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(300):
            sock.sendto(b"\x00\x01\x00", ("127.0.0.1", server.port))
            if i % 50 == 49:
                time.sleep(0.05)  # stay under the socket buffer: every packet must arrive
    deadline = time.monotonic() + 3
    while server.server.stats.bad_packets < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.server.stats.bad_packets == 300
    lines = [r for r in caplog.records if "bad packet" in r.getMessage()]
    assert 1 <= len(lines) <= 2


def test_upstream_errors_never_become_nxdomain(start_server, upstream):
    server = start_server(base_config(upstream, policy={"block": []}))

    class Failing:
        async def resolve(self, qname, qtype, qclass, *, do, cd):
            raise UpstreamError("everything is down", 22)

    server.server.generation.handlers["resolve"].upstream = Failing()
    response = server.query("anything.example")
    assert response.rcode() == dns.rcode.SERVFAIL
