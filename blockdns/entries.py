"""The entry sets a feed is made of: one shape shared by the feed store, the policy compiler and the exports.

A leaf module on purpose: :mod:`blockdns.policy` holds each feed's entries in this type, and the policy
compiler stays pure, so it cannot import :mod:`blockdns.feeds`, which reads and writes them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class EntrySets:
    """Normalised entries by kind: names blocked or allowed with or without the names below them, and
    blocked address ranges."""

    block_suffix: set[str] = field(default_factory=set)
    block_exact: set[str] = field(default_factory=set)
    allow_suffix: set[str] = field(default_factory=set)
    allow_exact: set[str] = field(default_factory=set)
    networks: list[Network] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.block_suffix)
            + len(self.block_exact)
            + len(self.allow_suffix)
            + len(self.allow_exact)
            + len(self.networks)
        )

    def lines(self) -> list[str]:
        """One line per entry in the stored notation (``+``, ``=``, ``@+``, ``@=``, ``%``; see
        :mod:`blockdns.feeds.model`), in a stable order so equal sets give equal text."""
        out = [f"+{n}" for n in sorted(self.block_suffix)]
        out += [f"={n}" for n in sorted(self.block_exact)]
        out += [f"@+{n}" for n in sorted(self.allow_suffix)]
        out += [f"@={n}" for n in sorted(self.allow_exact)]
        out += [f"%{n}" for n in sorted(self.networks, key=lambda n: (n.version, n))]
        return out
