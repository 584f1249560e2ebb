"""The query log: rows land in SQLite, privacy modes, retention, drops under load, and the read side."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockdns.config import QueryLogSettings
from blockdns.ops.clientid import QueryLogError, key_path
from blockdns.ops.querylog import ROW_ID_RANGE, QueryLog, Row
from blockdns.ops.querylog_read import QueryLogReader, bucket_width
from blockdns.ops.stats import ServerStats

from opshelpers import BLOCKED_NAME, FakeControl, row


@pytest.fixture(scope="module")
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def make_log(tmp_path: Path) -> Iterator:
    logs: list[QueryLog] = []

    def make(clients: str = "full", **kwargs: object) -> QueryLog:
        settings = QueryLogSettings(
            clients=clients,  # type: ignore[arg-type]
            queue_size=int(kwargs.pop("queue_size", 50_000)),  # type: ignore[call-overload]
            retention_days=int(kwargs.pop("retention_days", 30)),  # type: ignore[call-overload]
            max_rows=int(kwargs.pop("max_rows", 10_000_000)),  # type: ignore[call-overload]
        )
        querylog = QueryLog(settings, tmp_path / "log" / "q.sqlite", ServerStats(), **kwargs)  # type: ignore[arg-type]
        logs.append(querylog)
        return querylog

    yield make
    for querylog in logs:
        querylog.close()


def produce(querylog: QueryLog, item: Row) -> None:
    """Exactly what the server does for each answer."""
    querylog.offer(item)


def stored(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT client, grp, qname, qtype, outcome, rcode, vendor, category, selector,"
                            " rule, upstream, transport FROM queries ORDER BY id").fetchall()  # fmt: skip


def test_rows_land_in_sqlite_in_wal_mode(make_log, control: FakeControl) -> None:
    querylog = make_log()
    querylog.start()
    produce(querylog, row(BLOCKED_NAME, control=control, qtype=28))
    produce(querylog, row("Example.COM", control=control))
    assert querylog.flush()
    rows = stored(querylog.path)
    local = ("127.0.0.1", "default")
    assert rows == [
        (*local, BLOCKED_NAME, 28, "blocked", 3, "deepseek", "chat", "all", "deepseek.com", None, "udp"),
        (*local, "example.com", 1, "resolved", 0, None, None, None, None, "udp://127.0.0.1:5300", "udp"),
    ]
    with sqlite3.connect(querylog.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert querylog.written == 2
    for suffix in ("", "-wal"):  # not world-readable, whatever the umask
        assert stat.S_IMODE(Path(f"{querylog.path}{suffix}").stat().st_mode) & 0o007 == 0, suffix


def test_batches_are_written_without_waiting_for_the_interval(make_log, control: FakeControl) -> None:
    querylog = make_log(batch_size=100, flush_interval=30.0)
    querylog.start()
    for _ in range(250):
        produce(querylog, row("example.com"))
    deadline = time.monotonic() + 5
    while querylog.written < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert querylog.written >= 200  # two full batches went out long before the 30 s interval


def test_close_flushes_what_is_queued(make_log) -> None:
    querylog = make_log(flush_interval=30.0)
    querylog.start()
    for _ in range(10):
        produce(querylog, row("example.com"))
    querylog.close()
    assert len(stored(querylog.path)) == 10


def test_client_modes(make_log, tmp_path: Path) -> None:
    full = make_log("full")
    full.start()
    produce(full, row("a.example", client="192.0.2.7"))
    full.close()
    assert stored(full.path)[0][0] == "192.0.2.7"
    full.path.unlink()

    hashed = make_log("hash")
    hashed.start()
    produce(hashed, row("a.example", client="192.0.2.7"))
    produce(hashed, row("b.example", client="192.0.2.7"))
    produce(hashed, row("c.example", client="192.0.2.8"))
    hashed.flush()
    values = [r[0] for r in stored(hashed.path)]
    assert values[0] == values[1] != values[2]
    # 16 hex digits, no address ("192" may well occur in a random hash: one run in a hundred it did).
    assert all(re.fullmatch("[0-9a-f]{16}", v) for v in values)
    key = key_path(hashed.path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # The key is kept: a restart hashes the same client to the same value.
    hashed.close()
    again = make_log("hash")
    again.start()
    produce(again, row("d.example", client="192.0.2.7"))
    again.close()
    assert stored(again.path)[-1][0] == values[0]
    # A filter by address finds the hashed rows, as does the hash itself.
    reader = QueryLogReader(again.path, "hash")
    assert {r["name"] for r in reader.recent(client="192.0.2.7")} == {"a.example", "b.example", "d.example"}
    assert len(reader.recent(client=values[2])) == 1

    for suffix in ("", "-wal", "-shm"):
        Path(f"{again.path}{suffix}").unlink(missing_ok=True)
    none = make_log("none")
    none.start()
    produce(none, row("a.example", client="192.0.2.7"))
    none.close()
    assert stored(none.path)[0][0] is None
    with pytest.raises(QueryLogError, match="stores no client addresses"):
        QueryLogReader(none.path, "none").recent(client="192.0.2.7")


def test_a_loosened_key_file_is_tightened(make_log) -> None:
    querylog = make_log("hash")
    querylog.start()
    querylog.close()
    key = key_path(querylog.path)
    key.chmod(0o644)
    again = make_log("hash")
    again.start()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_retention_purges_old_rows(make_log) -> None:
    querylog = make_log(retention_days=7)
    querylog.start()
    now = time.time()
    for age_days in (30, 8, 6, 0):
        produce(querylog, row(f"d{age_days}.example", ts=now - age_days * 86400))
    querylog.flush()
    assert querylog.purge() == 2
    assert sorted(r[2] for r in stored(querylog.path)) == ["d0.example", "d6.example"]


def test_retention_runs_at_start_and_zero_keeps_everything(make_log, tmp_path: Path) -> None:
    first = make_log(retention_days=0)
    first.start()
    produce(first, row("old.example", ts=time.time() - 400 * 86400))
    first.close()
    assert len(stored(first.path)) == 1  # 0 days: no purge
    second = make_log(retention_days=1)
    second.start()
    deadline = time.monotonic() + 5
    while second.purged == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second.purged == 1
    assert stored(second.path) == []


def test_max_rows_keeps_the_newest_rows_and_the_file_stops_growing(make_log) -> None:
    """A flood of distinct names within the retention period: the log never holds more than max_rows, the
    oldest go first, and once the cap is reached the database file stays the same size."""
    querylog = make_log(max_rows=2000, batch_size=250, flush_interval=0.01)
    querylog.start()
    sizes = []
    for round_number in range(12):
        for index in range(500):
            produce(querylog, row(f"r{round_number}-{index}.example"))
        assert querylog.flush()
        names = [r[2] for r in stored(querylog.path)]
        assert len(names) <= 2000
        with sqlite3.connect(querylog.path) as conn:  # the database's size in pages, WAL included
            sizes.append(conn.execute("PRAGMA page_count").fetchone()[0])
    assert names[-1] == "r11-499.example"  # the newest row is kept ...
    assert f"r{11 - 3}-499.example" in names and "r0-0.example" not in names  # ... the oldest went first
    assert querylog.trimmed == 12 * 500 - len(names) and len(names) >= 2000 * 0.98 - 250
    assert max(sizes[6:]) <= sizes[5] * 1.1  # freed pages are reused: no growth once capped


def test_the_max_rows_check_seeks_instead_of_reading_the_table(make_log) -> None:
    """The check runs after every batch: it must cost two index seeks, not a scan of millions of rows."""
    querylog = make_log()
    querylog.start()
    querylog.close()
    with sqlite3.connect(querylog.path) as conn:
        plan = " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {ROW_ID_RANGE}"))
    assert "SEARCH queries" in plan and "SCAN queries" not in plan, plan


def test_max_rows_zero_keeps_everything(make_log) -> None:
    querylog = make_log(max_rows=0, batch_size=100, flush_interval=0.01)
    querylog.start()
    for index in range(3000):
        produce(querylog, row(f"n{index}.example"))
    assert querylog.flush()
    assert len(stored(querylog.path)) == 3000 and querylog.trimmed == 0


def test_a_full_queue_drops_and_counts_without_blocking_the_producer(make_log) -> None:
    querylog = make_log(queue_size=100, batch_size=10, flush_interval=0.01)
    gate = threading.Event()
    real_write = querylog._write

    def slow_write(conn, batch):  # the disk stalls until the test lets it go
        gate.wait(10)
        real_write(conn, batch)

    querylog._write = slow_write  # type: ignore[method-assign]
    querylog.start()
    item = row("example.com")
    started = time.perf_counter()
    for _ in range(5000):
        produce(querylog, item)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"the producer waited for the writer ({elapsed:.3f}s for 5000 rows)"
    assert querylog.stats.log_dropped >= 5000 - 100 - 10
    assert len(querylog.queue) <= 100
    gate.set()
    assert querylog.flush()
    assert querylog.written + querylog.stats.log_dropped == 5000


def test_a_bad_path_fails_at_start_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    querylog = QueryLog(QueryLogSettings(), blocker / "q.sqlite", ServerStats())
    with pytest.raises(QueryLogError, match="cannot open the query log"):
        querylog.start()


def test_a_malformed_row_loses_its_batch_but_not_the_writer(make_log) -> None:
    querylog = make_log()
    querylog.start()
    produce(querylog, ("not", "a", "row"))  # type: ignore[arg-type]
    querylog.flush()
    produce(querylog, row("example.com"))
    querylog.flush()
    assert querylog.write_errors == 1
    assert querylog.written == 1


def test_reader_works_beside_the_writer_and_summarises(make_log, control: FakeControl) -> None:
    querylog = make_log()
    querylog.start()
    now = time.time()
    for index in range(30):
        produce(querylog, row(BLOCKED_NAME, control=control, client="10.0.0.5", ts=now - index))
    for index in range(70):
        produce(querylog, row(f"host{index % 7}.example", client="10.0.0.6", ts=now - index))
    produce(querylog, row("ancient.example", ts=now - 3 * 86400))
    querylog.flush()
    # Another connection (as the CLI would use) reads while the writer still holds its own.
    reader = QueryLogReader(querylog.path, "full")
    recent = reader.recent(limit=5)
    assert len(recent) == 5 and recent[0]["ts"] >= recent[-1]["ts"]
    assert {r["outcome"] for r in reader.recent(limit=100, blocked_only=True)} == {"blocked"}
    assert len(reader.recent(limit=1000, since=now - 86400)) == 100
    assert len(reader.recent(limit=1000, client="10.0.0.5")) == 30

    summary = reader.summary(since=now - 3600)
    assert summary["total"] == 100 and summary["blocked"] == 30
    assert summary["block_rate"] == pytest.approx(0.3)
    assert summary["top_vendors"] == [{"vendor": "deepseek", "category": "chat", "count": 30}]
    assert summary["top_domains"][0] == {"name": BLOCKED_NAME, "vendor": "deepseek", "count": 30}
    assert summary["top_clients"][0] == {"client": "10.0.0.5", "name": None, "queries": 30, "blocked": 30}
    series = summary["series"]
    assert sum(p["queries"] for p in series["points"]) == 100
    assert sum(p["blocked"] for p in series["points"]) == 30
    assert len(series["points"]) <= 61
    assert reader.summary()["total"] == 101  # no since: the whole log


def test_reader_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(QueryLogError, match="no query log yet"):
        QueryLogReader(tmp_path / "missing.sqlite").recent()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(QueryLogError, match="cannot read the query log"):
        QueryLogReader(garbage).recent()


def test_bucket_width_gives_at_most_sixty_points() -> None:
    assert bucket_width(600) == 10
    assert bucket_width(3600) == 60
    assert bucket_width(86400) == 1800
    assert bucket_width(30 * 86400) == 43200
