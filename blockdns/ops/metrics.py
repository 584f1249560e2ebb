"""Prometheus metrics: the server's counters as metric families, rendered from a :class:`Snapshot`.

Nothing is counted twice: the hot path keeps updating plain ints and dicts in the server's
:class:`ServerStats`; a scrape copies them on the event loop (:func:`~blockdns.ops.snapshot.take_snapshot`)
and this module turns the copy into the text exposition in a worker thread, so a scrape never holds up DNS.
Every label set is bounded: query types fold into a fixed list (``other`` for the rest), outcomes are an
enum, and groups, vendors, categories, selectors and feeds come from the configuration, never from a client.
Each render builds its own :class:`CollectorRegistry`, so several servers in one process (tests) never
collide.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from blockdns import __version__
from blockdns.errors import ConfigError
from blockdns.feeds.manifest import FeedState, manifest_path, read_manifest
from blockdns.ops.labels import qtype_label
from blockdns.ops.snapshot import Snapshot
from blockdns.ops.stats import LATENCY_BUCKETS, STREAM_REFUSALS, ServerStats
from blockdns.resolve.base import HTTPS, TCP, TLS

log = logging.getLogger("blockdns.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (metric name, ServerStats field, help) for the plain int counters.
PLAIN_COUNTERS = (
    (
        "refused_clients",
        "refused_clients",
        "Queries refused because the client is not in server.allow_clients",
    ),
    ("bad_packets", "bad_packets", "Unparseable queries"),
    ("dropped_overload", "dropped_overload", "Queries dropped because too many were being resolved"),
    ("handler_failures", "handler_failures", "Internal errors turned into SERVFAIL"),
    (
        "querylog_dropped",
        "log_dropped",
        "Query log rows dropped because the writer fell behind or the database was away",
    ),
    ("config_reloads", "reloads", "Configurations swapped in by a reload"),
    (
        "config_reloads_refused",
        "reloads_refused",
        "Reloads refused (a bad, empty or unreadable config); the last good one kept serving",
    ),
    (
        "dropped_client_share",
        "dropped_client_share",
        "Queries dropped because their client had a quarter of server.max_inflight being resolved",
    ),
    (
        "udp_receive_drops",
        "udp_receive_drops",
        "Queries the kernel dropped because the server's UDP receive queue was full",
    ),
)

# The transport label of the stream connections' metrics: plain DNS over TCP, DoT, DoH (all over TCP).
STREAM_TRANSPORTS = (TCP, TLS, HTTPS)

# action label -> ServerStats field, for UDP queries over their client prefix's rate.
RATELIMIT_ACTIONS = (
    ("slip", "ratelimited_slipped"),  # a bare truncated reply, so a real client retries over TCP
    ("drop", "ratelimited_dropped"),  # silence
)


def _timestamp(value: object) -> float | None:
    """``fetched_at`` as seconds since the epoch: a number, or an ISO 8601 text (naive means UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return None


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


class FeedManifest:
    """The feed store's manifest, through its one reader (:func:`~blockdns.feeds.manifest.read_manifest`),
    re-read only when the file changes. Renders run in worker threads, so one at a time reads it."""

    def __init__(self) -> None:
        self._key: tuple[Path, int, int] | None = None
        self._feeds: dict[str, FeedState] = {}
        self._lock = threading.Lock()

    def feeds(self, data_dir: Path) -> dict[str, FeedState]:
        with self._lock:
            return self._read(data_dir)

    def _read(self, data_dir: Path) -> dict[str, FeedState]:
        path = manifest_path(data_dir)
        try:
            info = path.stat()
        except OSError:
            self._key, self._feeds = None, {}
            return {}
        key = (path, info.st_mtime_ns, info.st_size)
        if key != self._key:
            try:
                self._feeds = read_manifest(data_dir).feeds
            except ConfigError as err:
                log.warning("cannot read the feed manifest: %s", err)
                self._feeds = {}
            self._key = key
        return self._feeds


class ServerCollector(Collector):
    """The metric families of one snapshot."""

    def __init__(self, snapshot: Snapshot, manifest: FeedManifest) -> None:
        self.snapshot = snapshot
        self.manifest = manifest

    def collect(self) -> Iterator[Metric]:
        snapshot, stats = self.snapshot, self.snapshot.stats
        info = InfoMetricFamily("blockdns", "blockdns build information")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily("blockdns_start_time_seconds", "When the server started", value=stats.started)

        queries = CounterMetricFamily(
            "blockdns_queries",
            "Answered queries by type (the common types, then other), outcome and client group",
            labels=["qtype", "outcome", "group"],
        )
        by_labels: Counter[tuple[str, str, str]] = Counter()
        for (qtype, outcome, group), count in stats.queries.items():
            by_labels[(qtype_label(qtype), outcome, group)] += count
        for labels, count in sorted(by_labels.items()):
            queries.add_metric(list(labels), count)
        yield queries
        transports = CounterMetricFamily(
            "blockdns_queries_by_transport",
            "Answered queries by the transport they came over (udp, tcp, tls: DoT, https: DoH)",
            labels=["transport"],
        )
        for transport, count in sorted(stats.transports.items()):
            transports.add_metric([transport], count)
        yield transports

        blocks = CounterMetricFamily(
            "blockdns_blocked", "Blocked answers by vendor, category and policy selector",
            labels=["vendor", "category", "selector"],
        )  # fmt: skip
        for (vendor, category, selector), count in sorted(stats.blocks.items()):
            blocks.add_metric([vendor, category, selector], count)
        yield blocks
        by_category: Counter[str] = Counter()
        for (_, category, _), count in stats.blocks.items():
            by_category[category] += count
        category_family = CounterMetricFamily(
            "blockdns_blocked_by_category", "Blocked answers by category", labels=["category"]
        )
        for category, count in sorted(by_category.items()):
            category_family.add_metric([category], count)
        yield category_family

        yield CounterMetricFamily(
            "blockdns_cache_hits", "Answers served from the cache", value=stats.cache.hits
        )
        yield CounterMetricFamily(
            "blockdns_cache_misses", "Cache lookups that found nothing", value=stats.cache.misses
        )
        yield CounterMetricFamily(
            "blockdns_cache_stale_answers",
            "Expired answers served because resolution failed or was too slow (RFC 8767)",
            value=stats.cache.stale,
        )
        yield CounterMetricFamily(
            "blockdns_cache_prefetches",
            "Background refreshes of answers asked for in the last tenth of their TTL",
            value=stats.cache.prefetches,
        )
        yield GaugeMetricFamily(
            "blockdns_cache_entries", "Entries in the answer cache", value=snapshot.cache_entries
        )

        yield self._latency()
        yield from self._upstream()
        yield from self._feeds()

        for name, attribute, text in PLAIN_COUNTERS:
            yield CounterMetricFamily(f"blockdns_{name}", text, value=getattr(stats, attribute))
        yield from self._streams(stats)
        limited = CounterMetricFamily(
            "blockdns_ratelimited",
            "UDP queries over their client prefix's [ratelimit] rate, by what they got instead",
            labels=["action"],
        )
        for action, attribute in RATELIMIT_ACTIONS:
            limited.add_metric([action], getattr(stats, attribute))
        yield limited
        querylog = snapshot.querylog
        if querylog is not None:
            yield GaugeMetricFamily(
                "blockdns_querylog_queue_rows",
                "Query log rows waiting for the writer",
                value=querylog.queue_rows,
            )
            yield CounterMetricFamily(
                "blockdns_querylog_written", "Query log rows stored", value=querylog.written
            )
            yield CounterMetricFamily(
                "blockdns_querylog_write_errors",
                "Query log rows lost to database errors or a dead writer process",
                value=querylog.write_errors,
            )  # fmt: skip
            removed = CounterMetricFamily(
                "blockdns_querylog_removed", "Query log rows removed, by why", labels=["reason"]
            )
            removed.add_metric(["retention"], querylog.purged)
            removed.add_metric(["max_rows"], querylog.trimmed)
            yield removed

        paused_until = snapshot.paused_until
        yield GaugeMetricFamily(
            "blockdns_paused", "1 while blocking is paused", value=0 if paused_until is None else 1
        )
        yield GaugeMetricFamily(
            "blockdns_paused_until_seconds", "When blocking comes back on (0: not paused)",
            value=paused_until or 0,
        )  # fmt: skip
        if snapshot.cluster_connected is not None:
            yield GaugeMetricFamily(
                "blockdns_cluster_connected",
                "1 while this replica is connected to the cluster's Redis ([cluster] redis)",
                value=1 if snapshot.cluster_connected else 0,
            )
        if snapshot.workers:
            yield from self._workers()
        policy = snapshot.policy
        yield GaugeMetricFamily(
            "blockdns_policy_entries", "Domain entries across all groups", value=policy.size
        )
        group_entries = GaugeMetricFamily(
            "blockdns_policy_group_entries", "Domain entries per client group", labels=["group"]
        )
        for name, group_policy in sorted(policy.groups.items()):
            group_entries.add_metric([name], len(group_policy.domains))
        yield group_entries

    def _workers(self) -> Iterator[Metric]:
        """Per worker process ([server] workers > 1); the families above are the sums over all of them."""
        workers = self.snapshot.workers
        yield GaugeMetricFamily(
            "blockdns_workers", "Worker processes running",
            value=sum(1 for worker in workers if worker["running"]),
        )  # fmt: skip
        queries = CounterMetricFamily(
            "blockdns_worker_queries", "Queries answered by each worker process since it started",
            labels=["worker"],
        )  # fmt: skip
        restarts = CounterMetricFamily(
            "blockdns_worker_restarts", "Worker processes started again after one died", labels=["worker"]
        )
        for worker in workers:
            queries.add_metric([str(worker["index"])], _number(worker["queries"]))
            restarts.add_metric([str(worker["index"])], _number(worker["restarts"]))
        yield queries
        yield restarts

    @staticmethod
    def _streams(stats: ServerStats) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The stream connections' metrics, by transport: TCP, DoT and DoH share the slots, not the labels."""
        open_now = GaugeMetricFamily(
            "blockdns_tcp_connections", "TCP connections open, by transport (tcp, tls: DoT, https: DoH)",
            labels=["transport"],
        )  # fmt: skip
        refused = CounterMetricFamily(
            "blockdns_tcp_connections_refused", "TCP connections closed as soon as they were accepted",
            labels=["transport", "reason"],
        )  # fmt: skip
        evicted = CounterMetricFamily(
            "blockdns_tcp_connections_evicted",
            "Idle TCP connections (and DoT/DoH handshakes under way) closed to make room for a new client",
            labels=["transport"],
        )  # fmt: skip
        for transport in STREAM_TRANSPORTS:
            open_now.add_metric([transport], stats.streams_open[transport])
            evicted.add_metric([transport], stats.streams_evicted[transport])
            for reason in STREAM_REFUSALS:
                refused.add_metric([transport, reason], stats.streams_refused[(transport, reason)])
        handshakes = CounterMetricFamily(
            "blockdns_tls_handshakes_failed",
            "DoT and DoH connections closed in their TLS handshake: failed, timed out or reset",
            labels=["transport"],
        )
        for transport in (TLS, HTTPS):
            handshakes.add_metric([transport], stats.tls_handshakes_failed[transport])
        return iter((open_now, refused, evicted, handshakes))

    def _latency(self) -> HistogramMetricFamily:
        stats = self.snapshot.stats
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(LATENCY_BUCKETS, stats.upstream_latency_buckets, strict=False):
            running += count
            buckets.append((repr(float(bound)), running))
        buckets.append(("+Inf", stats.upstream_latency_count))
        family = HistogramMetricFamily(
            "blockdns_upstream_latency_seconds", "Time for an upstream or recursive answer"
        )
        family.add_metric([], buckets, stats.upstream_latency_sum)
        return family

    def _upstream(self) -> Iterator[Metric]:
        counters = self.snapshot.stats.upstream
        for name, text in (
            ("queries", "Queries sent to upstreams and authoritative servers"),
            ("replies", "Valid replies received"),
            ("mismatched", "Replies dropped for a wrong ID or question"),
            ("timeouts", "Queries that got no reply in time"),
            ("errors", "Network errors talking to a server"),
            ("tcp_fallbacks", "Truncated UDP replies retried over TCP"),
            ("retransmits", "Questions sent again because a reply was late (forward mode)"),
            ("late", "Genuine replies dropped because their query was already answered or given up"),
            ("connections", "TLS connections opened to DNS-over-TLS upstreams"),
            ("verify_failures", "Encrypted upstreams whose certificate failed verification in a handshake"),
        ):
            yield CounterMetricFamily(f"blockdns_upstream_{name}", text, value=getattr(counters, name))
        encrypted = CounterMetricFamily(
            "blockdns_upstream_encrypted_queries", "Queries sent to encrypted upstreams", labels=["transport"]
        )
        encrypted.add_metric(["tls"], counters.tls_queries)
        encrypted.add_metric(["https"], counters.https_queries)
        yield encrypted

    def _feeds(self) -> Iterator[Metric]:
        from blockdns.runtime import data_dir

        feeds = self.manifest.feeds(data_dir(self.snapshot.settings))
        entries = GaugeMetricFamily(
            "blockdns_feed_entries", "Entries in each feed's stored data", labels=["feed"]
        )
        updated = GaugeMetricFamily(
            "blockdns_feed_last_success_seconds",
            "When the stored data of each feed was fetched (its last successful update)",
            labels=["feed"],
        )
        status = GaugeMetricFamily(
            "blockdns_feed_status", "1 for each feed's last update status", labels=["feed", "status"]
        )
        for name, feed in sorted(feeds.items()):
            entries.add_metric([name], feed.entries)
            when = _timestamp(feed.fetched_at)
            if when is not None:
                updated.add_metric([name], when)
            status.add_metric([name, feed.status], 1)
        yield entries
        yield updated
        yield status


def render(snapshot: Snapshot, manifest: FeedManifest) -> bytes:
    """The Prometheus text exposition of ``snapshot``; safe to call in a worker thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(snapshot, manifest))
    return generate_latest(registry)
