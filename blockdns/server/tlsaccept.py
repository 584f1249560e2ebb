"""The encrypted listeners (DoT, DoH): a connection takes its slot as it is accepted, then does its TLS
handshake, then goes to its server.

A listener that does the handshake itself (``asyncio.start_server(ssl=...)``, ``loop.create_server``) hands
a connection over only once the handshake is done, so a handshake would hold no slot of
:class:`~blockdns.server.connections.ConnectionSlots`: one client could keep any number of half-open
handshakes, bounded only by the timeout and the listen backlog. :class:`TlsListener` accepts the TCP
connection itself, takes its slot (the per-client and total limits, as for TCP), wraps the accepted socket
in TLS (``loop.connect_accepted_socket``) within :data:`HANDSHAKE_TIMEOUT`, gives the slot back if the
handshake fails or times out, and otherwise hands the connection on with the slot it holds. While the
handshake is under way the slot may be evicted like an idle connection's (the task is cancelled, the socket
closed), so silent handshakes from many addresses cannot keep the slots from new clients for the timeout:

* :class:`StreamTlsListener` (DoT) runs the server's stream handler, whose own
  :meth:`~blockdns.server.connections.ConnectionSlots.admit` finds the slot its connection already holds;
* :class:`ProtocolTlsListener` (DoH) gives the slot to the protocol the server makes for the connection
  (h2 and h11 are driven from an :class:`asyncio.Protocol`), which gives it back when the connection is lost.

(Upgrading a plain stream with ``StreamWriter.start_tls`` is not an option: uvloop reads the client's hello
into the plain stream's buffer before the handler runs, where the TLS layer never sees it.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from blockdns.server.connections import Connection, ConnectionHandlers, ConnectionSlots
from blockdns.server.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0  # seconds; never more than the idle timeout
ACCEPT_ERROR_PAUSE = 0.1  # seconds before accepting again after accept() failed (out of file descriptors)


class SlotServer(Protocol):
    slots: ConnectionSlots


class StreamServer(SlotServer, Protocol):
    """What a StreamTlsListener needs of the DoT server behind it: a handler per connection."""

    handlers: ConnectionHandlers

    def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]: ...


class ProtocolServer(SlotServer, Protocol):
    """What a ProtocolTlsListener needs of the DoH server behind it: a protocol per connection, which owns
    the slot it is given (and releases it when the connection is lost)."""

    def protocol(self, slot: Connection) -> asyncio.Protocol: ...


S = TypeVar("S", bound=SlotServer)


class TlsListener(Generic[S]):
    """A DoT or DoH listening socket: accepts, takes a slot, does the handshake (:meth:`_handshake`, per
    kind)."""

    def __init__(
        self,
        sock: socket.socket,
        server: S,
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
            # A task cancelled before its first step (evicted in the same burst of accepts) never runs its
            # own cleanup: the socket is closed here.
            task.add_done_callback(functools.partial(_close_if_cancelled, sock))
            slots.handshaking(connection, task)  # evictable (cancelled) while the client says nothing

    async def _handshake(self, sock: socket.socket, connection: Connection) -> None:
        """The TLS handshake of a connection that holds its slot, then its server."""
        raise NotImplementedError

    async def _tls(
        self, sock: socket.socket, connection: Connection, protocol: Callable[[], asyncio.Protocol]
    ) -> asyncio.Transport | None:
        """The TLS handshake on the accepted socket, the connection then ``protocol()``'s; None when it
        failed (ssl.SSLError, timed out, reset: counted, the slot given back, the socket closed)."""
        slots = self.server.slots
        try:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                protocol, sock, ssl=self.context, ssl_handshake_timeout=self.handshake_timeout()
            )
        except OSError:
            slots.stats.tls_handshakes_failed[self.transport] += 1
            slots.release(connection)
            sock.close()
            return None
        except BaseException:  # cancelled: the server stops, or the slot was evicted
            slots.release(connection)
            sock.close()
            raise
        slots.handshake_done(connection)  # (a protocol may have said so already, in connection_made)
        return transport


class StreamTlsListener(TlsListener[StreamServer]):
    """DoT: the stream handler runs on in the task that did the handshake (one task per connection)."""

    async def _handshake(self, sock: socket.socket, connection: Connection) -> None:
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = await self._tls(sock, connection, lambda: protocol)
        if transport is None:
            return
        # The handler runs on in this task: from here it is the server's handlers' to stop, not ours.
        task = asyncio.current_task()
        if task is not None:
            self._handshakes.discard(task)
        writer = asyncio.StreamWriter(transport, protocol, reader, asyncio.get_running_loop())
        connection.writer = writer
        server = self.server
        server.slots.hand_over(connection)
        with server.handlers.running():
            try:
                await server.handle(reader, writer)
            finally:
                server.slots.release(connection)  # once: the handler has usually released it already
                writer.close()


class ProtocolTlsListener(TlsListener[ProtocolServer]):
    """DoH: the server's protocol for the connection, made with the slot it holds, takes over once the
    handshake is done (its ``connection_made``); its ``connection_lost`` gives the slot back."""

    async def _handshake(self, sock: socket.socket, connection: Connection) -> None:
        server = self.server
        await self._tls(sock, connection, lambda: server.protocol(connection))


def _close_if_cancelled(sock: socket.socket, task: asyncio.Task[None]) -> None:
    if task.cancelled():
        sock.close()


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket listening on ``host:port`` (OSError when it cannot be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=256, reuse_port=reuse_port)
