"""PostgreSQL as the query log: two real replicas write one log in a real PostgreSQL server that the tests
start on a loopback port; readers answer as with SQLite; an outage never holds DNS up, its losses are counted.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from blockdns import config
from blockdns.cli.main import app
from blockdns.config import QueryLogSettings
from blockdns.errors import ConfigError
from blockdns.ops.clientid import QueryLogError
from blockdns.ops.querylog import QueryLog
from blockdns.ops.querylog_pg import PostgresQueryLog
from blockdns.ops.querylog_pg_read import PostgresQueryLogReader
from blockdns.ops.querylog_read import QueryLogReader
from blockdns.ops.stats import ServerStats

from conftest import RunningServer, base_config
from fakedns import FakeDNS
from opshelpers import BLOCKED_NAME, NO_FEEDS, TOKEN, FakeControl, http, row
from pgserver import PASSWORD, PostgresServer, unavailable
from waiting import wait_until

ALLOWED_NAME = "www.example.org"
_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """Skips the tests that need it, saying why, where PostgreSQL cannot run (the config tests still run)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database of its own for each test, on the shared server (which a test may stop)."""
    if postgres.process is None:
        postgres.start()
    yield postgres.create_database(f"t{next(_databases)}")
    if postgres.process is None:
        postgres.start()


@pytest.fixture
def upstream() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.2").answer(ALLOWED_NAME, "A", "192.0.2.80").start()
    for index in range(200):
        fake.answer(f"h{index}.example.org", "A", "192.0.2.81")
    yield fake
    fake.stop()


def replica_config(upstream: FakeDNS, url: str, replica: str, **querylog: object) -> dict[str, Any]:
    return base_config(
        upstream,
        policy={"block": ["vendor:deepseek"]},
        lists={"feeds": str(NO_FEEDS)},
        querylog={"path": url, "replica": replica, **querylog},
        api={"listen": "127.0.0.1:0", "token": TOKEN},
    )


def pg_log(server: RunningServer) -> PostgresQueryLog:
    assert server.server is not None
    querylog = server.server.querylog
    assert isinstance(querylog, PostgresQueryLog)
    return querylog


def api_url(server: RunningServer) -> str:
    assert server.server is not None and server.server.api is not None
    return str(server.server.api.url)  # type: ignore[attr-defined]


def test_two_replicas_write_one_log_that_every_reader_reads(
    start_server, upstream: FakeDNS, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "blockdns")
    first = start_server(replica_config(upstream, pg_url, "dns-a"))
    second = start_server(replica_config(upstream, pg_url, "dns-b"))
    first.query(BLOCKED_NAME)
    first.query(ALLOWED_NAME)
    second.query(f"x.{BLOCKED_NAME}")
    second.query("h1.example.org")
    assert pg_log(first).flush(10) and pg_log(second).flush(10)

    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT replica, qname, outcome FROM blockdns_queries ORDER BY id").fetchall()
    assert sorted(stored) == [
        ("dns-a", BLOCKED_NAME, "blocked"),
        ("dns-a", ALLOWED_NAME, "resolved"),
        ("dns-b", "h1.example.org", "resolved"),
        ("dns-b", f"x.{BLOCKED_NAME}", "blocked"),
    ]
    everything = {BLOCKED_NAME, ALLOWED_NAME, f"x.{BLOCKED_NAME}", "h1.example.org"}
    # Either replica's API answers from the one log.
    for server in (first, second):
        rows = http("GET", api_url(server) + "/api/querylog").json()["rows"]
        assert {r["name"] for r in rows} == everything
        summary = http("GET", api_url(server) + "/api/stats?since=1h").json()["querylog"]["summary"]
        assert summary["total"] == 4 and summary["blocked"] == 2
        state = http("GET", api_url(server) + "/api/stats").json()["querylog"]
        assert state["path"].startswith("postgresql://blockdns:***@127.0.0.1:")

    # The CLI reads the store its config names.
    cli_config = tmp_path / "cli.toml"
    cli_config.write_text(f'[querylog]\npath = "{pg_url}"\n')
    result = CliRunner().invoke(app, ["log", "--json", "--config", str(cli_config)])
    assert result.exit_code == 0, result.output
    assert {r["name"] for r in json.loads(result.stdout)} == everything
    result = CliRunner().invoke(app, ["stats", "--config", str(cli_config)])
    assert result.exit_code == 0, result.output
    assert "4 queries, 2 blocked (50.0%)" in result.stdout
    assert PASSWORD not in caplog.text


def test_an_outage_never_holds_dns_up_and_its_losses_are_counted(
    start_server, upstream: FakeDNS, postgres: PostgresServer, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "blockdns.querylog")
    server = start_server(replica_config(upstream, pg_url, "dns-a", queue_size=50))
    querylog = pg_log(server)
    server.query(ALLOWED_NAME)
    assert querylog.flush(10) and querylog.connected
    stats = server.server.stats  # type: ignore[union-attr]

    postgres.stop()
    # The cache answers ALLOWED_NAME, the policy the blocked name: the fast path, timed per query.
    durations = []
    for index in range(300):
        started = time.monotonic()
        reply = server.query(ALLOWED_NAME if index % 2 else BLOCKED_NAME, timeout=2)
        durations.append(time.monotonic() - started)
        assert reply.rcode() in (0, 3)
    durations.sort()
    assert durations[int(len(durations) * 0.99)] < 0.25, f"p99 {durations[int(len(durations) * 0.99)]:.3f}s"
    assert wait_until(lambda: not querylog.connected)
    assert stats.log_dropped > 0  # past the queue of 50, rows are dropped and counted
    assert len(querylog.queue) <= querylog.capacity
    metrics = http("GET", api_url(server) + "/metrics").text
    assert f"blockdns_querylog_dropped_total {float(stats.log_dropped)}" in metrics
    outage_lines = [r for r in caplog.records if "lost" in r.message or "cannot reach" in r.message]
    assert len(outage_lines) == 1, [r.message for r in outage_lines]

    # The log answers with one clear line while the database is away.
    with pytest.raises(
        QueryLogError, match=r"postgresql://blockdns:\*\*\*@127\.0\.0\.1:\d+/t\d+: cannot read"
    ):
        querylog.reader.recent()

    postgres.start()
    assert wait_until(lambda: querylog.connected, 30)
    server.query("h2.example.org")
    assert querylog.flush(10)
    assert "h2.example.org" in {r["name"] for r in querylog.recent(limit=100)}
    reconnected = [r.message for r in caplog.records if "reconnected" in r.message]
    assert len(reconnected) == 1 and f"{stats.log_dropped} rows were dropped" in reconnected[0]
    # Every query is stored, dropped, or lost with the batch in flight when the connection broke.
    assert querylog.written + stats.log_dropped + querylog.write_errors == stats.total_queries()
    assert PASSWORD not in caplog.text


def test_a_database_that_stops_answering_never_holds_dns_up(
    start_server, upstream: FakeDNS, postgres: PostgresServer, pg_url: str
) -> None:
    """A hung database (every PostgreSQL process stopped, connections open) holds the writer in a COPY;
    the queue fills, the rest is dropped and counted, and DNS answers as before; then writing resumes."""
    server = start_server(replica_config(upstream, pg_url, "dns-a", queue_size=50))
    querylog = pg_log(server)
    server.query(ALLOWED_NAME)
    assert querylog.flush(10)
    stats = server.server.stats  # type: ignore[union-attr]
    postgres.freeze()
    try:
        durations = []
        for index in range(300):
            started = time.monotonic()
            server.query(ALLOWED_NAME if index % 2 else BLOCKED_NAME, timeout=2)
            durations.append(time.monotonic() - started)
        durations.sort()
        assert durations[int(len(durations) * 0.99)] < 0.25, (
            f"p99 {durations[int(len(durations) * 0.99)]:.3f}s"
        )
        assert (
            stats.log_dropped >= 300 - 2 * querylog.capacity
        )  # a queue's worth in the stuck COPY, one queued
        assert not querylog.flush(0.5)  # the writer is stuck, and nothing waits for it but flush()
    finally:
        postgres.thaw()
    server.query("h3.example.org")
    assert querylog.flush(20)
    assert "h3.example.org" in {r["name"] for r in querylog.recent(limit=100)}
    assert querylog.written + stats.log_dropped + querylog.write_errors == stats.total_queries()


def test_a_server_starts_and_answers_while_the_database_is_unreachable(
    start_server, upstream: FakeDNS, postgres: PostgresServer, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    postgres.stop()
    started = time.monotonic()
    server = start_server(replica_config(upstream, pg_url, "dns-a"))
    assert server.query(ALLOWED_NAME).answer
    assert time.monotonic() - started < 5
    assert wait_until(lambda: "cannot reach" in caplog.text)
    postgres.start()
    assert wait_until(lambda: pg_log(server).connected, 30)
    assert pg_log(server).flush(10)
    assert [r["name"] for r in pg_log(server).recent()] == [ALLOWED_NAME]  # it waited in the queue


@pytest.mark.parametrize("clients", ["full", "hash"])
def test_the_readers_answer_as_with_sqlite(pg_url: str, tmp_path: Path, clients: str) -> None:
    settings = QueryLogSettings(path=pg_url, clients=clients)  # type: ignore[arg-type]
    sqlite_log = QueryLog(
        settings.model_copy(update={"path": "q.sqlite"}), tmp_path / "q.sqlite", ServerStats()
    )
    pg = PostgresQueryLog(settings, ServerStats())
    control = FakeControl()
    now = time.time()
    rows = [row(BLOCKED_NAME, control=control, client="10.0.0.5", ts=now - i, client_id="laptop7")
            for i in range(30)]  # fmt: skip
    rows += [row(f"x.{BLOCKED_NAME}", control=control, client="10.0.0.7", ts=now - i) for i in range(30)]
    rows += [row(f"host{i % 7}.example", client=f"10.0.0.{6 + i % 3}", ts=now - i) for i in range(70)]
    rows.append(row("ancient.example", ts=now - 3 * 86400))
    for querylog in (sqlite_log, pg):
        querylog.start()
        for item in rows:
            querylog.offer(item)
    try:
        assert sqlite_log.flush() and pg.flush(10)
        readers: list[QueryLogReader] = [sqlite_log.reader, PostgresQueryLogReader(pg_url, clients)]  # type: ignore[arg-type]
        sqlite_reader, pg_reader = readers

        def comparable(rows: list[dict[str, object]]) -> list[dict[str, object]]:
            # Each store has its own hash key (PostgreSQL's lives in the database): hashes differ.
            return [{**r, "client": None} for r in rows] if clients == "hash" else rows

        for kwargs in ({}, {"blocked_only": True}, {"client": "10.0.0.5"}, {"since": now - 10, "limit": 7}):
            got = pg_reader.recent(**kwargs)  # type: ignore[arg-type]
            assert comparable(got) == comparable(sqlite_reader.recent(**kwargs))  # type: ignore[arg-type]
        assert {r["client_id"] for r in pg_reader.recent(client="10.0.0.5")} == {"laptop7"}
        hashed = {r["client"] for r in pg_reader.recent(client="10.0.0.5")}
        assert len(hashed) == 1 and (clients == "full") == (hashed == {"10.0.0.5"})
        if clients == "hash":
            return
        for since in (None, now - 3600):
            expected, got = sqlite_reader.summary(since=since), pg_reader.summary(since=since)
            for summary in (expected, got):
                summary.pop("until")
                series = summary.pop("series")
                assert isinstance(series, dict)
                summary["points"] = series["points"][:-1]  # the last bucket is "now", read at two moments
            assert got == expected
    finally:
        sqlite_log.close()
        pg.close()


def test_max_rows_trims_the_shared_log_without_two_replicas_fighting(pg_url: str) -> None:
    settings = QueryLogSettings(path=pg_url, max_rows=1000)
    writers = [
        PostgresQueryLog(settings.model_copy(update={"replica": name}), ServerStats(), batch_size=100)
        for name in ("a", "b")
    ]
    for writer in writers:
        writer.start()
    try:
        for index in range(3000):
            writers[index % 2].offer(row(f"n{index}.example"))
            if index % 200 == 199:
                assert all(writer.flush(10) for writer in writers)
        assert all(writer.flush(10) for writer in writers)
        with psycopg.connect(pg_url) as conn:
            count = conn.execute("SELECT count(*) FROM blockdns_queries").fetchone()[0]  # type: ignore[index]
        assert 900 <= count <= 1000
        assert sum(writer.trimmed for writer in writers) == 3000 - count
    finally:
        for writer in writers:
            writer.close()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("mysql://u@h/db", "unsupported query-log store 'mysql'; use a file path or postgresql://…"),
        ("redis://h:6379", "unsupported query-log store 'redis'"),
        ("postgresql://u:secret@[oops/db", "not a valid postgresql:// URL"),
    ],
)
def test_a_store_it_cannot_use_is_refused_with_one_line(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"querylog\.path") as caught:
        config.from_dict({"querylog": {"path": path}}, source=tmp_path / "blockdns.toml")
    assert message in str(caught.value) and "secret" not in str(caught.value)
    conf = tmp_path / "blockdns.toml"
    conf.write_text(f'[querylog]\npath = "{path}"\n')
    result = CliRunner().invoke(app, ["config", "check", "--config", str(conf)])
    assert result.exit_code == 2 and "querylog.path" in result.output and "secret" not in result.output


def test_a_reader_of_an_empty_database_says_the_log_does_not_exist_yet(pg_url: str) -> None:
    with pytest.raises(QueryLogError, match=r"\*\*\*@.*: no query log yet"):
        PostgresQueryLogReader(pg_url).recent()
