"""``m365-endpoints``: the Microsoft 365 endpoints web service (``endpoints.office.com/endpoints/...``).

The body is a JSON array of endpoint sets; each set's ``urls`` are names Microsoft 365 needs. ``name`` is an
exact entry and ``*.name`` a suffix entry. Such a feed is meant as ``role = "guard"``: its names are never
blocked wholesale. A wildcard inside a label (``*-files.sharepoint.com``, ``autodiscover.*.onmicrosoft.com``)
protects the domain to the right of the wildcard label (``sharepoint.com``, ``onmicrosoft.com``) in a guard
feed and is skipped in a block feed. The sets' ``ips`` are not used: a guard protects names, not addresses.
"""

from __future__ import annotations

from blockdns.errors import FeedFormatError
from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult
from blockdns.feeds.formats.jsonbody import load_json


def _add(collector: Collector, url: str, where: str, options: ParseOptions) -> None:
    name = url.strip()
    if "*" in name.removeprefix("*."):
        if not options.guard:
            collector.skip("wildcard inside a name")
            return
        labels = name.split(".")
        last_wild = max(index for index, label in enumerate(labels) if "*" in label)
        name = "*." + ".".join(labels[last_wild + 1 :])
        if name == "*.":
            collector.reject(where, "wildcard without a domain", url)
            return
    collector.domain(name, suffix=False, allow=False, where=where, text=url)


def parse(text: str, options: ParseOptions) -> ParseResult:
    document = load_json(text, options)
    if not isinstance(document, list):
        raise FeedFormatError(
            f"not {options.format} format: not a JSON array of endpoint sets", feed=options.feed
        )
    collector = Collector(options)
    for index, endpoint_set in enumerate(document):
        urls = endpoint_set.get("urls", []) if isinstance(endpoint_set, dict) else None
        if not isinstance(urls, list):
            collector.line()
            collector.reject(f"[{index}]", "not an endpoint set with a urls list", str(endpoint_set)[:80])
            continue
        for position, url in enumerate(urls):
            collector.line()
            where = f"[{index}].urls[{position}]"
            if isinstance(url, str):
                _add(collector, url, where, options)
            else:
                collector.reject(where, "not a name", str(url))
    return collector.result()
