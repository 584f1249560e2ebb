"""``blockdns lists update`` and ``lists export`` as users and the server run them: exit codes 0/1/2, one-line
errors, no traceback, quiet when not on a terminal."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blockdns.cli.main import app
from blockdns.feeds.refresh import update_command

from httpfeeds import FeedServer

VENDOR = (
    'name = "Acme AI"\njurisdiction = "US"\ncategories = ["chat"]\nhomepage = "https://acme.example"\n'
    'reviewed = 2026-01-01\n[[domains]]\nname = "acme.example"\nevidence = "https://acme.example/docs"\n'
)
LIST = "".join(f"host{i}.example\n" for i in range(10))


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def setup(root: Path, server: FeedServer, feeds: str | None = None) -> Path:
    (root / "catalog" / "vendors").mkdir(parents=True)
    (root / "catalog" / "vendors" / "acme.toml").write_text(VENDOR)
    (root / "feeds.toml").write_text(
        feeds
        if feeds is not None
        else f'[[feeds]]\nname = "plain"\nurl = "{server.url("/plain.txt")}"\nformat = "domains"\n'
        f'category = "chat"\nlicense = "CC0-1.0"\n'
    )
    path = root / "blockdns.toml"
    path.write_text('[lists]\ncatalog = "catalog/vendors"\nfeeds = "feeds.toml"\ndata_dir = "var/lists"\n')
    return path


def blockdns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blockdns", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_update_in_a_subprocess_as_the_server_runs_it(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST, etag='"1"')
    config = setup(tmp_path, server)
    first = subprocess.run(update_command(config), capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "plain  ok         +10 -0 =10 (rejected 0)" in first.stdout
    assert "review queue: 10 new names" in first.stdout
    assert first.stderr == ""  # no progress bar, no log noise when not on a terminal
    second = blockdns("lists", "update", "--config", str(config))
    assert second.returncode == 0
    assert "plain  unchanged" in second.stdout
    assert list((tmp_path / "var" / "lists").glob("plain.*.list"))


def test_a_failed_feed_exits_1_with_a_summary(server: FeedServer, tmp_path: Path) -> None:
    server.fail("/plain.txt", 404)
    result = blockdns("lists", "update", "--config", str(setup(tmp_path, server)))
    assert result.returncode == 1
    assert "HTTP 404" in result.stdout
    # A first update that fails has nothing to fall back on, and says so instead of promising old data.
    assert "1 of 1 feeds failed or were refused: plain has no data yet" in result.stdout
    assert "last good" not in result.stdout
    assert "Traceback" not in result.stderr


def test_dry_run_and_force_flags(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST)
    config = setup(tmp_path, server)
    runner = CliRunner()
    result = runner.invoke(app, ["lists", "update", "--config", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run: nothing written" in result.output
    assert not (tmp_path / "var").exists()
    assert runner.invoke(app, ["lists", "update", "--config", str(config), "--force"]).exit_code == 0


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ('[[feeds]]\nname = "x"\nurl = "https://e.invalid/x"\nformat = "domains"\ncolour = "red"\n',
         "feeds.toml: feeds.0.colour: unknown key"),
        ('[[feeds]]\nname = "x"\nurl = "https://e.invalid/x"\nformat = "yaml"\n',
         "feeds.toml: feeds.0.format:"),
        ('[[feeds]]\nname = "x"\nurl = "https://e.invalid/x"\nformat = "domains"\nvendor = "nobody"\n',
         "feeds.toml: feeds.0.vendor: feed 'x' names vendor 'nobody', which is not in the catalogue"),
        ("[[feeds]\n", "feeds.toml: line 1: not valid TOML"),
    ],
)  # fmt: skip
def test_bad_feed_definitions_exit_2_with_one_line(
    server: FeedServer, tmp_path: Path, feeds: str, message: str
) -> None:
    result = blockdns("lists", "update", "--config", str(setup(tmp_path, server, feeds)))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_missing_config_exits_2(tmp_path: Path) -> None:
    result = blockdns("lists", "update", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"blockdns: {tmp_path / 'nope.toml'}: no such file"


def test_export_to_a_file_and_to_stdout(server: FeedServer, tmp_path: Path) -> None:
    server.serve("/plain.txt", LIST)
    config = setup(tmp_path, server)
    assert blockdns("lists", "update", "--config", str(config)).returncode == 0
    out = tmp_path / "out" / "block.rpz"
    result = blockdns(
        "lists", "export", "--config", str(config), "--format", "rpz", "--select", "feed:plain",
        "--select", "vendor:acme", "--zone", "block.example.", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    text = out.read_text()
    assert "$ORIGIN block.example." in text
    assert "host3.example CNAME ." in text and "*.acme.example CNAME ." in text
    stdout = blockdns("lists", "export", "--config", str(config), "--format", "hosts")
    assert stdout.returncode == 0
    assert "0.0.0.0 acme.example" in stdout.stdout  # the default policy: block = ["all"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "bind"], "Invalid value for '--format'"),
        (["--format", "rpz", "--select", "vendor:nobody"], "no vendor 'nobody' in the catalogue"),
        (["--format", "rpz", "--select", "colour:red"], "'colour:red' is not a selector"),
        (["--format", "hosts", "--zone", "x.example"], "--zone applies only to --format rpz"),
        (["--format", "rpz", "--select", "feed:unknown"], "no feed named 'unknown' is defined"),
    ],
)
def test_export_usage_errors_exit_2(
    server: FeedServer, tmp_path: Path, args: list[str], message: str
) -> None:
    result = blockdns("lists", "export", "--config", str(setup(tmp_path, server)), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_export_to_an_unwritable_place_exits_2(server: FeedServer, tmp_path: Path) -> None:
    config = setup(tmp_path, server)
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = blockdns(
        "lists", "export", "--config", str(config), "--format", "domains", "-o", str(blocker / "x")
    )
    assert result.returncode == 2
    assert "cannot write" in result.stderr


def test_discover_lists_what_the_feeds_know_and_accept_adds_it(server: FeedServer, tmp_path: Path) -> None:
    names = "acme.example\nnew.acme-cdn.example\nbrand-new-ai.example\nhost.livekit.cloud\nsub.acme.example\n"
    server.serve("/ai.txt", names)
    feeds = (
        f'[[feeds]]\nname = "ai"\nurl = "{server.url("/ai.txt")}"\nformat = "domains"\ncategory = "chat"\n'
        'license = "CC0-1.0"\n'
    )
    config = setup(tmp_path, server, feeds)
    (tmp_path / "catalog" / "guard.toml").write_text(
        '[[guard]]\nname = "livekit.cloud"\nnote = "every LiveKit customer"\n'
    )
    (tmp_path / "catalog" / "vendors" / "acme.toml").write_text(
        VENDOR + '[[domains]]\nname = "api.acme-cdn.example"\nevidence = "https://acme.example/docs"\n'
        'match = "exact"\n'
    )
    assert blockdns("lists", "update", "--config", str(config)).returncode == 0
    result = blockdns("lists", "discover", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # acme.example and sub.acme.example are covered; host.livekit.cloud is guarded.
    assert "host.livekit.cloud" not in result.stdout and "sub.acme.example" not in result.stdout
    # A plain domains feed lists exact names. A name no vendor's entries explain comes first, to be assigned.
    assert lines[0].startswith("(no vendor") and lines[1].split()[:2] == ["brand-new-ai.example", "(exact)"]
    assert lines[3] == "acme:"  # shares its registrable domain with one of acme's entries
    assert lines[4].split() == ["new.acme-cdn.example", "(exact)", "from", "feed", "ai"]
    accept = lines[5].strip()
    assert accept == (
        f"blockdns lists accept acme new.acme-cdn.example --evidence '{server.url('/ai.txt')}' --exact"
    )
    assert lines[-1] == "2 names the feeds list and the catalogue lacks"
    # The printed command, run as printed (plus the config), adds the name with its evidence.
    argv = [*shlex.split(accept)[1:], "--config", str(config)]
    added = blockdns(*argv)
    assert added.returncode == 0, added.stdout + added.stderr
    assert (
        f'name = "new.acme-cdn.example"\nevidence = "{server.url("/ai.txt")}"\nmatch = "exact"'
        in (tmp_path / "catalog" / "vendors" / "acme.toml").read_text()
    )
    again = blockdns("lists", "discover", "--config", str(config))
    assert "new.acme-cdn.example" not in again.stdout and "1 name the feeds" in again.stdout


def test_accept_refuses_a_name_that_would_break_the_file(tmp_path: Path, server: FeedServer) -> None:
    config = setup(tmp_path, server)
    path = tmp_path / "catalog" / "vendors" / "acme.toml"
    bad_name = blockdns("lists", "accept", "acme", "bad..name", "--evidence", "https://x.example/d",
                        "--config", str(config))  # fmt: skip
    assert bad_name.returncode != 0 and "bad..name" in bad_name.stderr
    blank = blockdns("lists", "accept", "acme", "new.acme.example", "--evidence", "", "--config", str(config))
    assert blank.returncode != 0 and "acme.toml" in blank.stderr
    assert path.read_text() == VENDOR
