"""One parser per feed format. Each turns a body into normalised entries plus rejected-line issues.

``parse(text, options)`` never raises anything but :class:`blockdns.errors.FeedError` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable

from blockdns.feeds.formats import adblock, dnsmasq, domains, hosts, ipranges_json, m365, rpz, v2fly
from blockdns.feeds.formats.base import Issue, ParseOptions, ParseResult
from blockdns.feeds.model import FeedDefinition

Parser = Callable[[str, ParseOptions], ParseResult]

PARSERS: dict[str, Parser] = {
    "domains": domains.parse,
    "hosts": hosts.parse,
    "adblock": adblock.parse,
    "dnsmasq": dnsmasq.parse,
    "rpz": rpz.parse,
    "v2fly": v2fly.parse,
    "ipranges-json": ipranges_json.parse,
    "m365-endpoints": m365.parse,
}


def options_for(definition: FeedDefinition) -> ParseOptions:
    return ParseOptions(
        feed=definition.name,
        format=definition.format,
        max_rejected=definition.max_rejected,
        suffix=definition.match == "suffix",
        guard=definition.role == "guard",
    )


def parse(text: str, definition: FeedDefinition) -> ParseResult:
    return PARSERS[definition.format](text, options_for(definition))


__all__ = ["PARSERS", "Issue", "ParseOptions", "ParseResult", "options_for", "parse"]
