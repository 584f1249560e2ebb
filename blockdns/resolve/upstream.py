"""The last link of the chain: something that turns a question into a parsed response.

Forwarding (:mod:`blockdns.resolve.forward`) and recursion (:mod:`blockdns.resolve.recursive`) both
implement :class:`Upstream` and both answer with an :class:`UpstreamResult`: the response already taken
apart (records and TTLs, CNAME chain, addresses), which server answered, and how far the data is proven
authentic. Nothing downstream parses wire bytes again, and a validator has a field to say what it found.
"""

from __future__ import annotations

import enum
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from blockdns.errors import UpstreamError
from blockdns.wire import ParsedResponse


class Security(enum.Enum):
    """The DNSSEC status of data (RFC 4035 §4.3)."""

    SECURE = "secure"  # a chain of signatures from a trust anchor proves it
    INSECURE = "insecure"  # proven to sit below an unsigned delegation
    BOGUS = "bogus"  # should be signed, and the signatures do not check out
    INDETERMINATE = "indeterminate"  # not validated (validation off, or no trust anchor covers it)


class BogusAnswer(UpstreamError):
    """DNSSEC validation found the answer bogus: SERVFAIL with the most specific EDE (RFC 8914: 6 DNSSEC
    Bogus, 7 Signature Expired, 8 Signature Not Yet Valid, 9 DNSKEY Missing, 10 RRSIGs Missing, 12 NSEC
    Missing). The verdict is held briefly (:data:`BOGUS_HOLD`), so one broken zone costs one validation
    per name a minute, not one per query."""


BOGUS_HOLD = 60  # seconds a bogus verdict is cached


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    response: ParsedResponse  # the question's response, taken apart once
    server: str  # who answered, for the log: "udp://9.9.9.9:53", "recursive (a.gtld-servers.net)", ...
    security: Security = Security.INDETERMINATE
    validation: str = ""  # why the security is what it is ("x.example. is an unsigned delegation")


class Upstream(Protocol):
    async def start(self) -> None:
        """Prepare (e.g. prime the root servers). Called once before serving; must not raise on failure."""

    def resolve(
        self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> Coroutine[Any, Any, UpstreamResult]:
        """Answer the question (``qname`` in lowercase wire form). Raise UpstreamError when impossible.

        A coroutine function, or a plain one that returns the coroutine that does the work (the router
        and the forwarder do, to spare every cache miss a frame that would only await another)."""
        ...

    async def close(self) -> None:
        """Release sockets and tasks."""
