"""Remove entries that change nothing: duplicates, and entries whose nearest covering entry says the same.

An entry is redundant when the most specific *suffix* entry that covers it (a parent suffix entry for a suffix
entry; a suffix entry on the same name or a parent for an exact entry) has the same action. Exact entries
never cover anything but their own name, so they are never consulted. Where the same name carries a block
and an allow entry, the allow entry wins and the block entry goes, as in the policy compiler: an allow suffix
entry on a name also voids an exact block entry on it (an exact allow entry beside a suffix block entry
stays: it exempts the name itself and leaves the names below blocked).

Removing a redundant entry cannot change the nearest covering action of any other name (it had the same action
as its own cover), so judging every entry against the original sets is exact, and compacting twice changes
nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Literal

from blockdns.entries import EntrySets, Network

Action = Literal["block", "allow"]


def nearest_suffix_action(
    name: str, suffix_actions: Mapping[str, Action], *, include_self: bool
) -> Action | None:
    """The action of the most specific suffix entry covering ``name`` (its own only if ``include_self``)."""
    if include_self:
        found = suffix_actions.get(name)
        if found is not None:
            return found
    start = name.find(".")
    while start != -1:
        found = suffix_actions.get(name[start + 1 :])
        if found is not None:
            return found
        start = name.find(".", start + 1)
    return None


def merge_actions(block: Iterable[str], allow: Iterable[str]) -> dict[str, Action]:
    """Names to actions; a name in both sets is an allow (allow wins a tie)."""
    actions: dict[str, Action] = dict.fromkeys(block, "block")
    actions.update(dict.fromkeys(allow, "allow"))
    return actions


def collapse_networks(networks: Iterable[Network]) -> list[Network]:
    """Networks without duplicates or networks inside others, adjacent ones merged; IPv4 first."""
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]  # type: ignore[arg-type]


def compact(data: EntrySets) -> EntrySets:
    suffix = merge_actions(data.block_suffix, data.allow_suffix)
    exact = merge_actions(data.block_exact, data.allow_exact)
    result = EntrySets()
    for name, action in suffix.items():
        if nearest_suffix_action(name, suffix, include_self=False) != action:
            (result.allow_suffix if action == "allow" else result.block_suffix).add(name)
    for name, action in exact.items():
        if action == "block" and suffix.get(name) == "allow":
            continue  # allow wins on the same name: the exact block never decides anything
        if nearest_suffix_action(name, suffix, include_self=True) != action:
            (result.allow_exact if action == "allow" else result.block_exact).add(name)
    result.networks = collapse_networks(data.networks)
    return result
