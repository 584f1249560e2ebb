"""Encrypted DNS for clients through the real server: DNS over TLS (RFC 7858) and over HTTPS (RFC 8484) with
real clients (dnspython, kdig, dig, curl, httpx), a throwaway CA made at test time, client IDs, DDR
(RFC 9462), EDNS padding (RFC 7830/8467), bad certificates, garbage, and a renewed certificate."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

from blockdns import config
from blockdns.errors import ConfigError
from blockdns.ops.querylog_rows import Row
from blockdns.server import tlsaccept
from blockdns.server.app import Server
from blockdns.server.streamwire import min_ttl, pad_response, query_padded
from blockdns.server.tlsfiles import load_certificate

from conftest import RunningServer, base_config, server_metrics
from fakedns import FakeDNS
from ports import free_port
from tlscerts import SERVER_NAME, ThrowawayCA
from waiting import wait_until

H2 = dns.query.HTTPVersion.H2


class RowSink:
    """Stands in for the query log: keeps every row the server offers."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def offer(self, row: tuple[Any, ...]) -> None:
        self.rows.append(Row(*row))


@pytest.fixture
def ca(tmp_path: Path) -> ThrowawayCA:
    return ThrowawayCA.create(tmp_path)


@pytest.fixture
def upstream():
    fake = FakeDNS("127.0.0.2")
    fake.answer("www.example.org", "A", "192.0.2.1", ttl=300)
    fake.answer("short.example.org", "A", "192.0.2.2", ttl=42)
    fake.answer("chat.deepseek.com", "A", "192.0.2.3")
    fake.answer("local.example.org", "A", "127.0.0.1")
    fake.start()
    yield fake
    fake.stop()


class Encrypted:
    """A running server with DoT and DoH listeners, and how to reach them."""

    def __init__(self, running: RunningServer, ca: ThrowawayCA, tls_port: int, https_port: int) -> None:
        self.running = running
        self.ca = ca
        self.tls_port = tls_port
        self.https_port = https_port
        self.sink = RowSink()
        assert running.server is not None
        running.server.engine.accounting.querylog = self.sink  # type: ignore[assignment]

    @property
    def server(self) -> Server:
        assert self.running.server is not None
        return self.running.server

    @property
    def url(self) -> str:
        return f"https://{SERVER_NAME}:{self.https_port}/dns-query"

    def context(self, hostname_check: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.ca_file))
        context.check_hostname = hostname_check
        return context

    def dot(self, name: str, rdtype: str = "A", sni: str = SERVER_NAME) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return dns.query.tls(
            query, "127.0.0.1", port=self.tls_port, ssl_context=self.context(), server_hostname=sni, timeout=5
        )

    def doh(self, name: str, rdtype: str = "A", *, post: bool = True, path: str = "") -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return dns.query.https(
            query, self.url + path, bootstrap_address="127.0.0.1", verify=self.context(), timeout=5,
            post=post, http_version=H2,
        )  # fmt: skip

    def http(self, http2: bool = True) -> httpx.Client:
        """An httpx client that reaches the DoH listener at dns.test (resolved to 127.0.0.1 by hand)."""
        transport = httpx.HTTPTransport(verify=self.context(), http2=http2, local_address="127.0.0.1")
        return httpx.Client(transport=transport, base_url=f"https://127.0.0.1:{self.https_port}", timeout=5,
                            headers={"host": f"{SERVER_NAME}:{self.https_port}"},
                            verify=self.context())  # fmt: skip

    def raw_dot(self, sni: str = SERVER_NAME) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.tls_port), timeout=5)
        return self.context().wrap_socket(sock, server_hostname=sni)


def toml_text(raw: dict[str, Any]) -> str:
    """A config dict as TOML (the few types these configs use; JSON strings are TOML basic strings)."""
    lines: list[str] = []
    for section, values in raw.items():
        tables = values if isinstance(values, list) else [values]
        for table in tables:
            lines.append(f"[[{section}]]" if isinstance(values, list) else f"[{section}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def encrypted_config(
    ca: ThrowawayCA, tmp_path: Path, upstream: FakeDNS, **server: Any
) -> tuple[dict[str, Any], int, int]:
    cert, key = ca.issue(tmp_path)
    tls_port, https_port = free_port(), free_port()
    raw = base_config(upstream, policy={"block": []})
    raw["server"] = {
        "listen": ["127.0.0.1:0"],
        "tls_listen": [f"127.0.0.1:{tls_port}"],
        "https_listen": [f"127.0.0.1:{https_port}"],
        "tls_cert": str(cert),
        "tls_key": str(key),
        **server,
    }
    return raw, tls_port, https_port


@pytest.fixture
def encrypted(start_server, ca: ThrowawayCA, tmp_path: Path, upstream: FakeDNS):
    def start(
        groups: list[dict[str, Any]] | None = None, resolver: dict[str, Any] | None = None, **server: Any
    ) -> Encrypted:
        raw, tls_port, https_port = encrypted_config(ca, tmp_path, upstream, **server)
        if groups is not None:
            raw["groups"] = groups
        raw["resolver"].update(resolver or {})
        (tmp_path / "blockdns.toml").write_text(toml_text(raw))  # what a reload reads
        return Encrypted(start_server(raw), ca, tls_port, https_port)

    return start


def dot_exchange(sock: ssl.SSLSocket, queries: list[bytes]) -> list[bytes]:
    """Send every query on one DoT connection at once (pipelined), then read as many responses."""
    sock.sendall(b"".join(struct.pack(">H", len(query)) + query for query in queries))
    responses = []
    for _ in queries:
        header = _read_exactly(sock, 2)
        responses.append(_read_exactly(sock, struct.unpack(">H", header)[0]))
    return responses


def _read_exactly(sock: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


# ------------------------------------------------------------------------------------------------ DoT


def test_dot_answers_and_counts_the_transport(encrypted):
    server = encrypted()
    response = server.dot("www.example.org")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0][0].address == "192.0.2.1"
    assert [row.transport for row in server.sink.rows] == ["tls"]
    metrics = server_metrics(server.running)
    assert metrics[("blockdns_queries_by_transport_total", (("transport", "tls"),))] == 1


def test_dot_pipelined_queries_on_one_connection_all_get_answers(encrypted):
    server = encrypted()
    names = ["www.example.org", "short.example.org", "nothing.example.org"] * 4
    queries = [dns.message.make_query(name, "A", id=index + 1).to_wire() for index, name in enumerate(names)]
    with server.raw_dot() as sock:
        assert sock.selected_alpn_protocol() is None  # the client offered none; the server imposes none
        responses = [dns.message.from_wire(data) for data in dot_exchange(sock, queries)]
    assert sorted(response.id for response in responses) == list(range(1, len(names) + 1))
    by_id = {response.id: response for response in responses}
    assert by_id[1].answer and by_id[3].rcode() == dns.rcode.NXDOMAIN


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_dot_negotiates_alpn_dot_and_tls12_at_least(encrypted):
    server = encrypted()
    context = server.context()
    context.set_alpn_protocols(["dot"])
    with (
        socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as sock,
    ):
        assert sock.selected_alpn_protocol() == "dot"
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
    old = server.context()
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.TLSv1
    with (
        socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        old.wrap_socket(raw, server_hostname=SERVER_NAME)


def test_padded_queries_get_responses_padded_to_468_byte_blocks(encrypted):
    server = encrypted()
    padded = dns.message.make_query("www.example.org", "A", use_edns=0, pad=128).to_wire()
    plain = dns.message.make_query("www.example.org", "A", use_edns=0).to_wire()
    assert query_padded(padded) and not query_padded(plain)
    with server.raw_dot() as sock:
        first, second = dot_exchange(sock, [padded, plain])
    assert len(first) % 468 == 0
    assert any(option.otype == dns.edns.PADDING for option in dns.message.from_wire(first).options)
    assert len(second) % 468 != 0
    assert dns.message.from_wire(first).answer == dns.message.from_wire(second).answer
    with server.http() as client:  # DoH pads too
        reply = client.post("/dns-query", content=padded, headers={"content-type": "application/dns-message"})
    assert reply.status_code == 200 and len(reply.content) % 468 == 0


def test_a_client_checking_another_name_refuses_the_certificate(encrypted):
    server = encrypted()
    with pytest.raises(ssl.SSLCertVerificationError):
        server.dot("www.example.org", sni="wrong.example.net")
    assert server.dot("www.example.org").rcode() == dns.rcode.NOERROR


def test_garbage_over_tcp_and_over_tls_leaves_the_server_answering(encrypted):
    server = encrypted()
    junk = os.urandom(4096)
    with socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as sock:
        sock.sendall(junk)  # no TLS at all: the handshake fails and the connection is closed
        assert wait_until(lambda: sock.recv(4096) == b"", seconds=10)
    with server.raw_dot() as sock:  # TLS, then frames of junk, then a frame that lies about its length
        for size in (0, 1, 11, 12, 300):
            sock.sendall(struct.pack(">H", size) + os.urandom(size))
        sock.sendall(b"\xff\xff" + b"x" * 10)
        sock.shutdown(socket.SHUT_WR)
    with server.raw_dot() as sock:  # a TLS alert-sized mess in the middle of the stream
        sock.sendall(b"\x00")
    assert server.dot("www.example.org").rcode() == dns.rcode.NOERROR
    assert server.doh("www.example.org").rcode() == dns.rcode.NOERROR


@pytest.mark.skipif(shutil.which("kdig") is None, reason="kdig (knot-dnsutils) is not installed")
def test_kdig_over_tls_and_https(encrypted):
    server = encrypted()
    common = ["kdig", "+tls-ca=" + str(server.ca.ca_file), "+tls-hostname=" + SERVER_NAME, "+timeout=5"]
    tls = subprocess.run(
        [*common, "@127.0.0.1", "-p", str(server.tls_port), "+tls", "www.example.org", "A"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert tls.returncode == 0, tls.stderr
    assert "192.0.2.1" in tls.stdout and "NOERROR" in tls.stdout
    assert "PADDING" in tls.stdout  # kdig pads over TLS, and so do we (RFC 8467)
    https = subprocess.run(
        [*common, "@127.0.0.1", "-p", str(server.https_port), "+https", "www.example.org", "A"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert https.returncode == 0, https.stderr
    assert "192.0.2.1" in https.stdout and "NOERROR" in https.stdout
    assert sorted(row.transport for row in server.sink.rows) == ["https", "tls"]


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) is not installed")
def test_dig_over_tls_and_https(encrypted):
    server = encrypted()
    common = [
        "dig",
        "+tls-ca=" + str(server.ca.ca_file),
        "+tls-hostname=" + SERVER_NAME,
        "+time=5",
        "+tries=1",
    ]
    for port, mode in ((server.tls_port, "+tls"), (server.https_port, "+https")):
        result = subprocess.run(
            [*common, "@127.0.0.1", "-p", str(port), mode, "www.example.org", "A"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "192.0.2.1" in result.stdout and "NOERROR" in result.stdout
    assert sorted(row.transport for row in server.sink.rows) == ["https", "tls"]


# ------------------------------------------------------------------------------------------------ DoH


def test_doh_get_and_post_over_http2(encrypted):
    server = encrypted()
    assert server.doh("www.example.org", post=True).answer[0][0].address == "192.0.2.1"
    assert server.doh("www.example.org", post=False).answer[0][0].address == "192.0.2.1"
    assert [row.transport for row in server.sink.rows] == ["https", "https"]
    metrics = server_metrics(server.running)
    assert metrics[("blockdns_queries_by_transport_total", (("transport", "https"),))] == 2


@pytest.mark.parametrize("http2", [True, False], ids=["HTTP/2", "HTTP/1.1"])
def test_doh_cache_control_is_the_smallest_ttl(encrypted, http2):
    server = encrypted()
    query = dns.message.make_query("short.example.org", "A")
    query.id = 0  # RFC 8484 §4.1: 0, so that caches see one URL for one question
    encoded = base64.urlsafe_b64encode(query.to_wire()).rstrip(b"=").decode()
    with server.http(http2) as client:
        reply = client.get("/dns-query", params={"dns": encoded})
    assert reply.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/dns-message"
    ttl = dns.message.from_wire(reply.content).answer[0].ttl
    assert 40 <= ttl <= 42
    assert reply.headers["cache-control"] == f"max-age={ttl}"
    nx = dns.message.make_query("nothing.example.org", "A").to_wire()
    with server.http(http2) as client:
        reply = client.post("/dns-query", content=nx, headers={"content-type": "application/dns-message"})
    assert dns.message.from_wire(reply.content).rcode() == dns.rcode.NXDOMAIN
    assert reply.headers["cache-control"] == f"max-age={min_ttl(reply.content)}"


def test_doh_bad_requests_get_4xx_and_the_server_keeps_answering(encrypted):
    server = encrypted()
    query = dns.message.make_query("www.example.org", "A").to_wire()
    message = {"content-type": "application/dns-message"}
    with server.http() as client:
        assert client.get("/dns-query").status_code == 400  # no dns=
        assert client.get("/dns-query", params={"dns": "!!not base64!!"}).status_code == 400
        assert client.get("/dns-query", params={"dns": "AAAA"}).status_code == 400  # 3 bytes: no header
        response = dns.message.make_response(dns.message.make_query("x.example", "A")).to_wire()
        assert client.post("/dns-query", content=response, headers=message).status_code == 400  # QR set
        assert (
            client.post("/dns-query", content=query, headers={"content-type": "text/plain"}).status_code
            == 415
        )
        assert client.post("/dns-query", content=b"\0" * 70000, headers=message).status_code == 413
        assert client.put("/dns-query", content=query, headers=message).status_code == 405
        assert client.get("/other").status_code == 404
        assert client.get("/dns-query/bad..name").status_code == 404
        assert client.post("/dns-query", content=os.urandom(40), headers=message).status_code in (200, 400)
        assert client.post("/dns-query", content=query, headers=message).status_code == 200


def test_garbage_over_http2_leaves_the_server_answering(encrypted):
    server = encrypted(tcp_idle_timeout=2)  # a connection left waiting for the rest of a frame is closed soon
    context = server.context()
    context.set_alpn_protocols(["h2"])
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    randomly = random.Random(11)
    cases = [
        randomly.randbytes(2048),  # no preface
        preface + randomly.randbytes(2048),  # a preface, then junk frames
        preface + settings + b"\x00\x00\x10\x01\x05\x00\x00\x00\x01" + randomly.randbytes(16),  # bad HPACK
        preface + settings + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01",  # a 16 MiB DATA frame announced
        preface + settings + b"\x00\x01\x00\x00\x00",  # half a frame header, then nothing
    ]
    for junk in cases:
        with socket.create_connection(("127.0.0.1", server.https_port)) as raw:
            raw.settimeout(10)
            with context.wrap_socket(raw, server_hostname=SERVER_NAME) as sock:
                assert sock.selected_alpn_protocol() == "h2"
                sock.sendall(junk)
                assert _goaway_or_closed(sock), junk[:40]
    assert server.doh("www.example.org").rcode() == dns.rcode.NOERROR


def _goaway_or_closed(sock: ssl.SSLSocket) -> bool:
    """Whether the server answers an HTTP/2 connection gone wrong with GOAWAY (frame type 7) or closes it."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            break
        if not chunk:
            return True
        data += chunk
        pos = 0
        while pos + 9 <= len(data):
            if data[pos + 3] == 7:
                return True
            pos += 9 + int.from_bytes(data[pos : pos + 3], "big")
    return False


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_resolves_through_doh(encrypted):
    server = encrypted()
    result = subprocess.run(
        ["curl", "--silent", "--max-time", "10", "--connect-timeout", "3", "--cacert", str(server.ca.ca_file),
         "--resolve", f"{SERVER_NAME}:{server.https_port}:127.0.0.1", "--doh-url", server.url,
         "http://local.example.org:9/"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    # 7: resolved (to 127.0.0.1, by our DoH answer) and then refused on port 9; 6 would be "not resolved"
    assert result.returncode == 7, (result.returncode, result.stderr)
    assert {row.transport for row in server.sink.rows} == {"https"}
    assert {row[3] for row in server.sink.rows} >= {b"\x05local\x07example\x03org\x00"}


def test_trusted_proxies_name_the_client_and_others_do_not(encrypted):
    server = encrypted(trusted_proxies=["127.0.0.1/32"])
    query = dns.message.make_query("www.example.org", "A").to_wire()
    headers = {"content-type": "application/dns-message"}
    with server.http() as client:
        client.post("/dns-query", content=query, headers={**headers, "x-forwarded-for": "6.6.6.6, 10.1.2.3"})
        client.post("/dns-query", content=query, headers={**headers, "forwarded": 'for="[2001:db8::7]:4711"'})
        client.post("/dns-query", content=query, headers={**headers, "x-forwarded-for": "junk"})
    assert [row[1] for row in server.sink.rows] == ["10.1.2.3", "2001:db8::7", "127.0.0.1"]
    server.sink.rows.clear()
    untrusting = encrypted_untrusted(server)
    with untrusting.http() as client:
        client.post("/dns-query", content=query, headers={**headers, "x-forwarded-for": "10.1.2.3"})
    assert [row[1] for row in untrusting.sink.rows] == ["127.0.0.1"]


def encrypted_untrusted(server: Encrypted) -> Encrypted:
    """The same server after a reload that trusts no proxy."""
    assert server.server.doh is not None
    server.server.doh.proxies.networks = ()
    return server


# ------------------------------------------------------------------------------------------ client IDs


def test_client_ids_by_doh_path_and_dot_sni_pick_the_group(encrypted):
    server = encrypted(
        groups=[
            {"name": "office", "clients": ["127.0.0.0/8"]},
            {"name": "roaming", "client_ids": ["laptop7"], "block": ["vendor:deepseek"]},
        ]
    )
    assert server.doh("chat.deepseek.com").rcode() == dns.rcode.NOERROR  # by address: office
    assert server.dot("chat.deepseek.com").rcode() == dns.rcode.NOERROR
    assert server.doh("chat.deepseek.com", path="/laptop7").rcode() == dns.rcode.NXDOMAIN
    assert server.dot("chat.deepseek.com", sni=f"laptop7.{SERVER_NAME}").rcode() == dns.rcode.NXDOMAIN
    assert server.dot("chat.deepseek.com", sni=f"LAPTOP7.{SERVER_NAME}").rcode() == dns.rcode.NXDOMAIN
    query = dns.message.make_query("chat.deepseek.com", "A").to_wire()
    with server.http() as client:  # DoH with the ID in the SNI (and none in the path)
        reply = client.post(
            "/dns-query", content=query, headers={"content-type": "application/dns-message"},
            extensions={"sni_hostname": f"laptop7.{SERVER_NAME}"},
        )  # fmt: skip
    assert dns.message.from_wire(reply.content).rcode() == dns.rcode.NXDOMAIN
    # an ID nobody lists is just the address's group, and is not remembered
    assert server.doh("chat.deepseek.com", path="/stranger").rcode() == dns.rcode.NOERROR
    assert server.dot("chat.deepseek.com", sni=f"stranger.{SERVER_NAME}").rcode() == dns.rcode.NOERROR
    groups = [row[2] for row in server.sink.rows]
    assert groups == ["office", "office", "roaming", "roaming", "roaming", "roaming", "office", "office"]
    keys = server.server.generation.clients.keys()
    assert not any(isinstance(key, tuple) and key[1] == "stranger" for key in keys)


def test_the_query_log_keeps_the_client_id_that_chose_the_group(
    start_server, ca: ThrowawayCA, tmp_path: Path, upstream: FakeDNS
):
    import typer
    from typer.testing import CliRunner

    from blockdns.cli import log_cmd

    raw, tls_port, _ = encrypted_config(ca, tmp_path, upstream)
    raw["groups"] = [{"name": "roaming", "client_ids": ["laptop7"]}]
    raw["querylog"] = {"path": "var/querylog.sqlite"}
    raw["api"] = {"listen": "127.0.0.1:0"}
    server = Encrypted(start_server(raw), ca, tls_port, 0)
    server.running.server.engine.accounting.querylog = server.server.querylog  # not the sink: the real log
    assert server.dot("www.example.org", sni=f"LAPTOP7.{SERVER_NAME}").answer
    assert server.dot("short.example.org").answer  # no client ID
    assert server.dot("local.example.org", sni=f"stranger.{SERVER_NAME}").answer  # an ID no group lists
    querylog = server.server.querylog
    assert querylog is not None and querylog.flush()
    expected = {"www.example.org": ("roaming", "laptop7"), "short.example.org": ("default", None),
                "local.example.org": ("default", None)}  # fmt: skip

    cli_config = tmp_path / "cli.toml"
    cli_config.write_text(f'[querylog]\npath = "{tmp_path / "var/querylog.sqlite"}"\n')
    app = typer.Typer()
    log_cmd.register(app)
    result = CliRunner().invoke(app, ["log", "--json", "--config", str(cli_config)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["name"]: (row["group"], row["client_id"]) for row in rows} == expected
    assert {row["transport"] for row in rows} == {"tls"}
    result = CliRunner().invoke(app, ["log", "--config", str(cli_config)])
    lines = {name: line for line in result.stdout.splitlines() for name in expected if f" {name} " in line}
    assert "127.0.0.1 id=laptop7" in lines["www.example.org"] and "id=" not in lines["short.example.org"]

    assert server.server.api is not None
    with httpx.Client(timeout=5) as client:
        api_rows = client.get(f"{server.server.api.url}/api/querylog").json()["rows"]  # type: ignore[attr-defined]
    assert {row["name"]: (row["group"], row["client_id"]) for row in api_rows} == expected


# ------------------------------------------------------------------------------------------------ DDR


def test_ddr_names_the_encrypted_endpoints(encrypted):
    server = encrypted()
    response = server.running.query("_dns.resolver.arpa", "SVCB")
    assert response.rcode() == dns.rcode.NOERROR
    records = sorted(response.answer[0], key=lambda record: record.priority)
    texts = [record.to_text() for record in records]
    assert texts == [
        f'1 {SERVER_NAME}. alpn="dot" port="{server.tls_port}" ipv4hint="127.0.0.1"',
        f'2 {SERVER_NAME}. alpn="h2" port="{server.https_port}" ipv4hint="127.0.0.1"'
        ' dohpath="/dns-query{?dns}"',
    ]


def test_no_ddr_without_encrypted_listeners(start_server, upstream):
    server = start_server(base_config(upstream))
    assert server.query("_dns.resolver.arpa", "SVCB").answer == []


# -------------------------------------------------------------------------------------- certificates


def test_bad_certificate_files_are_one_line_errors(ca: ThrowawayCA, tmp_path: Path):
    cert, key = ca.issue(tmp_path)
    other_cert, other_key = ca.issue(tmp_path, stem="other")
    old_cert, old_key = ca.issue(tmp_path, expired=True, stem="old")
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    cases = {
        (tmp_path / "missing.pem", key): "no such file",
        (tmp_path, key): "is a directory",
        (junk, key): "no PEM certificate",
        (old_cert, old_key): "expired on",
        (cert, other_key): "does not belong to the certificate",
        (cert, junk): "not a usable PEM private key",
    }
    for (cert_file, key_file), words in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_certificate(cert_file, key_file)
        message = str(caught.value)
        assert words in message and "\n" not in message, message
        assert "server.tls_" in message
    assert load_certificate(other_cert, other_key).names == (SERVER_NAME, f"*.{SERVER_NAME}")


def test_serve_refuses_a_bad_key_in_one_line(ca: ThrowawayCA, tmp_path: Path, upstream: FakeDNS):
    raw, _, _ = encrypted_config(ca, tmp_path, upstream)
    _, other_key = ca.issue(tmp_path, stem="other")
    raw["server"]["tls_key"] = str(other_key)
    settings = config.from_dict(raw, source=tmp_path / "blockdns.toml")
    with pytest.raises(ConfigError, match="does not belong"):
        Server(settings)


def test_tls_listen_needs_a_certificate():
    with pytest.raises(ConfigError, match="tls_cert"):
        config.from_dict({"server": {"tls_listen": ["127.0.0.1:853"]}})


def test_a_renewed_certificate_reaches_new_handshakes_and_open_connections_stay(encrypted, ca, tmp_path):
    server = encrypted()
    cert = Path(server.server.settings.server.tls_cert)
    first_serial = ca.serial_of(cert)
    query = dns.message.make_query("www.example.org", "A").to_wire()
    with server.raw_dot() as open_dot:
        assert _serial(open_dot) == first_serial
        dot_exchange(open_dot, [query])
        renewed_cert, renewed_key = ca.issue(tmp_path, stem="renewed")
        shutil.copyfile(renewed_key, server.server.settings.server.tls_key)
        shutil.copyfile(renewed_cert, cert)
        result = server.running.call(server.server.reload())  # what SIGHUP does
        assert result.ok
        with server.raw_dot() as fresh:
            assert _serial(fresh) == ca.serial_of(renewed_cert)
        assert _serial(open_dot) == first_serial
        (response,) = dot_exchange(open_dot, [query])  # the old connection still answers
        assert dns.message.from_wire(response).answer
    with server.http() as client:
        reply = client.post("/dns-query", content=query, headers={"content-type": "application/dns-message"})
        assert reply.status_code == 200
    # a bad renewal (a key of another certificate) is refused: the last good one keeps serving
    _, stray_key = ca.issue(tmp_path, stem="stray")
    shutil.copyfile(stray_key, server.server.settings.server.tls_key)
    server.running.call(server.server.reload())
    with server.raw_dot() as fresh:
        assert _serial(fresh) == ca.serial_of(renewed_cert)


def test_a_changed_certificate_file_is_taken_without_a_signal(encrypted, ca, tmp_path):
    server = encrypted()
    settings = server.server.settings.server
    renewed_cert, renewed_key = ca.issue(tmp_path, stem="renewed")
    shutil.copyfile(renewed_key, settings.tls_key)
    shutil.copyfile(renewed_cert, settings.tls_cert)

    def serial() -> int:
        with server.raw_dot() as sock:
            return _serial(sock)

    assert wait_until(lambda: serial() == ca.serial_of(renewed_cert), seconds=30, interval=0.5)


def _serial(sock: ssl.SSLSocket) -> int:
    from cryptography import x509

    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# ---------------------------------------------------------------------------------------------- units


def test_padding_leaves_unpaddable_messages_alone():
    assert pad_response(b"") == b""
    assert pad_response(b"\x00" * 12) == b"\x00" * 12
    no_opt = dns.message.make_response(dns.message.make_query("a.example", "A", use_edns=False)).to_wire()
    assert pad_response(no_opt) == no_opt
    assert not query_padded(os.urandom(7)) and not query_padded(b"\xff" * 40)


# -------------------------------------------------------------------------------------------- workers


def test_two_workers_share_the_dot_and_doh_ports(tmp_path: Path, ca: ThrowawayCA, upstream: FakeDNS):
    from test_server_workers import MAX_QUERIES, Served, write_config

    cert, key = ca.issue(tmp_path)
    tls_port, https_port, api_port = free_port(), free_port(), free_port()
    path = tmp_path / "blockdns.toml"
    write_config(path, upstream, api_port, '"vendor:deepseek"')
    path.write_text(
        path.read_text().replace(
            "workers = 2\n",
            f'workers = 2\ntls_listen = ["127.0.0.1:{tls_port}"]\nhttps_listen = ["127.0.0.1:{https_port}"]\n'
            f'tls_cert = "{cert}"\ntls_key = "{key}"\n',
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "blockdns", "serve", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    served = Served(process, api_port)
    try:
        served.wait_serving()
        running = Encrypted.__new__(Encrypted)
        running.ca, running.tls_port, running.https_port = ca, tls_port, https_port
        assert running.dot("chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN  # the policy applies
        assert running.doh("www.example.org").rcode() == dns.rcode.NOERROR
        before = {worker["pid"]: worker["queries"] for worker in served.workers()}
        asked = 0
        while asked < MAX_QUERIES // 10:  # each a new connection, from a new source port
            for _ in range(10):
                assert running.dot("www.example.org").rcode() == dns.rcode.NOERROR
                asked += 1
            now = {worker["pid"]: worker["queries"] for worker in served.workers()}
            if set(now) == set(before) and all(now[pid] > before[pid] for pid in now):
                break
        else:
            pytest.fail(f"{asked} DoT connections did not reach both workers: {served.workers()}")
        by_transport = served.stats()["queries"]["by_transport"]  # type: ignore[index]
        assert by_transport["tls"] >= asked + 1 and by_transport["https"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_workers_refuse_port_0_for_encrypted_listeners(tmp_path: Path, ca: ThrowawayCA, upstream: FakeDNS):
    from blockdns.server.workers import check_encrypted_listeners

    raw, _, _ = encrypted_config(ca, tmp_path, upstream, workers=2)
    raw["server"]["https_listen"] = ["127.0.0.1:0"]
    with pytest.raises(ConfigError, match=r"server\.https_listen: port 0 is not supported with workers"):
        check_encrypted_listeners(config.from_dict(raw, source=tmp_path / "blockdns.toml"))


def test_ddr_hints_name_specific_addresses_only():
    from blockdns.config import ListenAddress
    from blockdns.server.ddr import svcb_texts

    texts = svcb_texts(
        "dns.example.net",
        [ListenAddress(host="0.0.0.0", port=853), ListenAddress(host="::1", port=8853)],
        [ListenAddress(host="192.0.2.7", port=443)],
    )
    assert texts == [
        "1 dns.example.net. alpn=dot port=853",
        "2 dns.example.net. alpn=dot port=8853 ipv6hint=::1",
        '3 dns.example.net. alpn=h2 port=443 ipv4hint=192.0.2.7 dohpath="/dns-query{?dns}"',
    ]


def test_dot_and_doh_connections_count_against_the_tcp_limits(encrypted):
    server = encrypted(tcp_max_per_client=2)
    query = dns.message.make_query("www.example.org", "A").to_wire()
    with server.raw_dot() as first, server.raw_dot() as second:
        dot_exchange(first, [query])
        dot_exchange(second, [query])
        with pytest.raises((ConnectionError, EOFError, dns.exception.DNSException)):
            server.running.query("www.example.org", tcp=True)  # a third stream connection: refused
        # a third DoT connection: refused before its handshake, the connection closed
        with pytest.raises((ConnectionError, ssl.SSLError)), server.raw_dot() as third:
            dot_exchange(third, [query])
    refused = server.server.stats.streams_refused
    assert refused[("tcp", "client_limit")] == refused[("tls", "client_limit")] == 1
    assert wait_until(lambda: server.server.tcp.slots.open == 0)  # the slots are given back on close
    assert server.running.query("www.example.org", tcp=True).answer


def test_the_connection_metrics_tell_tcp_from_dot_and_doh(encrypted):
    server = encrypted(tcp_max_per_client=3)
    stats = server.server.stats
    plain_port = server.running.port
    ports = {"tcp": plain_port, "tls": server.tls_port, "https": server.https_port}
    query = dns.message.make_query("www.example.org", "A").to_wire()

    def metric(name: str, **labels: str) -> float:
        return server_metrics(server.running)[(f"blockdns_{name}", tuple(sorted(labels.items())))]

    with socket.create_connection(("127.0.0.1", plain_port), timeout=5), server.raw_dot() as dot, \
            server.http() as doh:  # fmt: skip
        dot_exchange(dot, [query])
        reply = doh.post("/dns-query", content=query, headers={"content-type": "application/dns-message"})
        assert reply.status_code == 200
        assert wait_until(lambda: stats.streams_open["tcp"] == 1)
        assert [metric("tcp_connections", transport=kind) for kind in ports] == [1, 1, 1]
        # The client holds its three slots: a fourth connection is refused, counted under its transport.
        for port in ports.values():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as fourth:
                assert _closed_by_server(fourth)
        refusals = [
            metric("tcp_connections_refused_total", transport=kind, reason="client_limit") for kind in ports
        ]
        assert refusals == [1, 1, 1]
    assert wait_until(lambda: server.server.tcp.slots.open == 0)
    assert [metric("tcp_connections", transport=kind) for kind in ports] == [0, 0, 0]


def _silent_connections(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` TCP connections to ``port`` that never send a TLS ClientHello."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
            for _ in range(count)]  # fmt: skip


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _another_client_is_answered_at_once(server: Encrypted, kind: str) -> None:
    """A DoT or DoH query for www.example.org from 127.0.0.3, on a new connection, is answered within 2 s
    (well before a stalled handshake's 5 s timeout)."""
    query = dns.message.make_query("www.example.org", "A")
    start = time.monotonic()
    if kind == "dot":
        response = dns.query.tls(query, "127.0.0.1", port=server.tls_port, ssl_context=server.context(),
                                 server_hostname=SERVER_NAME, timeout=5, source="127.0.0.3")  # fmt: skip
    else:
        response = dns.query.https(query, server.url, bootstrap_address="127.0.0.1", verify=server.context(),
                                   timeout=5, http_version=H2, source="127.0.0.3")  # fmt: skip
    elapsed = time.monotonic() - start
    assert response.answer and elapsed < 2.0, elapsed


@pytest.mark.parametrize("kind", ["dot", "doh"])
def test_half_open_handshakes_hold_a_clients_slots_and_others_are_served(encrypted, kind: str):
    server = encrypted(tcp_max_per_client=4)
    port, transport = (server.tls_port, "tls") if kind == "dot" else (server.https_port, "https")
    stats = server.server.stats
    silent = _silent_connections(port, 12)
    try:
        # Four take the client's slots as they are accepted; the other eight are refused and closed at once.
        assert wait_until(lambda: stats.streams_refused[(transport, "client_limit")] == 8)
        assert server.server.tcp.slots.open == 4
        assert sum(_closed_by_server(sock) for sock in silent[4:]) == 8
        # Another client still gets answers, without waiting for the stalled handshakes to time out.
        _another_client_is_answered_at_once(server, kind)
        assert stats.streams_refused[(transport, "client_limit")] == 8
    finally:
        for sock in silent:
            sock.close()
    assert wait_until(lambda: server.server.tcp.slots.open == 0)


@pytest.mark.parametrize("kind", ["dot", "doh"])
def test_silent_handshakes_from_many_addresses_give_way_to_a_new_client(encrypted, kind: str):
    # Every slot is taken by a connection that never starts its handshake, two per address: without
    # eviction the next client would be refused until the handshake timeout (5 s).
    server = encrypted(tcp_max_connections=4, tcp_max_per_client=2)
    port, transport = (server.tls_port, "tls") if kind == "dot" else (server.https_port, "https")
    stats = server.server.stats
    silent = _silent_connections(port, 2, "127.0.0.1")
    assert wait_until(lambda: server.server.tcp.slots.open == 2)
    silent += _silent_connections(port, 2, "127.0.0.2")
    assert wait_until(lambda: server.server.tcp.slots.open == 4)
    try:
        _another_client_is_answered_at_once(server, kind)
        # The handshake waiting longest made room: its connection is closed, its slot counted as evicted.
        assert _closed_by_server(silent[0])
        assert stats.streams_evicted[transport] == 1
        assert stats.streams_refused[(transport, "full")] == 0
    finally:
        for sock in silent:
            sock.close()
    assert wait_until(lambda: server.server.tcp.slots.open == 0)


@pytest.mark.parametrize("kind", ["dot", "doh"])
def test_a_stalled_handshake_is_closed_after_the_handshake_timeout(encrypted, monkeypatch, kind: str):
    monkeypatch.setattr(tlsaccept, "HANDSHAKE_TIMEOUT", 0.5)
    server = encrypted(tcp_idle_timeout=30)  # the handshake's own timeout, not the idle timeout, closes it
    port = server.tls_port if kind == "dot" else server.https_port
    (sock,) = _silent_connections(port, 1)
    with sock:
        start = time.monotonic()
        assert _closed_by_server(sock)
        elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 5.0, elapsed
    assert wait_until(lambda: server.server.tcp.slots.open == 0)
    transport = "tls" if kind == "dot" else "https"
    metrics = server_metrics(server.running)
    assert metrics[("blockdns_tls_handshakes_failed_total", (("transport", transport),))] == 1
    assert server.dot("www.example.org").answer if kind == "dot" else server.doh("www.example.org").answer


def test_serve_with_an_expired_certificate_exits_with_one_line(ca, tmp_path: Path, upstream: FakeDNS):
    raw, _, _ = encrypted_config(ca, tmp_path, upstream)
    old_cert, old_key = ca.issue(tmp_path, expired=True, stem="old")
    raw["server"]["tls_cert"], raw["server"]["tls_key"] = str(old_cert), str(old_key)
    path = tmp_path / "blockdns.toml"
    path.write_text(toml_text(raw))
    result = subprocess.run(
        [sys.executable, "-m", "blockdns", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.tls_cert" in lines[0] and "expired on" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"server": {"trusted_proxies": ["10.0.0.0/33"]}}, "server.trusted_proxies"),
        ({"server": {"https_listen": ["dns.example:443"]}}, "server.https_listen"),
        ({"groups": [{"name": "g", "client_ids": ["bad name"]}]}, "groups.0.client_ids.0"),
        ({"groups": [{"name": "g"}]}, "a group needs clients (CIDRs) or client_ids"),
        (
            {"groups": [{"name": "a", "client_ids": ["x"]}, {"name": "b", "client_ids": ["X"]}]},
            "a client ID belongs to one group, repeated: x",
        ),
    ],
)
def test_bad_encrypted_settings_are_one_line(raw: dict[str, Any], words: str):
    with pytest.raises(ConfigError) as caught:
        config.from_dict(raw)
    assert words in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_a_closed_http2_connection_cancels_its_queries_in_flight(encrypted, upstream: FakeDNS):
    # (An HTTP/1.1 connection is not read while its request is answered, so its close is seen only when
    # the answer is written.)
    upstream.silence("void.example")
    server = encrypted(resolver={"timeout": 3.0, "total_timeout": 6.0})  # a resolution would run 3 s
    tasks = server.server.engine.tasks
    query = dns.message.make_query("void.example", "A").to_wire()
    start = time.monotonic()
    with server.http() as client, pytest.raises(httpx.TimeoutException):
        client.post("/dns-query", content=query, timeout=0.3,
                    headers={"content-type": "application/dns-message"})  # fmt: skip
    assert wait_until(lambda: len(tasks) == 0, seconds=10)
    assert time.monotonic() - start < 2.0  # cancelled when the connection closed, not timed out at 3 s


def test_a_doh_connection_is_not_closed_after_a_thousand_requests(encrypted):
    server = encrypted()
    query = dns.message.make_query("www.example.org", "A").to_wire()
    headers = {"content-type": "application/dns-message"}
    with server.http() as client:
        for index in range(1100):  # hypercorn's default closes an HTTP/2 connection after 1000 requests
            reply = client.post("/dns-query", content=query, headers=headers)
            assert reply.status_code == 200
            assert reply.extensions["stream_id"] == 2 * index + 1  # the same connection all along
