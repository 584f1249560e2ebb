"""DNS over HTTPS (RFC 8484) on ``[server] https_listen``: ``/dns-query`` (and ``/dns-query/NAME`` for a
client ID), GET with ``?dns=`` (base64url, no padding) and POST with an ``application/dns-message`` body,
over HTTP/2 and HTTP/1.1.

The listener (:class:`~blockdns.server.tlsaccept.ProtocolTlsListener`) accepts a connection, takes its slot
of the stream connections' :class:`~blockdns.server.connections.ConnectionSlots` (the same per-client and
total limits as TCP and DoT) before the TLS handshake, does the handshake (with the certificate current at
that moment) and hands the connection, with its slot, to :class:`DohAccept`; ALPN then picks the
connection's protocol: :mod:`~blockdns.server.doh_h2` (h2's state machine) or
:mod:`~blockdns.server.doh_h11` (h11's).
What both HTTP versions share (what a request means, the idle timeout, the slot's bookkeeping) is
:mod:`~blockdns.server.doh_base`. Every query goes through :meth:`Engine.serve` like any
other; a fast-path answer is written as soon as ``serve`` returns, a slow one when its task is done.

Answers: 200 with the DNS response (``Cache-Control: max-age`` = its smallest TTL, RFC 8484 §5.1), 400 for
a request that carries no DNS query, 404 for another path, 405 for another method, 413 for a message over
64 KiB, 415 for a POST of another content type, 503 when the query was dropped (the server is overloaded,
or the client has its share of the work in flight).
"""

from __future__ import annotations

import asyncio
from typing import cast

from blockdns.server.connections import Connection, ConnectionSlots
from blockdns.server.doh_base import DohConnection, DohContext
from blockdns.server.doh_h2 import H2Connection
from blockdns.server.doh_h11 import H11Connection
from blockdns.server.engine import Engine
from blockdns.server.forwarded import TrustedProxies
from blockdns.server.tlsfiles import TlsFiles


class DohAccept(asyncio.Protocol):
    """The protocol of a new connection, TLS done, holding the slot it took at accept: hands the connection
    to the HTTP version ALPN chose (HTTP/1.1 when the client named none)."""

    def __init__(self, server: DohServer, slot: Connection) -> None:
        self.server = server
        self.slot = slot

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's SSL transport is no subclass of it
        server, slot = self.server, self.slot
        server.slots.handshake_done(slot)
        slot.writer = transport  # what an eviction closes
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        protocol: DohConnection
        try:
            if alpn == "h2":
                protocol = H2Connection(server, transport, slot)
            else:
                protocol = H11Connection(server, transport, slot)
        except Exception:
            server.slots.release(slot)
            transport.abort()
            raise
        server.open.add(transport)
        transport.set_protocol(protocol)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.slots.release(self.slot)  # lost before it had a protocol of its own


class DohServer(DohContext):
    """The DoH listener: its protocol factory, and what its connections share."""

    def __init__(
        self, engine: Engine, slots: ConnectionSlots, tls: TlsFiles, proxies: TrustedProxies
    ) -> None:
        super().__init__(engine, slots, tls, proxies)
        self.handlers = self.open  # what Server.stop() closes

    def protocol(self, slot: Connection) -> asyncio.Protocol:
        """The protocol of a connection accepted with ``slot`` (its TLS handshake under way)."""
        return DohAccept(self, slot)
