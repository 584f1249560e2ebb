"""The link between the supervisor and one worker process: messages (tuples, pickled, each behind its length)
over a Unix socket pair that only the two of them hold; and the worker's query-log sink, which sends its rows
over that link in batches to the one writer the supervisor owns.

The socket pair is also the liveness signal: when either process dies, the other reads end-of-file. Pickle is
safe here because nothing but these two processes of one program can write to the pair.

Messages, supervisor to worker: ``("init", WorkerInit)`` first, then ``("reload", seq)``,
``("reload_local", seq)``, ``("stats", seq)``, ``("pause", monotonic_until)`` (0.0: blocking on).
Worker to supervisor: ``("ready", pid)``, ``("reloaded", seq, ok, message)``,
``("stats", seq, ServerStats, cache_entries)``, ``("rows", [row values, ...])``.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blockdns.ops.querylog import RowValues
    from blockdns.ops.stats import ServerStats

HEADER = struct.Struct("!I")
MAX_MESSAGE = 64 << 20  # a batch of rows is far smaller; a longer header means a broken peer
SINK_FLUSH_INTERVAL = 0.2  # seconds between two batches of query-log rows sent to the supervisor
SINK_BATCH = 2000  # rows per message at most


class LinkClosed(Exception):
    """The other end is gone (it exited or was killed) or sent something unreadable."""


@dataclass(frozen=True, slots=True)
class WorkerInit:
    """What a worker is told before it binds: whether the configuration changed since the supervisor started
    (then it reads it again rather than serve the startup policy it was forked with), the pause switch, and
    whether to send query-log rows."""

    reload: bool
    paused_until: float  # time.monotonic() instant; 0.0: blocking on
    querylog: bool


class Link:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Link:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE)
        return cls(reader, writer)

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue ``message`` (never waits; :meth:`drain` waits for the peer to take it). A closed link drops
        it: its reader sees the end and the owner acts on that."""
        if self._writer.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(HEADER.pack(len(data)) + data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def receive(self) -> tuple[Any, ...]:
        try:
            header = await self._reader.readexactly(HEADER.size)
            (size,) = HEADER.unpack(header)
            if size > MAX_MESSAGE:
                raise LinkClosed(f"a message of {size} bytes")
            message = pickle.loads(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            raise LinkClosed("end of file") from err
        if not isinstance(message, tuple) or not message:
            raise LinkClosed("not a message")
        return message

    def close(self) -> None:
        self._writer.close()


class ChannelSink:
    """A worker's query log: :meth:`offer` queues a row (one ``len`` and one ``append``, as the writer's own
    queue); every :data:`SINK_FLUSH_INTERVAL` the queued rows go to the supervisor, whose query-log writer
    stores them with every other worker's. Past ``capacity`` rows waiting, rows are dropped and counted in
    ``log_dropped``, as the writer does."""

    def __init__(self, link: Link, capacity: int, stats: ServerStats) -> None:
        self.link = link
        self.capacity = capacity
        self.stats = stats
        self.queue: deque[RowValues] = deque()

    def offer(self, row: RowValues) -> None:
        if len(self.queue) < self.capacity:
            self.queue.append(row)
        else:
            self.stats.log_dropped += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SINK_FLUSH_INTERVAL)
            self.flush()
            await self.link.drain()  # the supervisor is slow: wait for it here, never in offer()

    def flush(self) -> None:
        queue, popleft = self.queue, self.queue.popleft
        while queue:
            self.link.send(("rows", [popleft() for _ in range(min(len(queue), SINK_BATCH))]))
