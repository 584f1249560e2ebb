"""``hosts``: ``ADDRESS NAME [NAME...] [# comment]`` lines, as in ``/etc/hosts``.

Every name on a line whose address is a null or loopback address (``0.0.0.0``, ``127.0.0.1``, ``::``,
``::1``...) becomes an exact block entry: a hosts file can only speak of exact names. Lines that map names to
any other address are redirects, not blocks, and are skipped. The names every hosts file carries for the
machine itself (``localhost``, ``broadcasthost``, ``ip6-localhost``...) are ignored.
"""

from __future__ import annotations

import ipaddress

from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult, split_lines

LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)


def parse(text: str, options: ParseOptions) -> ParseResult:
    collector = Collector(options)
    for number, line in enumerate(split_lines(text), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        collector.line()
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            collector.reject(number, "not ADDRESS NAME...", line)
            continue
        names = [name for name in fields[1:] if name.lower().rstrip(".") not in LOCAL_NAMES]
        if len(fields) == 1:
            collector.reject(number, "an address without a name", line)
        elif not names:
            continue
        elif not (address.is_unspecified or address.is_loopback):
            collector.skip("redirect to an address other than a null or loopback one")
        else:
            for name in names:
                collector.domain(name, suffix=False, allow=False, where=number, text=line)
    return collector.result()
