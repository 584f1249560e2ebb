"""The query log in PostgreSQL: every replica's writer thread copies its batches into one shared table.

DNS never waits for the database. While it is unreachable, rows wait in the bounded queue; past
``[querylog] queue_size`` they are dropped and counted (``blockdns_querylog_dropped``), as when a writer falls
behind; a batch that was being written when the connection broke is counted in ``write_errors``. The loss is
logged once, and so is the reconnection (with how many rows were dropped meanwhile); the writer retries with
a doubling delay up to :data:`RETRY_MAX`.

Batches go in with ``COPY`` (one round trip per batch). Retention and ``max_rows`` delete the oldest rows in
chunks, as with SQLite; a session advisory lock lets one replica at a time do it, the others skip their turn.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import psycopg

from blockdns.logstore import redact, scrub
from blockdns.ops.querylog import PURGE_CHUNK, TRIM_ROOM_MAX, TRIM_ROOM_SHARE, QueryLogWriter, Record
from blockdns.ops.querylog_pg_read import PostgresQueryLogReader
from blockdns.ops.querylog_pgdb import COPY, TABLE, TRIM_LOCK, open_writer, writer_masker

if TYPE_CHECKING:
    from blockdns.config import QueryLogSettings
    from blockdns.ops.stats import ServerStats

log = logging.getLogger("blockdns.querylog")

RETRY_FIRST = 0.25  # seconds before the first reconnection attempt; doubles up to RETRY_MAX
RETRY_MAX = 10.0
ROW_ID_RANGE = f"SELECT min(id), max(id) FROM {TABLE}"  # PostgreSQL answers both from the primary key

Connection = psycopg.Connection[Any]


class PostgresQueryLog(QueryLogWriter[Connection]):
    """The query log in a PostgreSQL database that several replicas share."""

    def __init__(
        self,
        settings: QueryLogSettings,
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
        self.url = settings.path
        self.location = redact(self.url)
        self.replica = settings.replica or socket.gethostname()
        self.reader = PostgresQueryLogReader(self.url, settings.clients)
        self.connected = False
        self._outage_logged = False
        self._dropped_at_last_write = 0  # stats.log_dropped after the last batch written

    def start(self) -> None:
        """Start the writer thread; it connects (and keeps reconnecting) on its own, so an unreachable
        database delays nothing."""
        if self._thread is None:
            self._start_thread(self._run)

    # ------------------------------------------------------------------------------------- writer thread

    def _run(self) -> None:
        conn: Connection | None = None
        delay = RETRY_FIRST
        try:
            while True:
                if conn is None:
                    conn = self._connect()
                    if conn is None:
                        if self._stop.is_set():
                            break
                        if self._purge_requested:  # nothing to purge from: answer at once
                            self._purges_finished(0)
                        self._stop.wait(delay)
                        delay = min(delay * 2, RETRY_MAX)
                        continue
                    delay = RETRY_FIRST
                    self._purge(conn)  # as with SQLite: before this connection writes a row
                    next_purge = time.monotonic() + self.purge_interval
                self._drain(conn, self._idle())
                if conn.closed:  # lost while draining: the rows left wait for the next connection
                    conn = None
                    continue
                now = time.monotonic()
                if now >= next_purge or self._purge_requested:
                    self._purge(conn)
                    next_purge = now + self.purge_interval
                if self._stop.is_set() and not self.queue:
                    break
        finally:
            if conn is not None:
                conn.close()
            self.connected = False
            unwritten = len(self.queue)
            if unwritten:
                self.queue.clear()
                self.write_errors += unwritten
                log.warning(
                    "query log: %s unreachable at shutdown; %d rows not written", self.location, unwritten
                )
            with self._cond:
                self._cond.notify_all()

    def _connect(self) -> Connection | None:
        conn = None
        try:
            conn = open_writer(self.url)
            self._masker = writer_masker(conn, self.settings.clients)
        except psycopg.Error as err:
            if conn is not None:
                conn.close()
            if not self._outage_logged:
                self._outage_logged = True
                log.error(
                    "query log: cannot reach %s (%s); rows wait in the queue (at most %d, then dropped and"
                    " counted) while it retries",
                    self.location,
                    self._reason(err),
                    self.capacity,
                )
            return None
        self.connected = True
        if self._outage_logged:
            self._outage_logged = False
            log.warning(
                "query log: reconnected to %s; %d rows were dropped while it was away",
                self.location,
                self.stats.log_dropped - self._dropped_at_last_write,
            )
        else:
            log.info("query log: writing to %s as replica %r", self.location, self.replica)
        return conn

    def _usable(self, conn: Connection) -> bool:
        return not conn.closed

    def _store(self, conn: Connection, records: list[Record]) -> bool:
        replica = self.replica
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY) as copy:
                for record in records:
                    copy.write_row((*record, replica))
        except psycopg.Error as err:
            self.write_errors += len(records)
            if conn.closed:
                self.connected = False
                self._outage_logged = True
                log.error(
                    "query log: lost %s (%s), %d rows lost; rows wait in the queue (at most %d, then dropped"
                    " and counted) while it reconnects",
                    self.location,
                    self._reason(err),
                    len(records),
                    self.capacity,
                )
            else:
                self._log_error("query log write failed, %d rows lost: %s", len(records), self._reason(err))
            return False
        self._dropped_at_last_write = self.stats.log_dropped
        return True

    def _trim(self, conn: Connection) -> None:
        """As with SQLite: past ``max_rows`` (counted as ``max(id) - min(id) + 1``, which gaps a failed batch
        leaves in the ids only overstate), the oldest rows go, with room made for what follows."""
        cap = self.settings.max_rows
        if not cap or conn.closed:
            return
        try:
            low, high = conn.execute(ROW_ID_RANGE).fetchone() or (None, None)
            if low is None or high is None or high - low + 1 <= cap:
                return
            room = min(int(cap * TRIM_ROOM_SHARE), TRIM_ROOM_MAX)
            removed = self._delete_oldest(conn, "id < %s", high - (cap - room) + 1)
        except psycopg.Error as err:
            self._log_error("query log: removing rows past max_rows failed: %s", self._reason(err))
            return
        if removed and not self.trimmed:
            log.info("query log: reached max_rows = %d; the oldest rows now make room for new ones", cap)
        self.trimmed += removed

    def _purge(self, conn: Connection) -> None:
        removed = 0
        days = self.settings.retention_days
        try:
            if days > 0:
                removed = self._delete_oldest(conn, "ts < %s", time.time() - days * 86400)
        except psycopg.Error as err:
            self._log_error("query log retention purge failed: %s", self._reason(err))
        self._purges_finished(removed)

    @staticmethod
    def _delete_oldest(conn: Connection, condition: str, bound: float) -> int:
        """Delete the rows matching ``condition`` in chunks of PURGE_CHUNK, when no other replica is at it."""
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (TRIM_LOCK,)).fetchone()
        if not locked or not locked[0]:
            return 0
        statement = f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} WHERE {condition} LIMIT %s)"
        removed = 0
        try:
            while True:
                count = conn.execute(statement, (bound, PURGE_CHUNK)).rowcount
                removed += count
                if count < PURGE_CHUNK:
                    return removed
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (TRIM_LOCK,))

    def _reason(self, err: psycopg.Error) -> str:
        text = str(err).strip()
        return scrub(text.splitlines()[0] if text else type(err).__name__, self.url)
