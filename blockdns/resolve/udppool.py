"""Connected UDP sockets shared by the queries to one upstream address: the forwarder's UDP transport.

A fresh socket per query costs a dozen system calls (socket, connect, two epoll_ctl, close, ...) on top of
the send and the receive. Here each upstream address has a small pool of connected sockets, and a query
borrows one for its lifetime. What a socket per query gave against spoofing (RFC 5452: an off-path
attacker must guess the ID *and* the source port) stays:

* every socket's port is the kernel's random ephemeral port, and a socket is retired after ``MAX_USES``
  queries or ``MAX_AGE`` seconds, whichever comes first, for a fresh one: ``SIZE`` ports are in play at
  once and they keep changing (at 10,000 misses a second, each lives about a tenth of a second);
* the ID of every query is drawn from the kernel's CSPRNG (``os.urandom``, read 1,024 bytes at a time:
  one system call for 512 IDs) and is unique among all the queries a socket has carried (at most
  ``MAX_USES`` of 65,536), so a reply's ID names exactly one query of its socket;
* a reply is handed over only when it carries that query's ID and question (``wire.reply_matches``: QR
  set, the name compared case-insensitively as everywhere in the transport — no 0x20 is used — type and
  class); the socket is connected, so the kernel drops datagrams from any other address or port.

Anything else that arrives is dropped and counted in ``TransportStats.mismatched``; a genuine reply that
comes after its query was answered by another or given up is dropped and counted in ``late`` (with a
socket per query the kernel dropped those unseen). A network error reported on a socket (an ICMP port
unreachable, say) ends the wait of every query on it — they were all sent to the same closed port — and
retires the socket.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterator

from blockdns.errors import UpstreamError
from blockdns.resolve.transport import Outgoing, TransportStats, network_error, timed_out

SIZE = 16  # sockets in use at once per upstream address
MAX_USES = 64  # queries per socket before it is replaced
MAX_AGE = 10.0  # seconds a socket takes new queries before it is replaced
_READS_PER_WAKE = 16  # datagrams read per readiness callback: a busy socket is drained in one go
_RANDOM_BYTES = 1024  # read from os.urandom at once: 512 IDs


class RandomIds:
    """Uniform 16-bit query IDs from ``os.urandom``, read in blocks (``secrets.randbelow(65536)`` costs two
    ``getrandom`` calls per ID on average: it draws 17 bits and throws half away)."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: Iterator[int] = iter(())

    def next(self) -> int:
        for qid in self._ids:
            return qid
        self._ids = iter(memoryview(os.urandom(_RANDOM_BYTES)).cast("H"))
        return next(self._ids)


random_ids = RandomIds()


class PooledSocket:
    """One connected socket and the queries it has carried, by ID."""

    __slots__ = ("_loop", "_pool", "fd", "opened", "pending", "queries", "retired", "sock")

    def __init__(self, pool: UdpPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        family = socket.AF_INET6 if ":" in pool.host else socket.AF_INET
        self.sock = sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((pool.host, pool.port))
        except OSError:
            sock.close()
            raise
        self.fd = sock.fileno()
        self.opened = self._loop.time()
        self.queries: dict[int, PooledQuery] = {}  # every query sent on it, answered or not: IDs stay unique
        self.pending = 0  # queries still waiting
        self.retired = False
        self._loop.add_reader(self.fd, self._readable)

    def new_id(self) -> int:
        queries = self.queries
        while True:
            qid = random_ids.next()
            if qid not in queries:
                return qid

    def _readable(self) -> None:
        recv, queries, stats = self.sock.recv, self.queries, self._pool.stats
        for _ in range(_READS_PER_WAKE):
            try:
                data = recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # e.g. ICMP port unreachable surfaces as ECONNREFUSED
                self.fail(err)
                return
            query = queries.get(int.from_bytes(data[:2])) if len(data) >= 12 else None
            if query is None or not query.query.answered_by(data):
                stats.mismatched += 1
            elif query.finished:
                stats.late += 1
            else:
                stats.replies += 1
                query.settle(data, None)

    def fail(self, err: OSError) -> None:
        """A network error on the socket: every query still waiting on it fails with it; it is retired."""
        stats, server = self._pool.stats, self._pool.server
        for query in self.queries.values():
            if not query.finished:
                stats.errors += 1
                query.settle(b"", network_error(server, err))
        self._pool.retire(self)

    def released(self) -> None:
        """One of its queries is done with it."""
        self.pending -= 1
        if self.retired and self.pending == 0:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self._loop.remove_reader(self.fd)
            self.fd = -1
            self.sock.close()


class PooledQuery:
    """One query on a pooled socket, waiting for its reply without a task or a future of its own.

    Its outcome is the first datagram that carries our ID and question, or the network error that ended the
    wait; ``wake`` (the waiter's) is called once, when it comes. :meth:`done` and :meth:`result` read it as
    a future's would. (No future: a resolution already sleeps on one, and a future per query cost a
    callback through the event loop per reply only to wake that one.) There is no timer here: whoever waits
    decides when it is too late, calls :meth:`timed_out`, and :meth:`close` in any case."""

    __slots__ = ("_socket", "_wake", "data", "error", "finished", "query", "server", "stats")

    def __init__(
        self, pooled: PooledSocket, query: Outgoing, pool: UdpPool, wake: Callable[[], None]
    ) -> None:
        self._socket: PooledSocket | None = pooled
        self._wake: Callable[[], None] | None = wake  # dropped once called: the socket keeps its queries
        self.query, self.stats, self.server = query, pool.stats, pool.server
        self.data = b""
        self.error: UpstreamError | None = None
        self.finished = False  # a reply or an error came, or the waiter closed it: later replies are late

    def settle(self, data: bytes, error: UpstreamError | None) -> None:
        """The reply (or the error that ends the wait) has come: keep it and wake the waiter."""
        self.data, self.error, self.finished = data, error, True
        wake, self._wake = self._wake, None
        if wake is not None:
            wake()

    def done(self) -> bool:
        return self.finished

    def result(self) -> bytes:
        """The reply; raises the error that ended the wait instead."""
        if self.error is not None:
            raise self.error
        return self.data

    def timed_out(self) -> UpstreamError:
        """Count a wait that ended without a reply; the error to raise or report."""
        self.stats.timeouts += 1
        return timed_out(self.server)

    def close(self) -> None:
        pooled = self._socket
        if pooled is not None:
            self._socket = None
            self.finished = True
            self._wake = None  # the waiter, which the socket must not keep alive after it is done
            pooled.released()


class UdpPool:
    """The pooled sockets to one upstream address (see the module docstring), made inside the event loop."""

    __slots__ = ("_next", "host", "loop", "port", "server", "sockets", "stats")

    def __init__(self, host: str, port: int, stats: TransportStats) -> None:
        self.host, self.port, self.stats = host, port, stats
        self.server = f"{host}:{port}"
        self.loop = asyncio.get_running_loop()
        self.sockets: list[PooledSocket] = []  # taking new queries
        self._next = 0

    def query(self, build: Callable[[int], Outgoing], wake: Callable[[], None]) -> PooledQuery:
        """Send the message ``build(qid)`` makes for an ID unique on the socket it goes out on; ``wake`` is
        called when its reply or an error comes. Raises :class:`UpstreamError` when it cannot be sent."""
        self.stats.queries += 1
        try:
            pooled = self._socket()
        except OSError as err:
            self.stats.errors += 1
            raise network_error(self.server, err) from None
        query = build(pooled.new_id())
        pooled.queries[query.qid] = waiter = PooledQuery(pooled, query, self, wake)
        pooled.pending += 1
        try:
            pooled.sock.send(query.message)
        except (BlockingIOError, InterruptedError) as err:  # the send buffer is full: as lost on the path
            self.stats.errors += 1
            waiter.settle(b"", network_error(self.server, err))
        except OSError as err:  # a pending ICMP error, an unreachable network: this socket is done
            self.stats.errors += 1
            waiter.close()
            pooled.fail(err)
            raise network_error(self.server, err) from None
        if len(pooled.queries) >= MAX_USES:
            self.retire(pooled)
        return waiter

    def _socket(self) -> PooledSocket:
        sockets = self.sockets
        if len(sockets) < SIZE:
            pooled = PooledSocket(self)
            sockets.append(pooled)
            return pooled
        index = self._next = (self._next + 1) % SIZE
        pooled = sockets[index]
        if self.loop.time() - pooled.opened >= MAX_AGE:
            self.retire(pooled)
            pooled = PooledSocket(self)
            sockets.append(pooled)
        return pooled

    def retire(self, pooled: PooledSocket) -> None:
        """No new queries for ``pooled``; it is closed when its last waiting query is done."""
        if pooled.retired:
            return
        pooled.retired = True
        self.sockets.remove(pooled)
        if pooled.pending == 0:
            pooled.close()

    def close(self) -> None:
        """Retire every socket: each closes when the queries still waiting on it are done."""
        for pooled in list(self.sockets):
            self.retire(pooled)
