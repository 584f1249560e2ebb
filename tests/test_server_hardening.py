"""Hardening against hostile clients and lossy paths (issue 14): TCP slots per client and under pressure,
retransmission to upstreams, EDE texts that name no address, per-client fairness of slow-path work, and the
kernel's receive drops as a metric."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.rcode
import pytest
from dnslib import RR, DNSRecord

from blockdns.resolve.forward import INITIAL_RTO
from blockdns.resolve.rtt import MIN_RTO, RttEstimate

from conftest import RunningServer, base_config, ede_of, server_metrics
from fakedns import FakeDNS
from waiting import wait_until


@pytest.fixture
def upstream() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.2").answer("example.com", "A", "192.0.2.1").start()
    yield fake
    fake.stop()


def frame(name: str) -> bytes:
    wire = dns.message.make_query(name, "A").to_wire()
    return struct.pack(">H", len(wire)) + wire


def read_frame(sock: socket.socket) -> dns.message.Message:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError("the server closed the connection")
            data += chunk
        return data

    return dns.message.from_wire(exactly(struct.unpack(">H", exactly(2))[0]))


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed ``sock`` (EOF or reset) within its timeout; False if it stays open."""
    try:
        return sock.recv(10) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def ask_over_tcp(port: int, name: str = "example.com", source: str = "127.0.0.1") -> dns.message.Message:
    with connect(port, source) as sock:
        sock.sendall(frame(name))
        return read_frame(sock)


# ------------------------------------------------------------------------------------------ TCP slots


def test_a_refused_client_holds_no_tcp_slot(start_server, upstream):
    """400 connections from outside allow_clients (more than the 256 slots) leave every slot to the
    allowed clients: each refused connection is closed before it holds one."""
    raw = base_config(upstream, policy={"block": []})
    raw["server"]["allow_clients"] = ["127.0.0.1/32"]
    server = start_server(raw)
    stats = server.server.stats
    held = [connect(server.port, "127.0.0.7") for _ in range(400)]
    try:
        assert wait_until(lambda: stats.streams_refused[("tcp", "not_allowed")] == 400, 20)
        for index in range(5):
            assert ask_over_tcp(server.port, f"n{index}.example").rcode() == dns.rcode.NXDOMAIN
        assert ask_over_tcp(server.port).answer[0][0].address == "192.0.2.1"
        assert wait_until(lambda: stats.streams_open["tcp"] == 0)
        held[0].settimeout(2)
        assert closed_by_server(held[0])
        refused = server_metrics(server)[
            ("blockdns_tcp_connections_refused_total", (("reason", "not_allowed"), ("transport", "tcp")))
        ]
        assert refused == 400
    finally:
        for sock in held:
            sock.close()


def test_one_client_address_holds_at_most_tcp_max_per_client(start_server, upstream):
    raw = base_config(upstream, policy={"block": []})
    raw["server"]["tcp_max_per_client"] = 3
    server = start_server(raw)
    stats = server.server.stats
    mine = [connect(server.port) for _ in range(3)]
    assert wait_until(lambda: stats.streams_open["tcp"] == 3)
    with connect(server.port) as extra:
        assert closed_by_server(extra)  # at once: an admitted connection would wait 10 s for a query
    assert stats.streams_refused[("tcp", "client_limit")] == 1
    assert ask_over_tcp(server.port, source="127.0.0.3").answer[0][0].address == "192.0.2.1"
    mine.pop().close()
    assert wait_until(lambda: stats.streams_open["tcp"] == 2)
    assert ask_over_tcp(server.port).answer[0][0].address == "192.0.2.1"  # a slot of its own again
    for sock in mine:
        sock.sendall(frame("example.com"))
        assert read_frame(sock).answer[0][0].address == "192.0.2.1"
        sock.close()


def slow_config(upstream: FakeDNS, **server: object) -> dict:
    raw = base_config(upstream, policy={"block": []})
    raw["server"].update(server)
    raw["resolver"]["timeout"] = 5.0
    raw["resolver"]["total_timeout"] = 6.0
    for index in range(4):
        upstream.answer(f"slow{index}.example", "A", f"192.0.2.{10 + index}").delay(f"slow{index}.example", 2)
    return raw


def test_the_longest_idle_connection_makes_room_when_every_slot_is_taken(start_server, upstream):
    server = start_server(slow_config(upstream, tcp_max_connections=4, tcp_idle_timeout=30))
    stats = server.server.stats
    idle = connect(server.port, "127.0.0.11")
    assert wait_until(lambda: stats.streams_open["tcp"] == 1)
    busy = [connect(server.port, f"127.0.0.{12 + index}") for index in range(3)]
    for index, sock in enumerate(busy):
        sock.sendall(frame(f"slow{index}.example"))  # an answer pending: not idle, never evicted
    assert wait_until(lambda: stats.streams_open["tcp"] == 4 and len(server.server.tasks) == 3)
    started = time.monotonic()
    assert ask_over_tcp(server.port, source="127.0.0.20").answer[0][0].address == "192.0.2.1"
    assert time.monotonic() - started < 1.5  # admitted at once, not after a slow answer freed a slot
    assert closed_by_server(idle)
    assert stats.streams_evicted["tcp"] == 1 and stats.streams_refused[("tcp", "full")] == 0
    assert server_metrics(server)[("blockdns_tcp_connections_evicted_total", (("transport", "tcp"),))] == 1
    for index, sock in enumerate(busy):
        assert read_frame(sock).answer[0][0].address == f"192.0.2.{10 + index}"
        sock.close()
    idle.close()


def test_a_new_connection_is_refused_only_when_no_connection_is_idle(start_server, upstream):
    server = start_server(slow_config(upstream, tcp_max_connections=2))
    stats = server.server.stats
    busy = [connect(server.port, f"127.0.0.{12 + index}") for index in range(2)]
    for index, sock in enumerate(busy):
        sock.sendall(frame(f"slow{index}.example"))
    assert wait_until(lambda: stats.streams_open["tcp"] == 2 and len(server.server.tasks) == 2)
    with connect(server.port, "127.0.0.20") as extra:
        extra.settimeout(1.5)
        assert closed_by_server(extra)
    assert stats.streams_refused[("tcp", "full")] == 1 and stats.streams_evicted["tcp"] == 0
    for index, sock in enumerate(busy):
        assert read_frame(sock).answer[0][0].address == f"192.0.2.{10 + index}"
        sock.close()


def test_idle_connections_get_a_short_timeout_when_the_slots_fill_up(start_server, upstream):
    """RFC 7766 §6.2.3: past 80% of the slots an idle connection waits half a second, not 30."""
    server = start_server(slow_config(upstream, tcp_max_connections=10, tcp_idle_timeout=30))
    stats = server.server.stats
    first = connect(server.port, "127.0.0.11")
    assert wait_until(lambda: stats.streams_open["tcp"] == 1)
    others = []
    for index in range(8):
        others.append(connect(server.port, f"127.0.0.{12 + index}"))
        assert wait_until(lambda count=index + 2: stats.streams_open["tcp"] == count)
    last = others[-1]  # the ninth of ten slots
    started = time.monotonic()
    assert closed_by_server(last)
    assert time.monotonic() - started < 3
    first.sendall(frame("example.com"))  # admitted before the pressure: still open
    assert read_frame(first).answer[0][0].address == "192.0.2.1"
    for sock in [first, *others]:
        sock.close()


# ------------------------------------------------------------------------------ upstream retransmission


def forward_to(*upstreams: FakeDNS | str, **resolver: float) -> dict:
    raw = base_config(None, policy={"block": []})
    urls = [u if isinstance(u, str) else u.url for u in upstreams]
    raw["resolver"].update({"upstreams": urls, "timeout": 2.0, "total_timeout": 10.0, **resolver})
    return raw


def timed_query(server: RunningServer, name: str) -> tuple[dns.message.Message, float]:
    started = time.monotonic()
    response = server.query(name)
    return response, time.monotonic() - started


def test_a_lost_packet_to_the_only_upstream_is_sent_again_well_inside_the_timeout(start_server, upstream):
    upstream.answer("lossy.example", "A", "192.0.2.5").drop("lossy.example")
    server = start_server(forward_to(upstream))
    response, seconds = timed_query(server, "lossy.example")
    assert response.answer[0][0].address == "192.0.2.5"
    assert seconds < 1.5  # not the 2 s timeout (nor a SERVFAIL after it)
    assert upstream.count("lossy.example") == 2
    assert server.server.stats.upstream.retransmits == 1
    assert server_metrics(server)[("blockdns_upstream_retransmits_total", ())] == 1


def test_the_retransmission_timeout_follows_the_round_trip_time():
    estimate = RttEstimate(INITIAL_RTO)  # an upstream never heard from: Unbound's 376 ms
    for _ in range(20):
        estimate.observe(0.0005, ceiling=2.0)  # a loopback upstream
    assert estimate.rto == MIN_RTO  # the floor, not half a millisecond
    for _ in range(20):
        estimate.observe(0.3, ceiling=2.0)
    assert 0.3 < estimate.rto < 0.5  # a far one: its RTT and some margin
    waited = estimate.rto
    estimate.back_off(waited, ceiling=2.0)
    estimate.back_off(waited, ceiling=2.0)  # a second query late at the same time backs off no further
    assert estimate.rto == 2 * waited
    estimate.back_off(2 * waited, ceiling=1.2)
    assert estimate.rto == 1.2  # never above the ceiling it is given (the per-try timeout)
    estimate.observe(0.3, ceiling=2.0)
    assert estimate.rto < waited  # a reply brings it back


def test_a_late_reply_sends_the_question_to_the_next_upstream_well_before_the_timeout(start_server):
    first, second = FakeDNS("127.0.0.2").start(), FakeDNS("127.0.0.3").start()
    try:
        first.silence("late.example")
        second.answer("late.example", "A", "192.0.2.6")
        server = start_server(forward_to(first, second))
        response, seconds = timed_query(server, "late.example")
        assert response.answer[0][0].address == "192.0.2.6" and seconds < 1.5
        assert first.count("late.example") == 1 and second.count("late.example") == 1
    finally:
        first.stop()
        second.stop()


def test_a_lost_packet_is_asked_again_of_the_same_upstream_rather_than_of_a_held_one(start_server):
    """The second upstream is held after it stayed silent; when the first loses a packet, the question goes
    to the first again, not to the one known to be silent."""
    silent, working = FakeDNS("127.0.0.3").start(), FakeDNS("127.0.0.2").start()
    try:
        silent.silence("first.example").silence("lossy.example")
        working.answer("first.example", "A", "192.0.2.4").answer("lossy.example", "A", "192.0.2.5")
        server = start_server(forward_to(silent, working))
        assert server.query("first.example").answer[0][0].address == "192.0.2.4"  # the silent one is held
        working.drop("lossy.example")
        response, seconds = timed_query(server, "lossy.example")
        assert response.answer[0][0].address == "192.0.2.5" and seconds < 1.5
        assert working.count("lossy.example") == 2 and silent.count("lossy.example") == 0
    finally:
        silent.stop()
        working.stop()


def test_a_forged_reply_from_another_address_is_ignored_while_retransmitting(start_server, upstream):
    """The first query's reply comes from an off-path address with the right ID, question and port; the
    connected socket never hands it over, and the retransmission's genuine reply is the answer."""
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger.bind(("127.0.0.9", upstream.port))
    asked = 0

    def forge_the_first(request: DNSRecord, transport: str) -> DNSRecord | None:
        nonlocal asked
        asked += 1
        reply = request.reply()
        if asked == 1:
            reply.add_answer(*RR.fromZone("forged.example. 60 IN A 6.6.6.6"))
            forger.sendto(bytes(reply.pack()), upstream.sources[-1])
            return None
        reply.add_answer(*RR.fromZone("forged.example. 60 IN A 192.0.2.7"))
        return reply

    upstream.handle("forged.example", forge_the_first)
    server = start_server(forward_to(upstream))
    try:
        response, seconds = timed_query(server, "forged.example")
    finally:
        forger.close()
    assert response.answer[0][0].address == "192.0.2.7" and seconds < 1.5
    assert upstream.count("forged.example") == 2


def test_the_ede_text_of_an_upstream_failure_names_no_address(start_server, upstream):
    upstream.silence("quiet.example")
    for target, code in ((upstream.url, 22), ("udp://127.0.0.4:9", 23)):  # silent; port unreachable
        server = start_server(forward_to(target, timeout=0.3, total_timeout=1.0))
        response = server.query("quiet.example")
        assert response.rcode() == dns.rcode.SERVFAIL
        ((ede_code, text),) = ede_of(response)
        assert ede_code == code and text
        host, port = target.removeprefix("udp://").split(":")
        assert host not in text and port not in text, text


# ---------------------------------------------------------------------------- slow-path fairness, drops


def test_a_flooding_client_cannot_take_every_slow_path_slot(start_server, upstream):
    """One client floods names its upstream never answers in time; another client's questions still get
    their share of ``max_inflight`` and are answered."""
    raw = base_config(upstream, policy={"block": []})
    raw["server"]["max_inflight"] = 8  # a client may hold 2
    raw["resolver"].update(timeout=5.0, total_timeout=6.0)  # the flood's questions stay in flight
    server = start_server(raw)
    for index in range(40):
        upstream.handle(f"q{index}.hang.example", lambda request, transport: time.sleep(6))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.bind(("127.0.0.1", 0))
        for index in range(40):
            query = dns.message.make_query(f"q{index}.hang.example", "A").to_wire()
            flood.sendto(query, ("127.0.0.1", server.port))
        stats = server.server.stats
        assert wait_until(lambda: stats.dropped_client_share >= 38)
        assert len(server.server.tasks) == 2
        for name in ("example.com", "other.example"):
            response = server.query(name, source="127.0.0.3", timeout=2)
            assert response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    assert stats.dropped_overload == 0
    assert server_metrics(server)[("blockdns_dropped_client_share_total", ())] >= 38


def test_the_kernels_receive_drops_are_counted(start_server, upstream):
    """While the server's loop is stalled, a burst overflows a small receive buffer; the kernel's drop
    count shows up in the metrics once the loop runs again."""
    server = start_server(base_config(upstream, policy={"block": []}))
    sock = server.server.listeners[0].udp.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # raised to the kernel's minimum: a few packets
    assert server_metrics(server)[("blockdns_udp_receive_drops_total", ())] == 0
    stalled, resume = threading.Event(), threading.Event()

    def stall() -> None:
        stalled.set()
        resume.wait(10)

    server.loop.call_soon_threadsafe(stall)
    assert stalled.wait(5)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as burst:
            query = dns.message.make_query("example.com", "A").to_wire()
            for _ in range(200):
                burst.sendto(query, ("127.0.0.1", server.port))
    finally:
        resume.set()
    stats = server.server.stats
    assert wait_until(lambda: stats.udp_receive_drops >= 150)
    assert server_metrics(server)[("blockdns_udp_receive_drops_total", ())] >= 150
    assert server.query("example.com").answer[0][0].address == "192.0.2.1"
