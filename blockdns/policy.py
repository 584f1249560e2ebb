"""Policy: selectors over the catalogue and feeds, compiled into an immutable per-group decision structure.

Compiling turns every selector of a group into domain entries that keep their provenance (:class:`Rule`).
All entries of a group live in one dict keyed by the entry's name, so deciding a query name costs one dict
probe per label, whatever the list size. Walking from the full name towards the root makes the first hit
the most specific entry; a block and an allow on the same name were merged at compile time (allow wins).

The compiled :class:`Policy` is never mutated. A reload compiles a new one and the server swaps a single
reference, so a query never sees half a policy.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from blockdns.catalog import CATEGORIES, JURISDICTIONS, Catalog
from blockdns.catalog_compiled import CompiledCatalog, CompiledVendor, VendorInfo, compile_catalog
from blockdns.dnsname import text_key
from blockdns.entries import EntrySets
from blockdns.errors import InvalidName, SelectorError
from blockdns.names import normalise, query_name, suffixes

Action = Literal["block", "allow"]
SELECTOR_KINDS = ("all", "vendor", "category", "jurisdiction", "feed", "domain")
DEFAULT_GROUP = "default"


# --------------------------------------------------------------------------------------------- selectors


@dataclass(frozen=True, slots=True)
class Selector:
    kind: str
    value: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "all" else f"{self.kind}:{self.value}"


def parse_selector(text: str) -> Selector:
    """Parse a selector: ``all``, ``vendor:ID``, ``category:NAME``, ``jurisdiction:CC``, ``feed:NAME`` or
    ``domain:NAME``."""
    raw = text.strip()
    if raw == "all":
        return Selector("all")
    kind, sep, value = raw.partition(":")
    if not sep or kind not in SELECTOR_KINDS or kind == "all" or not value:
        raise SelectorError(
            f"{text!r} is not a selector: use all, vendor:ID, category:NAME, jurisdiction:CC, "
            "feed:NAME or domain:NAME"
        )
    if kind == "category" and value not in CATEGORIES:
        raise SelectorError(f"{text!r}: unknown category; one of {', '.join(CATEGORIES)}")
    if kind == "jurisdiction":
        value = value.upper()
        if value not in JURISDICTIONS:
            raise SelectorError(f"{text!r}: a jurisdiction is an ISO 3166-1 alpha-2 code such as CN")
    if kind in ("vendor", "feed"):
        value = value.lower()
    if kind == "domain":
        try:
            value = normalise(value)
        except InvalidName as err:
            raise SelectorError(f"{text!r}: {err}") from None
    return Selector(kind, value)


# ----------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Rule:
    """Where an entry came from. Shared by every entry of one source (a vendor's suffix or exact entries under
    one selector, a feed's), so 1M entries cost 1M dict slots and no object each."""

    action: Action
    exact: bool  # True: the entry's name only; False: the name and everything below it
    selector: str  # the policy selector that put it there, e.g. "vendor:deepseek" or "all"
    vendor: VendorInfo | None = None
    category: str | None = None
    feed: str | None = None
    # How answers blocked by this rule are counted: (vendor id or "", category or "", selector).
    count_key: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vendor = self.vendor.id if self.vendor else ""
        object.__setattr__(self, "count_key", (vendor, self.category or "", self.selector))

    @property
    def jurisdiction(self) -> str | None:
        return self.vendor.jurisdiction if self.vendor else None

    def describe(self) -> str:
        """``vendor:deepseek (DeepSeek, CN, chat/api)`` — the selector and, when known, the vendor."""
        source = self.selector
        if self.vendor is not None:
            own = f"vendor:{self.vendor.id}"
            source = own if source == own else f"{source}: {own}"
            return f"{source} ({self.vendor.label()})"
        if self.feed is not None and self.selector != f"feed:{self.feed}":
            source = f"{source}: feed:{self.feed}"
        if self.category:
            return f"{source} ({self.category})"
        return source


@dataclass(frozen=True, slots=True)
class Split:
    """An exact entry and a suffix entry on one name with different actions: one rule at the name itself,
    the other below it."""

    at_name: Rule
    below: Rule


def _stronger(current: Rule, new: Rule) -> Rule:
    """Two entries on the same name and kind: allow beats block; otherwise the first one stays."""
    if new.action == "allow" and current.action == "block":
        return new
    return current


class DomainSetBuilder:
    """Collects entries, merges ties, and freezes into a :class:`DomainSet`."""

    def __init__(self) -> None:
        self.suffix: dict[str, Rule] = {}
        self.exact: dict[str, Rule] = {}

    def add(self, name: str, rule: Rule) -> None:
        target = self.exact if rule.exact else self.suffix
        current = target.get(name)
        target[name] = rule if current is None else _stronger(current, rule)

    def add_each(self, names: Iterable[str], rule: Rule) -> None:
        """:meth:`add` for every name, in one loop: the first allow stays, allow beats block."""
        target = self.exact if rule.exact else self.suffix
        if rule.action == "allow":
            for name in names:
                current = target.get(name)
                if current is None or current.action == "block":
                    target[name] = rule
        else:
            for name in names:
                target.setdefault(name, rule)

    def add_many(self, names: Iterable[str], rule: Rule) -> None:
        target = self.exact if rule.exact else self.suffix
        if rule.action == "allow":
            for name in names:
                target[name] = rule
        else:
            for name in names:
                target.setdefault(name, rule)

    def build(self) -> DomainSet:
        entries: dict[str, Rule | Split] = dict(self.suffix)
        for name, exact_rule in self.exact.items():
            suffix_rule = self.suffix.get(name)
            if suffix_rule is None:
                entries[name] = exact_rule
            elif _stronger(suffix_rule, exact_rule) is exact_rule and exact_rule.action != suffix_rule.action:
                entries[name] = Split(at_name=exact_rule, below=suffix_rule)
        return DomainSet(entries)


class DomainSet:
    """Immutable name -> rule map with most-specific-match lookup."""

    __slots__ = ("_entries",)

    def __init__(self, entries: dict[str, Rule | Split]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, Rule | Split]]:
        return iter(self._entries.items())

    def match(self, name: str) -> tuple[str, Rule] | None:
        """The most specific entry covering ``name`` (normalised), or None."""
        entries = self._entries
        hit = entries.get(name)
        if hit is not None:
            return name, hit.at_name if isinstance(hit, Split) else hit
        start = name.find(".")
        while start != -1:
            parent = name[start + 1 :]
            hit = entries.get(parent)
            if hit is not None:
                if type(hit) is Split:
                    return parent, hit.below  # type: ignore[union-attr]
                if not hit.exact:  # type: ignore[union-attr]
                    return parent, hit  # type: ignore[return-value]
            start = name.find(".", start + 1)
        return None


class RangeSet:
    """Blocked address ranges with provenance; ``match(ip)`` is a bisect per address family."""

    __slots__ = ("_size", "_tables")

    def __init__(self, ranges: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Rule]]) -> None:
        rows_by_version: dict[int, list[tuple[int, int, Rule, str]]] = {4: [], 6: []}
        for network, rule in ranges:
            start = int(network.network_address)
            rows_by_version[network.version].append(
                (start, start + network.num_addresses - 1, rule, str(network))
            )
        self._tables = {}
        for version, rows in rows_by_version.items():
            rows.sort(key=lambda row: (row[0], -row[1]))
            starts = [row[0] for row in rows]
            # max_end[i]: the largest end among rows[0..i]; lets a lookup stop walking back early.
            max_end, running = [], -1
            for row in rows:
                running = max(running, row[1])
                max_end.append(running)
            self._tables[version] = (rows, starts, max_end)
        self._size = sum(len(rows) for rows in rows_by_version.values())

    def __len__(self) -> int:
        return self._size  # asked for each answer with addresses: counted once

    def __iter__(self) -> Iterator[tuple[str, Rule]]:
        """Every range as (network text, rule)."""
        for rows, _starts, _max_end in self._tables.values():
            for row in rows:
                yield row[3], row[2]

    def match(self, address: str) -> tuple[str, Rule] | None:
        """The narrowest range holding ``address``, or None."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        rows, starts, max_end = self._tables[ip.version]
        value = int(ip)
        index = bisect.bisect_right(starts, value) - 1
        best: tuple[int, int, Rule, str] | None = None
        while index >= 0 and max_end[index] >= value:
            row = rows[index]
            if row[1] >= value and (best is None or row[1] - row[0] < best[1] - best[0]):
                best = row
            index -= 1
        return (best[3], best[2]) if best else None


# ------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    name: str
    group: str
    action: Literal["block", "allow", "none"]
    entry: str | None = None  # the matching domain entry (or range)
    rule: Rule | None = None
    via: str | None = None  # the CNAME target or answer address that was blocked, when not the name itself

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def reason(self) -> str:
        if self.rule is None:
            return "no rule matches"
        verb = "blocked" if self.blocked else "allowed"
        text = f"{verb} by policy: {self.rule.describe()}"
        if self.via:
            text += f" (via {self.via})"
        return text

    def to_json(self) -> dict[str, object]:
        rule = self.rule
        return {
            "name": self.name,
            "blocked": self.blocked,
            "action": self.action,
            "rule": self.entry,
            "selector": rule.selector if rule else None,
            "vendor": rule.vendor.id if rule and rule.vendor else None,
            "vendor_name": rule.vendor.name if rule and rule.vendor else None,
            "category": (rule.vendor.category if rule.vendor else rule.category) if rule else None,
            "jurisdiction": rule.jurisdiction if rule else None,
            "feed": rule.feed if rule else None,
            "group": self.group,
            "via": self.via,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True, eq=False)
class GroupPolicy:
    """One client group's compiled policy. Immutable, and compared by identity (memos key on it)."""

    name: str
    domains: DomainSet
    ranges: RangeSet
    block_selectors: tuple[str, ...]
    allow_selectors: tuple[str, ...]

    def decide(self, name: str) -> Decision:
        """The decision for a name given as its text key (:func:`blockdns.dnsname.text_key`).

        The server passes the key of the question's wire name; ``blockdns check`` and the API pass the key of
        the name a person typed (:meth:`Policy.decide`): both decide alike for any bytes a name holds."""
        hit = self.domains.match(name)
        if hit is None:
            return Decision(name=name, group=self.name, action="none")
        entry, rule = hit
        return Decision(name=name, group=self.name, action=rule.action, entry=entry, rule=rule)

    def decide_address(self, name: str, address: str) -> Decision | None:
        """A block decision when an answer address lies in a blocked range, else None."""
        if not len(self.ranges):
            return None
        hit = self.ranges.match(address)
        if hit is None or hit[1].action != "block":
            return None
        network, rule = hit
        return Decision(name=name, group=self.name, action="block", entry=network, rule=rule, via=address)


# --------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class FeedSource:
    """One fetched feed as the policy sees it: its definition's tags and its normalised entries.

    The feed store reads them (:func:`blockdns.feeds.store.read_feed_sources`), so the compiler opens no file.
    """

    name: str
    vendor: str | None
    category: str | None
    role: str  # "block" or "guard"
    entries: EntrySets


# ---------------------------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    block: tuple[str, ...]
    allow: tuple[str, ...]


class Policy:
    """Every group's compiled decisions, the client-to-group classifier, and what was guarded."""

    def __init__(
        self,
        groups: dict[str, GroupPolicy],
        classifier: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]],
        catalog: CompiledCatalog,
        feeds: Iterable[str],
        guarded: dict[str, str],
        dropped_by_guard: dict[str, str],
    ) -> None:
        self.groups = groups
        self.default = groups[DEFAULT_GROUP]
        self._classifier = classifier  # most specific network first
        self.catalog = catalog
        self.feeds = tuple(feeds)  # the names of the feeds compiled in; their entries are not kept
        self.guarded = guarded
        self.dropped_by_guard = dropped_by_guard  # entry -> the guarded name that kept it out

    def group_for(self, client: str | None) -> GroupPolicy:
        if not client or not self._classifier:
            return self.default
        try:
            ip = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return self.default
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        for network, group in self._classifier:
            if ip.version == network.version and ip in network:
                return self.groups[group]
        return self.default

    def decide(self, name: str, client: str | None = None) -> Decision:
        """The decision for a name as a person types it (``*.deepseek.com``, ``x\\032y.example``), exactly as
        the server decides a query for it. Raises :class:`InvalidName` for text no name can have."""
        return self.group_for(client).decide(text_key(query_name(name)))

    @cached_property
    def size(self) -> int:
        return sum(len(group.domains) for group in self.groups.values())


def compile_policy(
    catalog: Catalog | CompiledCatalog,
    default_block: Iterable[str],
    default_allow: Iterable[str] = (),
    groups: Iterable[GroupSpec] = (),
    feeds: Iterable[FeedSource] = (),
) -> Policy:
    """Compile selectors into a :class:`Policy`.

    Raises :class:`SelectorError` for a selector that names nothing.
    """
    feed_list = list(feeds)
    compiled_catalog = catalog if isinstance(catalog, CompiledCatalog) else compile_catalog(catalog)
    compiler = _Compiler(compiled_catalog, feed_list)
    specs = [GroupSpec(DEFAULT_GROUP, (), tuple(default_block), tuple(default_allow)), *groups]
    compiled = {spec.name: compiler.group(spec) for spec in specs}
    classifier = sorted(
        ((network, spec.name) for spec in specs for network in spec.clients),
        key=lambda pair: pair[0].prefixlen,
        reverse=True,
    )
    return Policy(
        compiled,
        classifier,
        compiled_catalog,
        (feed.name for feed in feed_list),
        compiler.guarded,
        compiler.dropped_by_guard,
    )


class _Compiler:
    def __init__(self, catalog: CompiledCatalog, feeds: list[FeedSource]) -> None:
        self.catalog = catalog
        self.feeds = {feed.name: feed for feed in feeds}
        self.guarded = catalog.guarded_names()
        for feed in feeds:
            if feed.role == "guard":
                for name in (*feed.entries.block_suffix, *feed.entries.block_exact):
                    self.guarded.setdefault(name, f"feed:{feed.name}")
        # A suffix entry on any of these names would cover a guarded name.
        self._guard_ancestors: dict[str, str] = {}
        for name in self.guarded:
            for parent in suffixes(name):
                self._guard_ancestors.setdefault(parent, name)
        self.dropped_by_guard: dict[str, str] = {}

    def group(self, spec: GroupSpec) -> GroupPolicy:
        builder = DomainSetBuilder()
        ranges: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Rule]] = []
        # Allow first: add_many lets allow overwrite and block only fill gaps, so the order does not
        # change the outcome; adding allow first keeps block selectors from shadowing provenance.
        for text in spec.allow:
            self._add(builder, ranges, parse_selector(text), "allow")
        for text in spec.block:
            self._add(builder, ranges, parse_selector(text), "block")
        return GroupPolicy(
            name=spec.name,
            domains=builder.build(),
            ranges=RangeSet(ranges),
            block_selectors=spec.block,
            allow_selectors=spec.allow,
        )

    def _add(
        self,
        builder: DomainSetBuilder,
        ranges: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Rule]],
        selector: Selector,
        action: Action,
    ) -> None:
        label = str(selector)
        if selector.kind == "domain":
            # An explicit domain selector is the administrator's own word: guards do not apply.
            builder.add(selector.value, Rule(action, False, label))
            return
        vendors, feeds = self._select(selector)
        for vendor in vendors:
            info = vendor.info
            suffix = Rule(action, False, label, vendor=info, category=info.category)
            exact = Rule(action, True, label, vendor=info, category=info.category)
            if action == "block":
                builder.add_each((n for n in vendor.suffix if not self._guarded(n, False)), suffix)
                builder.add_each((n for n in vendor.exact if not self._guarded(n, True)), exact)
            else:
                builder.add_each(vendor.suffix, suffix)
                builder.add_each(vendor.exact, exact)
        for feed in feeds:
            compiled = self.catalog.vendors.get(feed.vendor) if feed.vendor else None
            feed_vendor = compiled.info if compiled else None
            category = feed.category or (feed_vendor.category if feed_vendor else None)
            suffix = Rule(action, False, label, vendor=feed_vendor, category=category, feed=feed.name)
            exact = Rule(action, True, label, vendor=feed_vendor, category=category, feed=feed.name)
            entries = feed.entries
            if action == "block":
                builder.add_many(
                    (n for n in entries.block_suffix if not self._feed_guarded(n, False)), suffix
                )
                builder.add_many((n for n in entries.block_exact if not self._feed_guarded(n, True)), exact)
                # A feed's own allow entries stay allow entries wherever the feed is selected.
                allow_suffix = Rule(
                    "allow", False, label, vendor=feed_vendor, category=category, feed=feed.name
                )
                allow_exact = Rule(
                    "allow", True, label, vendor=feed_vendor, category=category, feed=feed.name
                )
                builder.add_many(entries.allow_suffix, allow_suffix)
                builder.add_many(entries.allow_exact, allow_exact)
                ranges.extend((network, suffix) for network in entries.networks)
            else:
                builder.add_many((*entries.block_suffix, *entries.allow_suffix), suffix)
                builder.add_many((*entries.block_exact, *entries.allow_exact), exact)

    def _select(self, selector: Selector) -> tuple[list[CompiledVendor], list[FeedSource]]:
        vendors = self.catalog.vendors
        block_feeds = [feed for feed in self.feeds.values() if feed.role == "block"]
        if selector.kind == "all":
            chosen = self.catalog.in_all()
            ids = {vendor.info.id for vendor in chosen}
            return chosen, [f for f in block_feeds if f.vendor in ids]
        if selector.kind == "vendor":
            if selector.value not in vendors:
                raise SelectorError(f"{selector}: no vendor {selector.value!r} in the catalogue")
            return [vendors[selector.value]], [f for f in block_feeds if f.vendor == selector.value]
        if selector.kind == "category":
            chosen = self.catalog.in_category(selector.value)
            ids = {vendor.info.id for vendor in chosen}
            return chosen, [f for f in block_feeds if f.category == selector.value or f.vendor in ids]
        if selector.kind == "jurisdiction":
            chosen = self.catalog.in_jurisdiction(selector.value)
            ids = {vendor.info.id for vendor in chosen}
            return chosen, [f for f in block_feeds if f.vendor in ids]
        if selector.kind == "feed":
            feed = self.feeds.get(selector.value)
            if feed is None:
                # A defined feed that has not been fetched yet selects nothing rather than failing the config.
                return [], []
            return [], [feed]
        raise SelectorError(f"unsupported selector {selector}")

    def _guarded(self, name: str, exact: bool) -> bool:
        """A catalogue entry: dropped when it equals a guarded name or (a suffix entry) covers one. A reviewed
        entry may name an exact host below a guarded name (chatgpt.livekit.cloud under livekit.cloud)."""
        guard = (name if name in self.guarded else None) if exact else self._guard_ancestors.get(name)
        if guard is None:
            return False
        self.dropped_by_guard[name] = guard
        return True

    def _feed_guarded(self, name: str, exact: bool) -> bool:
        """A feed entry: dropped like a catalogue entry, and also anywhere below a guarded name. Nobody
        reviewed it, and a host below shared infrastructure (a LiveKit or Datadog host) serves every customer
        of that platform."""
        if self._guarded(name, exact):
            return True
        guarded = self.guarded
        start = name.find(".")
        while start != -1:
            parent = name[start + 1 :]
            if parent in guarded:
                self.dropped_by_guard[name] = parent
                return True
            start = name.find(".", start + 1)
        return False
