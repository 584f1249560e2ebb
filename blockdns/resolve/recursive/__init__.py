"""Recursive resolution from the root servers (``resolver.mode = "recursive"``).

    dnsname    names in lowercase wire form, compared label by label
    message    replies from authorities taken apart, names in record data decompressed
    rrset      RRsets with their RRSIGs
    classify   what a reply means once everything outside the zone asked is dropped (poisoning defence)
    cache      RRsets by trust rank, negative answers (RFC 2308, RFC 8020), LRU-bounded
    servers    per-server RTT, backoff, hold-down, lameness, EDNS support (Unbound's infra cache)
    minimise   QNAME minimisation steps (RFC 9156)
    hints      the IANA root servers, or the configured ones
    limits     bounds on one resolution's work
    machine    one resolution as a state machine with no I/O
    flights    coalescing of identical resolutions in flight, without deadlocks
    response   a Result written as the response message
    resolver   the async driver (RecursiveResolver), the only part that does I/O

See docs/recursion.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blockdns.resolve.recursive.resolver import RecursiveResolver

__all__ = ["RecursiveResolver"]


def __getattr__(name: str) -> Any:
    # The driver is loaded on first use (PEP 562): it uses the DNSSEC validator, which is built on this
    # package's RRsets and results, so loading it with the package would make the two load each other.
    if name == "RecursiveResolver":
        from blockdns.resolve.recursive.resolver import RecursiveResolver

        return RecursiveResolver
    raise AttributeError(name)
