"""The TCP transport, as RFC 7766 asks: 2-byte length framing, several queries per connection answered as
they complete (pipelined, possibly out of order), an idle timeout, and limits on open connections. The same
code serves DNS over TLS (RFC 7858), whose connections share the TCP connections' slots and limits.

It only frames bytes: every query goes through :meth:`Engine.serve`, which owns the fast path, the exception
guard and the bound on slow-path work in flight. Who gets a connection slot, and how long an idle connection
keeps it, is :class:`~blockdns.server.connections.ConnectionSlots`' business. A connection also bounds its
own pipelining (a client that sends faster than it is answered stops being read) and applies back-pressure
on writes (a client that reads no answers stops being read, and is closed after the idle timeout).

Over TLS the connection has taken its slot and done its handshake before it gets here
(:class:`~blockdns.server.tlsaccept.TlsListener`); the SNI may name a client ID (``laptop.dns.example.net``),
and a query with an EDNS Padding option gets a padded response (RFC 7830, RFC 8467's 468-byte blocks).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct

from blockdns.resolve.base import TCP
from blockdns.server.connections import Connection, ConnectionHandlers, ConnectionSlots
from blockdns.server.engine import Engine
from blockdns.server.streamwire import pad_response, query_padded
from blockdns.server.tlsfiles import TlsFiles, sni_of

log = logging.getLogger(__name__)

PER_CONNECTION_INFLIGHT = 64


class TcpServer:
    def __init__(
        self, engine: Engine, slots: ConnectionSlots, transport: str = TCP, tls: TlsFiles | None = None
    ) -> None:
        self.engine = engine
        self.serve = engine.serve
        self.slots = slots
        self.transport = transport
        self.tls = tls  # DNS over TLS: the certificate to hand each new connection
        self.handlers = ConnectionHandlers()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.handlers.running():
            await self._handle(reader, writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else ""
        slots = self.slots
        connection = slots.admit(client, writer, allowed=self.engine.allows(client), transport=self.transport)
        if connection is None:
            writer.close()
            return
        try:
            client_id = None
            if self.tls is not None:
                client_id = self.tls.client_id(sni_of(writer.get_extra_info("ssl_object")))
            await self._serve(connection, reader, writer, client_id)
        finally:
            slots.release(connection)
            writer.close()

    async def _serve(
        self,
        connection: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_id: str | None,
    ) -> None:
        slots, serve, client, transport = self.slots, self.serve, connection.address, self.transport
        pending = connection.pending
        encrypted = self.tls is not None

        def send(out: bytes) -> None:
            writer.write(struct.pack(">H", len(out)) + out)

        def send_when_done(task: asyncio.Task[bytes | None]) -> None:
            pending.discard(task)
            slots.update(connection)
            pad = task in padded
            if pad:
                padded.discard(task)
            if task.cancelled() or task.exception() is not None:
                return
            out = task.result()
            if out is not None and not writer.is_closing():
                send(pad_response(out) if pad else out)

        padded: set[asyncio.Task[bytes | None]] = set()  # slow answers to padded queries

        while True:
            connection.reading = True
            slots.update(connection)
            try:
                async with asyncio.timeout(slots.wait_for_query()):
                    # Back-pressure, for fast and slow answers alike: a client that does not read the
                    # answers written so far stops being read.
                    await writer.drain()
                    header = await reader.readexactly(2)
                    data = await reader.readexactly(struct.unpack(">H", header)[0])
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                break
            connection.reading = False
            slots.update(connection)
            out = serve(data, client, transport, client_id)
            pad = encrypted and query_padded(data)
            if isinstance(out, bytes):
                send(pad_response(out) if pad else out)
            elif out is not None:
                pending.add(out)
                if pad:
                    padded.add(out)
                out.add_done_callback(send_when_done)
                if len(pending) >= PER_CONNECTION_INFLIGHT:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        connection.reading = False
        slots.update(connection)
        if pending:
            await asyncio.wait(pending, timeout=slots.idle_timeout)
