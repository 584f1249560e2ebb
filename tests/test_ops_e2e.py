"""Operations against the real server: the dashboard's pause button, a query flood beside a slow log writer,
metrics that count what was sent, and the CLI reading the log the server is writing.

dnspython (or raw UDP for the flood) is the client; the upstream is a fake DNS server on 127.0.0.2.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from blockdns.ops.querylog import QueryLog

from conftest import RunningServer, base_config
from fakedns import FakeDNS
from opshelpers import BLOCKED_NAME, NO_FEEDS, TOKEN, chromium_paths, headless_chrome, http

ALLOWED_NAME = "www.example.org"


@pytest.fixture
def upstream() -> Iterator[FakeDNS]:
    fake = (
        FakeDNS("127.0.0.2")
        .answer(BLOCKED_NAME, "A", "192.0.2.66")
        .answer(ALLOWED_NAME, "A", "192.0.2.80")
        .answer(ALLOWED_NAME, "AAAA", "2001:db8::80")
        .start()
    )
    yield fake
    fake.stop()


def ops_config(upstream: FakeDNS, **querylog: object) -> dict[str, Any]:
    return base_config(
        upstream,
        policy={"block": ["vendor:deepseek"]},
        lists={"feeds": str(NO_FEEDS)},
        querylog={"path": "var/querylog.sqlite", **querylog},
        api={"listen": "127.0.0.1:0", "token": TOKEN},
    )


def api_url(server: RunningServer) -> str:
    assert server.server is not None and server.server.api is not None
    return str(server.server.api.url)  # type: ignore[attr-defined]


def querylog_of(server: RunningServer) -> QueryLog:
    assert server.server is not None
    querylog = server.server.querylog
    assert isinstance(querylog, QueryLog)
    return querylog


def address_of(response: dns.message.Message) -> str | None:
    return response.answer[0][0].address if response.answer else None


# ------------------------------------------------------------------------------------------------ dashboard


@pytest.mark.skipif(chromium_paths() is None, reason="chromium and chromedriver are not installed")
def test_dashboard_pause_button_pauses_the_real_server(
    start_server, upstream: FakeDNS, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = start_server(ops_config(upstream))
    assert server.query(BLOCKED_NAME).rcode() == dns.rcode.NXDOMAIN
    assert address_of(server.query(ALLOWED_NAME)) == "192.0.2.80"
    assert querylog_of(server).flush()

    driver = headless_chrome(tmp_path / "chrome-profile")
    try:
        driver.set_page_load_timeout(20)
        wait = WebDriverWait(driver, 10, poll_frequency=0.1)
        state = lambda d: d.find_element(By.ID, "paused-state").get_attribute("data-state")  # noqa: E731
        driver.get(api_url(server) + "/")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
        assert driver.find_element(By.ID, "total-queries").text == "2"
        assert driver.find_element(By.ID, "blocked-queries").text == "1"
        assert BLOCKED_NAME in driver.find_element(By.ID, "recent-blocked").text
        assert state(driver) == "on"

        driver.find_element(By.ID, "pause-btn").click()
        wait.until(lambda d: d.find_element(By.ID, "token-panel").is_displayed())
        driver.find_element(By.ID, "token-input").send_keys(TOKEN)
        driver.find_element(By.ID, "token-save").click()
        wait.until(lambda d: state(d) == "paused")
        assert address_of(server.query(BLOCKED_NAME)) == "192.0.2.66"  # blocking is off

        driver.find_element(By.ID, "resume-btn").click()
        wait.until(lambda d: state(d) == "on")
        assert server.query(BLOCKED_NAME).rcode() == dns.rcode.NXDOMAIN  # and back on
    finally:
        driver.quit()


# -------------------------------------------------------------------------------------------------- flood


def flood(port: int, names: list[tuple[str, str]], waves: int, timeout: float = 5.0) -> tuple[int, int]:
    """Send every name once per wave over one UDP socket, without waiting between queries; then collect the
    wave's replies. Returns (sent, answered)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    sent = answered = 0
    try:
        for wave in range(waves):
            pending = set()
            for index, (name, rdtype) in enumerate(names):
                message = dns.message.make_query(name, rdtype)
                message.id = (wave * len(names) + index) % 65536
                sock.sendto(message.to_wire(), ("127.0.0.1", port))
                pending.add(message.id)
                sent += 1
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    continue
                qid = struct.unpack(">H", data[:2])[0]
                if qid in pending:
                    pending.discard(qid)
                    answered += 1
    finally:
        sock.close()
    return sent, answered


def test_a_flood_beside_a_slow_log_writer_answers_everything_and_counts_drops(
    start_server, upstream: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = QueryLog._write

    def slow_write(self: QueryLog, conn: Any, batch: list) -> None:
        time.sleep(0.25)  # a disk that cannot keep up
        real_write(self, conn, batch)

    monkeypatch.setattr(QueryLog, "_write", slow_write)
    server = start_server(ops_config(upstream, queue_size=20))
    # Warm the cache so the flood runs on the fast path (blocked and cached answers).
    server.query(ALLOWED_NAME)
    server.query(ALLOWED_NAME, "AAAA")
    names = [
        (BLOCKED_NAME, "A"),
        (ALLOWED_NAME, "A"),
        (ALLOWED_NAME, "AAAA"),
        (f"x.{BLOCKED_NAME}", "A"),
    ] * 25
    started = time.monotonic()
    sent, answered = flood(server.port, names, waves=8)
    elapsed = time.monotonic() - started
    assert answered == sent == 800, f"{sent - answered} queries unanswered"
    assert elapsed < 10

    stats = server.server.stats  # type: ignore[union-attr]
    querylog = querylog_of(server)
    assert stats.log_dropped > 0
    assert len(querylog.queue) <= querylog.capacity
    monkeypatch.setattr(QueryLog, "_write", real_write)
    assert querylog.flush(10)
    # Every query is either in the log or counted as dropped.
    assert querylog.written + stats.log_dropped == stats.total_queries() == sent + 2
    metrics = http("GET", api_url(server) + "/metrics").text
    assert f"blockdns_querylog_dropped_total {float(stats.log_dropped)}" in metrics


# ------------------------------------------------------------------------------------------------ metrics


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(http("GET", url + "/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_and_stats_count_the_queries_sent(start_server, upstream: FakeDNS) -> None:
    server = start_server(ops_config(upstream))
    for _ in range(5):
        assert server.query(BLOCKED_NAME).rcode() == dns.rcode.NXDOMAIN
    for _ in range(3):
        assert address_of(server.query(ALLOWED_NAME)) == "192.0.2.80"  # 1 resolved, then 2 cached
    server.query(ALLOWED_NAME, "AAAA", tcp=True)
    url = api_url(server)
    samples = scrape(url)

    def metric(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    queries = "blockdns_queries_total"
    assert metric(queries, qtype="A", outcome="blocked", group="default") == 5
    assert metric(queries, qtype="A", outcome="resolved", group="default") == 1
    assert metric(queries, qtype="A", outcome="cached", group="default") == 2
    assert metric(queries, qtype="AAAA", outcome="resolved", group="default") == 1
    assert (
        metric("blockdns_blocked_total", vendor="deepseek", category="chat", selector="vendor:deepseek") == 5
    )
    assert metric("blockdns_cache_hits_total") == 2
    assert metric("blockdns_cache_entries") >= 2
    assert metric("blockdns_upstream_latency_seconds_count") == 2
    assert metric("blockdns_paused") == 0
    assert metric("blockdns_policy_entries") >= 1

    stats = http("GET", url + "/api/stats").json()
    assert stats["queries"]["total"] == 9 and stats["queries"]["blocked"] == 5
    assert stats["top_vendors"][0] == {"vendor": "deepseek", "category": "chat", "count": 5}
    assert querylog_of(server).flush()
    summary = http("GET", url + "/api/stats?since=1h").json()["querylog"]["summary"]  # not the cached 24h one
    assert summary["total"] == 9 and summary["blocked"] == 5
    rows = http("GET", url + "/api/querylog?blocked=1").json()["rows"]
    assert len(rows) == 5 and rows[0]["vendor"] == "deepseek" and rows[0]["rcode"] == "NXDOMAIN"
    transports = {row["transport"] for row in http("GET", url + "/api/querylog").json()["rows"]}
    assert transports == {"udp", "tcp"}

    check = http("GET", url + f"/api/check?name={BLOCKED_NAME}").json()
    assert check["blocked"] is True and check["selector"] == "vendor:deepseek"

    # Pause and reload through the API act on the real server.
    assert http("POST", url + "/api/pause", {"duration": "1m"}, token=TOKEN).status == 200
    assert address_of(server.query(BLOCKED_NAME)) == "192.0.2.66"
    assert scrape(url)[("blockdns_paused", ())] == 1
    assert http("POST", url + "/api/resume", token=TOKEN).status == 200
    assert http("POST", url + "/api/lists/reload").status == 401
    # The fixture's config has no file behind it: a reload is refused, and the old config keeps serving.
    reload = http("POST", url + "/api/lists/reload", token=TOKEN)
    assert reload.status == 409 and reload.json()["ok"] is False and "no such file" in reload.json()["error"]
    assert server.query(BLOCKED_NAME).rcode() == dns.rcode.NXDOMAIN


def test_cli_reads_the_log_the_server_is_writing(start_server, upstream: FakeDNS, tmp_path: Path) -> None:
    import typer

    from blockdns.cli import log_cmd

    server = start_server(ops_config(upstream, clients="hash"))
    server.query(BLOCKED_NAME)
    server.query(ALLOWED_NAME)
    assert querylog_of(server).flush()
    cli_config = tmp_path / "cli.toml"  # the same log, as an admin's config would name it
    cli_config.write_text('[querylog]\npath = "var/querylog.sqlite"\nclients = "hash"\n')
    app = typer.Typer()
    log_cmd.register(app)
    result = CliRunner().invoke(app, ["log", "--json", "--client", "127.0.0.1", "--config", str(cli_config)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["name"] for row in rows} == {BLOCKED_NAME, ALLOWED_NAME}
    assert all(row["client"] != "127.0.0.1" and len(row["client"]) == 16 for row in rows)  # hashed
    result = CliRunner().invoke(app, ["stats", "--config", str(cli_config)])
    assert result.exit_code == 0 and "2 queries, 1 blocked (50.0%)" in result.stdout
