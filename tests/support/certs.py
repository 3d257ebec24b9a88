"""
Throw-away X.509 certificates for tests, made with ``cryptography`` at run
time (no key is ever committed).

    ca = CertificateAuthority("Test CA")
    server = ca.issue("server", dns_names=["peer.test"], ip_addresses=["127.0.0.1"])
    client = ca.issue("alice", dns_names=["alice.peer.test"], client=True)
    paths = server.write(self.mktemp())          # -> CertPaths(cert, key)
    ca_path = ca.write_cert(self.mktemp())
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class CertPaths(NamedTuple):
    cert: str
    key: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ilphttp tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _mkdir(directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    return directory


class IssuedCertificate:
    """A leaf certificate with its key."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def encrypted_key_pem(self, passphrase: bytes = b"x", *, legacy: bool = False) -> bytes:
        """The key protected by ``passphrase``: PKCS#8 (``ENCRYPTED PRIVATE KEY``), or
        with ``legacy`` OpenSSL's traditional form (``Proc-Type: 4,ENCRYPTED``)."""
        form = (
            serialization.PrivateFormat.TraditionalOpenSSL
            if legacy
            else serialization.PrivateFormat.PKCS8
        )
        encryption = serialization.BestAvailableEncryption(passphrase)
        return self.key.private_bytes(serialization.Encoding.PEM, form, encryption)

    def write(self, directory: str, name: str = "leaf") -> CertPaths:
        """Write C{name}.crt.pem and C{name}.key.pem into C{directory}."""
        _mkdir(directory)
        cert_path = os.path.join(directory, name + ".crt.pem")
        key_path = os.path.join(directory, name + ".key.pem")
        with open(cert_path, "wb") as f:
            f.write(self.cert_pem)
        with open(key_path, "wb") as f:
            f.write(self.key_pem)
        return CertPaths(cert_path, key_path)


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, common_name: str = "ilphttp test CA") -> None:
        self.key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        name = _name(common_name)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write_cert(self, directory: str, name: str = "ca") -> str:
        """Write the CA certificate (no key) to C{directory}/C{name}.crt.pem."""
        _mkdir(directory)
        path = os.path.join(directory, name + ".crt.pem")
        with open(path, "wb") as f:
            f.write(self.cert_pem)
        return path

    def issue(
        self,
        common_name: str,
        *,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        uris: Iterable[str] = (),
        client: bool = False,
        server: bool = True,
        days: int = 1,
    ) -> IssuedCertificate:
        """Issue a leaf certificate signed by this CA."""
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return IssuedCertificate(builder.sign(self.key, hashes.SHA256()), key)
