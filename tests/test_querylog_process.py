"""The SQLite query log's writer process: rows survive its death in order and in count, a clean stop loses
nothing, the signals a service manager sends its whole group do not stop it early, and it never outlives
the server."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockdns.config import QueryLogSettings
from blockdns.ops.clientid import QueryLogError
from blockdns.ops.querylog import QueryLog
from blockdns.ops.querylog_process import WriterProcess
from blockdns.ops.stats import ServerStats

from opshelpers import row

HERE = Path(__file__).resolve().parent


@pytest.fixture
def querylog(tmp_path: Path) -> Iterator[QueryLog]:
    log = QueryLog(
        QueryLogSettings(), tmp_path / "q.sqlite", ServerStats(), batch_size=100, flush_interval=0.01
    )
    yield log
    log.close()


def count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM queries").fetchone()[0])


def intact(path: Path) -> bool:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def gone(pid: int, seconds: float = 10.0) -> bool:
    """True once ``pid`` no longer runs (a zombie counts as gone), within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def test_the_rows_are_stored_by_another_process(querylog: QueryLog) -> None:
    querylog.start()
    pid = querylog.process.pid
    assert pid is not None and pid != os.getpid() and querylog.process.alive
    querylog.offer(row("a.example"))
    assert querylog.flush()
    assert count(querylog.path) == 1


def test_a_writer_killed_while_storing_loses_that_batch_only_and_is_started_again(
    querylog: QueryLog, caplog: pytest.LogCaptureFixture
) -> None:
    """The process dies with a batch sent to it: that batch is counted lost, the death is logged once, a new
    process stores the rows after it, and the file is intact."""
    querylog.start()
    first_pid = querylog.process.pid
    assert first_pid is not None
    real_request = querylog.process.request
    killed: list[int] = []

    def dying_request(message: tuple[object, ...]):  # the process dies as the first batch goes out
        if message[0] == "rows" and not killed:
            pid = querylog.process.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            assert gone(pid)
            killed.append(pid)
        return real_request(message)

    querylog.process.request = dying_request  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="blockdns.querylog"):
        for index in range(50):
            querylog.offer(row(f"lost{index}.example"))
        assert querylog.flush()
        for index in range(250):
            querylog.offer(row(f"kept{index}.example"))
        assert querylog.flush()
    assert killed == [first_pid]
    assert querylog.write_errors == 50 and querylog.written == 250 and querylog.restarts == 1
    assert querylog.process.pid not in (None, first_pid) and querylog.process.alive
    deaths = [r.getMessage() for r in caplog.records if "writer process" in r.getMessage()]
    assert len(deaths) == 1 and "killed by signal 9" in deaths[0] and "50 rows lost" in deaths[0], deaths
    assert count(querylog.path) == 250 and intact(querylog.path)


def test_a_writer_killed_under_load_leaves_every_row_counted_and_the_file_intact(querylog: QueryLog) -> None:
    querylog.start()
    offered = 0
    deadline = time.monotonic() + 20
    for round_number in range(20):
        for index in range(500):
            querylog.offer(row(f"r{round_number}-{index}.example"))
            offered += 1
        pid = querylog.process.pid
        if round_number in (5, 12) and pid is not None and querylog.process.alive:  # whatever it is doing
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert time.monotonic() < deadline
    assert querylog.flush(10)
    assert querylog.written + querylog.write_errors + querylog.stats.log_dropped == offered
    assert querylog.restarts >= 1  # the second kill may land on the process the first one left
    # A batch committed just before the kill is counted lost though it is stored: never the other way.
    assert querylog.written <= count(querylog.path) <= querylog.written + querylog.write_errors
    assert intact(querylog.path)


def test_close_stores_every_queued_row_even_after_a_sigterm_to_the_writer(querylog: QueryLog) -> None:
    """A service manager's stop signals every process of the service: the writer waits for the server's
    last batch instead of dying with it."""
    querylog.flush_interval = 30.0
    querylog.batch_size = 100_000
    querylog.start()
    pid = querylog.process.pid
    assert pid is not None
    for index in range(3000):
        querylog.offer(row(f"n{index}.example"))
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    querylog.close()
    assert querylog.written == 3000 and querylog.write_errors == 0
    assert count(querylog.path) == 3000
    assert gone(pid)


def test_the_writer_exits_when_the_server_dies(tmp_path: Path) -> None:
    """SIGKILL to the server: its writer process sees the socket close, commits what it had, and exits."""
    script = textwrap.dedent(f"""\
        import sys, time
        sys.path.insert(0, {str(HERE)!r})
        from blockdns.config import QueryLogSettings
        from blockdns.ops.querylog import QueryLog
        from blockdns.ops.stats import ServerStats
        from opshelpers import row
        log = QueryLog(QueryLogSettings(), {str(tmp_path / "q.sqlite")!r}, ServerStats())
        log.start()
        log.offer(row("a.example"))
        assert log.flush()
        print(log.process.pid, flush=True)
        time.sleep(60)
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        writer_pid = int(server.stdout.readline())
        server.kill()
        server.wait(10)
        assert gone(writer_pid), "the writer process outlived the server"
    finally:
        server.kill()
        server.wait(10)
    assert count(tmp_path / "q.sqlite") == 1 and intact(tmp_path / "q.sqlite")


def test_a_row_that_cannot_be_sent_loses_its_batch_but_not_the_writer(querylog: QueryLog) -> None:
    querylog.start()
    unpicklable = row("a.example")._replace(decision=lambda: None)  # type: ignore[arg-type]
    querylog.offer(unpicklable)
    assert querylog.flush()
    querylog.offer(row("b.example"))
    assert querylog.flush()
    assert querylog.write_errors == 1 and querylog.written == 1 and querylog.restarts == 0


def test_a_writer_that_cannot_open_the_file_says_why_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    process = WriterProcess(QueryLogSettings(), blocker / "q.sqlite")
    with pytest.raises(Exception, match=r"q\.sqlite: cannot open the query log") as raised:
        process.start()
    assert "\n" not in str(raised.value)
    assert not process.alive


def test_client_names_are_looked_up_in_the_server(querylog: QueryLog) -> None:
    asked: list[str] = []

    def name_of(address: str) -> str | None:
        asked.append(address)
        return "laptop.home.arpa" if address == "192.0.2.7" else None

    querylog.client_names = name_of
    querylog.flush_interval = 30.0  # the three rows go in one batch, when flush() asks
    querylog.start()
    for client in ("192.0.2.7", "192.0.2.7", "192.0.2.8"):
        querylog.offer(row("a.example", client=client))
    assert querylog.flush()
    with sqlite3.connect(querylog.path) as conn:
        names = [r[0] for r in conn.execute("SELECT client_name FROM queries ORDER BY id")]
    assert names == ["laptop.home.arpa", "laptop.home.arpa", None]
    assert sorted(asked) == ["192.0.2.7", "192.0.2.8"]  # once per client and batch


def test_a_writer_that_cannot_be_started_again_keeps_the_rows_queued_and_says_so_once(
    querylog: QueryLog, caplog: pytest.LogCaptureFixture
) -> None:
    querylog.start()
    real_start = querylog.process.start
    attempts: list[float] = []

    def failing_start() -> None:  # the disk is gone for the first three attempts
        attempts.append(time.monotonic())
        if len(attempts) <= 3:
            raise QueryLogError("q.sqlite: cannot open the query log: No space left on device")
        real_start()

    querylog.process.start = failing_start  # type: ignore[method-assign]
    pid = querylog.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert gone(pid)
    with caplog.at_level(logging.INFO, logger="blockdns.querylog"):
        for index in range(300):
            querylog.offer(row(f"n{index}.example"))
        assert querylog.flush(15)
    assert querylog.written == 300 and querylog.write_errors == 0 and querylog.restarts == 1
    assert len(attempts) == 4
    assert attempts[3] - attempts[0] >= 0.25 + 0.5 + 1.0 - 0.05  # a doubling delay between attempts
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot start the writer process again" in m for m in messages) == 1, messages
    assert sum("writer process started again" in m for m in messages) == 1, messages
    assert count(querylog.path) == 300
