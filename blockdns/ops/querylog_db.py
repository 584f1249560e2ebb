"""The query log's SQLite schema and its two kinds of connection: the writer's and a read-only one.

One table, one row per answered query. WAL mode lets readers (the API, ``blockdns log``) run while the
writer thread commits; a reader never blocks the writer and the writer never blocks a reader.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from blockdns.ops.clientid import QueryLogError

SCHEMA_VERSION = 4  # 2: client_name; 3: one index by time (queries_by_ts) for the two below; 4: client_id
# Schema 2's indexes. (client, ts) cost the writer as much again as the row itself with a few hundred
# clients: every batch touched one leaf page per client.
OLD_INDEXES = ("queries_ts_outcome", "queries_client_ts")
DB_MODE = 0o640

SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    id          INTEGER PRIMARY KEY,
    ts          REAL    NOT NULL,   -- time.time() when the query arrived
    client      TEXT,               -- address, keyed hash, or NULL (per [querylog] clients)
    grp         TEXT    NOT NULL,   -- client group
    qname       TEXT    NOT NULL,
    qtype       INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,   -- resolved | cached | stale | blocked | local | refused | error
    rcode       INTEGER NOT NULL,
    reason      TEXT,
    rule        TEXT,               -- the matching entry (domain or range)
    selector    TEXT,               -- the policy selector that put it there
    vendor      TEXT,
    category    TEXT,
    upstream    TEXT,
    duration_ms REAL    NOT NULL,
    transport   TEXT    NOT NULL,
    client_name TEXT,               -- the client's name when known (local data, a forward zone's PTR)
    client_id   TEXT                -- the client ID that chose the group (a DoH path, a DoT SNI name)
);
-- Rows arrive in time order, so this index grows at its end: cheap to keep. It covers the summary's time
-- series and totals, a client's counts and name, and `blockdns log --client` finds a client's rows in it.
CREATE INDEX IF NOT EXISTS queries_by_ts ON queries (ts, outcome, client, client_name);
-- Blocked rows only (a few percent): top vendors, names and clients, and "recent blocked".
CREATE INDEX IF NOT EXISTS queries_blocked_ts ON queries (ts) WHERE outcome = 'blocked';
"""

COLUMNS = (
    "ts", "client", "grp", "qname", "qtype", "outcome", "rcode", "reason", "rule", "selector", "vendor",
    "category", "upstream", "duration_ms", "transport", "client_name", "client_id",
)  # fmt: skip
# The text columns that may be empty. Python's sqlite3 binds a None through its adapter lookup, about 0.3 µs
# each, and a typical row has seven; an int binds directly. So the writer's records carry NO_TEXT where one
# is empty, and NULLIF stores NULL for it. No text equals the integer 0 in SQLite (a bound value has no
# affinity), so a real value is never lost; a None still binds as NULL.
NULLABLE = frozenset(
    {"client", "reason", "rule", "selector", "vendor", "category", "upstream", "client_name", "client_id"}
)
NO_TEXT = 0
INSERT = (
    f"INSERT INTO queries ({', '.join(COLUMNS)}) VALUES"
    f" ({', '.join(f'NULLIF(?, {NO_TEXT})' if name in NULLABLE else '?' for name in COLUMNS)})"
)


def open_writer(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database for writing, in WAL mode with the schema in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Who asked for what is personal data: the file (and the -wal/-shm files SQLite gives the same mode)
    # is readable by its owner and group only, whatever the umask.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_MODE))
    conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            # auto_vacuum only takes effect before the first table exists.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes of the process
        if version == 1:  # a log written before client names: the column is added, old rows keep NULL
            conn.execute("ALTER TABLE queries ADD COLUMN client_name TEXT")
        if 0 < version < 4:  # a log written before client IDs: likewise
            conn.execute("ALTER TABLE queries ADD COLUMN client_id TEXT")
        # One transaction: a reader sees the old indexes or the new one, never neither.
        drop = "".join(f"DROP INDEX IF EXISTS {name};" for name in OLD_INDEXES) if version < 3 else ""
        conn.executescript(f"BEGIN; {SCHEMA} {drop} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection; raises :class:`QueryLogError` with one clear line when that is impossible."""
    if not path.exists():
        raise QueryLogError(
            f"{path}: no query log yet (the server creates it when it starts with the log on)", exit_code=1
        )
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT 1 FROM queries LIMIT 1")
    except sqlite3.Error as err:
        if conn is not None:
            conn.close()
        raise QueryLogError(f"{path}: cannot read the query log: {err}", exit_code=1) from None
    return conn
