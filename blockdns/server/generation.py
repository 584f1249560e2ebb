"""A configuration generation: the one place where settings and a compiled policy are wired into the handler
chain, and everything that must change together on a reload lives together.

A generation holds the chain (both speeds, folded from :data:`CHAIN_ORDER`), the handlers with their memos,
the client directory, the answer cache and the upstream. The engine swaps one reference to install a new
generation, so a query sees one generation from start to end. What outlives generations (the counters and
the pause switch) is in :class:`Shared` and is passed in.

The cache and the upstream are carried over from the previous generation when their settings did not change:
cached answers do not depend on policy (it is applied around the cache, per group), and an upstream keeps
its server state (RTTs, a primed root). A new upstream must be started and the old one closed by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blockdns.config import ResolverSettings, Settings
from blockdns.ops.stats import ServerStats
from blockdns.policy import Policy
from blockdns.resolve.access import AccessControl, AccessHandler
from blockdns.resolve.base import FastNext, Handler, Next, chain
from blockdns.resolve.blocking import BlockingHandler, BlockResponder, PauseSwitch
from blockdns.resolve.cache import AnswerCache, CacheHandler
from blockdns.resolve.forward import Forwarder
from blockdns.resolve.inspection import InspectionHandler
from blockdns.resolve.local import LocalHandler
from blockdns.resolve.resolving import ResolveHandler
from blockdns.resolve.transport import TransportStats
from blockdns.resolve.upstream import Upstream
from blockdns.server.clients import ClientDirectory

# The one place that fixes the order of the chain, for both speeds (asserted by a test): access -> local
# answers -> blocking (the name) -> inspection (CNAMEs, addresses, on the way back) -> cache -> resolve.
CHAIN_ORDER = ("access", "local", "blocking", "inspection", "cache", "resolve")


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
    upstream: Upstream
    access: AccessControl  # the access handler's: the stream transports ask it before giving a slot


def make_upstream(resolver: ResolverSettings, cache_entries: int, stats: TransportStats) -> Upstream:
    if resolver.mode == "forward":
        return Forwarder(
            resolver.upstream_list(),
            timeout=resolver.timeout,
            total_timeout=resolver.total_timeout,
            stats=stats,
        )
    from blockdns.resolve.recursive import RecursiveResolver

    return RecursiveResolver(resolver, cache_max_entries=cache_entries, stats=stats)


def build_generation(
    settings: Settings, policy: Policy, shared: Shared, previous: Generation | None = None
) -> Generation:
    stats = shared.stats
    if previous is not None and previous.settings.cache == settings.cache:
        cache = previous.cache
    else:
        cache = AnswerCache(settings.cache.max_entries)
    if previous is not None and previous.settings.resolver == settings.resolver:
        upstream = previous.upstream
    else:
        upstream = make_upstream(settings.resolver, settings.cache.max_entries, stats.upstream)
    responder = BlockResponder(settings.blocking)
    access = AccessControl(settings.server.allowed_networks())
    parts: dict[str, Handler] = {
        "access": AccessHandler(access),
        "local": LocalHandler(settings.blocking.bypass_protection),
        "blocking": BlockingHandler(responder, shared.pause),
        "inspection": InspectionHandler(responder, shared.pause),
        "cache": CacheHandler(cache, stats.cache),
        "resolve": ResolveHandler(upstream, settings.cache, stats.observe_upstream_latency),
    }
    handlers = {name: parts[name] for name in CHAIN_ORDER}
    slow, fast = chain(list(handlers.values()))
    return Generation(
        settings=settings,
        policy=policy,
        clients=ClientDirectory(policy),
        handlers=handlers,
        slow=slow,
        fast=fast,
        cache=cache,
        upstream=upstream,
        access=access,
    )
