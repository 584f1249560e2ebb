"""Addresses for the host names of encrypted upstreams (``tls://dns.example``), asked of plain-DNS servers.

The names are resolved through ``[resolver] bootstrap`` (or, when that is empty, the servers in the system's
``/etc/resolv.conf``), never through blockdns itself: a forwarder that needed its own upstream to find that
upstream would wait on itself. So a bootstrap server that is one of blockdns's own listening addresses is
left out, and a bootstrap with nothing left is refused when the forwarder is built.

The lookups are dnspython's stub resolver (A and AAAA at once); the addresses are kept for their TTL (at
least ``MIN_TTL``) and looked up again when it has run out. Queries for one name at one time share one
lookup. When a lookup fails, the last addresses known are used for ``RETRY_AFTER`` seconds more (an upstream
that has not moved is better than none); without any, the upstream fails with an :class:`UpstreamError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Collection
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from blockdns.errors import ConfigError, UpstreamError
from blockdns.wire import EDE_NO_REACHABLE_AUTHORITY

log = logging.getLogger(__name__)

MIN_TTL = 5.0  # seconds an answer is kept at least (a TTL of 0 would mean a lookup per connection)
RETRY_AFTER = 30.0  # seconds the last known addresses serve on when a lookup fails

Address = tuple[str, int]


@dataclass(slots=True)
class _Known:
    addresses: list[str]
    expires: float


class Bootstrap:
    """Host name → addresses for the upstreams, through the bootstrap servers (see the module docstring)."""

    def __init__(
        self, servers: list[Address], *, avoid: Collection[Address] = (), timeout: float = 2.0
    ) -> None:
        """``servers``: the configured bootstrap servers ([]: the system's). ``avoid``: blockdns's own
        listening addresses. Raises :class:`ConfigError` when no server is left to ask."""
        system = not servers
        try:
            resolver = dns.asyncresolver.Resolver(configure=system)
        except dns.resolver.NoResolverConfiguration:
            raise ConfigError(
                "the system names no resolver (/etc/resolv.conf) to look up upstream host names with",
                key="resolver.bootstrap",
            ) from None
        if system:
            servers = [_address(ns, resolver.port) for ns in resolver.nameservers]
        kept = [server for server in servers if not _is_own(server, avoid)]
        if not kept:
            where = "the system's resolvers (/etc/resolv.conf) are" if system else "every server listed is"
            raise ConfigError(
                f"{where} blockdns itself; name other plain-DNS servers", key="resolver.bootstrap"
            )
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in kept]
        resolver.timeout = timeout
        resolver.lifetime = timeout * 2
        self.servers = kept
        self._resolver = resolver
        self._known: dict[str, _Known] = {}
        self._lookups: dict[str, asyncio.Task[list[str]]] = {}
        self.lookups = 0  # lookups made (tests and metrics read it)

    async def addresses(self, name: str) -> list[str]:
        """The addresses of ``name`` (IPv4 first); raises :class:`UpstreamError` when it has none."""
        loop = asyncio.get_running_loop()
        known = self._known.get(name)
        if known is not None and loop.time() < known.expires:
            return known.addresses
        lookup = self._lookups.get(name)
        if lookup is None:
            lookup = self._lookups[name] = loop.create_task(self._lookup(name))
            lookup.add_done_callback(lambda _: self._lookups.pop(name, None))
        return await asyncio.shield(lookup)  # one caller's timeout does not end the others' lookup

    async def _lookup(self, name: str) -> list[str]:
        loop = asyncio.get_running_loop()
        self.lookups += 1
        results = await asyncio.gather(
            self._resolve(name, "A"), self._resolve(name, "AAAA"), return_exceptions=True
        )
        addresses: list[str] = []
        ttls: list[float] = []
        failures: list[str] = []
        for result in results:
            if isinstance(result, BaseException):
                failures.append(str(result) or type(result).__name__)
            else:
                addresses.extend(result[0])
                if result[0]:
                    ttls.append(result[1])
        known = self._known.get(name)
        if addresses:
            self._known[name] = _Known(addresses, loop.time() + max(min(ttls), MIN_TTL))
            return addresses
        reason = "; ".join(failures) or "no A or AAAA records"
        if known is not None and failures:
            log.warning("bootstrap: looking up %s failed (%s); keeping %s", name, reason, known.addresses)
            known.expires = loop.time() + RETRY_AFTER
            return known.addresses
        raise UpstreamError(
            f"bootstrap lookup of {name} failed: {reason}",
            EDE_NO_REACHABLE_AUTHORITY,
            client_text="upstream name could not be resolved",
        )

    async def _resolve(self, name: str, rdtype: str) -> tuple[list[str], float]:
        try:
            answer = await self._resolver.resolve(name + ".", rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], 0.0
        except dns.exception.DNSException as err:
            raise _LookupFailed(f"{rdtype}: {err}") from None
        rrset = answer.rrset
        if rrset is None:
            return [], 0.0
        return [rdata.address for rdata in rrset], float(rrset.ttl)


class _LookupFailed(Exception):
    pass


def _address(nameserver: str | dns.nameserver.Nameserver, port: int) -> Address:
    if isinstance(nameserver, dns.nameserver.Do53Nameserver):
        return nameserver.address, nameserver.port
    return str(nameserver), port


def _is_own(server: Address, own: Collection[Address]) -> bool:
    """Whether ``server`` is one of blockdns's listening addresses (a wildcard listener is every address of
    this host, not the router or the ISP's resolver that ``/etc/resolv.conf`` names)."""
    host, port = server
    for own_host, own_port in own:
        if own_port != port:
            continue
        if own_host == host or (ipaddress.ip_address(own_host).is_unspecified and _is_local(host)):
            return True
    return False


def _is_local(host: str) -> bool:
    """Whether ``host`` is an address of this machine: only those can be bound."""
    if ipaddress.ip_address(host).is_loopback:
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True
