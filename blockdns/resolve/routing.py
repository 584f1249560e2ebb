"""Conditional forwarding: names at and below a ``[[forward_zones]]`` name go to that zone's own upstreams
(an Active Directory domain to its domain controllers, ``168.192.in-addr.arpa`` to the router), everything
else to the resolver's default upstream (recursion or forwarding).

The closest zone wins (longest suffix, label by label). The answer cache needs nothing special: it is keyed
by the question name, and a name belongs to exactly one zone, so one zone's answers never answer another's.
"""

from __future__ import annotations

from collections.abc import Container, Coroutine, Mapping
from dataclasses import replace
from typing import Any

from blockdns import dnsname
from blockdns.resolve.upstream import Upstream, UpstreamResult


def closest_zone(qname: bytes, zones: Container[bytes]) -> bytes | None:
    """The zone among ``zones`` (wire names) that ``qname`` is at or below, the closest one; or None."""
    for name in dnsname.ancestors(qname):
        if name in zones:
            return name
    return None


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
        return closest_zone(qname, self.zones) if self.zones else None

    def resolve(
        self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> Coroutine[Any, Any, UpstreamResult]:
        zone = self.zone_of(qname)
        if zone is None:  # the default upstream's own coroutine: no frame of ours in between
            return self.default.resolve(qname, qtype, qclass, do=do, cd=cd)
        return self._in_zone(zone, qname, qtype, qclass, do=do, cd=cd)

    async def _in_zone(
        self, zone: bytes, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> UpstreamResult:
        result = await self.zones[zone].resolve(qname, qtype, qclass, do=do, cd=cd)
        return replace(result, server=f"{result.server} (forward zone {dnsname.to_text(zone)})")

    async def start(self) -> None:
        for upstream in self.zones.values():
            await upstream.start()

    async def close(self) -> None:
        for upstream in self.zones.values():
            await upstream.close()
