"""The certificate and key of the encrypted listeners (DoT, DoH): read, checked, and swapped on a reload.

``[server] tls_cert`` is a PEM chain (the server's certificate first), ``tls_key`` its PEM private key. Every
problem is one :class:`~blockdns.errors.ConfigError` line naming the key and the file: missing, unreadable,
not PEM, expired or not yet valid, or a key that does not belong to the certificate.

:class:`TlsFiles` holds one :class:`ssl.SSLContext` per listener kind (ALPN ``dot`` for DoT, ``h2`` and
``http/1.1`` for DoH). The listening sockets keep the contexts they were started with; each handshake's
SNI callback (called with or without an SNI) moves the connection to the context current at that moment,
so a reload that swaps them (SIGHUP, a change of the files) reaches every new handshake while the
connections already open keep the certificate they were made with; a reload that finds bad files keeps the
old ones.

The names the certificate carries (its DNS subject alternative names) are the server's names: DDR's
target name (RFC 9462) and the suffix of a DoT client ID in the SNI (``laptop.dns.example.net``).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import ssl
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from blockdns.errors import ConfigError

if TYPE_CHECKING:  # cryptography is loaded when a certificate is read
    from cryptography import x509

log = logging.getLogger("blockdns.tls")

DOT, DOH = "dot", "doh"
DOT_ALPN = ["dot"]  # RFC 7858 §3.2 and the IANA ALPN registry
DOH_ALPN = ["h2", "http/1.1"]  # RFC 8484 §5.2: HTTP/2 is the minimum recommended version
MAX_PEM_BYTES = 1 << 20  # a chain of a few certificates is kilobytes; more is a wrong file


@dataclass(frozen=True, slots=True)
class Certificate:
    """What was read from the files: the contexts built from them and the names the certificate carries."""

    dot: ssl.SSLContext
    doh: ssl.SSLContext
    names: tuple[str, ...]  # DNS names, lowercase, without the trailing dot (a wildcard as "*.example.net")
    not_after: dt.datetime
    files: tuple[Path, Path]


def _read(path: Path, key: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", key=key) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a PEM file", key=key) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read: {err.strerror}", key=key) from None
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_PEM_BYTES} bytes: not a PEM file", key=key)
    return data


def _dns_names(certificate: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    try:
        extension = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return ()
    names = extension.value.get_values_for_type(x509.DNSName)  # type: ignore[attr-defined]
    return tuple(name.lower().rstrip(".") for name in names)


def _context(cert: Path, key: Path, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 7858 §3.2 and RFC 8484 §5.2 (via RFC 7540)
    context.set_alpn_protocols(alpn)
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME
    context.load_cert_chain(cert, key)
    return context


def certificate_names(path: Path) -> tuple[str, ...]:
    """The DNS names of the (first) certificate in ``path``; none when the file does not read (loading it
    for the listeners says why, in one line)."""
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError):
        return ()
    return _dns_names(leaf)


def load_certificate(cert: Path, key: Path, now: dt.datetime | None = None) -> Certificate:
    """Read and check the PEM files; raise :class:`ConfigError` (one line) for anything wrong with them."""
    from cryptography import x509

    pem = _read(cert, "server.tls_cert")
    _read(key, "server.tls_key")
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(f"{cert}: no PEM certificate in it", key="server.tls_cert") from None
    leaf = chain[0]
    now = now or dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc < now:
        expired = leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
        raise ConfigError(f"{cert}: the certificate expired on {expired}", key="server.tls_cert")
    if leaf.not_valid_before_utc > now:
        start = leaf.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC")
        raise ConfigError(f"{cert}: the certificate is not valid before {start}", key="server.tls_cert")
    try:
        dot = _context(cert, key, DOT_ALPN)
        doh = _context(cert, key, DOH_ALPN)
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err) or "key values mismatch" in str(err):
            message = f"{key}: the key does not belong to the certificate in {cert}"
        else:
            message = f"{key}: not a usable PEM private key for {cert} ({err.reason or err})"
        raise ConfigError(message, key="server.tls_key") from None
    return Certificate(dot, doh, _dns_names(leaf), leaf.not_valid_after_utc, (cert, key))


# The SNI of each TLS connection, read by the listener once the handshake is done (a server-side SSLObject
# does not keep it). Weak: an entry goes with its connection.
_sni: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def sni_of(ssl_object: object) -> str | None:
    """The server name the client sent in its TLS handshake (None: none)."""
    if ssl_object is None:
        return None
    return _sni.get(ssl_object)


class TlsFiles:
    """The current certificate of the encrypted listeners, swapped by :meth:`reload`; ``dot`` and ``doh``
    are the contexts to listen with."""

    def __init__(self, certificate: Certificate) -> None:
        self.dot = certificate.dot
        self.doh = certificate.doh
        self.current = certificate
        self._hook(certificate)

    def _hook(self, certificate: Certificate) -> None:
        certificate.dot.sni_callback = functools.partial(self._handshake, DOT)
        certificate.doh.sni_callback = functools.partial(self._handshake, DOH)

    def _handshake(
        self, kind: str, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        """Called in each handshake, as the client's hello is read: remember the SNI, and switch to the
        current certificate."""
        if server_name:
            _sni[ssl_object] = server_name
        current = self.current.dot if kind == DOT else self.current.doh
        if context is not current:
            ssl_object.context = current

    @classmethod
    def load(cls, cert: Path, key: Path) -> TlsFiles:
        return cls(load_certificate(cert, key))

    def reload(self, cert: Path, key: Path) -> bool:
        """Read the files again; new handshakes get them. Bad files are logged (one line) and the old
        certificate keeps serving. Returns whether the new files were taken."""
        try:
            certificate = load_certificate(cert, key)
        except ConfigError as err:
            log.error("TLS certificate not reloaded, the old one keeps serving: %s", err)
            return False
        self._hook(certificate)
        self.current = certificate
        return True

    def client_id(self, server_name: str | None) -> str | None:
        """The client ID in an SNI ``NAME.<a name of the certificate>`` (lowercase), else None."""
        if not server_name:
            return None
        server_name = server_name.lower().rstrip(".")
        label, _, rest = server_name.partition(".")
        if not rest:
            return None
        for name in self.current.names:
            suffix = name[2:] if name.startswith("*.") else name
            if rest == suffix:
                return label
        return None
