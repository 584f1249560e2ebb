"""Who may hold one of the server's stream connections (TCP, DoT, DoH), and how long an idle one keeps it.

RFC 7766 §6.2.3 asks a server to bound its connections per client and in total, and lets it shorten the
idle timeout under load. :class:`ConnectionSlots` does both:

* a connection takes its slot as it is accepted (an encrypted one before its TLS handshake,
  :class:`~blockdns.server.tlsaccept.TlsListener`);
* a client outside ``allow_clients`` is closed before it holds a slot: it has no query to be answered;
* a client address holds at most ``tcp_max_per_client`` connections, so one client cannot take them all;
* past half the slots, a connection waits a tenth of ``tcp_idle_timeout`` for its next query, past 80% only
  ``PRESSURE_IDLE_TIMEOUT`` (after Unbound's ``setup_tcp_handler``);
* when every slot is taken, the connection that has been idle longest (waiting for a query, no answer
  pending) is closed to admit the new one; only when none is idle is the newcomer refused. An encrypted
  connection still in its TLS handshake counts as idle since it was accepted (it waits for the client's
  bytes and has nothing to lose), so silent handshakes cannot hold the slots for the whole handshake timeout.

Every refusal and eviction is counted in :class:`~blockdns.ops.stats.ServerStats`. State is bounded by the
open connections: a client address is remembered only while it holds one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from blockdns.ops.stats import CLIENT_LIMIT, FULL, NOT_ALLOWED, ServerStats
from blockdns.resolve.base import TCP

PRESSURE_IDLE_TIMEOUT = 0.5  # seconds an idle connection may wait once 80% of the slots are taken

Closable = asyncio.StreamWriter | asyncio.BaseTransport  # what an evicted connection is closed through


class Connection:
    """One admitted connection: whose it is, how to close it, and whether it may be evicted."""

    __slots__ = ("address", "handshake", "pending", "reading", "released", "transport", "writer")

    def __init__(self, address: str, transport: str, writer: Closable | None) -> None:
        self.address = address
        self.transport = transport  # "tcp", "tls" (DoT), "https" (DoH): the metrics' label
        # None while an encrypted connection does its handshake; DoH's is its transport (a Protocol's)
        self.writer = writer
        self.handshake: asyncio.Task[None] | None = None  # its TLS handshake, while under way
        self.pending: set[asyncio.Task[bytes | None]] = set()  # answers still being worked out
        self.reading = False  # waiting for the client's next query
        self.released = False  # its slot has been given back (closed, or evicted)


class ConnectionSlots:
    def __init__(
        self, stats: ServerStats, *, max_connections: int, max_per_client: int, idle_timeout: float
    ) -> None:
        self.stats = stats
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.idle_timeout = idle_timeout
        self.open = 0
        self.per_client: dict[str, int] = {}
        # Connections waiting for a query with no answer pending, the longest idle first (dicts keep order).
        self._idle: dict[Connection, None] = {}
        # Encrypted connections admitted at accept, their handshake done, until their handler's admit().
        self._handed_over: dict[Closable, Connection] = {}

    def admit(
        self, address: str, writer: asyncio.StreamWriter | None, *, allowed: bool, transport: str = TCP
    ) -> Connection | None:
        """A slot for a new ``transport`` connection from ``address``, or None: close it at once. A connection
        admitted before its TLS handshake (:meth:`hand_over`) gets the slot it holds."""
        if writer is not None:
            handed_over = self._handed_over.pop(writer, None)
            if handed_over is not None:
                return handed_over
        stats = self.stats
        if not allowed:
            stats.streams_refused[(transport, NOT_ALLOWED)] += 1
            return None
        held = self.per_client.get(address, 0)
        if held >= self.max_per_client:
            stats.streams_refused[(transport, CLIENT_LIMIT)] += 1
            return None
        if self.open >= self.max_connections:
            if not self._idle:
                stats.streams_refused[(transport, FULL)] += 1
                return None
            self._evict(next(iter(self._idle)))
            held = self.per_client.get(address, 0)  # the evicted connection may have been this client's
        self.open += 1
        stats.streams_open[transport] += 1
        self.per_client[address] = held + 1
        return Connection(address, transport, writer)

    def handshaking(self, connection: Connection, handshake: asyncio.Task[None]) -> None:
        """The connection, admitted at accept, does its TLS handshake in ``handshake``: until it is done
        (:meth:`handshake_done`), the connection may be evicted like an idle one (the task cancelled)."""
        connection.handshake = handshake
        self._idle[connection] = None

    def handshake_done(self, connection: Connection) -> None:
        """The handshake is over: the connection is its server's now, idle again only when it waits for a
        query (:meth:`update`)."""
        if connection.handshake is not None:
            connection.handshake = None
            self._idle.pop(connection, None)

    def hand_over(self, connection: Connection) -> None:
        """The next :meth:`admit` for the connection's stream returns it (its slot was taken at accept)."""
        if connection.writer is not None and not connection.released:
            self._handed_over[connection.writer] = connection

    def release(self, connection: Connection) -> None:
        """The connection is closed: cancel the answers still being worked out for it (nobody is left to
        read them), and give its slot back (once; an evicted connection has already given it back)."""
        for task in list(connection.pending):
            task.cancel()
        if connection.released:
            return
        connection.released = True
        if connection.writer is not None:
            self._handed_over.pop(connection.writer, None)
        self._idle.pop(connection, None)
        self.open -= 1
        self.stats.streams_open[connection.transport] -= 1
        held = self.per_client[connection.address] - 1
        if held:
            self.per_client[connection.address] = held
        else:
            del self.per_client[connection.address]

    def update(self, connection: Connection) -> None:
        """Note a change of ``reading`` or ``pending``: idle connections are the ones that may be evicted."""
        if connection.reading and not connection.pending and not connection.released:
            self._idle.pop(connection, None)  # (re)inserted last: idle since now
            self._idle[connection] = None
        else:
            self._idle.pop(connection, None)

    def wait_for_query(self) -> float:
        """How long a connection may now wait for its next query: shorter as the slots fill up."""
        used = self.open / self.max_connections
        if used <= 0.5:
            return self.idle_timeout
        if used <= 0.8:
            return min(self.idle_timeout, max(self.idle_timeout / 10, PRESSURE_IDLE_TIMEOUT))
        return min(self.idle_timeout, PRESSURE_IDLE_TIMEOUT)

    def _evict(self, connection: Connection) -> None:
        self.stats.streams_evicted[connection.transport] += 1
        self.release(connection)
        if connection.handshake is not None:  # its listener closes the socket
            connection.handshake.cancel()
        elif connection.writer is not None:
            connection.writer.close()  # its reader sees the end of the stream and its handler returns


class ConnectionHandlers:
    """The tasks handling a listener's open connections, so that stopping the server ends them (closing a
    listening socket leaves its accepted connections open)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._closing = False

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - a handler always runs in a task
            yield
            return
        self._tasks.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Stopped by close(): the handler ends normally (the stream's own done-callback would
            # otherwise log the cancellation as an error, Python 3.11).
        finally:
            self._tasks.discard(task)

    async def close(self) -> None:
        """Cancel every handler and wait for them to finish."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
