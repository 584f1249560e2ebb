"""The server follows the feeds: an update while it runs changes its answers without a restart, both when
an operator runs `blockdns lists update` and when the server's own refresh does it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dns.rcode
import pytest

from blockdns import config

from conftest import TEST_CATALOG, RunningServer
from fakedns import FakeDNS
from httpfeeds import FeedServer


@pytest.fixture
def upstream():
    fake = FakeDNS("127.0.0.2")
    for name in ("chat.example-ai.test", "api.other-ai.test"):
        fake.answer(name, "A", "192.0.2.1")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def feeds():
    with FeedServer() as server:
        yield server


def write_config(tmp_path: Path, upstream: FakeDNS, feeds: FeedServer, refresh: str) -> Path:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(
        f"""
[[feeds]]
name = "ai-list"
url = "{feeds.url("/ai.txt")}"
format = "adblock"
category = "chat"
license = "CC0-1.0"
"""
    )
    path = tmp_path / "blockdns.toml"
    path.write_text(
        f"""
[server]
listen = ["127.0.0.1:0"]
[resolver]
mode = "forward"
upstreams = ["{upstream.url}"]
timeout = 1.0
[policy]
block = ["feed:ai-list"]
[lists]
catalog = "{TEST_CATALOG / "vendors"}"
guard = "{TEST_CATALOG / "guard.toml"}"
feeds = "{feeds_file}"
data_dir = "{tmp_path / "lists"}"
refresh = "{refresh}"
[querylog]
path = ""
[api]
listen = ""
"""
    )
    return path


def wait_for_rcode(server: RunningServer, name: str, rcode: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.query(name).rcode() == rcode:
            return True
        time.sleep(0.2)
    return False


def test_lists_update_while_serving_changes_answers_without_restart(tmp_path, upstream, feeds):
    feeds.serve("/ai.txt", "! AI list\n||example-ai.test^\n", etag='"v1"')
    path = write_config(tmp_path, upstream, feeds, refresh="0")
    server = RunningServer(config.load(path)).start()
    try:
        assert server.query("chat.example-ai.test").rcode() == dns.rcode.NOERROR  # nothing fetched yet
        update = [sys.executable, "-m", "blockdns", "lists", "update", "--config", str(path)]
        result = subprocess.run(update, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert wait_for_rcode(server, "chat.example-ai.test", dns.rcode.NXDOMAIN)
        assert server.query("api.other-ai.test").rcode() == dns.rcode.NOERROR

        feeds.serve("/ai.txt", "! AI list\n||other-ai.test^\n", etag='"v2"')
        result = subprocess.run([*update, "--force"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert wait_for_rcode(server, "api.other-ai.test", dns.rcode.NXDOMAIN)
        assert server.query("chat.example-ai.test").rcode() == dns.rcode.NOERROR
        assert server.server.reloads >= 2
    finally:
        server.stop()


def test_the_servers_own_refresh_fetches_and_swaps_the_policy(tmp_path, upstream, feeds):
    feeds.serve("/ai.txt", "||example-ai.test^\n")
    path = write_config(tmp_path, upstream, feeds, refresh="1h")  # no manifest yet: refresh at once
    server = RunningServer(config.load(path)).start()
    try:
        assert wait_for_rcode(server, "chat.example-ai.test", dns.rcode.NXDOMAIN, seconds=30)
        assert feeds.count("/ai.txt") == 1
        assert server.server.last_refresh is not None
    finally:
        server.stop()
