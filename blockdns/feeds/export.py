"""``blockdns lists export``: the compiled policy written for another DNS server.

Exports are built from :func:`blockdns.policy.compile_policy` (the selected selectors as block, the config's
allow list as allow), the very structure the server decides with, so an export and the server agree on every
name. Entries that change nothing are left out first (see :mod:`blockdns.feeds.compact`), and allow entries
are written only where they lift a block.

How each format keeps the meaning of an entry:

==========  ====================  ======================  ============================  =====================
format      block name and below  block exactly name      allow (exception)             address ranges
==========  ====================  ======================  ============================  =====================
domains     ``name`` (exact only) ``name``                subtracted                    skipped, commented
hosts       ``0.0.0.0 name``      ``0.0.0.0 name``        subtracted                    skipped, commented
adblock     ``||name^``           ``|name^``              ``@@||name^`` / ``@@|name^``  skipped, commented
dnsmasq     ``address=/name/``    ``address=/name/`` +    ``server=/name/#`` (+         skipped, commented
                                  ``server=/*.name/#``    ``address=/*.name/`` exact)
unbound     ``always_nxdomain``   ``transparent`` zone    ``always_transparent``        skipped, commented
                                  with null A/AAAA
rpz         ``name`` + ``*.name``  ``name CNAME .``        ``CNAME rpz-passthru.``       ``rpz-ip`` triggers
==========  ====================  ======================  ============================  =====================

``domains`` and ``hosts`` can only name exact hosts: a suffix entry is written as its name, and the header
says that names below it are not covered. A block beneath an allow beneath a block is expressed in adblock
with ``$important``; one level deeper (a block beneath an exception that needs ``$important`` itself) has
no adblock form, so that exception is left out (its names stay blocked) and a comment says so. Unbound
cannot allow exactly one name inside a blocked domain: such an exception is left out (the name stays
blocked) and a comment says so. dnsmasq's ``/*.name/`` form needs dnsmasq 2.86
or later.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from blockdns.config import Settings
from blockdns.entries import EntrySets, Network
from blockdns.errors import InvalidName, SelectorError, UserError
from blockdns.feeds.compact import Action, compact, merge_actions, nearest_suffix_action
from blockdns.feeds.store import read_feed_sources
from blockdns.names import normalise, suffixes
from blockdns.policy import GroupPolicy, Rule, Split, compile_policy, parse_selector
from blockdns.runtime import data_dir, load_feed_definitions, load_settings_catalog

EXPORT_FORMATS = ("domains", "hosts", "adblock", "dnsmasq", "unbound", "rpz")
DEFAULT_ZONE = "rpz.blockdns"
MAX_NAME = 253


def tree_order(name: str) -> tuple[str, ...]:
    """Sort key that keeps a domain next to the names below it: by labels from the right."""
    return tuple(reversed(name.split(".")))


@dataclass(slots=True)
class ExportSet:
    """What an export writes: non-redundant entries, allow entries only where they lift a block, and the
    blocked address ranges in address order.

    The name sets are unordered; every renderer sorts what it writes. ``range_sources`` names the feeds the
    ranges came from, for the formats that cannot express ranges and say so.
    """

    entries: EntrySets = field(default_factory=EntrySets)
    suffix_actions: dict[str, Action] = field(default_factory=dict)
    range_sources: set[str] = field(default_factory=set)

    def cover(self, name: str, *, include_self: bool) -> Action | None:
        return nearest_suffix_action(name, self.suffix_actions, include_self=include_self)


def _ranges(group: GroupPolicy) -> list[tuple[str, Rule]]:
    return list(group.ranges)


def export_set(group: GroupPolicy) -> ExportSet:
    decided = EntrySets()
    for name, value in group.domains:
        rules = (value.at_name, value.below) if isinstance(value, Split) else (value,)
        for rule in rules:
            if rule.action == "allow":
                (decided.allow_exact if rule.exact else decided.allow_suffix).add(name)
            else:
                (decided.block_exact if rule.exact else decided.block_suffix).add(name)
    data = compact(decided)
    # An allow entry that lifts no block changes nothing (a name no entry covers resolves anyway): it is
    # left out, and left out of the covering actions too, so that no block beneath it is written as if it
    # had an exception to beat. (After compacting, an allow entry's nearest cover is a block or nothing.)
    everything = merge_actions(data.block_suffix, data.allow_suffix)
    lifting = {
        n for n in data.allow_suffix if nearest_suffix_action(n, everything, include_self=False) == "block"
    }
    result = ExportSet(suffix_actions=merge_actions(data.block_suffix, lifting))
    entries = result.entries
    entries.block_suffix = data.block_suffix
    entries.block_exact = data.block_exact
    entries.allow_suffix = lifting
    entries.allow_exact = {n for n in data.allow_exact if result.cover(n, include_self=True) == "block"}
    for network, rule in _ranges(group):
        if rule.action == "block":
            entries.networks.append(ipaddress.ip_network(network))
            result.range_sources.add(rule.feed or rule.selector)
    entries.networks.sort(key=lambda network: (network.version, network))
    return result


# ------------------------------------------------------------------------------------------------ formats


@dataclass(frozen=True, slots=True)
class ExportContext:
    selectors: tuple[str, ...]
    allow: tuple[str, ...]
    zone: str = DEFAULT_ZONE
    ttl: int = 300
    generated: str = ""


def _header(marker: str, fmt: str, context: ExportContext, notes: Sequence[str]) -> list[str]:
    lines = [
        f"blockdns export, format {fmt}, generated {context.generated}",
        f"block: {', '.join(context.selectors) or '(nothing)'}",
        f"allow: {', '.join(context.allow) or '(nothing)'}",
        *notes,
    ]
    return [f"{marker} {line}".rstrip() for line in lines]


def _skipped_ranges(marker: str, export: ExportSet, fmt: str) -> list[str]:
    networks = export.entries.networks
    if not networks:
        return []
    sources = ", ".join(sorted(export.range_sources))
    return [
        f"{marker} {len(networks)} address ranges ({sources}) cannot be expressed in the "
        f"{fmt} format and are skipped; use the rpz export for them"
    ]


def _exact_names(export: ExportSet) -> list[str]:
    """Names a hosts-like format blocks: suffix entries by their name (unless allowed exactly), exact ones."""
    entries = export.entries
    return sorted(
        {*(n for n in entries.block_suffix if n not in entries.allow_exact), *entries.block_exact},
        key=tree_order,
    )


def render_domains(export: ExportSet, context: ExportContext) -> list[str]:
    notes = [
        "Each line blocks exactly that name. This format cannot say 'and every name below it', so names",
        "below these are NOT covered; the adblock, dnsmasq, unbound and rpz exports keep them.",
    ]
    return [
        *_header("#", "domains", context, notes),
        *_skipped_ranges("#", export, "domains"),
        *_exact_names(export),
    ]


def render_hosts(export: ExportSet, context: ExportContext) -> list[str]:
    notes = [
        "Each line blocks exactly that name (answers 0.0.0.0). A hosts file cannot say 'and every name",
        "below it', so names below these are NOT covered; the adblock, dnsmasq, unbound and rpz exports",
        "keep them.",
    ]
    body = [f"0.0.0.0 {name}" for name in _exact_names(export)]
    return [*_header("#", "hosts", context, notes), *_skipped_ranges("#", export, "hosts"), *body]


def render_adblock(export: ExportSet, context: ExportContext) -> list[str]:
    notes = [
        "||name^ blocks the name and every name below it, |name^ exactly the name; @@ marks exceptions.",
        "$important keeps a block that lies inside an exception (AdGuard Home, uBlock Origin).",
    ]

    def important_block(name: str, *, exact: bool) -> bool:
        return export.cover(name, include_self=exact) == "allow"

    def important_allow(name: str, *, exact: bool) -> bool:
        parent = _covering_suffix(name, export.suffix_actions, include_self=exact)
        return parent is not None and important_block(parent, exact=False)

    entries = export.entries
    rows = []
    for name in entries.block_suffix:
        rows.append((name, f"||{name}^" + ("$important" if important_block(name, exact=False) else "")))
    for name in entries.block_exact:
        rows.append((name, f"|{name}^" + ("$important" if important_block(name, exact=True) else "")))
    # An exception inside an $important block must be $important itself, and then nothing can block beneath
    # it: AdGuard has no third level. Such an exception is left out, so its names stay blocked (an export
    # may block more than the policy, never less), and a comment says which.
    important_allows = [name for name in entries.allow_suffix if important_allow(name, exact=False)]
    left_out = _exceptions_with_blocks_beneath(important_allows, entries) if important_allows else set()
    for name in entries.allow_suffix:
        if name in left_out:
            continue
        rows.append((name, f"@@||{name}^" + ("$important" if important_allow(name, exact=False) else "")))
    for name in entries.allow_exact:
        rows.append((name, f"@@|{name}^" + ("$important" if important_allow(name, exact=True) else "")))
    body = [rule for _name, rule in sorted(rows, key=lambda row: tree_order(row[0]))]
    unwritten = []
    if left_out:
        unwritten.append(
            f"! {len(left_out)} exceptions lie inside a blocked domain inside an exception and have a block "
            "beneath them, which AdGuard's two levels of precedence cannot say; they are left out (their "
            f"names stay blocked): {', '.join(sorted(left_out, key=tree_order))}"
        )
    return [
        *_header("!", "adblock", context, notes),
        *_skipped_ranges("!", export, "adblock"),
        *unwritten,
        *body,
    ]


def _exceptions_with_blocks_beneath(allows: list[str], entries: EntrySets) -> set[str]:
    """Those of ``allows`` (suffix allow entries) with a block entry on the name itself (an exact one) or
    below it."""
    has_block_below = {
        parent
        for blocked in (*entries.block_suffix, *entries.block_exact)
        for parent in itertools.islice(suffixes(blocked), 1, None)  # strict parents
    }
    return {name for name in allows if name in has_block_below or name in entries.block_exact}


def _covering_suffix(name: str, suffix_actions: dict[str, Action], *, include_self: bool) -> str | None:
    """The name of the most specific suffix entry covering ``name``."""
    if include_self and name in suffix_actions:
        return name
    start = name.find(".")
    while start != -1:
        parent = name[start + 1 :]
        if parent in suffix_actions:
            return parent
        start = name.find(".", start + 1)
    return None


def render_dnsmasq(export: ExportSet, context: ExportContext) -> list[str]:
    notes = [
        "address=/name/ answers NXDOMAIN for the name and every name below it; server=/name/# lets the name",
        "and the names below it resolve as usual; /*.name/ matches only names below (dnsmasq 2.86 or later).",
        "Exact entries pair the two: address=/name/ + server=/*.name/# blocks exactly name.",
    ]
    entries = export.entries
    rows: list[tuple[str, list[str]]] = []
    for name in entries.block_suffix:
        if name in entries.allow_exact:
            continue  # written with the exact exception below
        rows.append((name, [f"address=/{name}/"]))
    for name in entries.block_exact:
        rows.append((name, [f"address=/{name}/", f"server=/*.{name}/#"]))
    for name in entries.allow_suffix:
        if name in entries.block_exact:
            continue  # server=/*.name/# already lets the names below through
        rows.append((name, [f"server=/{name}/#"]))
    for name in entries.allow_exact:
        rows.append((name, [f"server=/{name}/#", f"address=/*.{name}/"]))
    body = [line for _name, lines in sorted(rows, key=lambda row: tree_order(row[0])) for line in lines]
    return [*_header("#", "dnsmasq", context, notes), *_skipped_ranges("#", export, "dnsmasq"), *body]


def render_unbound(export: ExportSet, context: ExportContext) -> list[str]:
    notes = [
        'Include this file from unbound.conf (include: "/path/to/file"); it opens its own server: clause.',
        "always_nxdomain blocks a name and every name below it; exact entries are transparent zones",
        "answering 0.0.0.0 / :: (NODATA for other types) for the name alone; always_transparent marks",
        "exceptions.",
    ]
    entries = export.entries
    rows: list[tuple[str, list[str]]] = []
    for name in entries.block_suffix:
        rows.append((name, [f'local-zone: "{name}." always_nxdomain']))
    for name in entries.block_exact:
        rows.append(
            (
                name,
                [
                    f'local-zone: "{name}." transparent',
                    f'local-data: "{name}. A 0.0.0.0"',
                    f'local-data: "{name}. AAAA ::"',
                ],
            )
        )
    for name in entries.allow_suffix:
        rows.append((name, [f'local-zone: "{name}." always_transparent']))
    for name in sorted(entries.allow_exact):
        rows.append(
            (name, [f"# exception for exactly {name} cannot be expressed in Unbound; it stays blocked"])
        )
    body = [
        f"    {line}" for _name, lines in sorted(rows, key=lambda row: tree_order(row[0])) for line in lines
    ]
    head = [*_header("#", "unbound", context, notes), *_skipped_ranges("#", export, "unbound")]
    return [*head, "server:", *body]


def _rpz_ip_owner(network: Network) -> str:
    if network.version == 4:
        octets = str(network.network_address).split(".")
        return f"{network.prefixlen}.{'.'.join(reversed(octets))}.rpz-ip"
    words = [format(int(word, 16), "x") for word in network.network_address.exploded.split(":")]
    return f"{network.prefixlen}.{'.'.join(reversed(words))}.rpz-ip"


def render_rpz(export: ExportSet, context: ExportContext) -> list[str]:
    zone = context.zone
    notes = [
        "A response policy zone: 'name CNAME .' answers NXDOMAIN for exactly name, '*.name' for the names",
        "below it, 'CNAME rpz-passthru.' exempts, and N.reversed-address.rpz-ip blocks answers in a range.",
        f'Load it as the response-policy zone {zone} (BIND: response-policy {{ zone "{zone}"; }};).',
    ]
    entries = export.entries
    owners: dict[str, Action] = {}
    for name in entries.block_suffix:
        owners.setdefault(name, "block")
        owners[f"*.{name}"] = "block"
    for name in entries.allow_suffix:
        owners.setdefault(name, "allow")
        owners[f"*.{name}"] = "allow"
    for name in entries.block_exact:
        owners[name] = "block"  # an exact entry owns the name itself, whatever a suffix entry says
    for name in entries.allow_exact:
        owners[name] = "allow"
    target = {"block": ".", "allow": "rpz-passthru."}
    room = MAX_NAME - len(zone) - 1
    ordered = sorted(owners, key=lambda owner: (tree_order(owner.removeprefix("*.")), owner.startswith("*.")))
    too_long = [owner for owner in ordered if len(owner) > room]
    body = [f"{owner} CNAME {target[owners[owner]]}" for owner in ordered if len(owner) <= room]
    body += [f"{_rpz_ip_owner(network)} CNAME ." for network in entries.networks]
    serial = int(time.time()) & 0xFFFFFFFF
    zone_head = [
        f"$TTL {context.ttl}",
        f"$ORIGIN {zone}.",
        f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {context.ttl}",
        "@ NS localhost.",
    ]
    skipped = [f"; {owner} is too long to be written under {zone}; skipped" for owner in too_long]
    return [*_header(";", "rpz", context, notes), *zone_head, *skipped, *body]


RENDERERS: dict[str, Callable[[ExportSet, ExportContext], list[str]]] = {
    "domains": render_domains,
    "hosts": render_hosts,
    "adblock": render_adblock,
    "dnsmasq": render_dnsmasq,
    "unbound": render_unbound,
    "rpz": render_rpz,
}


# --------------------------------------------------------------------------------------------- the export


def selected_policy(settings: Settings, selectors: Iterable[str]) -> tuple[GroupPolicy, tuple[str, ...]]:
    """The default group compiled with ``selectors`` as block (the config's block list when empty)."""
    chosen = tuple(selectors) or tuple(settings.policy.block)
    catalog = load_settings_catalog(settings)
    definitions = load_feed_definitions(settings, catalog)
    defined = {definition.name for definition in definitions}
    for text in (*chosen, *settings.policy.allow):
        selector = parse_selector(text)
        if selector.kind == "feed" and selector.value not in defined:
            raise SelectorError(f"{text}: no feed named {selector.value!r} is defined")
    feeds = read_feed_sources(definitions, data_dir(settings))
    policy = compile_policy(catalog, chosen, settings.policy.allow, feeds=feeds)
    return policy.default, chosen


def zone_name(text: str | None) -> str:
    if text is None:
        return DEFAULT_ZONE
    try:
        return normalise(text)
    except InvalidName as err:
        raise UserError(f"--zone: {err}") from None


def export_text(settings: Settings, fmt: str, selectors: Iterable[str] = (), zone: str | None = None) -> str:
    """The export of ``fmt`` for ``selectors`` (default: the config's policy), as text."""
    if fmt not in RENDERERS:
        raise UserError(f"unknown export format {fmt!r}; one of {', '.join(EXPORT_FORMATS)}")
    if zone is not None and fmt != "rpz":
        raise UserError("--zone applies only to --format rpz")
    group, chosen = selected_policy(settings, selectors)
    context = ExportContext(
        selectors=chosen,
        allow=tuple(settings.policy.allow),
        zone=zone_name(zone),
        ttl=settings.blocking.ttl,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return "\n".join(RENDERERS[fmt](export_set(group), context)) + "\n"
