"""The last link of the chain: something that turns a question into a complete response.

Forwarding (:mod:`blockdns.resolve.forward`) and recursion (:mod:`blockdns.resolve.recursive`) both
implement :class:`Upstream`, so blocking, CNAME inspection and the cache behave the same in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    data: bytes  # a complete DNS response whose question is exactly (qname, qtype, qclass) asked
    server: str  # who answered, for the log: "udp://9.9.9.9:53", "recursive (a.gtld-servers.net)", ...


class Upstream(Protocol):
    async def start(self) -> None:
        """Prepare (e.g. prime the root servers). Called once before serving; must not raise on failure."""

    async def resolve(self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> UpstreamAnswer:
        """Answer the question (``qname`` in lowercase wire form). Raise UpstreamError when impossible."""
        ...

    async def close(self) -> None:
        """Release sockets and tasks."""
