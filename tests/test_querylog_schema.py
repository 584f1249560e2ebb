"""The SQLite query log's schema: a log an older server wrote is read as it is and upgraded on open without
changing an answer, and the summary's top clients (counts, most recent name) come out right."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from unittest import mock

from blockdns.ops import querylog_read
from blockdns.ops.clientid import ClientMasker
from blockdns.ops.querylog_db import COLUMNS, INSERT, NO_TEXT, SCHEMA_VERSION, open_writer
from blockdns.ops.querylog_read import QueryLogReader
from blockdns.ops.querylog_rows import to_record

NOW = 1_790_000_000.0

# The query log as blockdns wrote it with client names and before the one index by time (schema 2).
SCHEMA_2 = """
CREATE TABLE queries (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, client TEXT, grp TEXT NOT NULL, qname TEXT NOT NULL,
    qtype INTEGER NOT NULL, outcome TEXT NOT NULL, rcode INTEGER NOT NULL, reason TEXT, rule TEXT,
    selector TEXT, vendor TEXT, category TEXT, upstream TEXT, duration_ms REAL NOT NULL,
    transport TEXT NOT NULL, client_name TEXT
);
CREATE INDEX queries_ts_outcome ON queries (ts, outcome);
CREATE INDEX queries_blocked_ts ON queries (ts) WHERE outcome = 'blocked';
CREATE INDEX queries_client_ts ON queries (client, ts);
PRAGMA user_version = 2;
"""
SCHEMA_2_COLUMNS = COLUMNS[: COLUMNS.index("client_id")]
INSERT_2 = (
    f"INSERT INTO queries ({', '.join(SCHEMA_2_COLUMNS)}) VALUES ({', '.join('?' * len(SCHEMA_2_COLUMNS))})"
)


def record(
    ts: float, client: str, name: str, outcome: str = "resolved", client_name: str | None = None
) -> tuple:
    blocked = outcome == "blocked"
    return (
        ts, client, "default", name, 1, outcome, 3 if blocked else 0, "vendor" if blocked else None,
        "tracker.example" if blocked else None, None, "acme" if blocked else None, "ads" if blocked else None,
        None if blocked else "192.0.2.53:53", 1.5, "udp", client_name,
    )  # fmt: skip


RECORDS = [
    # 10.0.0.7 was "laptop", then "laptop-2", then asked once more without a known name.
    record(NOW - 3000, "10.0.0.7", "tracker.example", "blocked", "laptop"),
    record(NOW - 2000, "10.0.0.7", "tracker.example", "blocked", "laptop-2"),
    record(NOW - 1000, "10.0.0.7", "www.example", "resolved", None),
    record(NOW - 900, "10.0.0.8", "tracker.example", "blocked", None),
    record(NOW - 800, "10.0.0.8", "www.example", "cached", None),
    record(NOW - 700, "10.0.0.8", "www.example", "cached", None),
    record(NOW - 600, "10.0.0.9", "www.example", "resolved", "phone"),
    record(NOW - 7200, "10.0.0.7", "tracker.example", "blocked", "before-the-period"),
]


def answers(path: Path) -> list[object]:
    reader = QueryLogReader(path)
    with mock.patch.object(querylog_read.time, "time", return_value=NOW):
        return [
            reader.summary(),
            reader.summary(since=NOW - 3600),
            reader.recent(100),
            reader.recent(100, blocked_only=True),
            reader.recent(100, client="10.0.0.8"),
            reader.recent(100, client="10.0.0.7", since=NOW - 2500),
        ]


def indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_a_schema_2_log_is_read_as_it_is_and_upgraded_on_open_with_the_same_answers(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_2)
        conn.executemany(INSERT_2, RECORDS)
    before = answers(path)  # read before the upgrade: the reader uses schema 2's indexes

    open_writer(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert indexes(path) == {"queries_by_ts", "queries_blocked_ts"}
    assert answers(path) == before

    conn = open_writer(path)  # opening an upgraded log again changes nothing
    conn.execute(INSERT, (*record(NOW - 10, "10.0.0.9", "new.example"), "laptop7"))
    conn.close()
    assert indexes(path) == {"queries_by_ts", "queries_blocked_ts"}
    newest, older = QueryLogReader(path).recent(2)
    assert (newest["name"], newest["client_id"], older["client_id"]) == ("new.example", "laptop7", None)


def test_top_clients_count_the_period_and_name_each_by_its_most_recent_name(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    conn = open_writer(path)
    conn.executemany(INSERT, [(*values, None) for values in RECORDS])
    conn.close()
    summary = answers(path)[1]
    assert isinstance(summary, dict)
    assert summary["top_clients"] == [
        {"client": "10.0.0.7", "name": "laptop-2", "queries": 3, "blocked": 2},
        {"client": "10.0.0.8", "name": None, "queries": 3, "blocked": 1},
    ]
    whole = answers(path)[0]
    assert isinstance(whole, dict)
    assert whole["top_clients"][0] == {"client": "10.0.0.7", "name": "laptop-2", "queries": 4, "blocked": 3}


def test_the_writer_stores_empty_text_as_null_and_keeps_every_real_value(tmp_path: Path) -> None:
    """The writer's records carry NO_TEXT (the integer 0) for an empty text field, and the insert turns it
    into NULL: the text "0", an empty text and an integer-looking name must come through as they were."""
    masker = ClientMasker("full")
    spelled = ("vendor", "0", "", "acme", None)  # reason, entry, selector, vendor, category
    values = (NOW, "0", "default", b"\x01a\x00", 1, "blocked", 3, None, spelled, "0", 1.5, "tls", "0")
    bare = (NOW + 1, "10.0.0.1", "default", b"\x01b\x00", 1, "cached", 0, None, None, None, 0.5, "udp", None)
    names = {"0": "0", "10.0.0.1": None}.get
    conn = open_writer(tmp_path / "q.sqlite")
    conn.executemany(
        INSERT, [to_record(values, masker, names, NO_TEXT), to_record(bare, masker, names, NO_TEXT)]
    )
    stored = conn.execute(
        "SELECT client, reason, rule, selector, vendor, category, upstream, client_name, client_id"
        " FROM queries ORDER BY id"
    ).fetchall()
    conn.close()
    assert stored == [("0", "vendor", "0", "", "acme", None, "0", "0", "0"), ("10.0.0.1", *[None] * 8)]
