"""Which part of the server answers a name: a local record (before policy), or, after policy, a locally
served zone, a forward zone's upstreams or the default resolver. ``blockdns check`` says so; it reads the
same tables the handlers answer from, so it cannot disagree with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from blockdns import dnsname
from blockdns.catalog_compiled import evidence_for
from blockdns.localdata import MAX_CNAME_CHAIN, LocalData
from blockdns.policy import Decision
from blockdns.resolve.localzones import ZoneTable
from blockdns.resolve.routing import closest_zone


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "local-record", "local-zone", "forward-zone" or "resolver"
    records: list[tuple[str, str]] = field(default_factory=list)  # local records: (record, where written)
    zone: str | None = None  # the served or forward zone
    why: str | None = None  # the served zone's RFC
    upstreams: list[str] = field(default_factory=list)  # the forward zone's
    # A local CNAME chain that leaves the local data: the name it leads to (policy decides it) and its route.
    target: str | None = None  # as a text key (blockdns.dnsname.text_key), as policy takes it
    target_route: Route | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "records": [{"record": record, "source": source} for record, source in self.records],
            "zone": self.zone,
            "upstreams": self.upstreams,
            "cname_target": self.target,
            "target": self.target_route.to_json() if self.target_route else None,
        }


def route(wire: bytes, local: LocalData, zones: ZoneTable, forward_zones: Mapping[bytes, list[str]]) -> Route:
    """Where the name ``wire`` (lowercase wire form) is answered; ``forward_zones`` maps each forward zone's
    wire name to its upstreams."""
    if local.get(wire) is None:
        return _after_policy(wire, zones, forward_zones)
    records = local.describe(wire)
    end = wire
    for _ in range(MAX_CNAME_CHAIN):
        following = local.cname_target(end)
        if following is None:
            break
        end = following
        records += local.describe(end)
    if local.get(end) is not None:
        return Route("local-record", records)
    return Route(
        "local-record",
        records,
        target=dnsname.text_key(end),
        target_route=_after_policy(end, zones, forward_zones),
    )


def _after_policy(wire: bytes, zones: ZoneTable, forward_zones: Mapping[bytes, list[str]]) -> Route:
    served = zones.served_zone(wire)
    if served is not None:
        return Route("local-zone", zone=served.name, why=served.why)
    zone = closest_zone(wire, forward_zones)  # as the router picks it
    if zone is not None:
        return Route("forward-zone", zone=dnsname.text_key(zone), upstreams=forward_zones[zone])
    return Route("resolver")


def decision_evidence(decision: Decision) -> str | None:
    """The evidence behind a decision made by a catalogue entry, read from its vendor file now (the policy
    keeps none), else None: feed entries, ``domain:`` selectors and no-match decisions have none."""
    rule = decision.rule
    if rule is None or rule.vendor is None or rule.feed is not None or decision.entry is None:
        return None
    return evidence_for(rule.vendor, decision.entry, rule.exact)
