"""Hostile DoH requests, generated: any method, path, header and body over HTTP/2 (a client h2 with its checks
turned off, so the server's are the ones tested) and any bytes as an HTTP/1.1 request. Whatever comes, the
server answers with a status it means (or resets the stream, or closes the connection), logs no failure of
its own, and keeps answering real queries."""

from __future__ import annotations

import logging
import socket
import ssl
import string
import time

import dns.message
import dns.rcode
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import test_server_encrypted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server_encrypted import Encrypted

from tlscerts import SERVER_NAME

ca = test_server_encrypted.ca
upstream = test_server_encrypted.upstream
encrypted = test_server_encrypted.encrypted

DEADLINE = 10.0  # seconds for the server's answer to one request
MEANT = {200, 400, 404, 405, 413, 415, 503}  # what the DoH endpoint answers (doh.py)
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

QUERY = dns.message.make_query("www.example.org", "A").to_wire()
_POST_HEAD = b"Host: dns.test\r\nContent-Type: application/dns-message\r\nContent-Length: %d\r\n" % len(QUERY)
_methods = st.one_of(
    st.sampled_from([b"GET", b"POST", b"HEAD"]),
    st.sampled_from([b"PUT", b"OPTIONS", b"get", b"", b"P\x00ST"]),
)
_visible = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation, max_size=120).map(
    str.encode
)
_paths = st.one_of(
    st.sampled_from(
        [b"/dns-query", b"/dns-query?dns=", b"/dns-query/laptop", b"/dns-query/%2e%2e", b"*", b""]
    ),
    st.builds(lambda tail: b"/dns-query" + tail, st.one_of(_visible, st.binary(max_size=80))),
    st.builds(lambda value: b"/dns-query?dns=" + value, st.one_of(_visible, st.binary(max_size=120))),
    st.binary(max_size=100),
)
_content_types = st.one_of(
    st.none(),
    st.sampled_from([b"application/dns-message", b"APPLICATION/DNS-MESSAGE; charset=x", b"text/plain", b""]),
    st.binary(max_size=40),
)
_HEADER_NAMES = [b"forwarded", b"x-forwarded-for", b"content-length", b":method", b":path", b"connection",
                 b"te", b"Host", b"cookie"]  # fmt: skip
_extra_headers = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(_HEADER_NAMES),
            st.binary(min_size=1, max_size=20),
        ),
        st.binary(max_size=60),
    ),
    max_size=5,
)
_request_lines = st.builds(lambda method, path: method + b" " + path + b" HTTP/1.1\r\n", _methods, _paths)
_bodies = st.one_of(st.just(b""), st.just(QUERY), st.binary(max_size=600))


@pytest.fixture
def failures(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The server's own error lines (a failed connection handler, a failed answer) while the test runs."""
    caplog.set_level(logging.ERROR, logger="blockdns")
    return caplog


def _server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name.startswith("blockdns")]


def _tls(server: Encrypted, alpn: str) -> ssl.SSLSocket:
    context = server.context()
    context.set_alpn_protocols([alpn])
    sock = socket.create_connection(("127.0.0.1", server.https_port), timeout=DEADLINE)
    tls = context.wrap_socket(sock, server_hostname=SERVER_NAME)
    assert tls.selected_alpn_protocol() == alpn
    return tls


def _h2_exchange(server: Encrypted, headers: list[tuple[bytes, bytes]], body: bytes) -> str:
    """Send one request on a new HTTP/2 connection; what came of it: ``status N``, ``reset``, ``goaway``,
    ``closed`` (or ``silent`` when nothing came before the deadline)."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False,
        )
    )  # fmt: skip
    conn.initiate_connection()
    with _tls(server, "h2") as sock:
        conn.send_headers(1, headers, end_stream=not body)
        if body:
            conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + DEADLINE
        status: bytes | None = None
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionError, ssl.SSLError):
                return "closed"
            if not data:
                return "closed"
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as err:  # the server broke HTTP/2
                return f"bad reply: {err!r}"
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers or [])[b":status"]  # type: ignore[arg-type]
                elif isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded) and status is not None:
                    return f"status {int(status)}"
                elif isinstance(event, h2.events.StreamReset):
                    return "reset"
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return "goaway"
            outgoing = conn.data_to_send()
            if outgoing:
                sock.sendall(outgoing)
    return "silent"


def test_any_http2_request_gets_a_meant_status_a_reset_or_a_goaway(encrypted, failures):
    server = encrypted(tcp_idle_timeout=2, trusted_proxies=["127.0.0.0/8"])  # the forwarding headers are read

    @EXAMPLES
    @given(
        method=_methods,
        path=_paths,
        content_type=_content_types,
        extra=st.one_of(st.just([]), _extra_headers),  # most requests get past h2's own checks
        body=_bodies,
    )
    def one_request(
        method: bytes, path: bytes, content_type: bytes | None, extra: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        failures.clear()  # this request's errors only
        headers = [(b":method", method), (b":scheme", b"https"), (b":authority", SERVER_NAME.encode()),
                   (b":path", path)]  # fmt: skip
        if content_type is not None:
            headers.append((b"content-type", content_type))
        outcome = _h2_exchange(server, headers + extra, body)
        assert outcome in {"reset", "goaway", "closed"} or outcome in {f"status {s}" for s in MEANT}, outcome
        assert _server_errors(failures) == []

    one_request()
    assert server.doh("www.example.org").rcode() == dns.rcode.NOERROR
    assert _server_errors(failures) == []


def test_any_http11_bytes_get_a_meant_status_or_a_close(encrypted, failures):
    server = encrypted(tcp_idle_timeout=2, trusted_proxies=["127.0.0.0/8"])  # the forwarding headers are read

    @EXAMPLES
    @given(
        request_line=st.one_of(
            _request_lines,
            _request_lines,
            _request_lines,
            st.binary(max_size=200),  # mostly well-formed
        ),
        header_block=st.one_of(
            st.just(_POST_HEAD),
            st.just(b"Host: dns.test\r\nTransfer-Encoding: chunked\r\n"),
            st.just(b"Host: dns.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"),
            st.binary(max_size=300),
        ),
        body=st.one_of(st.just(QUERY), st.binary(max_size=400), st.just(b"5\r\nhello\r\n0\r\n\r\n")),
    )
    def one_request(request_line: bytes, header_block: bytes, body: bytes) -> None:
        failures.clear()  # this request's errors only
        with _tls(server, "http/1.1") as sock:
            sock.sendall(request_line + header_block + b"\r\n" + body)
            # An incomplete request is waited for (until the idle timeout): what came by then is read.
            sock.settimeout(0.2)
            received = b""
            try:
                while not _a_final_response_in(received) and (chunk := sock.recv(65536)):
                    received += chunk
            except (TimeoutError, ConnectionError, ssl.SSLError):
                pass
        for line in received.split(b"\r\n"):
            if line.startswith(b"HTTP/1.1 "):
                assert int(line.split()[1]) in MEANT | {100, 431}, line  # h11: 431, a head over MAX_HEAD
        assert _server_errors(failures) == []

    one_request()
    assert server.doh("www.example.org").rcode() == dns.rcode.NOERROR
    assert _server_errors(failures) == []


def _a_final_response_in(received: bytes) -> bool:
    """Whether ``received`` holds a whole response other than 100 Continue (its head and Content-Length)."""
    while (end := received.find(b"\r\n\r\n")) != -1:
        head, rest = received[:end].lower(), received[end + 4 :]
        if not head.startswith(b"http/1.1 100"):
            length = next((line.split(b":", 1)[1] for line in head.split(b"\r\n")
                           if line.startswith(b"content-length:")), b"0")  # fmt: skip
            return len(rest) >= int(length)
        received = rest
    return False
