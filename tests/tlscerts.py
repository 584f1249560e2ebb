"""A throwaway certificate authority made at test time with ``cryptography``, for the encrypted-DNS tests of
both halves (the server's DoT/DoH listeners, the DoT/DoH upstreams): a CA certificate, and server
certificates it signs for given DNS names and IP addresses, written as PEM files.

The certificates carry what strict verifiers ask for (RFC 5280 key identifiers, key usage, serverAuth):
Python 3.13's default context checks them (``VERIFY_X509_STRICT``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "dns.test"


class ServerCert(NamedTuple):
    """A server certificate's files (``cert, key = ca.issue(...)`` unpacks them)."""

    cert: Path  # the server's certificate, then the CA's: a full chain, as an ACME client writes it
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class ThrowawayCA:
    """A CA that signs server certificates; ``ca_file`` is its PEM certificate, for clients to trust."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    ca_file: Path

    @classmethod
    def create(cls, directory: Path, name: str = "blockdns test CA") -> ThrowawayCA:
        """A new CA, its certificate written to ``directory/ca.pem`` (the directory made if needed)."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        )  # fmt: skip
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate, ca_file)

    def issue(
        self,
        directory: Path | None = None,
        names: tuple[str, ...] = (SERVER_NAME, f"*.{SERVER_NAME}"),
        ips: tuple[str, ...] = ("127.0.0.1", "::1"),
        *,
        valid_days: float = 10,
        expired: bool = False,
        stem: str = "server",
    ) -> ServerCert:
        """A server certificate and its key, written as ``<stem>.pem`` and ``<stem>.key`` in ``directory``
        (by default the CA's own)."""
        directory = directory or self.ca_file.parent
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(days=3 if expired else 1)
        end = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=valid_days)
        alternative: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alternative += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name((names or ips or ("server",))[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_file.write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
            + self.certificate.public_bytes(serialization.Encoding.PEM)
        )
        key_file.write_bytes(_pem_key(key))
        return ServerCert(cert_file, key_file)

    def serial_of(self, cert_file: Path) -> int:
        """The serial number of the first certificate in ``cert_file`` (the server's)."""
        return x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number
