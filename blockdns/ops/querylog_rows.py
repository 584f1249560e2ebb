"""A query-log row as the server hands it over, and the record a store keeps for it: shared by the writer
thread (PostgreSQL) and the writer process (SQLite)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from blockdns.dnsname import text_key
from blockdns.policy import Decision

if TYPE_CHECKING:
    from blockdns.ops.clientid import ClientMasker


class Row(NamedTuple):
    """One answered query as the server hands it over; the writer turns it into a stored record."""

    ts: float  # time.time() of the answer
    client: str  # the client's address (masked by the writer as ``[querylog] clients`` says)
    group: str
    qname_wire: bytes
    qtype: int
    outcome: str  # an Outcome value: resolved, cached, stale, blocked, local, refused, error
    rcode: int
    reason: str | None  # None with a decision: the decision's reason (the writer spells it out)
    decision: Decision | None
    upstream: str | None
    duration_ms: float
    transport: str
    client_id: str | None = None  # the client ID (DoH path, DoT SNI) that chose the group


# What the server offers per query: a Row's fields as a plain tuple, which costs the hot path less to build
# than a Row and the writer thread less to pickle (a named tuple pickles through a Python-level method).
RowValues = tuple[
    float, str, str, bytes, int, str, int, str | None, Decision | None, str | None, float, str, str | None
]
Record = tuple[object, ...]
# What the log keeps of a decision: (reason, entry, selector, vendor, category). A row sent to the writer
# process carries this in place of the Decision, whose object graph is slow to pickle.
Spelled = tuple[str, str | None, str | None, str | None, str | None]

PURGE_CHUNK = 5000
# Past [querylog] max_rows the oldest rows go in one sweep that makes this much room (a share of the cap,
# at most TRIM_ROOM_MAX rows), so the delete runs once per many batches instead of after every one.
TRIM_ROOM_SHARE = 0.02
TRIM_ROOM_MAX = 50_000
# The lowest and highest row id: one seek each. (``SELECT min(id), max(id)`` in one select reads the whole
# table: SQLite's min/max shortcut applies only to a select of one of them.)
ROW_ID_RANGE = "SELECT (SELECT min(id) FROM queries), (SELECT max(id) FROM queries)"


@functools.lru_cache(maxsize=1 << 16)
def qname_text(wire: bytes) -> str:
    """The presentation name of a lowercase wire name; the root is ``.``. Memoised: a log is mostly the
    same few thousand names."""
    try:
        return text_key(wire) or "."
    except IndexError:
        return wire.hex()


def spell(decision: Decision) -> Spelled:
    """What the log keeps of ``decision``."""
    selector = vendor = category = None
    rule = decision.rule
    if rule is not None:
        selector = rule.selector
        if rule.vendor is not None:
            vendor, category = rule.vendor.id, rule.vendor.category
        else:
            category = rule.category
    return (decision.reason, decision.entry, selector, vendor, category)


def to_record(
    row: RowValues | tuple[Any, ...],
    masker: ClientMasker,
    client_name: Callable[[str], str | None] | None,
    none: object = None,
) -> Record:
    """The stored record of ``row`` (its decision a Decision, or already :func:`spell`-ed): the client
    masked, the name text, the decision spelled out, and the client's name from ``client_name`` (None: the
    log keeps no names). An empty text field is ``none`` (the SQLite writer's :data:`NO_TEXT`)."""
    (
        ts,
        client,
        group,
        qname_wire,
        qtype,
        outcome,
        rcode,
        reason,
        decision,
        upstream,
        duration_ms,
        transport,
        client_id,
    ) = row
    entry = selector = vendor = category = None
    if decision is not None:
        spelled = decision if type(decision) is tuple else spell(decision)
        decision_reason, entry, selector, vendor, category = spelled
        if reason is None:
            reason = decision_reason
    masked = masker.mask(client)
    name = client_name(client) if client_name is not None else None
    return (
        ts,
        none if masked is None else masked,
        group,
        qname_text(qname_wire),
        qtype,
        outcome,
        rcode,
        none if reason is None else reason,
        none if entry is None else entry,
        none if selector is None else selector,
        none if vendor is None else vendor,
        none if category is None else category,
        none if upstream is None else upstream,
        duration_ms,
        transport,
        none if name is None else name,
        none if client_id is None else client_id,
    )
