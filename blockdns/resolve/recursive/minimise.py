"""QNAME minimisation (RFC 9156): how many labels the next question may reveal.

Each zone's servers are asked for one label more than the zone they serve, so the root learns only the
TLD and a TLD only the registered domain. Names with many labels would cost a query per label, so the RFC
(§2.3) bounds the work: the first ``MINIMISE_ONE_LAB`` steps add one label each, then the remaining labels
are spread over the steps left until ``MAX_MINIMISE_COUNT``, after which the full name is asked.

Minimised questions use QTYPE A (§2.1 of the RFC recommends A or NS; Unbound uses A: some broken servers
mishandle NS questions, and a query for A looks like any other).
"""

from __future__ import annotations

import math

from blockdns.wire import TYPE_A

MAX_MINIMISE_COUNT = 10
MINIMISE_ONE_LAB = 4
MINIMISED_QTYPE = TYPE_A


def next_label_count(asked_labels: int, target_labels: int, minimise_count: int) -> int:
    """The label count of the next name to ask, given the labels already known to be delegated or empty
    (``asked_labels``: the zone's, or the last name found not to be a zone cut), the full name's label
    count, and how many minimised questions were asked so far."""
    remaining = target_labels - asked_labels
    if remaining <= 0:
        return target_labels
    if minimise_count >= MAX_MINIMISE_COUNT:
        return target_labels
    if minimise_count < MINIMISE_ONE_LAB:
        step = 1
    else:
        step = max(1, math.ceil(remaining / (MAX_MINIMISE_COUNT - minimise_count)))
    return min(asked_labels + step, target_labels)
