"""The TCP transport, as RFC 7766 asks: 2-byte length framing, several queries per connection answered as
they complete (pipelined, possibly out of order), an idle timeout, and a limit on open connections."""

from __future__ import annotations

import asyncio
import logging
import struct

from blockdns.server.engine import Engine
from blockdns.server.tasks import TaskSet

log = logging.getLogger(__name__)

PER_CONNECTION_INFLIGHT = 64


class TcpServer:
    def __init__(self, engine: Engine, tasks: TaskSet, *, idle_timeout: float, max_connections: int) -> None:
        self.engine = engine
        self.tasks = tasks
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
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        header = await reader.readexactly(2)
                        data = await reader.readexactly(struct.unpack(">H", header)[0])
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    break
                out = self.engine.answer_fast(data, client, True)
                if out is not None:
                    writer.write(struct.pack(">H", len(out)) + out)
                    await writer.drain()  # back-pressure: a client that does not read stops being read
                    continue
                if len(pending) >= PER_CONNECTION_INFLIGHT:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.get_running_loop().create_task(self._answer(data, client, writer))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=self.idle_timeout)
        finally:
            for task in pending:
                task.cancel()
            self.connections -= 1
            writer.close()

    async def _answer(self, data: bytes, client: str, writer: asyncio.StreamWriter) -> None:
        out = await self.engine.answer(data, client, True)
        if out is not None and not writer.is_closing():
            writer.write(struct.pack(">H", len(out)) + out)
