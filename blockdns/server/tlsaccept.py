"""The encrypted listeners (DoT, DoH): a connection takes its slot as it is accepted, then does its TLS
handshake, then goes to its handler.

A listener that does the handshake itself (``asyncio.start_server(ssl=...)``) hands a connection over only
once the handshake is done, so a handshake would hold no slot of
:class:`~blockdns.server.connections.ConnectionSlots`: one client could keep any number of half-open
handshakes, bounded only by the timeout and the listen backlog. :class:`TlsListener` accepts the TCP
connection itself, takes its slot (the per-client and total limits, as for TCP), wraps the accepted socket
in TLS (``loop.connect_accepted_socket``) within :data:`HANDSHAKE_TIMEOUT`, gives the slot back if the
handshake fails or times out, and otherwise runs the listener's handler, whose own
:meth:`~blockdns.server.connections.ConnectionSlots.admit` finds the slot its connection already holds.

(Upgrading a plain stream with ``StreamWriter.start_tls`` is not an option: uvloop reads the client's hello
into the plain stream's buffer before the handler runs, where the TLS layer never sees it.)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

from blockdns.server.connections import Connection, ConnectionHandlers, ConnectionSlots
from blockdns.server.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0  # seconds; never more than the idle timeout
ACCEPT_ERROR_PAUSE = 0.1  # seconds before accepting again after accept() failed (out of file descriptors)


class StreamServer(Protocol):
    """What a TlsListener needs of the DoT or DoH server behind it."""

    slots: ConnectionSlots
    handlers: ConnectionHandlers

    def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]: ...


class TlsListener:
    """A DoT or DoH listening socket: accepts, takes a slot, does the handshake, runs ``server.handle``."""

    def __init__(
        self,
        sock: socket.socket,
        server: StreamServer,
        context: ssl.SSLContext,
        allowed: Callable[[str], bool],
        transport: str,
    ) -> None:
        self.sock = sock
        self.transport = transport  # TLS or HTTPS
        self.sockets = [sock]
        self.server = server
        self.context = context  # its SNI callback moves each handshake to the current certificate
        self.allowed = allowed
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._accept_failures = RateLimitedLog(log, interval=10.0)

    def start(self) -> None:
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())

    def handshake_timeout(self) -> float:
        return min(HANDSHAKE_TIMEOUT, self.server.slots.idle_timeout)

    async def close(self) -> None:
        """Stop accepting and end the handshakes under way (the handlers are the server's to end)."""
        tasks = [*self._handshakes, *([self._accepting] if self._accepting else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sock.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        slots, allowed, transport = self.server.slots, self.allowed, self.transport
        while True:
            try:
                sock, peer = await loop.sock_accept(self.sock)
            except OSError as err:  # EMFILE and the like: the connection waits in the backlog
                self._accept_failures.warning("accept failed on %s: %s", self.sock.getsockname(), err)
                await asyncio.sleep(ACCEPT_ERROR_PAUSE)
                continue
            client = peer[0]
            connection = slots.admit(client, None, allowed=allowed(client), transport=transport)
            if connection is None:  # refused: closed at once, before any TLS
                sock.close()
                continue
            task = loop.create_task(self._handshake(sock, connection))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, sock: socket.socket, connection: Connection) -> None:
        """The TLS handshake of a connection that holds its slot, then its handler."""
        slots = self.server.slots
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self.context, ssl_handshake_timeout=self.handshake_timeout()
            )
        except OSError:  # a failed handshake (ssl.SSLError), a timed-out one, a reset
            slots.stats.tls_handshakes_failed[self.transport] += 1
            slots.release(connection)
            sock.close()
            return
        except BaseException:
            slots.release(connection)
            sock.close()
            raise
        # The handler runs on in this task: from here it is the server's handlers' to stop, not ours.
        task = asyncio.current_task()
        if task is not None:
            self._handshakes.discard(task)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        connection.writer = writer
        slots.hand_over(connection)
        server = self.server
        with server.handlers.running():
            try:
                await server.handle(reader, writer)
            finally:
                slots.release(connection)  # once: the handler has usually released it already
                writer.close()


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket listening on ``host:port`` (OSError when it cannot be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=256, reuse_port=reuse_port)
