"""A throwaway certificate authority for the encrypted-DNS tests, made at test time with ``cryptography``."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_NAME = "dns.test"


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
    def create(cls, directory: Path) -> ThrowawayCA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("blockdns test CA"))
            .issuer_name(_name("blockdns test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate, ca_file)

    def issue(
        self,
        directory: Path,
        names: tuple[str, ...] = (SERVER_NAME, f"*.{SERVER_NAME}"),
        ips: tuple[str, ...] = ("127.0.0.1", "::1"),
        *,
        valid_days: float = 10,
        expired: bool = False,
        stem: str = "server",
    ) -> tuple[Path, Path]:
        """A server certificate and its key, written as ``<stem>.pem`` and ``<stem>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(days=3 if expired else 1)
        end = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=valid_days)
        alternative: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alternative += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0] if names else "server"))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem_key(key))
        return cert_file, key_file

    def serial_of(self, cert_file: Path) -> int:
        return x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number
