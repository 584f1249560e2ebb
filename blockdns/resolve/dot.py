"""DNS over TLS to an upstream (RFC 7858 client, RFC 7766 framing): a few persistent connections, queries
pipelined on them and answered in any order.

Each ``tls://`` upstream has a :class:`DotPool` of at most ``MAX_CONNECTIONS`` connections. A query goes on
the first connection (open or still in its handshake) with fewer than ``MAX_INFLIGHT`` queries outstanding;
a new connection is opened only when every one is that busy, and when the pool is full the query waits for
a slot. So a handshake is paid once per connection, not per query, and queries that come during a
handshake wait for it together.

Every query on a connection carries a random ID unique among that connection's outstanding queries; a reply
is handed over when its ID names an outstanding query and it carries that query's question
(``wire.reply_matches``), in whatever order replies come. Queries are padded to a multiple of 128 bytes
(EDNS Padding, RFC 8467), so their length does not tell the name. A connection with nothing outstanding for
``IDLE_TIMEOUT`` seconds is closed. When the server closes a connection, the queries outstanding on it are
sent once more on a fresh connection when the closed one had already answered others (a server may close an
idle connection just as a query goes out, RFC 7766 §6.2.1); a connection that never answered fails them.

The certificate is verified against the upstream's TLS name (``#TLS-NAME``, else its host) with the
configured CA bundle or the system store; a failed verification, like any failure to connect, fails the
query with an :class:`UpstreamError` that names the upstream and the reason. A pool that could not connect
refuses queries at once for a while (:mod:`blockdns.resolve.backoff`) instead of a handshake for each.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from blockdns.config import Upstream as UpstreamConfig
from blockdns.errors import UpstreamError
from blockdns.resolve.backoff import ConnectBackoff
from blockdns.resolve.bootstrap import Bootstrap
from blockdns.resolve.transport import Outgoing, TransportStats, network_error, timed_out
from blockdns.resolve.udppool import random_ids
from blockdns.wire import EDE_NETWORK_ERROR, pad_query

MAX_CONNECTIONS = 4  # per upstream
MAX_INFLIGHT = 128  # outstanding queries per connection
IDLE_TIMEOUT = 30.0  # seconds a connection with nothing outstanding stays open

Build = Callable[[int], Outgoing]


def tls_failure(server: str, err: ssl.SSLError) -> UpstreamError:
    """The error for a TLS handshake that failed; a certificate that did not verify says why."""
    if isinstance(err, ssl.SSLCertVerificationError):
        reason = f"certificate verification failed: {err.verify_message}"
        client_text = "upstream certificate verification failed"
    else:
        reason = f"TLS handshake failed: {err.reason or err}"
        client_text = "upstream TLS handshake failed"
    return UpstreamError(f"{server}: {reason}", EDE_NETWORK_ERROR, client_text=client_text)


class _Closed(Exception):
    """The connection closed under a query; ``reused``: it had answered queries before."""

    def __init__(self, error: UpstreamError, reused: bool) -> None:
        super().__init__(str(error))
        self.error, self.reused = error, reused


class DotConnection(asyncio.Protocol):
    """One TLS connection to the upstream and the queries outstanding on it, by ID."""

    def __init__(self, pool: DotPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.ready: asyncio.Future[None] = self.loop.create_future()  # the handshake is done (or failed)
        self.ready.add_done_callback(_retrieve)
        self.transport: asyncio.Transport | None = None
        self.outstanding: dict[int, tuple[Outgoing, asyncio.Future[bytes]]] = {}
        self.assigned = 0  # queries given to it and not yet done (outstanding, or waiting for the handshake)
        self.replies = 0
        self.closed = False
        self.last_used = self.loop.time()
        self._buffer = bytearray()
        self._idle_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's SSL transport is no subclass of it
        self._idle_timer = self.loop.call_later(IDLE_TIMEOUT, self._check_idle)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            end = 2 + int.from_bytes(buffer[:2])
            if len(buffer) < end:
                return
            message = bytes(buffer[2:end])
            del buffer[:end]
            self._reply(message)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.pool.forget(self)
        reason = exc if isinstance(exc, OSError) else ConnectionResetError("connection closed")
        error = network_error(self.pool.name, reason, "over TLS")
        closed = _Closed(error, self.replies > 0)
        for _, future in self.outstanding.values():
            if not future.done():
                future.set_exception(closed)
        self.outstanding.clear()

    def _reply(self, message: bytes) -> None:
        stats = self.pool.stats
        entry = self.outstanding.get(int.from_bytes(message[:2])) if len(message) >= 12 else None
        if entry is None:
            stats.late += 1  # its query gave up (no one off-path can write into a TLS stream)
            return
        outgoing, future = entry
        if not outgoing.answered_by(message):
            stats.mismatched += 1
            return
        del self.outstanding[outgoing.qid]
        self.replies += 1
        stats.replies += 1
        if not future.done():
            future.set_result(message)

    # ------------------------------------------------------------------------------------ queries

    async def ask(self, build: Build) -> bytes:
        """Send the query ``build(qid)`` makes and wait for its reply (the caller keeps the time)."""
        if not self.ready.done():
            await asyncio.shield(self.ready)
        self.ready.result()  # the handshake's error, if it failed
        if self.closed or self.transport is None:
            raise _Closed(
                network_error(self.pool.name, ConnectionResetError("connection closed"), "over TLS"), True
            )
        outstanding = self.outstanding
        qid = random_ids.next()
        while qid in outstanding:
            qid = random_ids.next()
        outgoing = build(qid)
        future: asyncio.Future[bytes] = self.loop.create_future()
        outstanding[qid] = (outgoing, future)
        message = pad_query(outgoing.message)
        try:
            self.transport.write(len(message).to_bytes(2) + message)
            return await future
        finally:
            if outstanding.get(qid, (None, None))[1] is future:
                del outstanding[qid]

    def done_with(self) -> None:
        """A query assigned to it is finished, however it ended."""
        self.assigned -= 1
        self.last_used = self.loop.time()
        self.pool.slot_free()

    def _check_idle(self) -> None:
        idle_since = self.loop.time() - self.last_used
        if self.assigned == 0 and idle_since >= IDLE_TIMEOUT:
            self.close()
        else:
            self._idle_timer = self.loop.call_later(max(IDLE_TIMEOUT - idle_since, 1.0), self._check_idle)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        elif not self.ready.done():
            self.ready.set_exception(
                network_error(self.pool.name, ConnectionAbortedError("closed"), "over TLS")
            )


class DotPool:
    """The TLS connections to one ``tls://`` upstream (module docstring); made inside the event loop."""

    def __init__(
        self,
        upstream: UpstreamConfig,
        context: ssl.SSLContext,
        bootstrap: Bootstrap | None,
        stats: TransportStats,
        *,
        connect_timeout: float,
    ) -> None:
        self.upstream, self.context, self.bootstrap, self.stats = upstream, context, bootstrap, stats
        self.name = str(upstream)
        self.connect_timeout = connect_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: list[DotConnection] = []  # open or in their handshake
        self._waiters: list[asyncio.Future[None]] = []  # queries waiting for a slot in a full pool
        self.backoff = ConnectBackoff()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def query(self, build: Build, timeout: float) -> bytes:
        """The reply to the query ``build(qid)`` makes; raises :class:`UpstreamError`."""
        stats = self.stats
        stats.queries += 1
        stats.tls_queries += 1
        try:
            async with asyncio.timeout(timeout):
                for attempt in range(2):
                    connection = await self._connection()
                    try:
                        return await connection.ask(build)
                    except _Closed as closed:
                        if attempt or not closed.reused:
                            raise closed.error from None
                    finally:
                        connection.done_with()
        except TimeoutError:
            self.stats.timeouts += 1
            raise timed_out(self.name, "over TLS") from None
        except UpstreamError:
            self.stats.errors += 1
            raise
        raise AssertionError("unreachable")

    async def _connection(self) -> DotConnection:
        """A connection with room for one more query (assigned to it), opening one when all are busy."""
        while True:
            if self.closed:
                raise network_error(self.name, ConnectionAbortedError("the forwarder was closed"), "over TLS")
            self.backoff.check(self.loop.time())
            for connection in self.connections:
                if connection.assigned < MAX_INFLIGHT:
                    connection.assigned += 1
                    return connection
            if len(self.connections) < MAX_CONNECTIONS:
                connection = self._open()
                connection.assigned += 1
                return connection
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def slot_free(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def forget(self, connection: DotConnection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
            self.slot_free()

    def _open(self) -> DotConnection:
        connection = DotConnection(self)
        self.connections.append(connection)
        self.stats.connections += 1
        task = self.loop.create_task(self._connect(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return connection

    async def _connect(self, connection: DotConnection) -> None:
        upstream, error = self.upstream, None
        try:
            async with asyncio.timeout(self.connect_timeout):
                hosts = [upstream.host]
                if upstream.host_is_name and self.bootstrap is not None:
                    hosts = await self.bootstrap.addresses(upstream.host)
                for host in hosts:
                    try:
                        await self.loop.create_connection(
                            lambda: connection,
                            host,
                            upstream.port,
                            ssl=self.context,
                            server_hostname=upstream.verify_name,
                            ssl_handshake_timeout=self.connect_timeout,
                        )
                        break
                    except ssl.SSLError as err:
                        error = tls_failure(self.name, err)
                        if isinstance(err, ssl.SSLCertVerificationError):
                            self.stats.verify_failures += 1
                        break  # the same certificate is behind every address
                    except OSError as err:
                        error = network_error(self.name, err, "over TLS")
                else:
                    error = error or network_error(self.name, ConnectionError("no address"), "over TLS")
        except TimeoutError:
            error = timed_out(self.name, "connecting over TLS")
        except UpstreamError as err:  # the bootstrap lookup
            error = err
        if connection.transport is not None and not connection.closed:
            self.backoff.succeeded()
            connection.ready.set_result(None)
            return
        error = error or network_error(self.name, ConnectionResetError("connection closed"), "over TLS")
        self.forget(connection)
        self.backoff.failed(error, self.loop.time())
        if not connection.ready.done():
            connection.ready.set_exception(error)

    async def close(self) -> None:
        self.closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self.connections):
            connection.close()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
