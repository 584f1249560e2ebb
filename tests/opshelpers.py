"""Helpers for the ops tests: a fake running server (ServerControl), query-log rows, a headless browser."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blockdns import dnsname
from blockdns.config import Settings, from_dict
from blockdns.names import normalise
from blockdns.ops.control import ReloadResult
from blockdns.ops.querylog import Row
from blockdns.ops.stats import ServerStats
from blockdns.policy import Decision, Policy
from blockdns.runtime import build_policy

TOKEN = "s3cret-token"
BLOCKED_NAME = "chat.deepseek.com"
TEST_CATALOG = Path(__file__).resolve().parent / "data" / "catalog"
# The small fixed test catalogue (as the server tests use) and no feeds, so these tests do not move with the
# shipped lists.
NO_FEEDS = Path(tempfile.mkdtemp(prefix="blockdns-ops-")) / "feeds.toml"
NO_FEEDS.write_text("feeds = []\n")
TEST_LISTS = {
    "catalog": str(TEST_CATALOG / "vendors"),
    "guard": str(TEST_CATALOG / "guard.toml"),
    "feeds": str(NO_FEEDS),
}


class FakeControl:
    """Implements ServerControl over a real compiled policy, without sockets."""

    def __init__(self, settings: Settings | None = None, *, token: str = TOKEN) -> None:
        self._settings = settings or from_dict(
            {"api": {"token": token, "listen": "127.0.0.1:0"}, "lists": TEST_LISTS}
        )
        self._policy = build_policy(self._settings)
        self.stats = ServerStats()
        self._paused_until: float | None = None
        self.reloads = 0
        self.reload_result = ReloadResult(True, "reloaded: 1 vendor")
        self.cache_entries = 42
        self.cluster = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self._settings = value

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def paused_until(self) -> float | None:
        if self._paused_until is not None and self._paused_until <= time.time():
            self._paused_until = None
        return self._paused_until

    def pause(self, seconds: float) -> float:
        self._paused_until = time.time() + seconds
        return self._paused_until

    def resume(self) -> None:
        self._paused_until = None

    async def reload(self) -> ReloadResult:
        self.reloads += 1
        return self.reload_result

    def check(self, name: str, client: str | None) -> Decision:
        return self._policy.group_for(client).decide(normalise(name))

    async def refresh_stats(self) -> None:
        pass

    def worker_states(self) -> list[dict[str, object]]:
        return []

    def cache_size(self) -> int:
        return self.cache_entries


def row(
    name: str,
    *,
    control: FakeControl | None = None,
    client: str = "127.0.0.1",
    qtype: int = 1,
    outcome: str | None = None,
    ts: float | None = None,
    duration_ms: float = 1.5,
    client_id: str | None = None,
) -> Row:
    """A query-log row as the server's hot path builds it; blocked when the policy blocks ``name``."""
    decision = None
    if control is not None:
        decision = control.check(name, client)
        if decision.action == "none":
            decision = None
    if outcome is None:
        outcome = "blocked" if decision is not None and decision.blocked else "resolved"
    blocked = outcome == "blocked"
    return Row(
        time.time() if ts is None else ts,
        client,
        decision.group if decision else "default",
        dnsname.from_text(normalise(name)),
        qtype,
        outcome,
        3 if blocked else 0,
        decision.reason if blocked and decision else None,
        decision if blocked else None,
        None if blocked else "udp://127.0.0.1:5300",
        duration_ms,
        "udp" if client_id is None else "https",
        client_id,
    )


def chromium_paths() -> tuple[str, str] | None:
    """(chromium binary, chromedriver) when both are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chrome(user_data_dir: Path) -> Any:
    """A selenium Chrome driver for Debian's chromium, loopback only, no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    assert paths is not None
    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        "--window-size=1280,1400",
        f"--user-data-dir={user_data_dir}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = {**os.environ, "SE_AVOID_STATS": "true"}
    service = Service(executable_path=driver, env=env)
    return webdriver.Chrome(service=service, options=options)


class ApiThread:
    """The admin API on its own event loop in a thread, bound to ``host`` (127.0.0.1) port 0. Requests go to
    127.0.0.1 whatever it binds: a test binding 0.0.0.0 still sends nothing beyond loopback."""

    def __init__(self, control: Any, querylog: Any = None, host: str = "127.0.0.1") -> None:
        self.control = control
        self.querylog = querylog
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: Any = None

    def start(self) -> ApiThread:
        from blockdns.ops.api import start_api

        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_api(self.control, self.querylog, self.host, 0), self.loop
        )
        self.runner = future.result(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.runner.port}"

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        return http(method, self.url + path, body, token=token, headers=headers, raw=raw)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def http(
    method: str,
    url: str,
    body: object = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 10,
) -> Reply:
    """One HTTP request with the standard library; any status is returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None and raw is None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())
