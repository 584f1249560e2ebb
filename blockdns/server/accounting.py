"""Counting and logging what was answered: one place, read by both speeds, so a fast answer and a slow one
leave the same trace in the metrics and the query log."""

from __future__ import annotations

import time

from blockdns.ops.labels import COUNTED_QTYPES, OTHER_QTYPE
from blockdns.ops.rowsink import RowSink
from blockdns.ops.stats import ServerStats
from blockdns.resolve.base import Answer, Outcome, Query

CACHED, BLOCKED, REFUSED, STALE = Outcome.CACHED, Outcome.BLOCKED, Outcome.REFUSED, Outcome.STALE


class Accounting:
    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats
        self.querylog: RowSink | None = None  # set once the query log is open

    def record(self, query: Query, answer: Answer, duration_ms: float) -> None:
        stats = self.stats
        outcome = answer.outcome
        label = outcome.label
        question, client = query.question, query.client
        group = client.group.name
        qtype = question.qtype
        if qtype not in COUNTED_QTYPES:  # the label set stays bounded whatever types clients send
            qtype = OTHER_QTYPE
        stats.queries[(qtype, label, group)] += 1
        stats.transports[client.transport] += 1
        decision = answer.decision
        if outcome is CACHED:
            stats.cache.hits += 1
        elif outcome is BLOCKED:
            if decision is not None and decision.rule is not None:
                stats.blocks[decision.rule.count_key] += 1
        elif outcome is REFUSED:
            stats.refused_clients += 1
        elif outcome is STALE:
            stats.cache.stale += 1
        querylog = self.querylog
        if querylog is not None:  # a decision's reason is spelled out by the writer, off this path
            querylog.offer(
                (  # a Row's fields: a plain tuple costs less to build, and to pickle, than a Row
                    time.time(),
                    client.address,
                    group,
                    question.qname_wire,
                    question.qtype,
                    label,
                    answer.reply.rcode,
                    answer.reason,
                    decision,
                    answer.upstream,
                    duration_ms,
                    client.transport,
                    client.client_id,
                )
            )
