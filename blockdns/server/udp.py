"""The UDP transport: a datagram in, the fast path or a tracked task, a datagram out."""

from __future__ import annotations

import asyncio
import logging

from blockdns.server.engine import Engine
from blockdns.server.tasks import TaskSet

log = logging.getLogger(__name__)


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, engine: Engine, tasks: TaskSet) -> None:
        self.engine = engine
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        try:
            out = self.engine.answer_fast(data, addr[0], False)
        except Exception:  # the fast path must never take the server down; the slow path will try
            log.exception("fast path failed")
            out = None
        if out is not None:
            self.transport.sendto(out, addr)  # type: ignore[union-attr]
            return
        if not self.tasks.spawn(self._answer(data, addr)):
            self.engine.stats.dropped_overload += 1

    async def _answer(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        out = await self.engine.answer(data, addr[0], False)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (client gone): nothing to do, and never fatal.
        log.debug("UDP error: %s", exc)
