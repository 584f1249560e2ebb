"""The UDP transport: a datagram in, :meth:`Engine.serve`, a datagram out (now, or when the task is done)."""

from __future__ import annotations

import asyncio
import functools
import logging

from blockdns.resolve.base import UDP
from blockdns.server.engine import Engine

log = logging.getLogger(__name__)

Address = tuple[str, int] | tuple[str, int, int, int]


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, engine: Engine) -> None:
        self.serve = engine.serve
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        out = self.serve(data, addr[0], UDP)
        if out is None:
            return
        if type(out) is bytes:
            self.transport.sendto(out, addr)  # type: ignore[union-attr]
        else:
            out.add_done_callback(functools.partial(self._send_when_done, addr))  # type: ignore[union-attr]

    def _send_when_done(self, addr: Address, task: asyncio.Task[bytes | None]) -> None:
        if task.cancelled() or task.exception() is not None:
            return  # cancelled at shutdown, or a bug the task set has logged
        out = task.result()
        transport = self.transport
        if out is not None and transport is not None and not transport.is_closing():
            transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (client gone): nothing to do, and never fatal.
        log.debug("UDP error: %s", exc)
