"""The query log: the server offers one row per query (a :class:`Row`'s
fields as a plain tuple) to a deque; a writer thread takes them in
batches. For SQLite (:class:`QueryLog`) the thread hands each batch to a writer process
(:mod:`blockdns.ops.querylog_store`), which owns the database, so the SQLite work runs outside the server's
interpreter lock; for PostgreSQL (:class:`~blockdns.ops.querylog_pg.PostgresQueryLog`) the thread stores them
itself. Both share :class:`QueryLogWriter`: the queue and the writer thread's rhythm.

:meth:`QueryLogWriter.offer` costs one ``len`` and one ``append`` (both atomic under the GIL), or a dropped
row counted when the writer has fallen behind, so DNS never waits for the disk.

The writer thread wakes every ``flush_interval`` seconds, or sooner when a batch is full (it looks every
50 ms). A batch's rows become records (wire names to text, client addresses masked per ``[querylog]
clients``, the client's name added when the log keeps full addresses, decisions to vendor/category/selector)
and are committed with one ``executemany`` (SQLite) or ``COPY`` (PostgreSQL). Rows older than
``retention_days`` are purged at start and then every ``purge_interval`` seconds (``retention_days = 0``
keeps everything); past ``max_rows`` the oldest go after each batch.

Reading goes through :class:`~blockdns.ops.querylog_read.QueryLogReader`, which opens its own read-only
connection, so the API and ``blockdns log`` work while the server writes.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from blockdns.ops.clientid import ClientMasker, QueryLogError
from blockdns.ops.querylog_process import WriterGone, WriterProcess
from blockdns.ops.querylog_read import QueryLogReader
from blockdns.ops.querylog_rows import (
    PURGE_CHUNK,
    ROW_ID_RANGE,
    TRIM_ROOM_MAX,
    TRIM_ROOM_SHARE,
    Record,
    Row,
    RowValues,
    Spelled,
    qname_text,
    spell,
    to_record,
)

if TYPE_CHECKING:
    from blockdns.config import QueryLogSettings
    from blockdns.ops.querylog_store import Report
    from blockdns.ops.stats import ServerStats
    from blockdns.policy import Decision

__all__ = [
    "PURGE_CHUNK",
    "ROW_ID_RANGE",
    "TRIM_ROOM_MAX",
    "TRIM_ROOM_SHARE",
    "QueryLog",
    "QueryLogWriter",
    "Record",
    "Row",
    "RowValues",
    "qname_text",
]

log = logging.getLogger("blockdns.querylog")

POLL_INTERVAL = 0.05
ERROR_LOG_INTERVAL = 60.0
RESTART_FIRST = 0.25  # seconds before a failed writer-process start is tried again; doubles up to RESTART_MAX
RESTART_MAX = 10.0
MAX_SPELLED = 65_536  # decisions remembered spelled out; cleared when full


Conn = TypeVar("Conn")


class QueryLogWriter(Generic[Conn]):
    """A bounded queue in front of a writer thread, plus read access for the API and CLI. A store's subclass
    opens its connection in :meth:`start`, runs the thread, and stores, trims and purges through it."""

    reader: QueryLogReader
    location: str  # the store as messages and the API show it (a URL without its password)

    def __init__(
        self,
        settings: QueryLogSettings,
        stats: ServerStats,
        *,
        batch_size: int = 1000,
        flush_interval: float = 0.5,
        purge_interval: float = 3600.0,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.capacity = settings.queue_size
        self.queue: deque[RowValues] = deque()
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.purge_interval = purge_interval
        self.written = 0  # rows committed
        self.write_errors = 0  # rows lost because SQLite refused a batch (disk full, I/O error)
        self.purged = 0  # rows removed by retention
        self.trimmed = 0  # rows removed by the [querylog] max_rows cap
        # The name of a client address, when the server knows one (set by the server; read by the writer
        # thread, off the hot path). Stored only when the log keeps full addresses.
        self.client_names: Callable[[str], str | None] | None = None
        self._masker: ClientMasker | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._busy = False
        self._purge_requested = False
        self._purges_done = 0
        self._last_error_log = 0.0

    # ----------------------------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        raise NotImplementedError

    def _start_thread(self, target: Callable[[], None]) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=target, name="blockdns-querylog", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread and close the database."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning(
                "query log writer did not finish within %.0fs; %d rows unwritten", timeout, len(self.queue)
            )
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row queued so far is committed; False on timeout or when not running."""
        if not self.running:
            return not self.queue
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._cond:
            while self.queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    return False
                self._wake.set()
                self._cond.wait(min(remaining, 0.05))
        return True

    def purge(self, timeout: float = 10.0) -> int:
        """Run the retention purge now (in the writer thread) and return how many rows it removed."""
        if not self.running:
            return 0
        with self._cond:
            before, done = self.purged, self._purges_done
            self._purge_requested = True
            self._wake.set()
            deadline = time.monotonic() + timeout
            while self._purges_done == done and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return self.purged - before

    # ------------------------------------------------------------------------------------------- writing

    def offer(self, row: RowValues) -> None:
        """Queue ``row`` for the writer; when the queue is full, drop it and count the drop."""
        if len(self.queue) < self.capacity:
            self.queue.append(row)
        else:
            self.stats.log_dropped += 1

    # -------------------------------------------------------------------------------------------- reading

    def recent(
        self,
        limit: int = 100,
        blocked_only: bool = False,
        client: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, object]]:
        return self.reader.recent(limit=limit, blocked_only=blocked_only, client=client, since=since)

    def summary(self, since: float | None = None) -> dict[str, object]:
        return self.reader.summary(since=since)

    # ------------------------------------------------------------------------------------- writer thread

    def _idle(self) -> bool:
        """Wait up to ``flush_interval``; stop early for a full batch, a flush, a purge or a stop. False when
        it stopped for a full batch (store full batches only: the rest may be a batch being filled), True
        otherwise (store everything queued).

        The hot path never signals (that would cost it a lock), so a full batch is noticed by polling the
        queue's length every ``POLL_INTERVAL``.
        """
        deadline = time.monotonic() + self.flush_interval
        while not self._stop.is_set() and not self._purge_requested:
            if len(self.queue) >= self.batch_size:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._wake.wait(min(remaining, POLL_INTERVAL)):
                self._wake.clear()
                return True
        return True

    def _drain(self, conn: Conn, everything: bool = True) -> None:
        """Store the queue in batches: all of it, or (``everything`` False) its full batches."""
        queue, popleft, size = self.queue, self.queue.popleft, self.batch_size
        while queue and (everything or len(queue) >= size) and self._usable(conn):
            with self._cond:
                self._busy = True
            try:
                batch = [popleft() for _ in range(min(size, len(queue)))]
                self._write(conn, batch)
                self._trim(conn)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, conn: Conn, batch: list[RowValues]) -> None:
        try:
            records = [self._record(row) for row in batch]
        except Exception as err:  # a malformed row is a server bug: lose the batch, keep the writer alive
            self.write_errors += len(batch)
            self._log_error("query log: cannot store a row, %d rows lost: %r", len(batch), err)
            return
        if self._store(conn, records):
            self.written += len(records)

    def _usable(self, conn: Conn) -> bool:
        """False once the connection is lost: the rows stay queued for the next one."""
        return True

    def _store(self, conn: Conn, records: list[Record]) -> bool:
        """Commit ``records``; False, with the loss counted and logged, when the store refused them."""
        raise NotImplementedError

    def _trim(self, conn: Conn) -> None:
        """Remove the oldest rows past ``[querylog] max_rows``; called after every batch."""
        raise NotImplementedError

    def _purges_finished(self, removed: int) -> None:
        with self._cond:
            self.purged += removed
            self._purges_done += 1
            self._purge_requested = False
            self._cond.notify_all()
        if removed:
            log.info("query log: purged %d rows older than %d days", removed, self.settings.retention_days)

    def _record(self, row: RowValues) -> Record:
        assert self._masker is not None
        names = self.client_names if self.settings.clients == "full" else None
        return to_record(row, self._masker, names)

    def _log_error(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error(message, *args)


class QueryLog(QueryLogWriter[WriterProcess]):
    """The query log in a SQLite file, written by a writer process that this writer thread feeds.

    A writer process that dies is started again for the next batch; the batch it was storing is counted in
    ``write_errors`` and the death logged (one line). While it cannot be started, rows wait in the queue
    (past ``queue_size`` they are dropped and counted) and a new start is tried with a doubling delay.
    """

    def __init__(
        self,
        settings: QueryLogSettings,
        path: Path,
        stats: ServerStats,
        *,
        batch_size: int = 1000,
        flush_interval: float = 0.5,
        purge_interval: float = 3600.0,
    ) -> None:
        super().__init__(
            settings,
            stats,
            batch_size=batch_size,
            flush_interval=flush_interval,
            purge_interval=purge_interval,
        )
        self.path = Path(path)
        self.location = str(self.path)
        self.reader = QueryLogReader(self.path, settings.clients)
        self.process = WriterProcess(settings, self.path)
        self.restarts = 0  # writer processes started again after one died
        self._restart_at = 0.0
        self._restart_delay = RESTART_FIRST
        self._restart_failing = False
        # id(decision) -> (decision, what the log keeps of it); the decision is held so its id stays its own
        self._spelled: dict[int, tuple[Decision, Spelled]] = {}

    def start(self) -> None:
        """Start the writer process (a bad path fails here, with one line) and the writer thread."""
        if self._thread is not None:
            return
        self.process.start()
        self._start_thread(functools.partial(self._run, self.process))

    def _run(self, process: WriterProcess) -> None:
        # The start-up purge runs before any row is written, so it only ever removes rows of earlier runs:
        # rows queued meanwhile wait for it, and a purge asked for later starts after it.
        try:
            self._purge(process)
            next_purge = time.monotonic() + self.purge_interval
            while True:
                self._drain(process, self._idle())
                now = time.monotonic()
                if now >= next_purge or self._purge_requested:
                    self._purge(process)
                    next_purge = now + self.purge_interval
                if self._stop.is_set() and (not self.queue or not process.alive):
                    break
        finally:
            report = process.stop()
            if report is not None:
                self._take(report)
            unwritten = len(self.queue)
            if unwritten:  # only when no writer process could be started
                self.queue.clear()
                self.write_errors += unwritten
                log.warning("query log: no writer process at shutdown; %d rows not written", unwritten)
            with self._cond:
                self._cond.notify_all()

    def _usable(self, process: WriterProcess) -> bool:
        """True when the writer process runs, or has been started again after it died."""
        if process.alive:
            return True
        now = time.monotonic()
        if now < self._restart_at:
            return False
        try:
            process.start()
        except QueryLogError as err:
            self._restart_at = now + self._restart_delay
            self._restart_delay = min(self._restart_delay * 2, RESTART_MAX)
            if not self._restart_failing:
                self._restart_failing = True
                log.error(
                    "query log: cannot start the writer process again (%s); rows wait in the queue (at most"
                    " %d, then dropped and counted) while it retries",
                    err,
                    self.capacity,
                )
            return False
        self.restarts += 1
        if self._restart_failing:
            self._restart_failing = False
            log.warning("query log: writer process started again (pid %s)", process.pid)
        self._restart_delay = RESTART_FIRST
        return True

    def _write(self, process: WriterProcess, batch: list[RowValues]) -> None:
        try:
            report = process.request(("rows", self._compact(batch), self._client_names(batch)))
        except WriterGone as err:
            self.write_errors += len(batch)
            log.error("query log: the writer process %s; %d rows lost; starting another", err, len(batch))
            return
        except Exception as err:  # a row that cannot be sent is a server bug: lose the batch, not the writer
            self.write_errors += len(batch)
            self._log_error("query log: cannot store a row, %d rows lost: %r", len(batch), err)
            return
        self._take(report)

    def _compact(self, batch: list[RowValues]) -> list[tuple[object, ...]]:
        """The batch as the writer process gets it: plain tuples (a Row, as tests offer, pickles through a
        Python-level ``__getnewargs__``, about 0.7 µs a row; ``tuple()`` of a plain tuple is that tuple),
        decisions spelled out (a Decision's object graph costs microseconds to pickle), each distinct decision
        once (they are the policy's memoised objects)."""
        spelled = self._spelled
        if len(spelled) > MAX_SPELLED:
            spelled.clear()
        compact: list[tuple[object, ...]] = []
        append = compact.append
        for row in batch:
            decision = row[8]
            if decision is None:
                append(tuple(row))
                continue
            known = spelled.get(id(decision))
            if known is None or known[0] is not decision:
                known = spelled[id(decision)] = (decision, spell(decision))
            append((*row[:8], known[1], *row[9:]))
        return compact

    def _client_names(self, batch: list[RowValues]) -> dict[str, str | None]:
        """The names of the batch's clients, looked up here, where the server's name table is."""
        names = self.client_names
        if names is None or self.settings.clients != "full":
            return {}
        try:
            return {address: names(address) for address in {row[1] for row in batch}}
        except Exception:  # a malformed row: the writer process counts it
            return {}

    def _take(self, report: Report) -> int:
        """Count what a report says was done; the rows it purged."""
        written, errors, trimmed, purged, lines = report
        self.written += written
        self.write_errors += errors
        self.trimmed += trimmed
        for level, line in lines:
            log.log(level, "%s", line)
        return purged

    def _trim(self, process: WriterProcess) -> None:
        """The writer process trims after every batch it stores."""

    def _purge(self, process: WriterProcess) -> None:
        removed = 0
        if self._usable(process):
            try:
                removed = self._take(process.request(("purge",)))
            except WriterGone as err:
                log.error("query log: the writer process %s during a retention purge; starting another", err)
        self._purges_finished(removed)
