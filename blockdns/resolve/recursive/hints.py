"""The root servers to start from: IANA's root hints, or the ``resolver.root_hints`` override.

The built-in list is ``named.root`` as published by IANA (https://www.internic.net/domain/named.root,
last changed for b.root-servers.net's renumbering in November 2023). It only has to be right enough for one
server to answer the priming query (RFC 8109); the primed NS set and addresses are used after that.
"""

from __future__ import annotations

from dataclasses import dataclass

from blockdns.config import ResolverSettings
from blockdns.resolve.recursive.servers import ServerAddress

# (server name, IPv4, IPv6)
IANA_ROOT_SERVERS: tuple[tuple[str, str, str], ...] = (
    ("a.root-servers.net.", "198.41.0.4", "2001:503:ba3e::2:30"),
    ("b.root-servers.net.", "170.247.170.2", "2801:1b8:10::b"),
    ("c.root-servers.net.", "192.33.4.12", "2001:500:2::c"),
    ("d.root-servers.net.", "199.7.91.13", "2001:500:2d::d"),
    ("e.root-servers.net.", "192.203.230.10", "2001:500:a8::e"),
    ("f.root-servers.net.", "192.5.5.241", "2001:500:2f::f"),
    ("g.root-servers.net.", "192.112.36.4", "2001:500:12::d0d"),
    ("h.root-servers.net.", "198.97.190.53", "2001:500:1::53"),
    ("i.root-servers.net.", "192.36.148.17", "2001:7fe::53"),
    ("j.root-servers.net.", "192.58.128.30", "2001:503:c27::2:30"),
    ("k.root-servers.net.", "193.0.14.129", "2001:7fd::1"),
    ("l.root-servers.net.", "199.7.83.42", "2001:500:9f::42"),
    ("m.root-servers.net.", "202.12.27.33", "2001:dc3::35"),
)


@dataclass(frozen=True, slots=True)
class RootHints:
    servers: tuple[ServerAddress, ...]
    # True when some hint names a port other than 53: such a private root is always asked at the hinted
    # addresses, because the NS addresses learnt by priming cannot carry a port.
    pinned: bool

    def usable(self, *, ipv6: bool) -> list[ServerAddress]:
        return [server for server in self.servers if ipv6 or ":" not in server[0]]


def root_hints(settings: ResolverSettings) -> RootHints:
    configured = settings.root_hint_addresses()
    if configured:
        return RootHints(tuple(configured), any(port != 53 for _, port in configured))
    servers = [(v4, 53) for _, v4, _ in IANA_ROOT_SERVERS] + [(v6, 53) for _, _, v6 in IANA_ROOT_SERVERS]
    return RootHints(tuple(servers), False)
