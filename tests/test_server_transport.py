"""Transports and EDNS: UDP and TCP on IPv4 and IPv6, RFC 7766 framing and pipelining, idle timeout, the
client's UDP size, TC on overflow, OPT answered with OPT. (Connection limits: test_server_hardening.py.)"""

from __future__ import annotations

import socket
import struct
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import base_config
from fakedns import FakeDNS

BIG_TXT = [f'"{"y" * 180} {i}"' for i in range(12)]  # about 2.3 kB of answer


@pytest.fixture
def upstream():
    fake = FakeDNS("127.0.0.2").answer("example.com", "A", "192.0.2.1").answer("big.example", "TXT", *BIG_TXT)
    fake.answer("medium.example", "TXT", *BIG_TXT[:4])  # about 800 bytes: over 512, under 1232
    fake.start()
    yield fake
    fake.stop()


def config(upstream: FakeDNS, **sections):
    return base_config(upstream, policy={"block": ["domain:blocked.example"]}, **sections)


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_udp_and_tcp_answer_the_same(start_server, upstream):
    server = start_server(config(upstream))
    udp = server.query("example.com")
    tcp = server.query("example.com", tcp=True)
    assert udp.answer[0][0].address == tcp.answer[0][0].address == "192.0.2.1"
    assert udp.flags & dns.flags.RA and udp.flags & dns.flags.RD and udp.flags & dns.flags.QR


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback on this machine")
def test_ipv6_listener(start_server, upstream):
    raw = config(upstream)
    raw["server"]["listen"] = ["[::1]:0"]
    server = start_server(raw)
    for send in (dns.query.udp, dns.query.tcp):
        response = send(dns.message.make_query("example.com", "A"), "::1", port=server.port, timeout=3)
        assert response.answer[0][0].address == "192.0.2.1"


def test_opt_is_answered_with_opt_and_only_then(start_server, upstream):
    server = start_server(config(upstream))
    assert server.query("example.com", edns=0).edns == 0
    assert server.query("example.com", edns=None).edns == -1
    assert server.query("blocked.example", edns=None).edns == -1


def test_answer_larger_than_512_without_edns_is_truncated(start_server, upstream):
    server = start_server(config(upstream))
    for _ in range(2):  # slow path first, then the cache hit on the fast path
        response = server.query("medium.example", "TXT", edns=None)
        assert response.flags & dns.flags.TC and not response.answer
    fits = server.query("medium.example", "TXT", edns=0, payload=1232)
    assert not fits.flags & dns.flags.TC and len(fits.answer[0]) == 4


def test_client_udp_size_is_honoured_and_tcp_gets_everything(start_server, upstream):
    server = start_server(config(upstream))
    response = server.query("big.example", "TXT", edns=0, payload=4096)
    assert response.flags & dns.flags.TC  # we never send more than 1232 bytes over UDP
    full = server.query("big.example", "TXT", tcp=True)
    assert len(full.answer[0]) == 12


def _tcp_frame(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return struct.pack(">H", len(wire)) + wire


def _read_frame(sock: socket.socket) -> dns.message.Message:
    length = struct.unpack(">H", _read_exactly(sock, 2))[0]
    return dns.message.from_wire(_read_exactly(sock, length))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"the server closed the connection after {len(data)} of {size} bytes")
        data += chunk
    return data


def test_tcp_several_pipelined_queries_on_one_connection(start_server, upstream):
    upstream.answer("slow.example", "A", "192.0.2.9").delay("slow.example", 0.4)
    server = start_server(config(upstream))
    queries = [
        dns.message.make_query(name, "A") for name in ("slow.example", "example.com", "blocked.example")
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"".join(_tcp_frame(q) for q in queries))  # all three before reading anything
        answers = {r.id: r for r in (_read_frame(sock) for _ in queries)}
    assert answers[queries[0].id].answer[0][0].address == "192.0.2.9"
    assert answers[queries[1].id].answer[0][0].address == "192.0.2.1"
    assert answers[queries[2].id].rcode() == dns.rcode.NXDOMAIN


def test_tcp_idle_connection_is_closed(start_server, upstream):
    raw = config(upstream)
    raw["server"]["tcp_idle_timeout"] = 0.3
    server = start_server(raw)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(10) == b""  # the server hung up
        assert time.monotonic() - started < 2
