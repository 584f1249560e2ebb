"""Fake authoritative DNS servers for recursion tests: real UDP and TCP sockets on loopback addresses.

    root = FakeAuthServer("127.53.0.1", [zone(".", ["a.root-servers.test."], "...records...")])
    with FakeHierarchy([root, ...]) as hierarchy:
        ...
        hierarchy["127.53.0.1"].queries   # every question received, in order (SeenQuery)
        hierarchy["127.53.0.1"].behaviour.drop = True   # or delay / garble / refuse / servfail / ...

Each server answers like an authoritative server (built on dnspython, independently of the resolver under
test): referrals with glue at zone cuts, AA answers, CNAME chains inside its zone, DNAME, NODATA for empty
non-terminals, NXDOMAIN with the SOA, REFUSED for zones it does not serve, TC over UDP when the answer does
not fit. ``extra_*`` records are added to every answer, to play a server that tries to poison caches.

:func:`build_test_hierarchy` builds the hierarchy that the recursive-resolver tests and
``bench/recursion_compare.py`` share. Servers listen on port 53 (NS glue cannot carry a port) of addresses in
a /16 of 127.0.0.0/8 picked per process (``NET``; ``BLOCKDNS_TEST_NET=127.53`` pins one); port 0 also works
for a server reached only through configured root hints.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

_IN = dns.rdataclass.IN
_MAX_CHAIN = 10


@dataclass
class Behaviour:
    """How the server misbehaves; change the attributes while it runs."""

    drop: bool = False  # say nothing
    delay: float = 0.0  # answer this many seconds late
    garble: bool = False  # send a reply cut off in the middle of its records
    refuse: bool = False  # REFUSED for everything
    servfail: bool = False  # SERVFAIL for everything
    formerr_on_edns: bool = False  # FORMERR (no OPT) for any query carrying EDNS, like an old server
    udp_limit: int | None = None  # truncate UDP answers above this size (default: EDNS size or 512)


@dataclass(frozen=True)
class SeenQuery:
    qname: str  # lowercase text with the trailing dot
    qtype: str  # "A", "NS", ...
    transport: str  # "udp" or "tcp"
    edns: bool
    do: bool
    rd: bool


def zone(origin: str, nameservers: list[str], records: str = "", *, negative_ttl: int = 300) -> dns.zone.Zone:
    """A zone with its SOA and NS records made up from ``nameservers``; ``records`` in zone-file syntax
    (names relative to ``origin`` unless they end with a dot; TTL 300 unless given)."""
    lines = [
        f"@ 300 IN SOA {nameservers[0]} hostmaster 1 1800 900 604800 {negative_ttl}",
        *(f"@ 300 IN NS {server}" for server in nameservers),
    ]
    for line in records.strip().splitlines():
        line = line.strip()
        if line and not line.startswith(";"):
            parts = line.split()
            if not parts[1].isdigit():
                parts.insert(1, "300")
            lines.append(" ".join(parts))
    return dns.zone.from_text("\n".join(lines), origin=origin, relativize=False, check_origin=True)


def _rrsets(text: str) -> list[dns.rrset.RRset]:
    """RRsets from lines of ``name ttl class type data``."""
    rrsets = []
    for line in text.strip().splitlines():
        if line.strip():
            name, ttl, rdclass, rdtype, data = line.split(maxsplit=4)
            rrsets.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, data))
    return rrsets


class FakeAuthServer:
    def __init__(
        self,
        address: str,
        zones: Iterable[dns.zone.Zone] = (),
        *,
        port: int = 53,
        extra_answer: str = "",
        extra_authority: str = "",
        extra_additional: str = "",
    ) -> None:
        self.address = address
        self.port = port
        self.zones = list(zones)
        self.extra = (_rrsets(extra_answer), _rrsets(extra_authority), _rrsets(extra_additional))
        self.behaviour = Behaviour()
        self.queries: list[SeenQuery] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> FakeAuthServer:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((self.address, self.port))
        self.port = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((self.address, self.port))
        tcp.listen(64)
        for sock in (udp, tcp):
            sock.settimeout(0.05)
        self._sockets = [udp, tcp]
        self._spawn(self._serve_udp, udp)
        self._spawn(self._serve_tcp, tcp)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    # ---------------------------------------------------------------------------------- bookkeeping

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.queries)

    def asked(self) -> list[tuple[str, str]]:
        """``(qname, qtype)`` of every query received, in order."""
        with self._lock:
            return [(query.qname, query.qtype) for query in self.queries]

    def reset(self) -> None:
        with self._lock:
            self.queries.clear()
        self.behaviour = Behaviour()

    # --------------------------------------------------------------------------------------- serving

    def _serve_udp(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.handle(data, "udp")
            if reply is None:
                continue
            delay = self.behaviour.delay
            if delay:
                timer = threading.Timer(delay, self._send_quietly, (sock, reply, peer))
                timer.daemon = True
                timer.start()
            else:
                self._send_quietly(sock, reply, peer)

    @staticmethod
    def _send_quietly(sock: socket.socket, reply: bytes, peer: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):
            sock.sendto(reply, peer)

    def _serve_tcp(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve_connection, conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        with conn:
            for _ in range(100):
                try:
                    length = _read_exactly(conn, 2)
                    if length is None:
                        return
                    data = _read_exactly(conn, int.from_bytes(length, "big"))
                    if data is None:
                        return
                except OSError:
                    return
                reply = self.handle(data, "tcp")
                if reply is None:
                    continue
                if self.behaviour.delay:
                    time.sleep(self.behaviour.delay)
                try:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except OSError:
                    return

    def handle(self, data: bytes, transport: str) -> bytes | None:
        """The reply bytes for one query (None: say nothing)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        question = query.question[0]
        seen = SeenQuery(
            question.name.to_text().lower(),
            dns.rdatatype.to_text(question.rdtype),
            transport,
            query.edns >= 0,
            bool(query.ednsflags & dns.flags.DO),
            bool(query.flags & dns.flags.RD),
        )
        with self._lock:
            self.queries.append(seen)
        behaviour = self.behaviour
        if behaviour.drop:
            return None
        if behaviour.formerr_on_edns and query.edns >= 0:
            response = dns.message.make_response(query)
            response.use_edns(False)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        response = dns.message.make_response(query, our_payload=1232)
        response.flags &= ~dns.flags.RA
        if behaviour.refuse:
            response.set_rcode(dns.rcode.REFUSED)
        elif behaviour.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            self._answer(response, question.name.canonicalize(), question.rdtype)
        wire = self._render(response, query, transport)
        if behaviour.garble:
            return wire[: len(wire) - max(3, (len(wire) - 12) // 2)]
        return wire

    def _render(self, response: dns.message.Message, query: dns.message.Message, transport: str) -> bytes:
        if transport == "tcp":
            return response.to_wire(max_size=65535)
        limit = self.behaviour.udp_limit or (min(query.payload, 1232) if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            return response.to_wire()

    # ------------------------------------------------------------------------------- authoritative

    def _zone_for(self, qname: dns.name.Name) -> dns.zone.Zone | None:
        best = None
        for candidate in self.zones:
            if qname.is_subdomain(candidate.origin) and (
                best is None or len(candidate.origin) > len(best.origin)
            ):
                best = candidate
        return best

    def _answer(self, response: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        zone_data = self._zone_for(qname)
        if zone_data is None:
            response.set_rcode(dns.rcode.REFUSED)
            return
        origin = zone_data.origin
        # Walk down from the label below the apex: the first NS set met is a zone cut (a referral), the
        # first DNAME met above the name rewrites it.
        for depth in range(len(origin) + 1, len(qname) + 1):
            name = qname.split(depth)[1]
            node = zone_data.get_node(name)
            if node is None:
                continue
            ns = node.get_rdataset(_IN, dns.rdatatype.NS)
            if ns is not None and not (qtype == dns.rdatatype.DS and name == qname):
                self._referral(response, zone_data, name, ns)
                return
            dname = node.get_rdataset(_IN, dns.rdatatype.DNAME)
            if dname is not None and name != qname:
                self._add(response.answer, name, dname)
                target = qname.relativize(name).concatenate(dname[0].target)
                cname = dns.rrset.from_text(qname, dname.ttl, _IN, dns.rdatatype.CNAME, target.to_text())
                response.answer.append(cname)
                if target.is_subdomain(origin):
                    self._resolve_in_zone(response, zone_data, target, qtype)
                else:
                    response.flags |= dns.flags.AA
                self._add_extras(response)
                return
        self._resolve_in_zone(response, zone_data, qname, qtype)
        self._add_extras(response)

    def _resolve_in_zone(
        self, response: dns.message.Message, zone_data: dns.zone.Zone, qname: dns.name.Name, qtype: int
    ) -> None:
        response.flags |= dns.flags.AA
        name = qname
        seen = set()
        for _ in range(_MAX_CHAIN):
            node = zone_data.get_node(name)
            if node is None:
                self._negative(response, zone_data)
                if not any(existing.is_subdomain(name) for existing in zone_data.nodes):
                    response.set_rcode(dns.rcode.NXDOMAIN)  # else an empty non-terminal: NODATA
                return
            rdataset = node.get_rdataset(_IN, qtype)
            if rdataset is not None:
                self._add(response.answer, name, rdataset)
                if qtype == dns.rdatatype.NS:
                    self._glue(response, zone_data, rdataset)
                return
            cname = node.get_rdataset(_IN, dns.rdatatype.CNAME)
            if cname is None or qtype == dns.rdatatype.CNAME:
                self._negative(response, zone_data)
                return
            self._add(response.answer, name, cname)
            seen.add(name)
            name = cname[0].target
            if not name.is_subdomain(zone_data.origin) or name in seen:
                return

    def _referral(
        self, response: dns.message.Message, zone_data: dns.zone.Zone, cut: dns.name.Name, ns: object
    ) -> None:
        self._add(response.authority, cut, ns)
        self._glue(response, zone_data, ns)
        self._add_extras(response)

    def _glue(self, response: dns.message.Message, zone_data: dns.zone.Zone, ns: object) -> None:
        for record in ns:  # type: ignore[attr-defined]
            target = record.target
            if not target.is_subdomain(zone_data.origin):
                continue
            node = zone_data.get_node(target)
            if node is None:
                continue
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                rdataset = node.get_rdataset(_IN, rdtype)
                if rdataset is not None:
                    self._add(response.additional, target, rdataset)

    def _negative(self, response: dns.message.Message, zone_data: dns.zone.Zone) -> None:
        soa = zone_data.get_rdataset(zone_data.origin, dns.rdatatype.SOA)
        rrset = dns.rrset.RRset(zone_data.origin, _IN, dns.rdatatype.SOA)
        rrset.update(soa)
        rrset.ttl = min(soa.ttl, soa[0].minimum)
        response.authority.append(rrset)

    @staticmethod
    def _add(section: list[dns.rrset.RRset], name: dns.name.Name, rdataset: object) -> None:
        rrset = dns.rrset.RRset(name, _IN, rdataset.rdtype)  # type: ignore[attr-defined]
        rrset.update(rdataset)  # type: ignore[arg-type]
        section.append(rrset)

    def _add_extras(self, response: dns.message.Message) -> None:
        answer, authority, additional = self.extra
        response.answer.extend(answer)
        response.authority.extend(authority)
        response.additional.extend(additional)


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


@dataclass
class FakeHierarchy:
    """A set of fake servers started and stopped together, addressed by IP."""

    servers: list[FakeAuthServer]
    _by_address: dict[str, FakeAuthServer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_address = {server.address: server for server in self.servers}

    def __enter__(self) -> FakeHierarchy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeHierarchy:
        started = []
        try:
            for server in self.servers:
                started.append(server.start())
        except BaseException:
            for server in started:
                server.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __getitem__(self, address: str) -> FakeAuthServer:
        return self._by_address[address]

    def __iter__(self) -> Iterator[FakeAuthServer]:
        return iter(self.servers)

    def reset(self) -> None:
        """Forget every query seen and every misbehaviour set."""
        for server in self.servers:
            server.reset()

    def total(self) -> int:
        return sum(server.count for server in self.servers)

    def counts(self) -> dict[str, int]:
        return {server.address: server.count for server in self.servers if server.count}


# ---------------------------------------------------------------------------------- the test hierarchy


def _hierarchy_net() -> str:
    """The /16 of 127.0.0.0/8 this process's test hierarchy listens in: ``BLOCKDNS_TEST_NET`` when set, else
    one picked at random whose port 53 is free (two test runs on one machine must not share the fixed ports
    of one network: the second one's servers could not bind)."""
    chosen = os.environ.get("BLOCKDNS_TEST_NET")
    if chosen:
        return chosen
    candidates = random.sample(range(54, 254), 20)
    for second in candidates:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((f"127.{second}.0.1", 53))
        except OSError:  # in use, or no right to bind port 53 (then any of them does as well)
            continue
        finally:
            probe.close()
        return f"127.{second}"
    return f"127.{candidates[0]}"


NET = _hierarchy_net()
ROOT_SERVERS = [f"{NET}.0.1", f"{NET}.0.2"]
TEST_SERVERS = [f"{NET}.1.1", f"{NET}.1.2"]
EXAMPLE_SERVER = f"{NET}.2.1"
GLUE_SERVERS = [f"{NET}.10.1", f"{NET}.10.2"]
LAME_SERVER = f"{NET}.11.1"  # listed in lame.test's NS set, serves nothing
LAME_ZONE_SERVER = f"{NET}.11.2"
EVIL_SERVER = f"{NET}.13.1"  # serves evil.test and sprinkles records for glue.test into its replies
EVIL_SUB_SERVER = f"{NET}.13.2"
HOSTING_SERVERS = [f"{NET}.20.1", f"{NET}.20.2"]  # hosting.example, and glueless.test through it
TARGET_SERVER = f"{NET}.21.1"

BIG_TXT_STRINGS = 24  # 24 strings of 200 bytes: an answer near 5 kB, more than any UDP reply may carry


def build_test_hierarchy() -> FakeHierarchy:
    """root → test./example. → second-level zones; see the comments for what each zone exercises."""
    root = zone(
        ".",
        ["a.root-servers.test.", "b.root-servers.test."],
        f"""
        a.root-servers.test. A {ROOT_SERVERS[0]}
        b.root-servers.test. A {ROOT_SERVERS[1]}
        test. NS ns1.nic.test.
        test. NS ns2.nic.test.
        ns1.nic.test. A {TEST_SERVERS[0]}
        ns2.nic.test. A {TEST_SERVERS[1]}
        example. NS ns1.nic.example.
        ns1.nic.example. A {EXAMPLE_SERVER}
        """,
        negative_ttl=86400,
    )
    test = zone(
        "test.",
        ["ns1.nic.test.", "ns2.nic.test."],
        f"""
        ns1.nic A {TEST_SERVERS[0]}
        ns2.nic A {TEST_SERVERS[1]}
        a.root-servers A {ROOT_SERVERS[0]}
        b.root-servers A {ROOT_SERVERS[1]}
        ; an ordinary delegation with glue
        glue NS ns1.glue
        glue NS ns2.glue
        ns1.glue A {GLUE_SERVERS[0]}
        ns2.glue A {GLUE_SERVERS[1]}
        ; a glueless delegation: the NS names are in another TLD
        glueless NS ns1.hosting.example.
        glueless NS ns2.hosting.example.
        glueless1 NS ns1.hosting.example.
        ; one of the two servers is lame (REFUSED: it does not serve the zone)
        lame NS ns1.lame
        lame NS ns2.lame
        ns1.lame A {LAME_SERVER}
        ns2.lame A {LAME_ZONE_SERVER}
        ; a zone whose server tries to poison glue.test
        evil NS ns.evil
        ns.evil A {EVIL_SERVER}
        ; two zones whose servers can only be found through each other
        loop1 NS ns.loop2.test.
        loop2 NS ns.loop1.test.
        """,
    )
    example = zone(
        "example.",
        ["ns1.nic.example."],
        f"""
        ns1.nic A {EXAMPLE_SERVER}
        hosting NS ns1.hosting
        hosting NS ns2.hosting
        ns1.hosting A {HOSTING_SERVERS[0]}
        ns2.hosting A {HOSTING_SERVERS[1]}
        target NS ns1.target
        ns1.target A {TARGET_SERVER}
        """,
    )
    glue = zone(
        "glue.test.",
        ["ns1.glue.test.", "ns2.glue.test."],
        f"""
        ns1 A {GLUE_SERVERS[0]}
        ns2 A {GLUE_SERVERS[1]}
        www A 192.0.2.1
        host.sub A 192.0.2.2
        alias CNAME www.target.example.
        a.b.c.d.e.f.g.h.i.j.k A 192.0.2.3
        """,
    )
    hosting = zone(
        "hosting.example.",
        ["ns1.hosting.example.", "ns2.hosting.example."],
        f"""
        ns1 A {HOSTING_SERVERS[0]}
        ns2 A {HOSTING_SERVERS[1]}
        """,
    )
    glueless = zone(
        "glueless.test.",
        ["ns1.hosting.example.", "ns2.hosting.example."],
        "www A 192.0.2.20\nmail A 192.0.2.21",
    )
    glueless1 = zone("glueless1.test.", ["ns1.hosting.example."], "www A 192.0.2.22")
    lame = zone(
        "lame.test.",
        ["ns1.lame.test.", "ns2.lame.test."],
        f"""
        ns1 A {LAME_SERVER}
        ns2 A {LAME_ZONE_SERVER}
        www A 192.0.2.30
        www2 A 192.0.2.31
        """,
    )
    evil = zone(
        "evil.test.",
        ["ns.evil.test."],
        f"""
        ns A {EVIL_SERVER}
        www A 192.0.2.66
        sub NS ns.sub
        ns.sub A {EVIL_SUB_SERVER}
        """,
    )
    evil_sub = zone("sub.evil.test.", ["ns.sub.evil.test."], f"ns A {EVIL_SUB_SERVER}\nwww A 192.0.2.67")
    big = " ".join('"' + chr(ord("a") + index % 26) * 200 + '"' for index in range(BIG_TXT_STRINGS))
    chain = "\n".join(f"c{index} CNAME c{index + 1}" for index in range(1, 14)) + "\nc14 A 192.0.2.54"
    target = zone(
        "target.example.",
        ["ns1.target.example."],
        f"""
        ns1 A {TARGET_SERVER}
        www A 192.0.2.50
        big TXT {big}
        legacy DNAME glue.test.
        loopa CNAME loopb
        loopb CNAME loopa
        {chain}
        """,
    )
    poison = "www.glue.test. 300 IN A 6.6.6.6"
    return FakeHierarchy(
        [
            *(FakeAuthServer(address, [root]) for address in ROOT_SERVERS),
            *(FakeAuthServer(address, [test]) for address in TEST_SERVERS),
            FakeAuthServer(EXAMPLE_SERVER, [example]),
            *(FakeAuthServer(address, [glue]) for address in GLUE_SERVERS),
            FakeAuthServer(LAME_SERVER, []),
            FakeAuthServer(LAME_ZONE_SERVER, [lame]),
            FakeAuthServer(
                EVIL_SERVER,
                [evil],
                extra_answer=poison,
                extra_authority="glue.test. 300 IN NS ns.evil.test.",
                extra_additional=f"{poison}\nns1.glue.test. 300 IN A {EVIL_SERVER}",
            ),
            FakeAuthServer(EVIL_SUB_SERVER, [evil_sub]),
            *(FakeAuthServer(address, [hosting, glueless, glueless1]) for address in HOSTING_SERVERS),
            FakeAuthServer(TARGET_SERVER, [target]),
        ]
    )
