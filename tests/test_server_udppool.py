"""The forwarder's pooled UDP sockets (blockdns/resolve/udppool.py): many queries share a socket, yet a
reply only ever reaches the query it answers; forged replies are dropped and counted; ports keep rotating."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable

import dns.message
import pytest
from dnslib import RR, DNSRecord

from blockdns.resolve import forward, udppool

from conftest import base_config

FORGED_ADDRESS = "6.6.6.6"


def address_for(index: int) -> str:
    return f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"


class OutOfOrderUpstream:
    """A UDP upstream on loopback that holds ``expected`` queries, then, from its own address and port (an
    attacker who knows the port, the worst case): sends forged replies — IDs no query carries with a
    question in flight, and each query's ID with another query's question — then the genuine replies in a
    shuffled order, then a second copy of some genuine replies (late: their queries are answered)."""

    def __init__(self, expected: int, seed: int) -> None:
        self.expected, self.random = expected, random.Random(seed)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.forged = self.late = 0
        # What the server has read so far (set once it runs): the sender waits for it every few datagrams,
        # so that a burst never overflows the socket's receive buffer (a drop would go uncounted).
        self.progress: Callable[[], int] = lambda: 0
        self.sent = 0
        self.received = 0  # queries received so far
        self.sources: set[tuple[str, int]] = set()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as err:  # reported by the test
            self.error = err

    def _send(self, data: bytes, source: tuple[str, int]) -> None:
        self.sock.sendto(data, source)
        self.sent += 1
        if self.sent % 16 == 0:
            deadline = time.monotonic() + 5
            while self.progress() < self.sent and time.monotonic() < deadline:
                time.sleep(0.001)

    def _serve(self) -> None:
        requests: list[tuple[DNSRecord, tuple[str, int]]] = []
        deadline = time.monotonic() + 20
        while len(requests) < self.expected and time.monotonic() < deadline:
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            requests.append((DNSRecord.parse(data), source))
            self.sources.add(source)
            self.received = len(requests)
        ids = {request.header.id for request, _ in requests}
        unused = [i for i in range(65536) if i not in ids]
        for index, (request, source) in enumerate(requests):
            forged = request.reply()
            forged.header.id = self.random.choice(unused)
            forged.add_answer(*RR.fromZone(f"{request.q.qname} 60 IN A {FORGED_ADDRESS}"))
            self._send(bytes(forged.pack()), source)
            other, other_source = requests[(index + 1) % len(requests)]
            if other_source == source:  # the other query's question under this query's ID
                crossed = other.reply()
                crossed.header.id = request.header.id
                crossed.add_answer(*RR.fromZone(f"{other.q.qname} 60 IN A {FORGED_ADDRESS}"))
                self._send(bytes(crossed.pack()), source)
                self.forged += 1
            self._send(b"\x00", source)  # too short to be anything
            self.forged += 2
        genuine = []
        for request, source in requests:
            reply = request.reply()
            index = int(str(request.q.qname).split(".")[0][1:])
            reply.add_answer(*RR.fromZone(f"{request.q.qname} 60 IN A {address_for(index)}"))
            genuine.append((bytes(reply.pack()), source))
        self.random.shuffle(genuine)
        for data, source in genuine:
            self._send(data, source)
        for data, source in genuine[: len(genuine) // 4]:
            self.sock.sendto(data, source)
            self.late += 1

    def stop(self) -> None:
        self.thread.join(25)
        self.sock.close()


def ask_all(port: int, count: int, forwarded: Callable[[], int]) -> dict[int, dns.message.Message]:
    """Send ``count`` queries from one client socket, each batch of 16 once the last has been forwarded
    (a burst could overflow a receive buffer on the way); the responses by query index."""
    answers: dict[int, dns.message.Message] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.settimeout(0.5)
        for index in range(count):
            query = dns.message.make_query(f"q{index}.pool.example", "A")
            query.id = index  # unique: 150 random IDs collide about one run in six
            client.sendto(query.to_wire(), ("127.0.0.1", port))
            if index % 16 == 15:
                deadline = time.monotonic() + 5
                while forwarded() <= index and time.monotonic() < deadline:
                    time.sleep(0.001)
        deadline = time.monotonic() + 20
        while len(answers) < count and time.monotonic() < deadline:
            try:
                data = client.recv(4096)
            except TimeoutError:
                continue
            response = dns.message.from_wire(data)
            answers[response.id] = response
    return answers


@pytest.mark.parametrize(("seed", "max_uses"), [(1, 1000), (2, 1000), (3, 16)])
def test_replies_out_of_order_and_forged_on_one_socket_reach_only_their_query(
    start_server, monkeypatch: pytest.MonkeyPatch, seed: int, max_uses: int
) -> None:
    """With 1000 uses one socket carries all 150 queries; with 16 each is retired while its queries are
    still waiting, and must still hand their replies over."""
    monkeypatch.setattr(udppool, "SIZE", 1)  # every query in flight shares the one socket
    monkeypatch.setattr(udppool, "MAX_USES", max_uses)
    # The upstream holds every query until it has all 150: on a busy machine that takes longer than the
    # first retransmission timeout, and a retransmitted query would take the place of one never sent.
    monkeypatch.setattr(forward, "INITIAL_RTO", 10.0)
    count = 150
    upstream = OutOfOrderUpstream(count, seed)
    try:
        raw = base_config(None, resolver={"timeout": 10.0, "total_timeout": 20.0})
        raw["resolver"]["upstreams"] = [f"udp://127.0.0.2:{upstream.port}"]
        raw["policy"] = {"block": []}
        server = start_server(raw)
        stats = server.server.stats.upstream
        upstream.progress = lambda: stats.mismatched + stats.replies
        answers = ask_all(server.port, count, lambda: upstream.received)
    finally:
        upstream.stop()
    assert upstream.error is None, upstream.error
    assert len(upstream.sources) == -(-count // max_uses)  # pooled sockets carried them all
    assert len(answers) == count
    for index, response in answers.items():
        assert [rr.address for rr in response.answer[0]] == [address_for(index)], index
    assert stats.mismatched == upstream.forged  # sent before the genuine replies: all read by now
    assert stats.replies == count
    assert stats.retransmits == 0
    if max_uses > count:  # the socket is still open: the late copies arrive, after the genuine replies
        deadline = time.monotonic() + 5
        while stats.late < upstream.late and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stats.late == upstream.late


def test_pooled_sockets_rotate_ports_and_ids_stay_random(
    start_server, fake_upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(udppool, "SIZE", 4)
    monkeypatch.setattr(udppool, "MAX_USES", 3)
    raw = base_config(fake_upstream)
    raw["policy"] = {"block": []}
    server = start_server(raw)
    for i in range(60):
        server.query(f"n{i}.example")
    ports = [port for _, port in fake_upstream.sources]
    per_port = {port: ports.count(port) for port in ports}
    assert max(per_port.values()) <= 3  # a socket carries at most MAX_USES queries
    assert len(per_port) >= 20  # so 60 queries went out from at least 20 ports
    assert len(set(fake_upstream.ids)) >= 57  # 60 draws from 65536: collisions are rare


def test_a_socket_ages_out(start_server, fake_upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udppool, "SIZE", 1)
    monkeypatch.setattr(udppool, "MAX_AGE", 0.05)
    raw = base_config(fake_upstream)
    raw["policy"] = {"block": []}
    server = start_server(raw)
    server.query("first.example")
    time.sleep(0.1)  # not synchronisation: the time that must pass for the socket to be too old
    server.query("second.example")
    assert len({port for _, port in fake_upstream.sources}) == 2


def test_ids_are_unique_on_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when the random source repeats itself, no two queries on one socket share an ID."""
    draws = iter([7, 7, 7, 9, 7, 9, 11])

    class Repeating(udppool.RandomIds):
        def next(self) -> int:
            return next(draws)

    monkeypatch.setattr(udppool, "random_ids", Repeating())

    class Bare(udppool.PooledSocket):
        def __init__(self) -> None:
            self.queries = {}

    pooled = Bare()
    taken = []
    for _ in range(3):
        qid = pooled.new_id()
        taken.append(qid)
        pooled.queries[qid] = object()  # type: ignore[assignment]
    assert taken == [7, 9, 11]


def test_random_ids_cover_the_id_space_uniformly() -> None:
    ids = udppool.RandomIds()
    drawn = [ids.next() for _ in range(65536)]  # 128 blocks read from os.urandom
    assert all(0 <= qid < 65536 for qid in drawn)
    assert len(set(drawn)) > 40_000  # 65,536 uniform draws cover about 63% of the space
    high = sum(qid >= 32768 for qid in drawn)
    assert 31_500 < high < 34_000  # both halves alike (about 16 sigma of room)
