"""The SQLite query log's writer process: it owns the database, and the server sends it batches of rows.

The server's writer thread (:class:`~blockdns.ops.querylog.QueryLog`) sends each batch of rows (plain tuples),
pickled, over a socket pair, with the names of the batch's clients; this process turns them into records
(client addresses masked, wire names to text, decisions spelled out), commits each batch with one
``executemany``, trims past ``[querylog] max_rows`` and purges past ``retention_days`` when asked. So the
SQLite work, the bulk of a row's cost, runs under this process's own interpreter lock, and the kernel may
run it on another core than the server's.

Every request gets one :data:`Report` back: the rows written, lost, trimmed and purged since the last one,
and the log lines this process wanted written (the server logs them). The process ignores SIGINT and SIGTERM
(a terminal's Ctrl-C and a service manager's stop reach the whole process group): it stops when the server
says so, after its last batch, or when the server is gone (end of file on the socket).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sqlite3
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from blockdns.ops.clientid import ClientMasker, QueryLogError
from blockdns.ops.querylog_db import INSERT, NO_TEXT, open_writer
from blockdns.ops.querylog_rows import (
    PURGE_CHUNK,
    ROW_ID_RANGE,
    TRIM_ROOM_MAX,
    TRIM_ROOM_SHARE,
    Record,
    RowValues,
    to_record,
)

if TYPE_CHECKING:
    from blockdns.config import QueryLogSettings

log = logging.getLogger("blockdns.querylog")

ERROR_LOG_INTERVAL = 60.0
# (written, write_errors, trimmed, purged, [(level, message), ...]) since the last report
Report = tuple[int, int, int, int, list[tuple[int, str]]]


class SQLiteStore:
    """The query log's SQLite file, written by one connection."""

    def __init__(self, settings: QueryLogSettings, path: Path) -> None:
        self.settings = settings
        self.path = path
        try:
            self.conn = open_writer(path)
            self.masker = ClientMasker.for_database(settings.clients, path, create=True)
        except (sqlite3.Error, OSError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise QueryLogError(f"{path}: cannot open the query log: {reason}") from None
        self.written = self.write_errors = self.trimmed = self.purged = 0
        self._capped = False  # max_rows reached: said once
        self._last_error_log = 0.0

    def close(self) -> None:
        self.conn.close()

    def write(self, batch: list[RowValues], names: dict[str, str | None]) -> None:
        """Store ``batch`` (``names``: client address -> name, when the log keeps full addresses)."""
        lookup = names.get if self.settings.clients == "full" else None
        try:
            records = [to_record(row, self.masker, lookup, NO_TEXT) for row in batch]
        except Exception as err:  # a malformed row is a server bug: lose the batch, keep the writer alive
            self.write_errors += len(batch)
            self._log_error("query log: cannot store a row, %d rows lost: %r", len(batch), err)
            return
        if self._store(records):
            self.written += len(records)
        self._trim()

    def _store(self, records: list[Record]) -> bool:
        try:
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.executemany(INSERT, records)
        except sqlite3.Error as err:
            self.write_errors += len(records)
            self._log_error("query log write failed, %d rows lost: %s", len(records), err)
            return False
        return True

    def _trim(self) -> None:
        """Keep at most ``max_rows`` rows: past the cap, the oldest go, with some room made for what follows.

        Rows are only ever removed from the oldest end (here and by retention), so the ids of the rows kept
        are consecutive and their count is ``max(id) - min(id) + 1``: two lookups on the primary key.
        """
        cap = self.settings.max_rows
        if not cap:
            return
        try:
            low, high = self.conn.execute(ROW_ID_RANGE).fetchone()
            if low is None or high - low + 1 <= cap:
                return
            room = min(int(cap * TRIM_ROOM_SHARE), TRIM_ROOM_MAX)
            keep_from = high - (cap - room) + 1  # the oldest id kept
            removed = self._delete_oldest("id < ?", keep_from)
        except sqlite3.Error as err:
            self._log_error("query log: removing rows past max_rows failed: %s", err)
            return
        if not self._capped:
            self._capped = True
            log.info("query log: reached max_rows = %d; the oldest rows now make room for new ones", cap)
        self.trimmed += removed

    def purge(self) -> None:
        """Remove the rows older than ``retention_days`` (0: keep everything)."""
        days = self.settings.retention_days
        try:
            if days > 0:
                removed = self._delete_oldest("ts < ?", time.time() - days * 86400)
                if removed:
                    self.conn.execute("PRAGMA incremental_vacuum")
                    self.purged += removed
        except sqlite3.Error as err:
            self._log_error("query log retention purge failed: %s", err)

    def _delete_oldest(self, condition: str, bound: float) -> int:
        """Delete the rows matching ``condition`` (one ``?`` for ``bound``) in chunks of ``PURGE_CHUNK``, each
        its own statement, so the writer never holds one huge delete; the number of rows deleted."""
        statement = f"DELETE FROM queries WHERE id IN (SELECT id FROM queries WHERE {condition} LIMIT ?)"
        removed = 0
        while True:
            count = self.conn.execute(statement, (bound, PURGE_CHUNK)).rowcount
            removed += count
            if count < PURGE_CHUNK:
                return removed

    def report(self, lines: list[tuple[int, str]]) -> Report:
        """What happened since the last report; the counters start again at zero."""
        report = (self.written, self.write_errors, self.trimmed, self.purged, lines[:])
        self.written = self.write_errors = self.trimmed = self.purged = 0
        lines.clear()
        return report

    def _log_error(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error(message, *args)


class _Lines(logging.Handler):
    """Keeps this process's log lines for the next report: the server writes them to its own log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


def serve(conn: Connection) -> None:
    """Answer the server's requests until it says stop or goes away. The first message is the settings and
    the path; the answer is ``("ready", None)`` or ``("error", message)``."""
    handler = _Lines()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    settings, path = pickle.loads(conn.recv_bytes())
    try:
        store = SQLiteStore(settings, Path(path))
    except QueryLogError as err:
        conn.send_bytes(pickle.dumps(("error", str(err))))
        return
    conn.send_bytes(pickle.dumps(("ready", None)))
    try:
        while True:
            try:
                request = pickle.loads(conn.recv_bytes())
            except EOFError:  # the server is gone: what was sent is committed, nothing more will come
                return
            kind = request[0]
            if kind == "rows":
                store.write(request[1], request[2])
            elif kind == "purge":
                store.purge()
            conn.send_bytes(pickle.dumps(store.report(handler.lines), pickle.HIGHEST_PROTOCOL))
            if kind == "stop":
                return
    finally:
        store.close()


def main() -> None:
    """``python -m blockdns.ops.querylog_store FD``: serve the server on the socket FD."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    try:
        serve(conn)
    except (EOFError, OSError):
        pass  # the server went away before its first request
    finally:
        conn.close()
    os._exit(0)  # nothing else to wait for; skips the interpreter's teardown


if __name__ == "__main__":
    main()
