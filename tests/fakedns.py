"""A fake DNS server for tests: real UDP and TCP sockets on a loopback address, answering from a builder.

    upstream = FakeDNS("127.0.0.2").answer("example.com", "A", "192.0.2.1").start()
    upstream.delay("slow.example", 3.0).garbage("bad.example").silence("void.example").truncate("big.example")
    upstream.drop("lossy.example")  # the first query is lost, the next answered
    upstream.go_silent(); upstream.go_slow(2.5); upstream.go_lossy(3); upstream.recover()  # every name
    ...
    upstream.calls  # every question received: [(name, qtype, transport)]

A rule may also be a callable ``(DNSRecord request, transport) -> bytes | DNSRecord | None`` (None: say
nothing), in the style of dnspython's nanonameserver.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE, RR, DNSRecord

Handler = Callable[[DNSRecord, str], "bytes | DNSRecord | None"]


@dataclass
class FakeDNS:
    host: str = "127.0.0.2"
    port: int = 0
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    handlers: dict[str, Handler] = field(default_factory=dict)
    default_rcode: str = "NXDOMAIN"
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # query IDs received, in order
    sources: list[tuple[str, int]] = field(default_factory=list)  # (address, port) of each UDP query
    answered: int = 0  # responses sent
    # The whole server's state, switched by go_silent / go_slow / go_lossy / recover: an outage.
    state: str = "healthy"
    slow_seconds: float = 0.0
    answer_every: int = 1  # lossy: only every n-th query is answered
    _lossy_count: int = 0
    _servers: list[socketserver.BaseServer] = field(default_factory=list)

    # ---------------------------------------------------------------------------------------- builder

    def answer(self, name: str, qtype: str, *rdata: str, ttl: int = 300) -> FakeDNS:
        """Answer ``name qtype`` with zone-file style records, e.g. ``answer("a.com", "A", "1.2.3.4")``
        or ``answer("a.com", "A", "a.com. 60 IN CNAME b.com.", "b.com. 60 IN A 1.2.3.4")``."""
        lines = []
        for item in rdata:
            if " IN " in item:
                lines.append(item)
            else:
                lines.append(f"{name}. {ttl} IN {qtype} {item}")
        self.records[(name.lower().rstrip("."), qtype)] = lines
        return self

    def handle(self, name: str, handler: Handler) -> FakeDNS:
        self.handlers[name.lower().rstrip(".")] = handler
        return self

    def delay(self, name: str, seconds: float, then: Handler | None = None) -> FakeDNS:
        def slow(request: DNSRecord, transport: str) -> bytes | DNSRecord | None:
            time.sleep(seconds)
            return then(request, transport) if then else self._lookup(request)

        return self.handle(name, slow)

    def garbage(self, name: str) -> FakeDNS:
        return self.handle(name, lambda request, transport: b"\x12\x34garbage-that-is-not-dns")

    def silence(self, name: str) -> FakeDNS:
        return self.handle(name, lambda request, transport: None)

    def drop(self, name: str, count: int = 1, then: Handler | None = None) -> FakeDNS:
        """Say nothing to the first ``count`` queries for ``name`` (lost packets); answer the rest."""
        dropped = 0

        def lossy(request: DNSRecord, transport: str) -> bytes | DNSRecord | None:
            nonlocal dropped
            if dropped < count:
                dropped += 1
                return None
            return then(request, transport) if then else self._lookup(request)

        return self.handle(name, lossy)

    def rcode(self, name: str, rcode: str) -> FakeDNS:
        def reply(request: DNSRecord, transport: str) -> DNSRecord:
            response = request.reply()
            response.header.rcode = getattr(RCODE, rcode)
            return response

        return self.handle(name, reply)

    def truncate(self, name: str) -> FakeDNS:
        """Over UDP answer with TC=1 and no records; over TCP answer normally."""

        def reply(request: DNSRecord, transport: str) -> bytes | DNSRecord | None:
            if transport == "udp":
                response = request.reply()
                response.header.tc = 1
                return response
            return self._lookup(request)

        return self.handle(name, reply)

    def go_silent(self) -> FakeDNS:
        """From now on, answer nothing (an upstream that is down)."""
        self.state = "silent"
        return self

    def go_slow(self, seconds: float) -> FakeDNS:
        """From now on, answer every query ``seconds`` late."""
        self.slow_seconds = seconds
        self.state = "slow"
        return self

    def go_lossy(self, answer_every: int) -> FakeDNS:
        """From now on, answer only every ``answer_every``-th query; the rest are lost."""
        self.answer_every = answer_every
        self._lossy_count = 0
        self.state = "lossy"
        return self

    def recover(self) -> FakeDNS:
        self.state = "healthy"
        return self

    def count(self, name: str | None = None) -> int:
        return sum(1 for call in self.calls if name is None or call[0] == name)

    # ----------------------------------------------------------------------------------------- serving

    def _lookup(self, request: DNSRecord) -> DNSRecord:
        question = request.q
        name = str(question.qname).lower().rstrip(".")
        qtype = QTYPE[question.qtype]
        response = request.reply()
        lines = self.records.get((name, qtype))
        if lines is None and any(key[0] == name for key in self.records):
            lines = []  # the name exists with other types: NODATA
            response.add_auth(*RR.fromZone(f"{name}. 60 IN SOA ns.test. admin.test. 1 3600 600 86400 60"))
        if lines is None:
            response.header.rcode = getattr(RCODE, self.default_rcode)
            zone = name.split(".", 1)[-1] if "." in name else name
            response.add_auth(*RR.fromZone(f"{zone}. 60 IN SOA ns.test. admin.test. 1 3600 600 86400 60"))
            return response
        for line in lines:
            for rr in RR.fromZone(line):
                response.add_answer(rr)
        return response

    def respond(self, data: bytes, transport: str) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return None
        name = str(request.q.qname).lower().rstrip(".")
        self.ids.append(request.header.id)
        self.calls.append((name, QTYPE[request.q.qtype], transport))
        state = self.state
        if state == "silent":
            return None
        if state == "slow":
            time.sleep(self.slow_seconds)
        elif state == "lossy":
            self._lossy_count += 1
            if self._lossy_count % self.answer_every:
                return None
        handler = self.handlers.get(name)
        result = handler(request, transport) if handler else self._lookup(request)
        if result is None:
            return None
        self.answered += 1
        return result if isinstance(result, bytes) else bytes(result.pack())

    def start(self) -> FakeDNS:
        fake = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                fake.sources.append(self.client_address[:2])
                out = fake.respond(data, "udp")
                if out is not None:
                    with contextlib.suppress(OSError):  # stopped while a slow answer was pending
                        sock.sendto(out, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn = self.request
                conn.settimeout(5)
                try:
                    while True:
                        header = _read_exact(conn, 2)
                        if header is None:
                            return
                        data = _read_exact(conn, struct.unpack(">H", header)[0])
                        if data is None:
                            return
                        out = fake.respond(data, "tcp")
                        if out is not None:
                            conn.sendall(struct.pack(">H", len(out)) + out)
                except OSError:
                    return

        class UdpServer(socketserver.ThreadingUDPServer):
            daemon_threads = True
            allow_reuse_address = True

        class TcpServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        udp = UdpServer((self.host, self.port), Udp)
        self.port = udp.server_address[1]
        tcp = TcpServer((self.host, self.port), Tcp)
        for server in (udp, tcp):
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    @property
    def url(self) -> str:
        return f"udp://{self.host}:{self.port}"


def _read_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
