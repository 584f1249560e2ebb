"""``adblock``: the domain rules of Adblock Plus / uBlock Origin / AdGuard filter lists.

=====================  =====================================================
``||name^``            block ``name`` and everything below it
``|name^``             block exactly ``name`` (AdGuard Home's exact form)
``@@||name^``          allow ``name`` and everything below it
``@@|name^``           allow exactly ``name``
``...^$important``     kept (the modifier changes nothing at the DNS level)
=====================  =====================================================

A trailing ``|`` after ``^`` is accepted. ``!`` and ``#`` lines and ``[Adblock ...]`` headers are comments.
Everything DNS cannot express is skipped and counted by kind: cosmetic rules (``##``, ``#@#``, ``#?#``,
``#$#``...), rules with any other modifier (``$third-party``, ``$script``, ``$dnstype``...), URL and path
patterns, regular expressions, and patterns with ``*`` inside a name. A rule that looks like a domain rule but
carries an invalid name is rejected.
"""

from __future__ import annotations

import re

from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult, split_lines

KEPT_MODIFIERS = frozenset({"important"})
_COSMETIC = re.compile(r"#[@?$%]{0,3}#|\$@?\$")
_DOMAIN_RULE = re.compile(r"(\|\|?)([^/^$|]+)\^\|?(?:\$(.*))?")


def parse(text: str, options: ParseOptions) -> ParseResult:
    collector = Collector(options)
    for number, line in enumerate(split_lines(text), 1):
        rule = line.strip()
        if not rule or rule[0] in "![" or (rule[0] == "#" and not _COSMETIC.match(rule)):
            continue
        collector.line()
        if _COSMETIC.search(rule):
            collector.skip("cosmetic rule")
            continue
        allow = rule.startswith("@@")
        body = rule[2:] if allow else rule
        match = _DOMAIN_RULE.fullmatch(body)
        if match is None:
            reason = "regular expression" if body.startswith("/") else "URL or path pattern"
            collector.skip(reason)
            continue
        anchor, name, modifiers = match.groups()
        if modifiers:
            unknown = [m for m in modifiers.split(",") if m.strip() not in KEPT_MODIFIERS]
            if unknown:
                collector.skip(f"modifier ${unknown[0].strip().split('=', 1)[0]}")
                continue
        if "*" in name.removeprefix("*."):
            collector.skip("wildcard inside a name")
            continue
        collector.domain(name, suffix=anchor == "||", allow=allow, where=number, text=line)
    return collector.result()
