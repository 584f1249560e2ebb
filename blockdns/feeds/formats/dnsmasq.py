"""``dnsmasq``: the blocking directives of a dnsmasq configuration.

================================  ===================================================================
``address=/name/``                block ``name`` and everything below it (NXDOMAIN)
``address=/name/#``, ``/0.0.0.0``  the same with null answers; several ``/name/`` parts give several entries
``server=/name/``, ``local=/name/``  block (answer locally only, never forward): ``name`` and below
``server=/name/#``                allow ``name`` and everything below it (dnsmasq's exception form)
================================  ===================================================================

``/*.name/`` is read as ``name`` and below (dnsmasq's ``*.`` form excludes ``name`` itself, a difference too
small to keep). ``address=`` with any other address (a redirect) and ``server=`` with an upstream (a forward)
are skipped, as are other directives; ``#`` starts a comment.
"""

from __future__ import annotations

import ipaddress

from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult, split_lines

DIRECTIVES = ("address", "server", "local")


def _is_null(target: str) -> bool:
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        return False
    return address.is_unspecified or address.is_loopback


def parse(text: str, options: ParseOptions) -> ParseResult:
    collector = Collector(options)
    for number, line in enumerate(split_lines(text), 1):
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        collector.line()
        directive, sep, value = content.partition("=")
        directive = directive.strip().removeprefix("--")
        if not sep or directive not in DIRECTIVES:
            collector.skip(f"directive {directive[:20]!r}")
            continue
        value = value.strip()
        if not value.startswith("/"):
            collector.skip(f"{directive}= without a domain")
            continue
        head, slash, target = value.rpartition("/")
        domains = head[1:].split("/") if slash and head else []
        if not domains or any(not part for part in domains):
            collector.reject(number, f"malformed {directive}=/domain/ line", line)
            continue
        target = target.strip()
        if directive == "address":
            if target not in ("", "#") and not _is_null(target):
                collector.skip("address= redirect to an address")
                continue
            allow = False
        elif target == "#":
            allow = True
        elif target == "":
            allow = False
        else:
            collector.skip("server= forward to an upstream")
            continue
        for domain in domains:
            if domain == "#":
                collector.skip("/#/ matches every name")
            elif "*" in domain.removeprefix("*."):
                collector.skip("wildcard inside a name")
            else:
                collector.domain(domain, suffix=True, allow=allow, where=number, text=line)
    return collector.result()
