"""DNS over HTTPS (RFC 8484) on ``[server] https_listen``: ``/dns-query`` (and ``/dns-query/NAME`` for a
client ID), GET with ``?dns=`` (base64url, no padding) and POST with an ``application/dns-message`` body,
over HTTP/2 and HTTP/1.1.

HTTP itself is hypercorn's (with h2 and h11): each accepted connection takes a slot of the stream
connections' :class:`~blockdns.server.connections.ConnectionSlots` (the same per-client and total limits as
TCP and DoT) once the listener has done its TLS handshake (with the certificate current at that moment),
and is then handed to hypercorn's connection handler running :class:`DohApp`, a small ASGI application,
on this event loop.
Every query goes through :meth:`Engine.serve` like any other.

Answers: 200 with the DNS response (``Cache-Control: max-age`` = its smallest TTL, RFC 8484 §5.1), 400 for
a request that carries no DNS query, 404 for another path, 405 for another method, 413 for a message over
64 KiB, 415 for a POST of another content type, 503 when the query was dropped (the server is overloaded,
or the client has its share of the work in flight).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config

from blockdns.resolve.base import HTTPS
from blockdns.server.connections import ConnectionHandlers, ConnectionSlots
from blockdns.server.engine import Engine
from blockdns.server.forwarded import TrustedProxies
from blockdns.server.streamwire import MAX_STREAM_MESSAGE, min_ttl, pad_response, query_padded
from blockdns.server.tlsfiles import TlsFiles, sni_of

log = logging.getLogger("blockdns.doh")

PATH = "/dns-query"
DNS_MESSAGE = b"application/dns-message"
_CLIENT_ID = re.compile(r"[A-Za-z0-9-]{1,63}")
_MAX_GET_PARAMETER = (MAX_STREAM_MESSAGE * 4 + 2) // 3  # base64 of the largest message
_QR = 0x80  # in the third byte of a message
_MAX_DRAINED = 4 * MAX_STREAM_MESSAGE  # an oversize body is read (and dropped) up to this, then cut off

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _plain(status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    body = text.encode() + b"\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    return status, headers + (extra or []), body


Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class DohApp:
    """The ASGI application: one HTTP request in, one DNS query through the engine, one response out."""

    def __init__(self, engine: Engine, proxies: TrustedProxies, sni_ids: dict[tuple[Any, ...], str]) -> None:
        self.engine = engine
        self.proxies = proxies
        self.sni_ids = sni_ids  # (peer host, peer port) -> the client ID its TLS handshake named

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan events are sent; nothing else is served
            return
        body = await _read_body(receive)  # all of it, whatever the answer: the connection stays usable
        status, headers, content = await self._respond(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _respond(self, scope: Scope, body: bytes | None) -> Response:
        path: str = scope["path"]
        client_id: str | None = None
        if path != PATH:
            if not path.startswith(PATH + "/") or not _CLIENT_ID.fullmatch(path[len(PATH) + 1 :]):
                return _plain(404, "not found: DNS queries go to /dns-query")
            client_id = path[len(PATH) + 1 :]
        method: str = scope["method"]
        data: bytes | Response
        if method == "GET":
            data = self._get_query(scope)
        elif method == "POST":
            data = self._post_query(scope, body)
        else:
            return _plain(405, "only GET and POST", [(b"allow", b"GET, POST")])
        if isinstance(data, tuple):
            return data
        if len(data) < 12 or data[2] & _QR:
            return _plain(400, "not a DNS query")
        peer = scope.get("client")
        address = peer[0] if peer else ""
        if self.proxies.networks and address:
            address = self.proxies.client(address, *_forwarding_headers(scope["headers"]))
        if client_id is None and peer:
            client_id = self.sni_ids.get(tuple(peer))
        out = self.engine.serve(data, address, HTTPS, client_id)
        if out is not None and not isinstance(out, bytes):
            out = await asyncio.shield(out)  # a client that goes away does not cancel the resolution
        if out is None:
            return _plain(503, "the query was dropped: the server is busy")
        if query_padded(data):
            out = pad_response(out)
        headers = [
            (b"content-type", DNS_MESSAGE),
            (b"content-length", str(len(out)).encode()),
            (b"cache-control", b"max-age=%d" % min_ttl(out)),
        ]
        return 200, headers, out

    @staticmethod
    def _get_query(scope: Scope) -> bytes | Response:
        query_string: bytes = scope["query_string"]
        if len(query_string) > _MAX_GET_PARAMETER + 64:
            return _plain(413, "the DNS message is larger than 64 KiB")
        try:
            values = [value for name, value in parse_qsl(query_string.decode("ascii")) if name == "dns"]
        except (UnicodeDecodeError, ValueError):
            return _plain(400, "a bad query string")
        if len(values) != 1 or not values[0]:
            return _plain(400, "a GET needs one dns= parameter (the DNS message in base64url)")
        value = values[0]
        try:  # RFC 8484 §4.1: base64url without padding; padding sent anyway is accepted
            return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return _plain(400, "the dns= parameter is not base64url")

    @staticmethod
    def _post_query(scope: Scope, body: bytes | None) -> bytes | Response:
        content_type = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
        if content_type.split(b";", 1)[0].strip().lower() != DNS_MESSAGE:
            return _plain(415, "a POST body must be application/dns-message")
        if body is None:
            return _plain(413, "the DNS message is larger than 64 KiB")
        return body


async def _read_body(receive: Receive) -> bytes | None:
    """The request body; None when it is over 64 KiB (read to its end and dropped, up to a bound past which
    the request is answered before its end, and the connection may be closed)."""
    body = bytearray()
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return bytes(body) if received <= MAX_STREAM_MESSAGE else None
        chunk = message.get("body", b"")
        received += len(chunk)
        if received <= MAX_STREAM_MESSAGE:
            body += chunk
        elif received > _MAX_DRAINED:
            return None
        if not message.get("more_body", False):
            return bytes(body) if received <= MAX_STREAM_MESSAGE else None


def _forwarding_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The ``Forwarded`` and ``X-Forwarded-For`` headers (each one line: repeated ones joined by commas)."""
    forwarded: list[str] = []
    x_forwarded_for: list[str] = []
    for name, value in headers:
        if name == b"forwarded":
            forwarded.append(value.decode("latin-1"))
        elif name == b"x-forwarded-for":
            x_forwarded_for.append(value.decode("latin-1"))
    return (
        ",".join(forwarded) if forwarded else None,
        ",".join(x_forwarded_for) if x_forwarded_for else None,
    )


def hypercorn_config(idle_timeout: float) -> Config:
    config = Config()
    config.keep_alive_timeout = idle_timeout
    config.include_server_header = False
    config.errorlog = logging.getLogger("blockdns.doh.http")
    config.accesslog = None
    config.h11_max_incomplete_size = 16 * 1024  # request line and headers
    config.h2_max_concurrent_streams = 100
    # A DoH client keeps its connection for as long as it can; hypercorn's default (1000 requests, then
    # GOAWAY) cut busy clients' connections, and a client that does not retry lost the requests in flight.
    # 2^30: about where an HTTP/2 client runs out of stream IDs anyway.
    config.keep_alive_max_requests = 1 << 30
    return config


class DohServer:
    """Accepts DoH connections (TLS done by the listener): a slot, then hypercorn's HTTP/1.1 or HTTP/2."""

    def __init__(
        self, engine: Engine, slots: ConnectionSlots, tls: TlsFiles, proxies: TrustedProxies
    ) -> None:
        self.engine = engine
        self.slots = slots
        self.tls = tls
        self.proxies = proxies
        self._sni_ids: dict[tuple[Any, ...], str] = {}
        self.app = ASGIWrapper(DohApp(engine, proxies, self._sni_ids))  # type: ignore[arg-type]
        self.config = hypercorn_config(slots.idle_timeout)
        self.context = WorkerContext(None)
        self.handlers = ConnectionHandlers()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.handlers.running():
            await self._handle(reader, writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else ""
        slots = self.slots
        allowed = self.engine.allows(client) or self.proxies.trusted(client)
        connection = slots.admit(client, writer, allowed=allowed)
        if connection is None:
            writer.close()
            return
        key: tuple[Any, ...] | None = None
        try:
            client_id = self.tls.client_id(sni_of(writer.get_extra_info("ssl_object")))
            if client_id is not None and peer:
                key = tuple(peer[:2])
                self._sni_ids[key] = client_id
            self.config.keep_alive_timeout = slots.idle_timeout
            with contextlib.suppress(OSError):  # a TLS shutdown the client did not follow (hypercorn's close)
                await TCPServer(
                    self.app, asyncio.get_running_loop(), self.config, self.context, {}, reader, writer
                )
        finally:
            if key is not None:
                self._sni_ids.pop(key, None)
            slots.release(connection)
            writer.close()
