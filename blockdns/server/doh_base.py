"""What DoH's HTTP/2 and HTTP/1.1 connections share: what a request means (:class:`DohRequests`), the
reply to it, and :class:`DohConnection` (the connection's slot, its idle timeout, write back-pressure).
:mod:`blockdns.server.doh` has the listener's side.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote_to_bytes

from blockdns.resolve.base import HTTPS
from blockdns.server.connections import Connection, ConnectionSlots
from blockdns.server.engine import Engine
from blockdns.server.forwarded import TrustedProxies
from blockdns.server.ratelog import RateLimitedLog
from blockdns.server.streamwire import MAX_STREAM_MESSAGE, min_ttl, pad_response, query_padded
from blockdns.server.tlsfiles import TlsFiles, sni_of

log = logging.getLogger("blockdns.doh")

PATH = b"/dns-query"
DNS_MESSAGE = b"application/dns-message"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9-]{1,63}")
_MAX_GET_PARAMETER = (MAX_STREAM_MESSAGE * 4 + 2) // 3  # base64 of the largest message
_QR = 0x80  # in the third byte of a message

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]  # status, headers (no pseudo-headers), body


def plain(status: int, text: str, extra: Headers | None = None) -> Reply:
    body = text.encode() + b"\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
    return status, headers + (extra or []), body


TOO_LARGE = plain(413, "the DNS message is larger than 64 KiB")
NOT_FOUND = plain(404, "not found: DNS queries go to /dns-query")
NOT_ALLOWED = plain(405, "only GET and POST", [(b"allow", b"GET, POST")])
DROPPED = plain(503, "the query was dropped: the server is busy")


def forwarding_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """A request's ``Forwarded`` and ``X-Forwarded-For`` headers, each one joined (None: absent)."""
    forwarded: list[bytes] = []
    x_forwarded_for: list[bytes] = []
    for name, value in headers:
        if name == b"forwarded":
            forwarded.append(value)
        elif name == b"x-forwarded-for":
            x_forwarded_for.append(value)
    return (
        b",".join(forwarded).decode("latin-1") if forwarded else None,
        b",".join(x_forwarded_for).decode("latin-1") if x_forwarded_for else None,
    )


class Pending:
    """A query the slow path is working on: :meth:`DohRequests.finish` turns its result into the reply."""

    __slots__ = ("padded", "task")

    def __init__(self, task: asyncio.Task[bytes | None], padded: bool) -> None:
        self.task = task
        self.padded = padded


class DohRequests:
    """What an HTTP request to the DoH endpoint means: a reply at once, or a query being resolved."""

    def __init__(self, engine: Engine, proxies: TrustedProxies) -> None:
        self.serve = engine.serve
        self.proxies = proxies

    def answer(
        self,
        method: bytes,
        target: bytes,
        content_type: bytes | None,
        body: bytes | None,
        peer: str,
        sni_id: str | None,
        forwarding: tuple[str | None, str | None] = (None, None),
    ) -> Reply | Pending:
        """``target``: the request's path and query string; ``body``: None when it was over 64 KiB;
        ``forwarding``: its ``Forwarded`` and ``X-Forwarded-For`` headers (read only for a trusted peer)."""
        path, _, query_string = target.partition(b"?")
        client_id = sni_id
        if path != PATH:
            if b"%" in path:
                path = unquote_to_bytes(path)
            if not path.startswith(PATH + b"/") or not _CLIENT_ID.fullmatch(path, len(PATH) + 1):
                return _for_method(method, NOT_FOUND)
            client_id = path[len(PATH) + 1 :].decode("ascii")
        data: bytes | Reply
        if method == b"GET":
            data = _get_query(query_string)
        elif method == b"POST":
            data = _post_query(content_type, body)
        else:
            return _for_method(method, NOT_ALLOWED)
        if isinstance(data, tuple):
            return data
        if len(data) < 12 or data[2] & _QR:
            return plain(400, "not a DNS query")
        address = peer
        if self.proxies.networks and peer:
            address = self.proxies.client(peer, *forwarding)
        out = self.serve(data, address, HTTPS, client_id)
        if out is None:
            return DROPPED
        padded = query_padded(data)
        if isinstance(out, bytes):
            return dns_reply(out, padded)
        return Pending(out, padded)

    @staticmethod
    def finish(pending: Pending) -> Reply:
        """The reply for a query whose task is done."""
        task = pending.task
        if task.cancelled() or task.exception() is not None:
            return DROPPED
        out = task.result()
        return DROPPED if out is None else dns_reply(out, pending.padded)


def _for_method(method: bytes, reply: Reply) -> Reply:
    """The reply as ``method`` gets it: a response to HEAD has no body (RFC 9110 §9.3.2)."""
    if method == b"HEAD":
        status, headers, _ = reply
        return status, headers, b""
    return reply


def dns_reply(response: bytes, padded: bool) -> Reply:
    if padded:
        response = pad_response(response)
    headers = [
        (b"content-type", DNS_MESSAGE),
        (b"content-length", b"%d" % len(response)),
        (b"cache-control", b"max-age=%d" % min_ttl(response)),
    ]
    return 200, headers, response


def _get_query(query_string: bytes) -> bytes | Reply:
    if len(query_string) > _MAX_GET_PARAMETER + 64:
        return TOO_LARGE
    try:
        values = [value for name, value in parse_qsl(query_string.decode("ascii")) if name == "dns"]
    except (UnicodeDecodeError, ValueError):
        return plain(400, "a bad query string")
    if len(values) != 1 or not values[0]:
        return plain(400, "a GET needs one dns= parameter (the DNS message in base64url)")
    value = values[0]
    try:  # RFC 8484 §4.1: base64url without padding; padding sent anyway is accepted
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return plain(400, "the dns= parameter is not base64url")


def _post_query(content_type: bytes | None, body: bytes | None) -> bytes | Reply:
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != DNS_MESSAGE:
        return plain(415, "a POST body must be application/dns-message")
    if body is None:
        return TOO_LARGE
    return body


class DohConnection(asyncio.Protocol):
    """What an HTTP/2 and an HTTP/1.1 connection share: the slot, the idle timeout, write back-pressure.

    A connection is idle when it has received nothing for the slots' current wait and has no query in
    flight; it is then closed. A client that reads no answers stops being read (``pause_writing``)."""

    def __init__(self, server: DohContext, transport: asyncio.Transport, slot: Connection) -> None:
        self.server = server
        self.requests = server.requests
        self.transport = transport
        self.slot = slot
        self.slots = server.slots
        peer = transport.get_extra_info("peername")
        self.peer: str = peer[0] if peer else ""
        self.sni_id = server.tls.client_id(sni_of(transport.get_extra_info("ssl_object")))
        self.closed = False
        self.writing_paused = False  # the client is not reading its answers: it is not read either
        self.loop = asyncio.get_running_loop()
        self.last_received = self.loop.time()
        self._idle_timer = self.loop.call_later(self.slots.wait_for_query(), self._check_idle)
        slot.reading = True
        self.slots.update(slot)

    def received(self) -> None:
        """Note that the client sent something (it is not idle; its slot is not the first to be taken)."""
        self.last_received = self.loop.time()
        self.slots.update(self.slot)

    def track(self, task: asyncio.Task[bytes | None]) -> None:
        """A query in flight: the connection is busy (not idle, not evictable) until it is done."""
        pending = self.slot.pending
        pending.add(task)
        if len(pending) == 1:
            self.slots.update(self.slot)

    def untrack(self, task: asyncio.Task[bytes | None]) -> None:
        pending = self.slot.pending
        pending.discard(task)
        if not pending:
            self.slots.update(self.slot)

    def _check_idle(self) -> None:
        if self.closed:
            return
        wait = self.slots.wait_for_query()
        remaining = self.last_received + wait - self.loop.time()
        if remaining <= 0 and not self.slot.pending:
            self.close_idle()
            return
        self._idle_timer = self.loop.call_later(
            max(remaining, 0.05) if remaining > 0 else wait, self._check_idle
        )

    def close_idle(self) -> None:
        """Close a connection idle for too long (HTTP/2 says goodbye first)."""
        self.transport.close()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.closed and self.may_read():
            self.transport.resume_reading()

    def may_read(self) -> bool:
        """Whether the connection may be read once the client reads its answers again."""
        return True

    def eof_received(self) -> bool | None:
        return None  # close (a TLS transport cannot stay half-open)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._idle_timer.cancel()
        self.slots.release(self.slot)
        self.server.open.discard(self.transport)


class OpenTransports:
    """The listener's open connections, so that stopping the server closes them (closing a listening socket
    leaves its accepted connections open)."""

    def __init__(self) -> None:
        self.transports: set[asyncio.Transport] = set()

    def add(self, transport: asyncio.Transport) -> None:
        self.transports.add(transport)

    def discard(self, transport: asyncio.Transport) -> None:
        self.transports.discard(transport)

    async def close(self) -> None:
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()


class DohContext:
    """What every connection of a DoH listener reads: the engine, the slots, the certificate's client IDs,
    the trusted proxies, the open connections."""

    def __init__(
        self, engine: Engine, slots: ConnectionSlots, tls: TlsFiles, proxies: TrustedProxies
    ) -> None:
        self.engine = engine
        self.slots = slots
        self.tls = tls
        self.proxies = proxies
        self.requests = DohRequests(engine, proxies)
        self.open = OpenTransports()
        self.failures = RateLimitedLog(log, interval=10.0)
