"""The running server's state at one moment, for ``/metrics`` and ``GET /api/stats``.

:func:`take_snapshot` runs on the event loop, where the counters are updated, and only copies: the counter
dicts have key sets bounded by the configuration (query types fold into a fixed list), so it costs
microseconds. Everything that grows with the data — turning the copy into metric families or JSON, reading the
feed manifest — runs from the snapshot in a worker thread, while DNS goes on answering.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from blockdns import __version__
from blockdns.ops.labels import qtype_label

if TYPE_CHECKING:
    from blockdns.config import Settings
    from blockdns.ops.cluster import ClusterView
    from blockdns.ops.control import ServerControl
    from blockdns.ops.querylog import QueryLogWriter
    from blockdns.ops.stats import ServerStats
    from blockdns.policy import Policy

TOP = 10


@dataclass(frozen=True, slots=True)
class QueryLogState:
    path: str
    clients: str
    retention_days: int
    max_rows: int
    queue_rows: int
    capacity: int
    written: int
    write_errors: int
    purged: int  # rows removed by retention
    trimmed: int  # rows removed by the max_rows cap


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float  # time.time() when it was taken
    stats: ServerStats  # a copy: it no longer moves
    cache_entries: int
    paused_until: float | None  # None: blocking is on
    settings: Settings  # immutable, like the policy
    policy: Policy
    querylog: QueryLogState | None  # None: the query log is off
    cluster_connected: bool | None  # None: no [cluster] redis
    workers: list[dict[str, object]]  # one entry per worker process; empty: the single-process server


def paused_until(control: ServerControl, now: float | None = None) -> float | None:
    """When blocking comes back on, or None when it is on (a pause that has run out counts as over)."""
    until = control.paused_until
    if until is None or until <= (now if now is not None else time.time()):
        return None
    return until


def take_snapshot(control: ServerControl, querylog: QueryLogWriter[Any] | None) -> Snapshot:
    """Copy what the renderers read; call it on the event loop that updates the counters."""
    now = time.time()
    state = None
    if querylog is not None:
        state = QueryLogState(
            path=querylog.location,
            clients=querylog.settings.clients,
            retention_days=querylog.settings.retention_days,
            max_rows=querylog.settings.max_rows,
            queue_rows=len(querylog.queue),
            capacity=querylog.capacity,
            written=querylog.written,
            write_errors=querylog.write_errors,
            purged=querylog.purged,
            trimmed=querylog.trimmed,
        )
    return Snapshot(
        now=now,
        stats=control.stats.copy(),
        cache_entries=control.cache_size(),
        paused_until=paused_until(control, now),
        settings=control.settings,
        policy=control.policy,
        querylog=state,
        cluster_connected=control.cluster.connected if control.cluster is not None else None,
        workers=control.worker_states(),
    )


def stats_body(snapshot: Snapshot) -> dict[str, object]:
    """The body of ``GET /api/stats`` but the query log's summary (the API adds it: it reads the disk)."""
    stats = snapshot.stats
    now = snapshot.now
    by_outcome: Counter[str] = Counter()
    by_group: Counter[str] = Counter()
    by_qtype: Counter[str] = Counter()
    for (qtype, outcome, group), count in stats.queries.items():
        by_outcome[outcome] += count
        by_group[group] += count
        by_qtype[qtype_label(qtype)] += count
    total = sum(by_outcome.values())
    blocked = by_outcome.get("blocked", 0)
    vendors: Counter[tuple[str, str]] = Counter()
    for (vendor, category, _selector), count in stats.blocks.items():
        vendors[(vendor, category)] += count
    lookups = stats.cache.hits + stats.cache.misses
    latency_count = stats.upstream_latency_count
    until = snapshot.paused_until
    policy = snapshot.policy
    upstream = stats.upstream
    return {
        "version": __version__,
        "now": now,
        "started": stats.started,
        "uptime_seconds": max(0.0, now - stats.started),
        "paused": until is not None,
        "paused_until": until,
        "queries": {
            "total": total,
            "blocked": blocked,
            "block_rate": blocked / total if total else 0.0,
            "by_outcome": dict(by_outcome),
            "by_group": dict(by_group),
            "by_qtype": dict(by_qtype),
            "by_transport": dict(stats.transports),  # udp, tcp, tls (DoT), https (DoH)
        },
        "top_vendors": [
            {"vendor": vendor or None, "category": category or None, "count": count}
            for (vendor, category), count in vendors.most_common(TOP)
        ],
        "cache": {
            "hits": stats.cache.hits,
            "misses": stats.cache.misses,
            "stale": stats.cache.stale,
            "prefetches": stats.cache.prefetches,
            "hit_rate": stats.cache.hits / lookups if lookups else 0.0,
            "entries": snapshot.cache_entries,
        },
        "upstream": {
            "queries": upstream.queries,
            "replies": upstream.replies,
            "timeouts": upstream.timeouts,
            "errors": upstream.errors,
            "mismatched": upstream.mismatched,
            "tcp_fallbacks": upstream.tcp_fallbacks,
            "answers_timed": latency_count,
            "mean_latency_ms": 1000 * stats.upstream_latency_sum / latency_count if latency_count else None,
        },
        "problems": {
            "refused_clients": stats.refused_clients,
            "bad_packets": stats.bad_packets,
            "dropped_overload": stats.dropped_overload,
            "ratelimited_slipped": stats.ratelimited_slipped,
            "ratelimited_dropped": stats.ratelimited_dropped,
            "handler_failures": stats.handler_failures,
            "querylog_dropped": stats.log_dropped,
            "reloads_refused": stats.reloads_refused,
        },
        "policy": {
            "entries": policy.size,
            "groups": {name: len(group.domains) for name, group in policy.groups.items()},
        },
        "querylog": _querylog_state(snapshot.querylog),
        "workers": snapshot.workers,
    }


def _querylog_state(state: QueryLogState | None) -> dict[str, object]:
    if state is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "path": state.path,
        "clients": state.clients,
        "retention_days": state.retention_days,
        "max_rows": state.max_rows,
        "removed_past_max_rows": state.trimmed,
        "queue_rows": state.queue_rows,
        "capacity": state.capacity,
        "written": state.written,
        "write_errors": state.write_errors,
    }


def cluster_body(view: ClusterView | None) -> dict[str, object]:
    """The ``cluster`` part of ``GET /api/stats``: the totals over every live replica sharing the Redis.

    The rest of the body is this replica's own, as ``/metrics`` is: Prometheus scrapes every replica and sums
    them itself, so a cluster total there would be counted once per replica."""
    if view is None:
        return {"enabled": False}
    body: dict[str, object] = {
        "enabled": True,
        "redis": view.url,
        "connected": view.connected,
        "replica": view.replica,
        "replicas": view.replicas,
        "totals": None,
    }
    totals = view.totals
    if totals is not None:
        by_outcome = totals.get("queries_by_outcome", {})
        total = sum(by_outcome.values())
        blocked = by_outcome.get("blocked", 0)
        cache = totals.get("cache", {})
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        body["totals"] = {
            "queries": {
                "total": total,
                "blocked": blocked,
                "block_rate": blocked / total if total else 0.0,
                "by_outcome": by_outcome,
                "by_group": totals.get("queries_by_group", {}),
                "by_qtype": totals.get("queries_by_qtype", {}),
            },
            "cache": {**cache, "hit_rate": cache.get("hits", 0) / lookups if lookups else 0.0},
            "upstream": totals.get("upstream", {}),
            "problems": totals.get("problems", {}),
        }
    return body
