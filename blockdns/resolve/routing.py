"""Conditional forwarding: names at and below a ``[[forward_zones]]`` name go to that zone's own upstreams
(an Active Directory domain to its domain controllers, ``168.192.in-addr.arpa`` to the router), everything
else to the resolver's default upstream (recursion or forwarding).

The closest zone wins (longest suffix, label by label). The answer cache needs nothing special: it is keyed
by the question name, and a name belongs to exactly one zone, so one zone's answers never answer another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from blockdns import dnsname
from blockdns.resolve.upstream import Upstream, UpstreamResult


class ZoneRouter:
    """Picks the upstream for a name; implements :class:`~blockdns.resolve.upstream.Upstream`.

    It owns its zones' upstreams (``start`` and ``close`` are theirs), not the default one, which outlives
    routers when a reload changes only the forward zones.
    """

    def __init__(self, default: Upstream, zones: Mapping[bytes, Upstream]) -> None:
        self.default = default
        self.zones = dict(zones)

    def zone_of(self, qname: bytes) -> bytes | None:
        """The forward zone ``qname`` belongs to (its wire name), or None."""
        if not self.zones:
            return None
        for name in dnsname.ancestors(qname):
            if name in self.zones:
                return name
        return None

    async def resolve(self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> UpstreamResult:
        zone = self.zone_of(qname)
        if zone is None:
            return await self.default.resolve(qname, qtype, qclass, do=do, cd=cd)
        result = await self.zones[zone].resolve(qname, qtype, qclass, do=do, cd=cd)
        return replace(result, server=f"{result.server} (forward zone {dnsname.to_text(zone)})")

    async def start(self) -> None:
        for upstream in self.zones.values():
            await upstream.start()

    async def close(self) -> None:
        for upstream in self.zones.values():
            await upstream.close()
