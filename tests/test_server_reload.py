"""Reloading a config file that is empty, truncated or still being written: the server keeps its last good
configuration (forward mode, groups, token) and keeps forwarding; the refusal is logged once and counted."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.rcode
import pytest

from blockdns import config
from blockdns.server import app as app_module
from blockdns.server.app import Server

from conftest import TEST_CATALOG, RunningServer
from fakedns import FakeDNS
from opshelpers import TOKEN

ALLOWED = "www.example.org"


def config_text(upstream: FakeDNS, block: str = '"vendor:deepseek"') -> str:
    return f"""\
[server]
listen = ["127.0.0.1:0"]

[resolver]
mode = "forward"
upstreams = ["{upstream.url}"]

[policy]
block = [{block}]

[[groups]]
name = "lab"
clients = ["127.0.0.9/32"]
block = []

[lists]
catalog = "{TEST_CATALOG / "vendors"}"
guard = "{TEST_CATALOG / "guard.toml"}"
feeds = "{TEST_CATALOG / "feeds.toml"}"
refresh = "0"

[querylog]
path = ""

[api]
listen = ""
token = "{TOKEN}"
"""


@pytest.fixture
def upstream() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.2").answer(ALLOWED, "A", "192.0.2.80").answer("chat.openai.com", "A", "192.0.2.2")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path], RunningServer]]:
    running: list[RunningServer] = []

    def start(path: Path) -> RunningServer:
        server = RunningServer(config.load(path)).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def assert_last_good_config_serves(server: RunningServer, upstream: FakeDNS) -> None:
    assert server.server is not None
    settings = server.server.settings
    assert settings.resolver.mode == "forward" and settings.api.token == TOKEN
    assert [group.name for group in settings.groups] == ["lab"]
    before = upstream.count(ALLOWED)

    async def clear_cache() -> None:  # on the server's loop, like everything that touches the cache
        server.server.generation.cache.clear()  # type: ignore[union-attr]

    server.call(clear_cache())
    reply = server.query(ALLOWED)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer[0][0].address == "192.0.2.80"
    assert upstream.count(ALLOWED) == before + 1  # forwarded, as before the refused reload
    assert server.query("chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(
    "content", ["", "\n\n", "# blockdns.toml, being rewritten\n"], ids=["empty", "blank", "comment"]
)
def test_a_config_with_no_settings_is_refused(
    tmp_path: Path, upstream: FakeDNS, serve, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    path = tmp_path / "blockdns.toml"
    path.write_text(config_text(upstream))
    server = serve(path)
    assert_last_good_config_serves(server, upstream)
    path.write_text(content)
    caplog.set_level(logging.INFO, logger="blockdns")
    result = server.call(server.server.reload())  # type: ignore[union-attr]
    assert not result.ok and "has no settings" in result.message and str(path) in result.message
    stats = server.server.stats  # type: ignore[union-attr]
    assert stats.reloads_refused == 1 and stats.reloads == 0
    refusals = [r for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(refusals) == 1 and "\n" not in refusals[0].getMessage() and refusals[0].exc_info is None
    assert_last_good_config_serves(server, upstream)


def test_a_good_config_after_a_refused_one_is_applied(tmp_path: Path, upstream: FakeDNS, serve) -> None:
    path = tmp_path / "blockdns.toml"
    path.write_text(config_text(upstream))
    server = serve(path)
    path.write_text("")
    assert not server.call(server.server.reload()).ok  # type: ignore[union-attr]
    path.write_text(config_text(upstream, block='"vendor:openai"'))
    assert server.call(server.server.reload()).ok  # type: ignore[union-attr]
    assert server.query("chat.openai.com").rcode() == dns.rcode.NXDOMAIN
    assert server.server.stats.reloads == 1  # type: ignore[union-attr]


def test_the_watcher_waits_for_a_file_being_written(
    tmp_path: Path, upstream: FakeDNS, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor that truncates the file and writes it in pieces: each look of the watcher finds it changed
    since the one before, so it reloads only once the file is whole (and stays so for a look)."""
    path = tmp_path / "blockdns.toml"
    path.write_text(config_text(upstream))
    final = config_text(upstream, block='"vendor:deepseek", "vendor:openai"')
    # Truncated, then growing prefixes that are valid TOML on their own and would each be a different
    # configuration (no upstream: recursion; no policy: block everything; no group; no token).
    cut = [final.index(section) for section in ("[resolver]", "[policy]", "[[groups]]", "[lists]", "[api]")]
    writes = ["", *(final[:end] for end in cut), final]
    monkeypatch.setattr(app_module, "WATCH_INTERVAL", 0.05)
    server = serve(path)
    assert server.server is not None
    applied: list[str] = []
    real_apply = Server._apply

    def recording_apply(self: Server, settings: config.Settings, *rest: object) -> None:
        applied.append(settings.resolver.mode)
        real_apply(self, settings, *rest)  # type: ignore[arg-type]

    real_paths = Server._watched_paths
    step = iter(range(1, 10_000))

    def writing_paths(self: Server) -> list[Path]:
        """Each look at the files writes the next piece first: no two looks see the same file until the
        writing is done."""
        if writes:
            path.write_text(writes.pop(0))
            stamp = time.time_ns() + next(step) * 10_000_000  # distinct even on a coarse clock
            os.utime(path, ns=(stamp, stamp))
        return real_paths(self)

    monkeypatch.setattr(Server, "_apply", recording_apply)
    monkeypatch.setattr(Server, "_watched_paths", writing_paths)
    deadline = time.monotonic() + 20
    while server.server.stats.reloads < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert applied == ["forward"]
    assert server.server.stats.reloads == 1 and server.server.stats.reloads_refused == 0
    assert server.query("chat.openai.com").rcode() == dns.rcode.NXDOMAIN
    assert_last_good_config_serves(server, upstream)
