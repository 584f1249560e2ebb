"""``GET /api/stats``: the running server's counters as one JSON object (the query log's summary is added by
the API, since reading it touches the disk)."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from blockdns import __version__
from blockdns.ops.labels import qtype_name

if TYPE_CHECKING:
    from blockdns.ops.control import ServerControl
    from blockdns.ops.querylog import QueryLog

TOP = 10


def paused_until(control: ServerControl, now: float | None = None) -> float | None:
    """When blocking comes back on, or None when it is on (a pause that has run out counts as over)."""
    until = control.paused_until
    if until is None or until <= (now if now is not None else time.time()):
        return None
    return until


def server_snapshot(control: ServerControl, querylog: QueryLog | None) -> dict[str, object]:
    stats = control.stats
    now = time.time()
    by_outcome: Counter[str] = Counter()
    by_group: Counter[str] = Counter()
    by_qtype: Counter[str] = Counter()
    for (qtype, outcome, group), count in stats.queries.items():
        by_outcome[outcome] += count
        by_group[group] += count
        by_qtype[qtype_name(qtype)] += count
    total = sum(by_outcome.values())
    blocked = by_outcome.get("blocked", 0)
    vendors: Counter[tuple[str, str]] = Counter()
    for (vendor, category, _selector), count in stats.blocks.items():
        vendors[(vendor, category)] += count
    lookups = stats.cache.hits + stats.cache.misses
    latency_count = stats.upstream_latency_count
    until = paused_until(control, now)
    policy = control.policy
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
        },
        "top_vendors": [
            {"vendor": vendor or None, "category": category or None, "count": count}
            for (vendor, category), count in vendors.most_common(TOP)
        ],
        "cache": {
            "hits": stats.cache.hits,
            "misses": stats.cache.misses,
            "hit_rate": stats.cache.hits / lookups if lookups else 0.0,
            "entries": control.cache_size(),
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
            "handler_failures": stats.handler_failures,
            "querylog_dropped": stats.log_dropped,
        },
        "policy": {
            "entries": policy.size,
            "groups": {name: len(group.domains) for name, group in policy.groups.items()},
        },
        "querylog": _querylog_state(querylog),
    }


def _querylog_state(querylog: QueryLog | None) -> dict[str, object]:
    if querylog is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "path": str(querylog.path),
        "clients": querylog.settings.clients,
        "retention_days": querylog.settings.retention_days,
        "max_rows": querylog.settings.max_rows,
        "removed_past_max_rows": querylog.trimmed,
        "queue_rows": len(querylog.queue),
        "capacity": querylog.capacity,
        "written": querylog.written,
        "write_errors": querylog.write_errors,
    }
