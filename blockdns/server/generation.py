"""A configuration generation: the one place where settings and a compiled policy are wired into the handler
chain, and everything that must change together on a reload lives together.

A generation holds the chain (both speeds, folded from :data:`CHAIN_ORDER`), the handlers with their memos,
the client directory, the answer cache and the upstream. The engine swaps one reference to install a new
generation, so a query sees one generation from start to end. What outlives generations (the counters and
the pause switch) is in :class:`Shared` and is passed in.

The cache and the upstream are carried over from the previous generation when their settings (for the cache,
also the forward zones and the served private reverse zones) did not change:
cached answers do not depend on policy (it is applied around the cache, per group), and an upstream keeps
its server state (RTTs, a primed root). So is the router of the forward zones while they and the upstream
stay. A new upstream or router must be started and the old one closed by the caller. The rate limiter's
buckets are carried over while ``[ratelimit]`` is unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from blockdns import dnsname
from blockdns.config import Settings
from blockdns.config import Upstream as UpstreamConfig
from blockdns.localdata import LocalData
from blockdns.ops.stats import ServerStats
from blockdns.policy import Policy
from blockdns.resolve.access import AccessControl, AccessHandler
from blockdns.resolve.base import FastNext, Handler, Next, chain
from blockdns.resolve.blocking import BlockingHandler, BlockResponder, PauseSwitch
from blockdns.resolve.cache import AnswerCache, CacheHandler
from blockdns.resolve.dnssec.forwarding import RoutedFetch, UntrustedAd, ValidatingUpstream, forwarded_result
from blockdns.resolve.dnssec.validator import Validator
from blockdns.resolve.encrypted import TlsSetup
from blockdns.resolve.forward import Forwarder
from blockdns.resolve.inspection import InspectionHandler
from blockdns.resolve.local import LocalAnswers, LocalHandler
from blockdns.resolve.localzones import LocalZonesHandler, ZoneTable
from blockdns.resolve.resolving import ResolveHandler
from blockdns.resolve.routing import ZoneRouter
from blockdns.resolve.transport import TransportStats
from blockdns.resolve.upstream import Upstream
from blockdns.runtime import load_local
from blockdns.server.clients import ClientDirectory, client_id_groups
from blockdns.server.ratelimit import RateLimiter
from blockdns.trustanchors import parse_anchors

# The one place that fixes the order of the chain, for both speeds (asserted by a test): access -> local
# records (the administrator's word, before policy) -> blocking (the name) -> inspection (CNAMEs, addresses,
# on the way back) -> cache -> locally served zones (what is never resolved; after the cache, so a cache hit
# does not pay for them) -> resolve (a forward zone's upstream, or the default).
CHAIN_ORDER = ("access", "local", "blocking", "inspection", "cache", "local_zones", "resolve")


@dataclass(slots=True)
class Shared:
    """What every generation uses and none owns: it lives as long as the server."""

    stats: ServerStats = field(default_factory=ServerStats)
    pause: PauseSwitch = field(default_factory=PauseSwitch)


@dataclass(frozen=True, slots=True, eq=False)
class Generation:
    settings: Settings
    policy: Policy
    clients: ClientDirectory
    handlers: dict[str, Handler]  # by name, in CHAIN_ORDER
    slow: Next  # the chain, slow path
    fast: FastNext  # the chain, fast path
    cache: AnswerCache
    upstream: Upstream  # the default upstream: recursion or the configured forwarders
    router: ZoneRouter  # the forward zones' upstreams, and the default for every other name
    local: LocalData
    zones: ZoneTable
    access: AccessControl  # the access handler's: the stream transports ask it before giving a slot
    ratelimit: RateLimiter | None  # UDP queries per client prefix; None: [ratelimit] client_qps = 0


def make_upstream(settings: Settings, stats: TransportStats) -> Upstream:
    resolver = settings.resolver
    if resolver.mode == "forward":
        return make_forwarder(settings, resolver.upstream_list(), stats)
    from blockdns.resolve.recursive import RecursiveResolver

    return RecursiveResolver(resolver, cache_max_entries=settings.cache.max_entries, stats=stats)


def make_forwarder(settings: Settings, upstreams: list[UpstreamConfig], stats: TransportStats) -> Forwarder:
    resolver = settings.resolver
    tls = TlsSetup.build(
        upstreams,
        ca_file=settings.tls_ca_path(),
        bootstrap=resolver.bootstrap_addresses(),
        own=[(a.host, a.port) for a in settings.server.listen_addresses()],
        timeout=resolver.timeout,
    )
    return Forwarder(
        upstreams, timeout=resolver.timeout, total_timeout=resolver.total_timeout, stats=stats, tls=tls
    )


def make_router(settings: Settings, default: Upstream, stats: TransportStats) -> ZoneRouter:
    resolver = settings.resolver
    forwarders: dict[bytes, Upstream] = {
        dnsname.from_text(zone.name): make_forwarder(settings, zone.upstream_list(), stats)
        for zone in settings.forward_zones
    }
    anchors = resolver.anchor_lines()
    if not resolver.validating() or not anchors:
        return ZoneRouter(default, forwarders)
    # Validating: forwarded answers are validated here too (a forward zone with dnssec = false is not, and
    # its upstream's AD is dropped); DS/DNSKEY lookups go where the names' answers come from.
    validated = {
        name: forwarders[name]
        for name, zone in zip(forwarders, settings.forward_zones, strict=True)
        if zone.dnssec
    }
    recursive = getattr(default, "validation_fetch", None)
    fetch = RoutedFetch(recursive or functools.partial(forwarded_result, default), validated)
    validator = Validator(fetch, parse_anchors(anchors), resolver.negative_trust_anchors)
    zones: dict[bytes, Upstream] = {
        name: ValidatingUpstream(forwarder, validator) if name in validated else UntrustedAd(forwarder)
        for name, forwarder in forwarders.items()
    }
    return ZoneRouter(default if recursive else ValidatingUpstream(default, validator), zones)


def build_generation(
    settings: Settings,
    policy: Policy,
    shared: Shared,
    previous: Generation | None = None,
    local: LocalData | None = None,
) -> Generation:
    """Wire ``settings`` into a generation; ``local`` is the loaded local data (loaded here when not given,
    which reads the hosts files)."""
    stats = shared.stats
    if (
        previous is not None
        and previous.settings.cache == settings.cache
        and previous.settings.forward_zones == settings.forward_zones
        and previous.settings.local.private_reverse == settings.local.private_reverse
    ):  # answers cached before came from the same servers, and none is for a name now served here
        cache = previous.cache
    else:
        cache = AnswerCache(
            settings.cache.max_entries,
            stale_for=settings.cache.stale_seconds(),
            prefetch=settings.cache.prefetch,
        )
    if previous is not None and previous.settings.resolver == settings.resolver:
        upstream = previous.upstream
    else:
        upstream = make_upstream(settings, stats.upstream)
    if (
        previous is not None
        and previous.upstream is upstream
        and previous.settings.forward_zones == settings.forward_zones
    ):
        router = previous.router
    else:
        router = make_router(settings, upstream, stats.upstream)
    if local is None:
        local = load_local(settings)
    zones = ZoneTable.build(settings.local.private_reverse, router.zones)
    responder = BlockResponder(settings.blocking)
    limits = settings.ratelimit
    ratelimit: RateLimiter | None = None
    if limits.client_qps:
        if previous is not None and previous.ratelimit is not None and previous.settings.ratelimit == limits:
            ratelimit = previous.ratelimit  # the buckets go on draining and filling as they were
        else:
            ratelimit = RateLimiter(limits)  # new limits: every prefix starts with a full bucket
    access = AccessControl(settings.server.allowed_networks())
    answers = LocalAnswers(local, zones, canaries=settings.blocking.bypass_protection)
    parts: dict[str, Handler] = {
        "access": AccessHandler(access),
        "local": LocalHandler(answers, responder),
        "blocking": BlockingHandler(responder, shared.pause),
        "inspection": InspectionHandler(responder, shared.pause),
        "cache": CacheHandler(cache, stats.cache),
        "local_zones": LocalZonesHandler(zones, local),
        "resolve": ResolveHandler(router, settings.cache, stats.observe_upstream_latency),
    }
    handlers = {name: parts[name] for name in CHAIN_ORDER}
    slow, fast = chain(list(handlers.values()))
    return Generation(
        settings=settings,
        policy=policy,
        clients=ClientDirectory(policy, client_id_groups(settings.groups)),
        handlers=handlers,
        slow=slow,
        fast=fast,
        cache=cache,
        upstream=upstream,
        access=access,
        router=router,
        local=local,
        zones=zones,
        ratelimit=ratelimit,
    )
