"""The TCP transport, as RFC 7766 asks: 2-byte length framing, several queries per connection answered as
they complete (pipelined, possibly out of order), an idle timeout, and a limit on open connections.

It only frames bytes: every query goes through :meth:`Engine.serve`, which owns the fast path, the exception
guard and the bound on slow-path work in flight. A connection also bounds its own pipelining (a client that
sends faster than it is answered stops being read) and applies back-pressure on writes.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from blockdns.resolve.base import TCP
from blockdns.server.engine import Engine

log = logging.getLogger(__name__)

PER_CONNECTION_INFLIGHT = 64


class TcpServer:
    def __init__(self, engine: Engine, *, idle_timeout: float, max_connections: int) -> None:
        self.serve = engine.serve
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections = 0
        self.refused_connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            self.refused_connections += 1
            writer.close()
            return
        self.connections += 1
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else ""
        pending: set[asyncio.Task[bytes | None]] = set()

        def send(out: bytes) -> None:
            writer.write(struct.pack(">H", len(out)) + out)

        def send_when_done(task: asyncio.Task[bytes | None]) -> None:
            pending.discard(task)
            if task.cancelled() or task.exception() is not None:
                return
            out = task.result()
            if out is not None and not writer.is_closing():
                send(out)

        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        header = await reader.readexactly(2)
                        data = await reader.readexactly(struct.unpack(">H", header)[0])
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    break
                out = self.serve(data, client, TCP)
                if isinstance(out, bytes):
                    send(out)
                elif out is not None:
                    pending.add(out)
                    out.add_done_callback(send_when_done)
                    if len(pending) >= PER_CONNECTION_INFLIGHT:
                        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # Back-pressure, for fast and slow answers alike: a client that does not read the answers
                # written so far stops being read.
                await writer.drain()
            if pending:
                await asyncio.wait(pending, timeout=self.idle_timeout)
        finally:
            for task in list(pending):
                task.cancel()
            self.connections -= 1
            writer.close()
