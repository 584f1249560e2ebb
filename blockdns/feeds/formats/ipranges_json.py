"""``ipranges-json``: published address ranges in the schema of Google's and OpenAI's JSON files.

``{"prefixes": [{"ipv4Prefix": "192.0.2.0/24"}, {"ipv6Prefix": "2001:db8::/32"}, ...]}``; other keys
(``creationTime``, ``syncToken``, ``service``, ``scope``) are ignored. Each prefix becomes a network entry: an
answer whose address lies inside it is blocked. A prefix that is not a network is rejected (its JSON path is
the issue's location).
"""

from __future__ import annotations

import ipaddress

from blockdns.errors import FeedFormatError
from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult
from blockdns.feeds.formats.jsonbody import load_json

PREFIX_KEYS = ("ipv4Prefix", "ipv6Prefix")


def parse(text: str, options: ParseOptions) -> ParseResult:
    document = load_json(text, options)
    prefixes = document.get("prefixes") if isinstance(document, dict) else None
    if not isinstance(prefixes, list):
        raise FeedFormatError(f'not {options.format} format: no "prefixes" list', feed=options.feed)
    collector = Collector(options)
    for index, item in enumerate(prefixes):
        collector.line()
        where = f"prefixes[{index}]"
        value = (
            next((item[key] for key in PREFIX_KEYS if key in item), None) if isinstance(item, dict) else None
        )
        if not isinstance(value, str):
            collector.reject(where, "no ipv4Prefix or ipv6Prefix", str(item)[:200])
            continue
        try:
            collector.network(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            collector.reject(where, "not an address prefix", value)
    return collector.result()
