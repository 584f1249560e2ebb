"""The query log: the server offers one :class:`Row` per query to a deque; a writer thread stores them in
SQLite (:class:`QueryLog`) or PostgreSQL (:class:`~blockdns.ops.querylog_pg.PostgresQueryLog`); both share
:class:`QueryLogWriter`, the queue and the writer thread's rhythm.

:meth:`QueryLog.offer` costs one ``len`` and one ``append`` (both atomic under the GIL), or a dropped row
counted when the writer has fallen behind, so DNS never waits for the disk.

The writer thread wakes every ``flush_interval`` seconds, or sooner when a batch is full (it looks every
50 ms), turns rows into records (wire names to text, client addresses masked per ``[querylog] clients``,
the client's name added when the log keeps full addresses, decisions to vendor/category/selector) and
commits each batch with one ``executemany``. It also purges rows older than ``retention_days`` at start
and then every ``purge_interval`` seconds (``retention_days = 0`` keeps everything).

Reading goes through :class:`~blockdns.ops.querylog_read.QueryLogReader`, which opens its own read-only
connection, so the API and ``blockdns log`` work while the server writes.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from blockdns.dnsname import text_key
from blockdns.ops.clientid import ClientMasker, QueryLogError
from blockdns.ops.querylog_db import INSERT, open_writer
from blockdns.ops.querylog_read import QueryLogReader
from blockdns.policy import Decision

if TYPE_CHECKING:
    from blockdns.config import QueryLogSettings
    from blockdns.ops.stats import ServerStats

log = logging.getLogger("blockdns.querylog")


class Row(NamedTuple):
    """One answered query as the server hands it over; the writer thread turns it into a stored record."""

    ts: float  # time.time() of the answer
    client: str  # the client's address (masked by the writer as ``[querylog] clients`` says)
    group: str
    qname_wire: bytes
    qtype: int
    outcome: str  # an Outcome value: resolved, cached, stale, blocked, local, refused, error
    rcode: int
    reason: str | None
    decision: Decision | None
    upstream: str | None
    duration_ms: float
    transport: str


Record = tuple[object, ...]

PURGE_CHUNK = 5000
# Past [querylog] max_rows the oldest rows go in one sweep that makes this much room (a share of the cap,
# at most TRIM_ROOM_MAX rows), so the delete runs once per many batches instead of after every one.
TRIM_ROOM_SHARE = 0.02
TRIM_ROOM_MAX = 50_000
# The lowest and highest row id: one seek each. (``SELECT min(id), max(id)`` in one select reads the whole
# table: SQLite's min/max shortcut applies only to a select of one of them.)
ROW_ID_RANGE = "SELECT (SELECT min(id) FROM queries), (SELECT max(id) FROM queries)"
POLL_INTERVAL = 0.05
ERROR_LOG_INTERVAL = 60.0


@functools.lru_cache(maxsize=1 << 16)
def qname_text(wire: bytes) -> str:
    """The presentation name of a lowercase wire name; the root is ``.``. Memoised: a log is mostly the
    same few thousand names, and the writer thread's CPU is taken from the server's."""
    try:
        return text_key(wire) or "."
    except IndexError:
        return wire.hex()


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
        self.queue: deque[Row] = deque()
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

    def offer(self, row: Row) -> None:
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

    def _idle(self) -> None:
        """Wait up to ``flush_interval``; stop early for a full batch, a flush, a purge or a stop.

        The hot path never signals (that would cost it a lock), so a full batch is noticed by polling the
        queue's length every ``POLL_INTERVAL``.
        """
        deadline = time.monotonic() + self.flush_interval
        while not self._stop.is_set() and not self._purge_requested and len(self.queue) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._wake.wait(min(remaining, POLL_INTERVAL)):
                self._wake.clear()
                return

    def _drain(self, conn: Conn) -> None:
        queue, popleft = self.queue, self.queue.popleft
        while queue and self._usable(conn):
            with self._cond:
                self._busy = True
            try:
                batch = [popleft() for _ in range(min(self.batch_size, len(queue)))]
                self._write(conn, batch)
                self._trim(conn)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, conn: Conn, batch: list[Row]) -> None:
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

    def _record(self, row: Row) -> Record:
        (
            ts,
            client,
            group,
            qname_wire,
            qtype,
            outcome,
            rcode,
            reason,
            decision,
            upstream,
            duration_ms,
            transport,
        ) = row
        assert self._masker is not None
        names = self.client_names
        client_name = names(client) if names is not None and self.settings.clients == "full" else None
        entry = selector = vendor = category = None
        if decision is not None:
            entry = decision.entry
            rule = decision.rule
            if rule is not None:
                selector = rule.selector
                if rule.vendor is not None:
                    vendor, category = rule.vendor.id, rule.vendor.category
                else:
                    category = rule.category
        return (
            ts,
            self._masker.mask(client),
            group,
            qname_text(qname_wire),
            qtype,
            outcome,
            rcode,
            reason,
            entry,
            selector,
            vendor,
            category,
            upstream,
            duration_ms,
            transport,
            client_name,
        )

    def _log_error(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error(message, *args)


class QueryLog(QueryLogWriter[sqlite3.Connection]):
    """The query log in a SQLite file."""

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

    def start(self) -> None:
        """Open the database (a bad path fails here, with one line) and start the writer thread."""
        if self._thread is not None:
            return
        try:
            conn = open_writer(self.path)
            self._masker = ClientMasker.for_database(self.settings.clients, self.path, create=True)
        except (sqlite3.Error, OSError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise QueryLogError(f"{self.path}: cannot open the query log: {reason}") from None
        self._start_thread(functools.partial(self._run, conn))

    def _run(self, conn: sqlite3.Connection) -> None:
        # The start-up purge runs before any row is written, so it only ever removes rows of earlier runs:
        # rows queued meanwhile wait for it, and a purge asked for later starts after it.
        try:
            self._purge(conn)
            next_purge = time.monotonic() + self.purge_interval
            while True:
                self._idle()
                self._drain(conn)
                now = time.monotonic()
                if now >= next_purge or self._purge_requested:
                    self._purge(conn)
                    next_purge = now + self.purge_interval
                if self._stop.is_set() and not self.queue:
                    break
        finally:
            conn.close()
            with self._cond:
                self._cond.notify_all()

    def _store(self, conn: sqlite3.Connection, records: list[Record]) -> bool:
        try:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(INSERT, records)
        except sqlite3.Error as err:
            self.write_errors += len(records)
            self._log_error("query log write failed, %d rows lost: %s", len(records), err)
            return False
        return True

    def _trim(self, conn: sqlite3.Connection) -> None:
        """Keep at most ``max_rows`` rows: past the cap, the oldest go, with some room made for what follows.

        Rows are only ever removed from the oldest end (here and by retention), so the ids of the rows kept
        are consecutive and their count is ``max(id) - min(id) + 1``: two lookups on the primary key.
        """
        cap = self.settings.max_rows
        if not cap:
            return
        try:
            low, high = conn.execute(ROW_ID_RANGE).fetchone()
            if low is None or high - low + 1 <= cap:
                return
            room = min(int(cap * TRIM_ROOM_SHARE), TRIM_ROOM_MAX)
            keep_from = high - (cap - room) + 1  # the oldest id kept
            removed = _delete_oldest(conn, "id < ?", keep_from)
        except sqlite3.Error as err:
            self._log_error("query log: removing rows past max_rows failed: %s", err)
            return
        if not self.trimmed:
            log.info("query log: reached max_rows = %d; the oldest rows now make room for new ones", cap)
        self.trimmed += removed

    def _purge(self, conn: sqlite3.Connection) -> None:
        removed = 0
        days = self.settings.retention_days
        try:
            if days > 0:
                removed = _delete_oldest(conn, "ts < ?", time.time() - days * 86400)
                if removed:
                    conn.execute("PRAGMA incremental_vacuum")
        except sqlite3.Error as err:
            self._log_error("query log retention purge failed: %s", err)
        self._purges_finished(removed)


def _delete_oldest(conn: sqlite3.Connection, condition: str, bound: float) -> int:
    """Delete the rows matching ``condition`` (one ``?`` for ``bound``) in chunks of ``PURGE_CHUNK``, each its
    own statement, so the writer never holds one huge delete; the number of rows deleted."""
    statement = f"DELETE FROM queries WHERE id IN (SELECT id FROM queries WHERE {condition} LIMIT ?)"
    removed = 0
    while True:
        count = conn.execute(statement, (bound, PURGE_CHUNK)).rowcount
        removed += count
        if count < PURGE_CHUNK:
            return removed
