"""Counters the server keeps while it answers. Plain ints and dicts: updating one costs a dict probe, so
the hot path can afford it; metrics and the API read them when asked (a Prometheus collector at scrape time).

One :class:`ServerStats` instance belongs to a running server and outlives its configuration generations;
the parts that other layers update (the upstream transport's counters, the cache's) are instances of those
layers' own types, handed to them when a generation is built.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field, fields, is_dataclass, replace

from blockdns.resolve.cache import CacheCounters
from blockdns.resolve.transport import TransportStats

# Why a stream connection was closed as soon as it was accepted (the metrics' reason label): the client is
# outside server.allow_clients, it already holds server.tcp_max_per_client, every slot is taken and none idle.
NOT_ALLOWED, CLIENT_LIMIT, FULL = "not_allowed", "client_limit", "full"
STREAM_REFUSALS = (NOT_ALLOWED, CLIENT_LIMIT, FULL)

# Upstream latency histogram bucket bounds, seconds (Prometheus style, cumulative at export time).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class ServerStats:
    started: float = field(default_factory=time.time)
    # (qtype, outcome, group) -> count; outcome is an Outcome value ("resolved", "cached", "blocked", ...);
    # qtype is one of labels.COUNTED_QTYPES or labels.OTHER_QTYPE, so the key set is bounded by the config
    queries: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    # transport ("udp", "tcp", "tls", "https") -> answered queries
    transports: Counter[str] = field(default_factory=Counter)
    # (vendor or "", category or "", selector) -> count of blocked answers
    blocks: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    cache: CacheCounters = field(default_factory=CacheCounters)
    upstream: TransportStats = field(default_factory=TransportStats)  # queries sent to other servers
    refused_clients: int = 0  # queries from addresses outside server.allow_clients
    bad_packets: int = 0  # unparseable queries (FORMERR or silence)
    dropped_overload: int = 0  # slow-path queries dropped because too many were in flight
    handler_failures: int = 0  # exceptions turned into SERVFAIL
    log_dropped: int = 0  # query-log rows dropped because the writer fell behind
    reloads: int = 0  # configurations swapped in after the first
    reloads_refused: int = 0  # reloads refused (bad or empty config); the old configuration kept serving
    # Hardening (issue 14): what the transports refused or shed to keep serving the clients that behave.
    dropped_client_share: int = 0  # slow-path queries dropped: the client had its share of max_inflight
    udp_receive_drops: int = 0  # datagrams the kernel dropped on our listening sockets (receive queue full)
    # Stream connections by transport: "tcp", "tls" (DoT), "https" (DoH); they share one set of slots.
    streams_open: Counter[str] = field(default_factory=Counter)  # open now
    # (transport, one of STREAM_REFUSALS) -> connections closed as soon as they were accepted
    streams_refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    streams_evicted: Counter[str] = field(default_factory=Counter)  # idle, closed to make room for a new one
    # DoT/DoH connections closed in their TLS handshake (failed, timed out, reset), by transport
    tls_handshakes_failed: Counter[str] = field(default_factory=Counter)
    # Rate limiting (issue 16): UDP queries over their client prefix's rate, by what they got instead.
    ratelimited_slipped: int = 0  # a bare truncated reply (TC), so a real client retries over TCP
    ratelimited_dropped: int = 0  # silence
    upstream_latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    upstream_latency_sum: float = 0.0
    upstream_latency_count: int = 0

    def observe_upstream_latency(self, seconds: float) -> None:
        # The first bucket whose bound is at or above ``seconds`` (past the last: the +Inf bucket).
        self.upstream_latency_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.upstream_latency_sum += seconds
        self.upstream_latency_count += 1

    def copy(self) -> ServerStats:
        """A copy that no longer moves, for rendering off the event loop: every dict and list is copied, and
        every nested counter dataclass. Costs microseconds: the dicts' key sets are bounded by the
        configuration (query types fold into labels.COUNTED_QTYPES)."""
        changes: dict[str, object] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, dict | list):
                changes[item.name] = value.copy()
            elif is_dataclass(value) and not isinstance(value, type):
                changes[item.name] = replace(value)
        return replace(self, **changes)  # type: ignore[arg-type]

    def add(self, other: ServerStats) -> None:
        """Add ``other``'s counters to these (a supervisor summing its workers); ``started`` stays."""
        _add_fields(self, other, skip=("started",))

    def total_queries(self) -> int:
        return sum(self.queries.values())


def _add_fields(total: object, part: object, skip: tuple[str, ...] = ()) -> None:
    for item in fields(total):  # type: ignore[arg-type]
        if item.name in skip:
            continue
        mine, theirs = getattr(total, item.name), getattr(part, item.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        elif isinstance(mine, list):
            for index, value in enumerate(theirs):
                mine[index] += value
        elif is_dataclass(mine):
            _add_fields(mine, theirs)
        else:
            setattr(total, item.name, mine + theirs)
