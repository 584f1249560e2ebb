"""``blockdns log`` and ``blockdns stats`` read the query log from another process's point of view."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from blockdns import config
from blockdns.cli import log_cmd
from blockdns.ops.querylog import QueryLog

from opshelpers import BLOCKED_NAME, FakeControl, row


def make_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    log_cmd.register(app)
    return app


APP = make_app()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(APP, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def config_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "blockdns.toml"
    path.write_text('[querylog]\npath = "var/q.sqlite"\nclients = "full"\n')
    settings = config.load(path)
    control = FakeControl()
    querylog = QueryLog(settings.querylog, settings.querylog_path(), control.stats)  # type: ignore[arg-type]
    querylog.start()
    now = time.time()
    for index in range(3):
        querylog.offer(row(BLOCKED_NAME, control=control, client="10.0.0.9", ts=now - 60 - index))
    for index in range(5):
        querylog.offer(row(f"www{index}.example.org", control=control, client="10.0.0.8", ts=now - 60))
    querylog.offer(row("old.example.org", client="10.0.0.8", ts=now - 3 * 3600))
    assert querylog.flush()
    yield path  # the writer stays open while the CLI reads, as with a running server
    querylog.close()


def test_log_table(config_file: Path) -> None:
    code, out, _ = run("log", "--config", str(config_file))
    assert code == 0
    assert BLOCKED_NAME in out and "www0.example.org" in out and "old.example.org" in out
    assert "deepseek (all)" in out and "NXDOMAIN" in out
    # Oldest first, like tail.
    assert out.index("old.example.org") < out.index(BLOCKED_NAME)


def test_log_filters_and_json(config_file: Path) -> None:
    code, out, _ = run("log", "--blocked", "--json", "--config", str(config_file))
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3 and {r["name"] for r in rows} == {BLOCKED_NAME}
    rows = json.loads(run("log", "--since", "1h", "--json", "--config", str(config_file))[1])
    assert len(rows) == 8
    rows = json.loads(run("log", "--client", "10.0.0.8", "--limit", "2", "--json", "-c", str(config_file))[1])
    assert len(rows) == 2 and {r["client"] for r in rows} == {"10.0.0.8"}
    code, out, _ = run("log", "--client", "192.0.2.1", "--config", str(config_file))
    assert code == 0 and "no matching queries" in out


def test_stats(config_file: Path) -> None:
    code, out, _ = run("stats", "--json", "--config", str(config_file))
    summary = json.loads(out)
    assert code == 0
    assert summary["total"] == 9 and summary["blocked"] == 3  # 24h by default: the 3-hour-old row counts
    code, out, _ = run("stats", "--since", "1h", "--config", str(config_file))
    assert code == 0
    assert "8 queries, 3 blocked (37.5%)" in out
    assert "top blocked vendors" in out and "deepseek" in out
    assert "top blocked names" in out and BLOCKED_NAME in out
    assert "10.0.0.9" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["log", "--since", "yesterday"], 2, "--since:"),
        (["log", "--limit", "0"], 2, "--limit"),
        (["stats", "--since", "soon"], 2, "--since:"),
        (["stats", "--top", "0"], 2, "--top"),
    ],
)
def test_bad_options_are_one_line(config_file: Path, args: list[str], code: int, message: str) -> None:
    exit_code, _, err = run(*args, "--config", str(config_file))
    assert exit_code == code
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_log_off_missing_and_private(tmp_path: Path) -> None:
    off = tmp_path / "off.toml"
    off.write_text('[querylog]\npath = ""\n')
    code, _, err = run("log", "--config", str(off))
    assert code == 2 and "the query log is off" in err
    missing = tmp_path / "missing.toml"
    missing.write_text('[querylog]\npath = "nothing-here.sqlite"\n')
    code, _, err = run("stats", "--config", str(missing))
    assert code == 1 and "no query log yet" in err
    private = tmp_path / "private.toml"
    private.write_text('[querylog]\npath = "p.sqlite"\nclients = "none"\n')
    settings = config.load(private)
    querylog = QueryLog(settings.querylog, settings.querylog_path(), FakeControl().stats)  # type: ignore[arg-type]
    querylog.start()
    querylog.offer(row("a.example"))
    querylog.close()
    code, _, err = run("log", "--client", "10.0.0.1", "--config", str(private))
    assert code == 2 and "stores no client addresses" in err
    code, out, _ = run("log", "--json", "--config", str(private))
    assert code == 0 and json.loads(out)[0]["client"] is None


def test_log_and_stats_escape_what_a_terminal_would_act_on(tmp_path: Path) -> None:
    """A query name is the client's bytes, a reason may quote an upstream: ESC, CR and LF must reach the
    terminal as text, in the table and in the summary."""
    path = tmp_path / "blockdns.toml"
    path.write_text('[querylog]\npath = "var/q.sqlite"\nclients = "full"\n')
    settings = config.load(path)
    control = FakeControl()
    querylog = QueryLog(settings.querylog, settings.querylog_path(), control.stats)  # type: ignore[arg-type]
    querylog.start()
    hostile = b"\x0a\x1b[2j\r\nevil\x07example\x00"  # as a client sends it, lowercased
    querylog.offer(row(BLOCKED_NAME, control=control)._replace(qname_wire=hostile))
    failed = row("www.example.org", outcome="error")._replace(reason="upstream said \x1b]0;owned\x07\r\n")
    querylog.offer(failed)
    assert querylog.flush()
    try:
        for args in (["log"], ["log", "--blocked"], ["stats"]):
            code, out, _ = run(*args, "--config", str(path))
            assert code == 0, out
            assert not any(char in out for char in "\x1b\x07\r"), repr(out)
            assert "\\027[2j\\013\\010evil.example" in out
        code, out, _ = run("log", "--config", str(path))
        assert "upstream said \\x1b]0;owned\\x07\\x0d\\x0a" in out
    finally:
        querylog.close()
