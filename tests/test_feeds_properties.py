"""Hypothesis properties of the feed parsers, compaction, the stored format and the exports.

* No input makes a parser raise anything but a FeedError subclass.
* Every name a parser produces is already normalised; compacting twice changes nothing.
* The stored line format reads back what was written.
* An adblock or RPZ export, parsed again, decides every name as the policy it came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockdns.catalog import Catalog
from blockdns.entries import EntrySets
from blockdns.errors import FeedError
from blockdns.feeds.compact import compact
from blockdns.feeds.export import ExportContext, export_set, render_adblock, render_rpz
from blockdns.feeds.formats import PARSERS, ParseOptions
from blockdns.feeds.model import parse_data, render_data
from blockdns.names import normalise
from blockdns.policy import DomainSetBuilder, FeedSource, Rule, compile_policy

TEXT_FORMATS = ["domains", "hosts", "adblock", "dnsmasq", "rpz", "v2fly"]
JSON_FORMATS = ["ipranges-json", "m365-endpoints"]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lines built from the pieces real feeds are made of, so the parsers' inner branches get exercised.
fragments = st.sampled_from(
    [
        "example.com", "*.", ".", "||", "|", "^", "@@", "$important", "$third-party", "##", "#", "!", ";",
        " ", "\t", "0.0.0.0", "127.0.0.1", "::", "address=/", "server=/", "/", "CNAME", "rpz-passthru.", "*.",
        "$ORIGIN", "$TTL", "SOA", "NS", "(", ")", "\"", "full:", "domain:", "include:", "regexp:", "keyword:",
        "@ads", "@-cn", "&x", "24.0.2.0.192.rpz-ip", "zz", "xn--", "ü", "a" * 70, "-", "_", "\\", "\r",
    ]
)  # fmt: skip
feed_lines = st.lists(st.lists(fragments, max_size=8).map("".join), max_size=30).map("\n".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from(["192.0.2.0/24", "*.x.com"]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["prefixes", "ipv4Prefix", "ipv6Prefix", "urls", "ips", "id"]), children
        )
    ),
    max_leaves=25,
)


def options(fmt: str, **extra: object) -> ParseOptions:
    return ParseOptions(feed="prop", format=fmt, **extra)  # type: ignore[arg-type]


def all_names(data: EntrySets) -> set[str]:
    return data.block_suffix | data.block_exact | data.allow_suffix | data.allow_exact


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
@FAST
@given(text=st.one_of(st.text(max_size=400), feed_lines))
def test_text_parsers_raise_only_feed_errors(fmt: str, text: str) -> None:
    try:
        result = PARSERS[fmt](text, options(fmt, max_rejected=1.0))
    except FeedError:
        return
    assert all(normalise(name) == name for name in all_names(result.data))
    assert compact(result.data) == result.data


@pytest.mark.parametrize("fmt", JSON_FORMATS)
@FAST
@given(value=json_values)
def test_json_parsers_raise_only_feed_errors(fmt: str, value: object) -> None:
    for text in (json.dumps(value), json.dumps(value)[:-1]):
        try:
            result = PARSERS[fmt](text, options(fmt, max_rejected=1.0, guard=True))
        except FeedError:
            continue
        assert all(normalise(name) == name for name in all_names(result.data))


# Names over a tiny alphabet, so that parents, children and ties are common.
labels = st.sampled_from(["a", "b", "c", "xn--bcher-kva"])
names = st.lists(labels, min_size=1, max_size=4).map(lambda parts: ".".join([*parts, "test"]))
name_sets = st.sets(names, max_size=8)
feed_data = st.builds(
    EntrySets, block_suffix=name_sets, block_exact=name_sets, allow_suffix=name_sets, allow_exact=name_sets
)


@FAST
@given(data=feed_data)
def test_compacting_is_idempotent_and_keeps_decisions(data: EntrySets) -> None:
    once = compact(data)
    assert compact(once) == once
    for name in all_names(data) | {"z." + n for n in all_names(data)}:
        assert decide(once, name) == decide(data, name)


@FAST
@given(data=feed_data)
def test_stored_format_round_trips(data: EntrySets) -> None:
    text = render_data(data, "header line")
    assert parse_data(text.splitlines()) == data


def decide(data: EntrySets, name: str) -> str:
    builder = DomainSetBuilder()
    for entries, action, exact in (
        (data.block_suffix, "block", False),
        (data.block_exact, "block", True),
        (data.allow_suffix, "allow", False),
        (data.allow_exact, "allow", True),
    ):
        for entry in entries:
            builder.add(entry, Rule(action, exact, "test"))  # type: ignore[arg-type]
    hit = builder.build().match(name)
    return hit[1].action if hit else "none"


def policy_for(data: EntrySets):  # type: ignore[no-untyped-def]
    catalog = Catalog(vendors={}, guard={}, directory=Path("."))
    source = FeedSource(name="f", vendor=None, category=None, role="block", entries=data)
    return compile_policy(catalog, ["feed:f"], feeds=[source]).default


@pytest.mark.parametrize(("fmt", "render"), [("adblock", render_adblock), ("rpz", render_rpz)])
@FAST
@given(data=feed_data)
def test_exports_decide_like_the_policy(fmt: str, render, data: EntrySets) -> None:  # type: ignore[no-untyped-def]
    group = policy_for(data)
    lines = render(export_set(group), ExportContext(selectors=("feed:f",), allow=()))
    text = "\n".join(lines)
    reparsed = PARSERS[fmt](text, options(fmt)).data if all_names(data) else EntrySets()
    unwritten = left_out_exceptions(lines)
    for name in all_names(data) | {"z." + n for n in all_names(data)}:
        blocked = group.decide(name).blocked  # "allow" and "none" both resolve the name
        exported = decide(reparsed, name) == "block"
        assert exported == blocked or (exported and under(name, unwritten)), (name, text)


def left_out_exceptions(lines: list[str]) -> set[str]:
    """The exceptions an adblock export says it left out (their names stay blocked)."""
    for line in lines:
        if line.startswith("! ") and "are left out (their names stay blocked): " in line:
            return set(line.rsplit(": ", 1)[1].split(", "))
    return set()


def under(name: str, suffixes: set[str]) -> bool:
    return any(name == suffix or name.endswith("." + suffix) for suffix in suffixes)


def adblock_decides_block(rules: list[str], name: str) -> bool:
    """AdGuard Home's precedence: an $important exception, then an $important block, then any exception,
    then any block; ``||n^`` matches n and the names below it, ``|n^`` exactly n."""
    found = {"block": False, "allow": False, "block!": False, "allow!": False}
    for rule in rules:
        if not rule or rule.startswith("!"):
            continue
        allow = rule.startswith("@@")
        body = rule.removeprefix("@@")
        important = body.endswith("$important")
        body = body.removesuffix("$important").removesuffix("^")
        if body.startswith("||"):
            target = body[2:]
            matches = name == target or name.endswith("." + target)
        else:
            matches = name == body[1:]
        if matches:
            found[("allow" if allow else "block") + ("!" if important else "")] = True
    if found["allow!"]:
        return False
    if found["block!"]:
        return True
    return found["block"] and not found["allow"]


@FAST
@given(data=feed_data)
def test_adblock_export_under_adguard_precedence(data: EntrySets) -> None:
    group = policy_for(data)
    rules = render_adblock(export_set(group), ExportContext(selectors=("feed:f",), allow=()))
    unwritten = left_out_exceptions(rules)
    for name in all_names(data) | {"z." + n for n in all_names(data)}:
        exported, blocked = adblock_decides_block(rules, name), group.decide(name).blocked
        # Never less than the policy blocks; more only below an exception the export says it left out.
        assert exported == blocked or (exported and under(name, unwritten)), (name, rules)


def test_adblock_export_without_a_phantom_exception() -> None:
    """An allow entry that lifts no block is not an exception to beat: the block beneath it stays plain,
    so a block beneath that block's own exception can still be written (found by Hypothesis)."""
    data = EntrySets(
        block_suffix={"a.a.test"}, block_exact={"a.a.a.a.test"}, allow_suffix={"a.a.a.test", "a.test"}
    )
    group = policy_for(data)
    rules = render_adblock(export_set(group), ExportContext(selectors=("feed:f",), allow=()))
    assert rules[-3:] == ["||a.a.test^", "@@||a.a.a.test^", "|a.a.a.a.test^$important"]
    assert all(adblock_decides_block(rules, n) == group.decide(n).blocked for n in all_names(data))


def test_adblock_export_leaves_out_an_exception_it_cannot_say_and_blocks_its_names() -> None:
    """block a.test > allow b.a.test > block c.b.a.test > allow d.c.b.a.test > block e.d.c.b.a.test: the last
    exception would have to beat an $important block, and a block beneath it would have to beat that."""
    data = EntrySets(
        block_suffix={"a.test", "c.b.a.test", "e.d.c.b.a.test"}, allow_suffix={"b.a.test", "d.c.b.a.test"}
    )
    group = policy_for(data)
    rules = render_adblock(export_set(group), ExportContext(selectors=("feed:f",), allow=()))
    assert left_out_exceptions(rules) == {"d.c.b.a.test"}
    assert not any(rule.startswith("@@||d.c.b.a.test^") for rule in rules)
    assert group.decide("x.d.c.b.a.test").action == "allow" and adblock_decides_block(rules, "x.d.c.b.a.test")
    assert adblock_decides_block(rules, "e.d.c.b.a.test") and not adblock_decides_block(rules, "x.b.a.test")
