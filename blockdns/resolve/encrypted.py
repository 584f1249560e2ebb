"""What the forwarder's encrypted upstreams (``tls://``, ``https://``) share: the TLS client contexts that
verify their certificates, and the bootstrap resolver for their host names. Built with the forwarder, so a
CA bundle that cannot be read is refused with the configuration, not at the first query."""

from __future__ import annotations

import ssl
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from blockdns.config import Upstream as UpstreamConfig
from blockdns.errors import ConfigError

if TYPE_CHECKING:  # dnspython's async resolver (with anyio and h2) is loaded only for an upstream by name
    from blockdns.resolve.bootstrap import Address, Bootstrap

ENCRYPTED = frozenset({"tls", "https"})


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and name (TLS 1.2 at least), against
    ``ca_file`` or the system store. Raises :class:`ConfigError` for a CA file that cannot be used."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except ssl.SSLError as err:
        reason = f"not a PEM bundle of CA certificates ({err.reason or err})"
        raise ConfigError(f"cannot load the CA bundle {ca_file}: {reason}", key="resolver.tls_ca") from None
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(f"cannot load the CA bundle {ca_file}: {reason}", key="resolver.tls_ca") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True, slots=True)
class TlsSetup:
    dot_context: ssl.SSLContext  # DoT's; DoH gets its own, since httpx sets its ALPN on the context
    ca_file: Path | None
    bootstrap: Bootstrap | None  # None: no upstream is given by name

    @classmethod
    def build(
        cls,
        upstreams: Collection[UpstreamConfig],
        *,
        ca_file: Path | None,
        bootstrap: list[Address],
        own: Collection[Address],
        timeout: float,
    ) -> TlsSetup | None:
        """The setup for ``upstreams`` (None when none is encrypted); ``own``: blockdns's listening
        addresses, which the bootstrap must not ask."""
        encrypted = [upstream for upstream in upstreams if upstream.protocol in ENCRYPTED]
        if not encrypted:
            return None
        by_name = any(upstream.host_is_name for upstream in encrypted)
        if by_name:
            from blockdns.resolve.bootstrap import Bootstrap
        return cls(
            client_context(ca_file),
            ca_file,
            Bootstrap(bootstrap, avoid=own, timeout=timeout) if by_name else None,
        )

    def doh_context(self) -> ssl.SSLContext:
        return client_context(self.ca_file)
