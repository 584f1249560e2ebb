"""Discovery of Designated Resolvers (RFC 9462): ``_dns.resolver.arpa`` SVCB records naming this server's
encrypted endpoints, so a client that starts on plain DNS (Windows 11, Apple devices) upgrades by itself.

One SVCB record per DoT and per DoH listen address: priority in the order configured (DoT first), the target
is the certificate's first DNS name (what the client then verifies, RFC 9462 §4.2), ``alpn`` ``dot`` or
``h2``, the port, ``dohpath=/dns-query{?dns}`` for DoH, and ``ipv4hint``/``ipv6hint`` when the listen
address is a specific one (not 0.0.0.0 or ::). The records are served as local records (answers carry AA,
the query log and metrics count them like any other). Without a DNS name in the certificate, or for a port
0 listen address (known only once bound), there is no record to give, and the log says so once.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from blockdns import dnsname
from blockdns.config import ListenAddress, Settings
from blockdns.localdata import Record, Source
from blockdns.server.tlsfiles import certificate_names

log = logging.getLogger("blockdns.ddr")

DDR_NAME = "_dns.resolver.arpa"
TYPE_SVCB = 64
DDR_TTL = 300
DOH_PATH = "/dns-query{?dns}"


def certificate_name(path: Path) -> str | None:
    """The first DNS name (not a wildcard) of the certificate in ``path``; None when there is none or the
    file does not read (the TLS listeners report that, one line)."""
    names = [name for name in certificate_names(path) if not name.startswith("*.")]
    return names[0] if names else None


def _hint(address: ListenAddress) -> str:
    ip = ipaddress.ip_address(address.host)
    if ip.is_unspecified:
        return ""
    return f" ipv{ip.version}hint={ip}"


def svcb_texts(server_name: str, tls: list[ListenAddress], https: list[ListenAddress]) -> list[str]:
    """The SVCB rdata of every endpoint, in presentation format."""
    texts: list[str] = []
    for address in tls:
        texts.append(f"{len(texts) + 1} {server_name}. alpn=dot port={address.port}{_hint(address)}")
    for address in https:
        hint = _hint(address)
        texts.append(
            f'{len(texts) + 1} {server_name}. alpn=h2 port={address.port}{hint} dohpath="{DOH_PATH}"'
        )
    return texts


def _wire(text: str) -> bytes:
    wire = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SVCB, text).to_wire()
    assert wire is not None  # to_wire without a file returns the bytes
    return wire


def ddr_records(settings: Settings) -> list[Record]:
    """The ``_dns.resolver.arpa`` SVCB records for ``settings`` (none without an encrypted listener)."""
    server = settings.server
    tls = [address for address in server.tls_addresses() if address.port]
    https = [address for address in server.https_addresses() if address.port]
    if not tls and not https:
        return []
    name = certificate_name(settings.resolve_path(server.tls_cert))
    if name is None:
        log.warning("no DDR records (RFC 9462): the certificate in server.tls_cert has no DNS name")
        return []
    owner = dnsname.from_text(DDR_NAME)
    source = Source("RFC 9462", "server.tls_listen/https_listen")
    return [
        Record(
            owner,
            TYPE_SVCB,
            DDR_TTL,
            _wire(text),
            source,
        )
        for text in svcb_texts(name, tls, https)
    ]
