"""Encrypted upstreams against a real server: Unbound serving DNS over TLS and DNS over HTTPS on loopback with
a certificate from a throwaway CA, forwarding to a fake upstream. A counting relay in front of it shows how
many connections (TLS handshakes) blockdns opened, and cuts them to play a server that closes mid-stream."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from blockdns import config, dnsname
from blockdns.errors import ConfigError
from blockdns.resolve import bootstrap as bootstrap_module
from blockdns.resolve.bootstrap import Bootstrap
from blockdns.resolve.encrypted import TlsSetup
from blockdns.resolve.forward import Forwarder
from blockdns.resolve.transport import TransportStats
from blockdns.server.generation import make_upstream

from conftest import base_config, ede_of, server_metrics
from fakedns import FakeDNS
from tcprelay import TcpRelay
from tlscerts import ThrowawayCA
from unboundproc import SKIP_REASON, UNBOUND, UnboundProcess
from waiting import wait_until

pytestmark = pytest.mark.skipif(UNBOUND is None, reason=SKIP_REASON)

TLS_NAME = "dns.test"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    return ThrowawayCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def behind() -> Iterator[FakeDNS]:
    """The fake upstream Unbound forwards to."""
    fake = FakeDNS("127.0.0.2").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def unbound(
    tmp_path_factory: pytest.TempPathFactory, ca: ThrowawayCA, behind: FakeDNS
) -> Iterator[UnboundProcess]:
    cert = ca.issue(names=(TLS_NAME, "dot.test"), ips=("127.0.0.1",), stem="unbound")
    process = UnboundProcess(tmp_path_factory.mktemp("unbound"), cert, (behind.host, behind.port)).start()
    yield process
    process.stop()


@pytest.fixture
def dot_relay(unbound: UnboundProcess) -> Iterator[TcpRelay]:
    relay = TcpRelay(("127.0.0.1", unbound.tls_port)).start()
    yield relay
    relay.stop()


@pytest.fixture
def doh_relay(unbound: UnboundProcess) -> Iterator[TcpRelay]:
    relay = TcpRelay(("127.0.0.1", unbound.https_port)).start()
    yield relay
    relay.stop()


def encrypted_config(ca: ThrowawayCA | None, *upstreams: str, **resolver: object) -> dict:
    raw = base_config(None, resolver={"upstreams": list(upstreams), "timeout": 2.0, "total_timeout": 4.0})
    if ca is not None:
        raw["resolver"]["tls_ca"] = str(ca.ca_file)
    raw["resolver"].update(resolver)
    raw["policy"] = {"block": []}
    return raw


def dot(port: int, name: str = TLS_NAME) -> str:
    return f"tls://127.0.0.1:{port}#{name}"


def doh(port: int, name: str = TLS_NAME) -> str:
    return f"https://127.0.0.1:{port}/dns-query#{name}"


def upstream_counter(server, name: str) -> float:
    return server_metrics(server)[(f"blockdns_upstream_{name}_total", ())]


@pytest.mark.parametrize("kind", ["tls", "https"])
def test_answers_come_over_tls_and_https(start_server, ca, behind, dot_relay, doh_relay, kind):
    behind.answer(f"plain-{kind}.example", "A", "192.0.2.10")
    upstream = dot(dot_relay.port) if kind == "tls" else doh(doh_relay.port)
    server = start_server(encrypted_config(ca, upstream))
    response = server.query(f"plain-{kind}.example")
    assert response.rcode() == dns.rcode.NOERROR
    assert [rr.address for rr in response.answer[0]] == ["192.0.2.10"]
    assert (dot_relay if kind == "tls" else doh_relay).accepted == 1
    assert behind.count(f"plain-{kind}.example") == 1
    metrics = server_metrics(server)
    assert metrics[("blockdns_upstream_encrypted_queries_total", (("transport", kind),))] == 1
    assert metrics[("blockdns_upstream_queries_total", ())] == 1


@pytest.mark.parametrize("kind", ["tls", "https"])
def test_many_queries_share_one_connection(start_server, ca, behind, dot_relay, doh_relay, kind):
    """Pipelining (DoT) and HTTP/2 multiplexing (DoH): 300 questions, 24 at a time, one handshake."""
    names = [f"many-{kind}-{i}.example" for i in range(300)]
    for i, name in enumerate(names):
        behind.answer(name, "A", f"192.0.2.{i % 250 + 1}")
    relay = dot_relay if kind == "tls" else doh_relay
    server = start_server(encrypted_config(ca, dot(relay.port) if kind == "tls" else doh(relay.port)))
    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda name: server.query(name, timeout=10), names))
    assert [r.answer[0][0].address for r in responses] == [f"192.0.2.{i % 250 + 1}" for i in range(300)]
    assert relay.accepted == 1
    if kind == "tls":
        assert upstream_counter(server, "connections") == 1


def test_replies_out_of_order_on_one_connection(start_server, ca, behind, dot_relay):
    """A slow question does not hold up the ones pipelined behind it on the same connection."""
    behind.delay("slow-ooo.example", 2.5, then=lambda r, t: behind._lookup(r))
    behind.answer("slow-ooo.example", "A", "192.0.2.20").answer("quick-ooo.example", "A", "192.0.2.21")
    server = start_server(encrypted_config(ca, dot(dot_relay.port), timeout=4.0, total_timeout=6.0))
    server.query("warm-ooo.example")  # the connection is open
    done: dict[str, float] = {}

    def ask(name: str) -> None:
        server.query(name, timeout=10)
        done[name] = time.monotonic()

    slow = threading.Thread(target=ask, args=("slow-ooo.example",))
    slow.start()
    assert wait_until(lambda: behind.count("slow-ooo.example") == 1)  # outstanding on the connection
    ask("quick-ooo.example")
    assert "slow-ooo.example" not in done  # answered while the slow one is still outstanding
    slow.join(10)
    assert done["slow-ooo.example"] > done["quick-ooo.example"]
    assert dot_relay.accepted == 1


@pytest.mark.parametrize("kind", ["tls", "https"])
def test_a_certificate_for_another_name_is_servfail_with_ede(
    start_server, ca, behind, dot_relay, doh_relay, kind
):
    behind.answer(f"wrong-name-{kind}.example", "A", "192.0.2.30")
    upstream = dot(dot_relay.port, "other.test") if kind == "tls" else doh(doh_relay.port, "other.test")
    server = start_server(encrypted_config(ca, upstream))
    response = server.query(f"wrong-name-{kind}.example")
    assert response.rcode() == dns.rcode.SERVFAIL and not response.answer
    assert ede_of(response) == [(23, "upstream certificate verification failed")]
    assert behind.count(f"wrong-name-{kind}.example") == 0
    assert upstream_counter(server, "verify_failures") >= 1


@pytest.mark.parametrize("trust", ["other CA", "system store"])
@pytest.mark.parametrize("kind", ["tls", "https"])
def test_a_certificate_from_an_untrusted_ca_is_servfail(
    start_server, tmp_path, behind, dot_relay, doh_relay, kind, trust
):
    other = ThrowawayCA.create(tmp_path / "other", "another CA") if trust == "other CA" else None
    upstream = dot(dot_relay.port) if kind == "tls" else doh(doh_relay.port)
    server = start_server(encrypted_config(other, upstream))
    response = server.query(f"untrusted-{kind}.example")
    assert response.rcode() == dns.rcode.SERVFAIL and not response.answer
    assert ede_of(response) == [(23, "upstream certificate verification failed")]
    assert behind.count(f"untrusted-{kind}.example") == 0


@pytest.mark.parametrize("kind", ["tls", "https"])
def test_a_failing_upstream_is_not_asked_for_a_handshake_per_query(
    start_server, ca, dot_relay, doh_relay, kind
):
    relay = dot_relay if kind == "tls" else doh_relay
    upstream = dot(relay.port, "other.test") if kind == "tls" else doh(relay.port, "other.test")
    server = start_server(encrypted_config(ca, upstream))
    for i in range(5):
        response = server.query(f"refused-{kind}-{i}.example")
        assert response.rcode() == dns.rcode.SERVFAIL
        assert ede_of(response) == [(23, "upstream certificate verification failed")]
    assert relay.accepted == 1  # refused at once for a while after a failed handshake


def test_failover_from_tls_to_udp(start_server, ca, dot_relay, fake_upstream):
    """A TLS upstream with the wrong certificate name, then a plain one: the plain one answers."""
    fake_upstream.answer("failover.example", "A", "192.0.2.40")
    server = start_server(encrypted_config(ca, dot(dot_relay.port, "other.test"), fake_upstream.url))
    assert server.query("failover.example").answer[0][0].address == "192.0.2.40"
    assert dot_relay.accepted == 1
    assert fake_upstream.count("failover.example") == 1


@pytest.mark.parametrize("kind", ["tls", "https"])
def test_a_connection_closed_mid_stream_is_replaced(start_server, ca, behind, dot_relay, doh_relay, kind):
    """The server closes the connection while a query is outstanding: it is asked again on a new one."""
    name = f"cut-{kind}.example"
    behind.delay(name, 1.0, then=lambda r, t: behind._lookup(r))
    behind.answer(name, "A", "192.0.2.50")
    relay = dot_relay if kind == "tls" else doh_relay
    upstream = dot(relay.port) if kind == "tls" else doh(relay.port)
    server = start_server(encrypted_config(ca, upstream, timeout=3.0, total_timeout=5.0))
    server.query(f"before-cut-{kind}.example")
    answers: list = []
    asker = threading.Thread(target=lambda: answers.append(server.query(name, timeout=10)))
    asker.start()
    assert wait_until(lambda: behind.count(name) == 1)
    relay.cut()
    asker.join(10)
    assert answers, "no reply"
    assert answers[0].answer and answers[0].answer[0][0].address == "192.0.2.50", answers[0].to_text()
    assert relay.accepted == 2
    # and a connection the server closed while idle is replaced just as quietly
    relay.cut()
    assert server.query(f"after-cut-{kind}.example").rcode() == dns.rcode.NXDOMAIN
    assert relay.accepted == 3


@pytest.mark.parametrize("kind", ["tls", "https"])
def test_upstream_host_names_come_from_the_bootstrap_servers(
    start_server, ca, behind, dot_relay, doh_relay, kind
):
    bootstrap = FakeDNS("127.0.0.3").answer("dot.test", "A", "127.0.0.1", ttl=1).start()
    try:
        behind.answer(f"by-name-{kind}.example", "A", "192.0.2.60")
        upstream = (
            f"tls://dot.test:{dot_relay.port}"
            if kind == "tls"
            else f"https://dot.test:{doh_relay.port}/dns-query"
        )
        server = start_server(encrypted_config(ca, upstream, bootstrap=[f"127.0.0.3:{bootstrap.port}"]))
        assert server.query(f"by-name-{kind}.example").answer[0][0].address == "192.0.2.60"
        assert bootstrap.count("dot.test") >= 1  # A and AAAA
        assert (dot_relay if kind == "tls" else doh_relay).accepted == 1
    finally:
        bootstrap.stop()


def test_bootstrap_lookups_follow_the_ttl(monkeypatch):
    monkeypatch.setattr(bootstrap_module, "MIN_TTL", 0.0)
    fake = FakeDNS("127.0.0.3").answer("ttl.test", "A", "127.0.0.9", ttl=1).start()
    try:

        async def run() -> tuple[list[str], int, int]:
            resolver = Bootstrap([("127.0.0.3", fake.port)], timeout=1.0)
            first = await resolver.addresses("ttl.test")
            await resolver.addresses("ttl.test")
            cached = resolver.lookups
            await asyncio.sleep(1.1)  # the TTL runs out
            await resolver.addresses("ttl.test")
            return first, cached, resolver.lookups

        addresses, cached, later = asyncio.run(run())
        assert addresses == ["127.0.0.9"] and cached == 1 and later == 2
    finally:
        fake.stop()


def test_bootstrap_never_asks_blockdns_itself():
    with pytest.raises(ConfigError, match=r"resolver\.bootstrap"):
        Bootstrap([("127.0.0.1", 53)], avoid=[("0.0.0.0", 53)])
    assert Bootstrap([("127.0.0.1", 53), ("192.0.2.53", 53)], avoid=[("127.0.0.1", 53)]).servers == [
        ("192.0.2.53", 53)
    ]
    # A wildcard listener is every address of this host, not the router's or the ISP's resolver.
    assert Bootstrap([("198.51.100.53", 53)], avoid=[("0.0.0.0", 53), ("::", 53)]).servers == [
        ("198.51.100.53", 53)
    ]
    with pytest.raises(ConfigError, match=r"resolver\.bootstrap"):
        Bootstrap([(_an_address_of_this_host(), 53)], avoid=[("0.0.0.0", 53)])


def _an_address_of_this_host() -> str:
    """The source address of the default route (a UDP connect sends nothing), else a loopback one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 53))
        except OSError:  # no route at all
            return "127.0.0.1"
        return str(probe.getsockname()[0])


def test_an_unreadable_ca_bundle_is_a_config_error(tmp_path: Path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    settings = config.from_dict(
        encrypted_config(None, "tls://127.0.0.1#dns.test", tls_ca="ca.pem"), source=tmp_path / "blockdns.toml"
    )
    with pytest.raises(ConfigError, match=r"resolver\.tls_ca"):
        make_upstream(settings, TransportStats())
    (tmp_path / "blockdns.toml").write_text(
        "[resolver]\nmode = 'forward'\nupstreams = ['tls://127.0.0.1#dns.test']\ntls_ca = 'ca.pem'\n"
        "[lists]\nrefresh = '0'\n"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "blockdns", "config", "check", "--config", str(tmp_path / "blockdns.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 2
    assert [line for line in checked.stderr.splitlines() if "tls_ca" in line] == [
        f"blockdns: resolver.tls_ca: cannot load the CA bundle {tmp_path / 'ca.pem'}: not a PEM bundle of CA"
        " certificates (NO_CERTIFICATE_OR_CRL_FOUND)"
    ]


def test_encrypted_upstreams_on_uvloop(ca, behind, unbound):
    """``blockdns serve`` runs on uvloop, whose transports differ from asyncio's: the forwarder's DoT and DoH
    clients on it."""
    uvloop = pytest.importorskip("uvloop")
    behind.answer("uvloop.example", "A", "192.0.2.70")
    upstreams = [
        config.parse_upstream(dot(unbound.tls_port)),
        config.parse_upstream(doh(unbound.https_port)),
    ]

    async def ask(upstream: config.Upstream) -> tuple[str, ...]:
        tls = TlsSetup.build([upstream], ca_file=ca.ca_file, bootstrap=[], own=[], timeout=2.0)
        forwarder = Forwarder([upstream], timeout=2.0, total_timeout=4.0, tls=tls)
        try:
            result = await forwarder.resolve(dnsname.from_text("uvloop.example"), 1, 1, do=False, cd=False)
            return result.response.addresses
        finally:
            await forwarder.close()

    for upstream in upstreams:
        assert uvloop.run(ask(upstream)) == ("192.0.2.70",), upstream


def test_a_forward_zone_over_tls(start_server, ca, behind, dot_relay, fake_upstream):
    behind.answer("host.corp.example", "A", "192.0.2.80")
    fake_upstream.answer("www.example", "A", "192.0.2.81")
    raw = encrypted_config(ca, fake_upstream.url)
    raw["forward_zones"] = [{"name": "corp.example", "upstreams": [dot(dot_relay.port)]}]
    server = start_server(raw)
    assert server.query("host.corp.example").answer[0][0].address == "192.0.2.80"
    assert server.query("www.example").answer[0][0].address == "192.0.2.81"
    assert dot_relay.accepted == 1 and fake_upstream.count("host.corp.example") == 0


class RecordingDotServer:
    """A DNS-over-TLS server on loopback that keeps the bytes of every query and answers each with
    192.0.2.90: to see what blockdns sends inside the TLS stream."""

    def __init__(self, ca: ThrowawayCA) -> None:
        cert = ca.issue(names=(TLS_NAME,), ips=(), stem="recording")
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert.cert, cert.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.queries: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        try:
            with self.context.wrap_socket(sock, server_side=True) as tls:
                stream = tls.makefile("rb")
                while len(header := stream.read(2)) == 2:
                    query = stream.read(int.from_bytes(header))
                    self.queries.append(query)
                    reply = DNSRecord.parse(query).reply()
                    reply.add_answer(RR(reply.q.qname, QTYPE.A, rdata=A("192.0.2.90"), ttl=60))
                    data = reply.pack()
                    tls.sendall(len(data).to_bytes(2) + data)
        except (OSError, ssl.SSLError):
            return

    def stop(self) -> None:
        self.listener.close()


def test_queries_to_encrypted_upstreams_are_padded(start_server, ca):
    """RFC 8467: a query's length inside TLS says nothing about the name (a multiple of 128 bytes)."""
    recording = RecordingDotServer(ca)
    try:
        server = start_server(encrypted_config(ca, dot(recording.port)))
        for name in ("a.example", "a-much-longer-name-than-the-first.with.more.labels.example"):
            assert server.query(name).answer[0][0].address == "192.0.2.90"
        assert [len(query) for query in recording.queries] == [128, 128]
        for query in recording.queries:
            assert [option.otype for option in dns.message.from_wire(query).options] == [12]
    finally:
        recording.stop()
