"""What a scrape costs and shows, against the real server: query types chosen by clients (refused ones
included) cannot grow the label sets, and DNS is answered while /metrics or /api/stats is being rendered."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from blockdns.ops import api as api_module
from blockdns.ops import metrics as metrics_module
from blockdns.ops.labels import COUNTED_QTYPES

from conftest import RunningServer, base_config
from fakedns import FakeDNS
from opshelpers import NO_FEEDS, TOKEN, Reply, http

FLOOD_NAME = "x.flood.test"
LABELS = len(COUNTED_QTYPES) + 1  # the counted types, then "other"


def scrape_config(upstream: FakeDNS) -> dict[str, Any]:
    raw = base_config(
        upstream,
        policy={"block": ["domain:flood.test"]},
        lists={"feeds": str(NO_FEEDS)},
        api={"listen": "127.0.0.1:0", "token": TOKEN},
    )
    raw["server"]["allow_clients"] = ["127.0.0.1/32"]
    return raw


def api_url(server: RunningServer) -> str:
    assert server.server is not None and server.server.api is not None
    return str(server.server.api.url)


def ask(server: RunningServer, qtype: int, source: str) -> int:
    query = dns.message.make_query(FLOOD_NAME, qtype)
    reply = dns.query.udp(query, "127.0.0.1", port=server.port, source=source, timeout=5)
    return reply.rcode()


def query_series(text: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        if family.name == "blockdns_queries"
        for sample in family.samples
        if sample.name == "blockdns_queries_total"
    ]


def test_client_chosen_query_types_keep_the_series_bounded(start_server, fake_upstream: FakeDNS) -> None:
    """2,000 distinct random query types from an allowed client and 2,000 more from 40 refused ones: the
    query counters keep one series per counted type (and one for the rest) per outcome."""
    server = start_server(scrape_config(fake_upstream))
    qtypes = random.Random(14).sample(range(1, 65536), 4000)
    for qtype in qtypes[:2000]:
        assert ask(server, qtype, "127.0.0.1") == dns.rcode.NXDOMAIN
    for index, qtype in enumerate(qtypes[2000:]):
        assert ask(server, qtype, f"127.0.0.{2 + index % 40}") == dns.rcode.REFUSED

    stats = server.server.stats  # type: ignore[union-attr]
    assert stats.total_queries() == 4000 and stats.refused_clients == 2000
    assert len(stats.queries) <= 2 * LABELS  # bounded where it is counted, not only where it is shown
    reply = http("GET", api_url(server) + "/metrics")
    series = query_series(reply.text)
    assert sum(1 for labels in series if labels["outcome"] == "blocked") <= LABELS
    assert sum(1 for labels in series if labels["outcome"] == "refused") <= LABELS
    assert len(series) <= 2 * LABELS
    other = [labels for labels in series if labels["qtype"] == "other"]
    assert {labels["outcome"] for labels in other} == {"blocked", "refused"}
    assert len(reply.body) < 20_000
    by_qtype = http("GET", api_url(server) + "/api/stats").json()["queries"]["by_qtype"]
    assert len(by_qtype) <= LABELS and sum(by_qtype.values()) == 4000


class HeldRender:
    """Stands in for one step of a render: signals that the render is under way, then waits (without the
    GIL) until the test lets it finish. Were the render on the event loop, DNS would wait as long."""

    def __init__(self, real: Any, applies: Any = lambda *args: True) -> None:
        self.real, self.applies = real, applies
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, *args: Any) -> Any:
        if self.applies(*args):
            self.started.set()
            self.release.wait(10)
        return self.real(*args)


def dns_during(server: RunningServer, url: str, held: HeldRender) -> Reply:
    replies: list[Reply] = []
    request = threading.Thread(target=lambda: replies.append(http("GET", url, token=TOKEN)))
    request.start()
    try:
        assert held.started.wait(10), "the render never started"
        started = time.monotonic()
        reply = dns.query.udp(
            dns.message.make_query(FLOOD_NAME, "A"), "127.0.0.1", port=server.port, timeout=2
        )
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert time.monotonic() - started < 1.0
        assert request.is_alive() and not replies  # answered while the render was still under way
    finally:
        held.release.set()
        request.join(10)
    assert replies and replies[0].status == 200
    return replies[0]


def test_dns_is_answered_while_metrics_render(
    start_server, fake_upstream: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldRender(metrics_module.generate_latest)
    monkeypatch.setattr(metrics_module, "generate_latest", held)
    server = start_server(scrape_config(fake_upstream))
    reply = dns_during(server, api_url(server) + "/metrics", held)
    assert b"blockdns_queries_total" in reply.body


def test_dns_is_answered_while_stats_render(
    start_server, fake_upstream: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldRender(api_module._dumps, lambda value: isinstance(value, dict) and "queries" in value)
    monkeypatch.setattr(api_module, "_dumps", held)
    server = start_server(scrape_config(fake_upstream))
    reply = dns_during(server, api_url(server) + "/api/stats", held)
    assert reply.json()["queries"]["total"] >= 0
