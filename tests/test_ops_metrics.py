"""Prometheus metrics: the exposition parses and every value matches the counters it was read from."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blockdns.config import QueryLogSettings, from_dict
from blockdns.ops.metrics import FeedManifest, render
from blockdns.ops.querylog import QueryLog
from blockdns.ops.snapshot import take_snapshot
from blockdns.ops.stats import LATENCY_BUCKETS
from blockdns.resolve import transport

from opshelpers import TEST_LISTS, FakeControl


def scrape(control: FakeControl, querylog: QueryLog | None = None) -> dict[tuple[str, tuple], float]:
    text = render(take_snapshot(control, querylog), FeedManifest()).decode()
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


Q = "blockdns_queries_total"
B = "blockdns_blocked_total"


@pytest.fixture
def control(tmp_path: Path) -> FakeControl:
    lists = {**TEST_LISTS, "data_dir": "lists-data"}
    settings = from_dict({"lists": lists}, source=tmp_path / "blockdns.toml")
    return FakeControl(settings)


def test_counters_match_the_stats(control: FakeControl) -> None:
    stats = control.stats
    stats.queries[(1, "blocked", "default")] = 7
    stats.queries[(28, "cached", "kids")] = 3
    stats.queries[(0, "resolved", "default")] = 2  # labels.OTHER_QTYPE: every type not counted on its own
    stats.blocks[("deepseek", "chat", "all")] = 5
    stats.blocks[("", "", "domain:example.com")] = 2
    stats.cache.hits, stats.cache.misses = 11, 13
    stats.cache.stale, stats.cache.prefetches = 8, 9
    stats.refused_clients, stats.bad_packets, stats.log_dropped = 1, 2, 3
    stats.dropped_overload, stats.handler_failures = 4, 5
    stats.reloads, stats.reloads_refused = 6, 7
    samples = scrape(control)
    assert value(samples, Q, qtype="A", outcome="blocked", group="default") == 7
    assert value(samples, Q, qtype="AAAA", outcome="cached", group="kids") == 3
    assert value(samples, Q, qtype="other", outcome="resolved", group="default") == 2
    assert value(samples, B, vendor="deepseek", category="chat", selector="all") == 5
    assert value(samples, B, vendor="", category="", selector="domain:example.com") == 2
    assert value(samples, "blockdns_blocked_by_category_total", category="chat") == 5
    assert value(samples, "blockdns_cache_hits_total") == 11
    assert value(samples, "blockdns_cache_misses_total") == 13
    assert value(samples, "blockdns_cache_stale_answers_total") == 8
    assert value(samples, "blockdns_cache_prefetches_total") == 9
    assert value(samples, "blockdns_cache_entries") == 42
    assert value(samples, "blockdns_refused_clients_total") == 1
    assert value(samples, "blockdns_bad_packets_total") == 2
    assert value(samples, "blockdns_querylog_dropped_total") == 3
    assert value(samples, "blockdns_dropped_overload_total") == 4
    assert value(samples, "blockdns_handler_failures_total") == 5
    assert value(samples, "blockdns_config_reloads_total") == 6
    assert value(samples, "blockdns_config_reloads_refused_total") == 7
    assert value(samples, "blockdns_policy_entries") == control.policy.size
    assert value(samples, "blockdns_policy_group_entries", group="default") == len(
        control.policy.default.domains
    )
    assert value(samples, "blockdns_paused") == 0
    assert value(samples, "blockdns_info", version=__import__("blockdns").__version__) == 1
    assert value(samples, "blockdns_start_time_seconds") == pytest.approx(stats.started)


def test_paused_state(control: FakeControl) -> None:
    until = control.pause(60)
    samples = scrape(control)
    assert value(samples, "blockdns_paused") == 1
    assert value(samples, "blockdns_paused_until_seconds") == pytest.approx(until)
    control.resume()
    assert value(scrape(control), "blockdns_paused") == 0


def test_upstream_latency_is_a_cumulative_histogram(control: FakeControl) -> None:
    observations = [0.0005, 0.003, 0.003, 0.04, 0.7, 30.0]
    for seconds in observations:
        control.stats.observe_upstream_latency(seconds)
    samples = scrape(control)
    name = "blockdns_upstream_latency_seconds"
    for bound in LATENCY_BUCKETS:
        expected = sum(1 for seconds in observations if seconds <= bound)
        assert value(samples, f"{name}_bucket", le=str(float(bound))) == expected, bound
    assert value(samples, f"{name}_bucket", le="+Inf") == len(observations)
    assert value(samples, f"{name}_count") == len(observations)
    assert value(samples, f"{name}_sum") == pytest.approx(sum(observations))


def test_upstream_transport_counters(control: FakeControl, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = transport.TransportStats(
        queries=9, replies=8, mismatched=1, timeouts=2, errors=3, tcp_fallbacks=4, late=5
    )
    monkeypatch.setattr(control.stats, "upstream", fake)
    samples = scrape(control)
    for field in ("queries", "replies", "mismatched", "timeouts", "errors", "tcp_fallbacks", "late"):
        assert value(samples, f"blockdns_upstream_{field}_total") == getattr(fake, field)


def test_feed_manifest(control: FakeControl, tmp_path: Path) -> None:
    data_dir = tmp_path / "lists-data"
    data_dir.mkdir()
    fetched = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
    manifest = {
        "feeds": {
            "v2fly-category-ai": {"url": "https://x.invalid/a", "entries": 812, "rejected": 0, "status": "ok",
                                  "fetched_at": fetched.isoformat().replace("+00:00", "Z")},
            "broken": {"url": "https://x.invalid/b", "entries": 10, "status": "failed", "fetched_at": None},
        }
    }  # fmt: skip
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    samples = scrape(control)
    assert value(samples, "blockdns_feed_entries", feed="v2fly-category-ai") == 812
    assert value(samples, "blockdns_feed_entries", feed="broken") == 10
    assert (
        value(samples, "blockdns_feed_last_success_seconds", feed="v2fly-category-ai") == fetched.timestamp()
    )
    assert ("blockdns_feed_last_success_seconds", (("feed", "broken"),)) not in samples
    assert value(samples, "blockdns_feed_status", feed="broken", status="failed") == 1
    # A damaged manifest is skipped, not a failed scrape.
    (data_dir / "manifest.json").write_text("{not json")
    assert not any(name.startswith("blockdns_feed_entries") for name, _ in scrape(control))


def test_querylog_gauges(control: FakeControl, tmp_path: Path) -> None:
    querylog = QueryLog(QueryLogSettings(), tmp_path / "q.sqlite", control.stats)
    querylog.queue.extend([()] * 3)  # type: ignore[list-item]
    samples = scrape(control, querylog)
    assert value(samples, "blockdns_querylog_queue_rows") == 3
    assert value(samples, "blockdns_querylog_written_total") == 0
    assert value(samples, "blockdns_querylog_write_errors_total") == 0


def test_registries_are_separate(control: FakeControl) -> None:
    """Two servers in one process (tests, workers) each get their own registry: no duplicate errors."""
    other = FakeControl()
    control.stats.cache.hits = 1
    other.stats.cache.hits = 2
    assert value(scrape(control), "blockdns_cache_hits_total") == 1
    assert value(scrape(other), "blockdns_cache_hits_total") == 2


def test_a_snapshot_does_not_move_with_the_counters(control: FakeControl) -> None:
    """Renders read the snapshot in a worker thread while the event loop keeps counting: it must share no
    dict, list or counter object with the live stats (including any field added later)."""
    stats = control.stats
    stats.queries[(1, "resolved", "default")] = 1
    snapshot = take_snapshot(control, None)
    for item in fields(stats):
        live = getattr(stats, item.name)
        if isinstance(live, dict | list) or is_dataclass(live):
            assert getattr(snapshot.stats, item.name) is not live, item.name
    stats.queries[(1, "resolved", "default")] += 1
    stats.queries[(28, "resolved", "default")] += 1
    stats.cache.hits += 1
    stats.upstream.queries += 1
    stats.observe_upstream_latency(0.001)
    copy = snapshot.stats
    assert dict(copy.queries) == {(1, "resolved", "default"): 1}
    assert copy.cache.hits == copy.upstream.queries == copy.upstream_latency_count == 0
    assert sum(copy.upstream_latency_buckets) == 0
