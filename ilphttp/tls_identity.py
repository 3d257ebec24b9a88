"""
Identities in TLS, for ilphttp's links: certificates and keys read from PEM
files, the client policies that check a server's identity (its chain, and its
host name or IP address with service-identity) and present our own
certificate (mutual TLS), and the identity in a client certificate that a
server verified, read from a twisted.web request.

The server side (endpoints, their options, ``ssl:`` strings) is
:mod:`ilphttp.tls`, which re-exports all of this.

Client side::

    policy = ClientTLSPolicy(ca_bundle="/etc/ilp/peers-ca.pem")          # or None: system CAs
    policy = ClientTLSPolicy(client_cert="me.pem", client_key="me.key")  # mutual TLS
    agent = HTTP2Agent(reactor, tls_policy=policy)                       # offers h2 via ALPN
    agent = Agent(reactor, contextFactory=policy)                        # plain HTTP/1.1

Server side, in a resource behind a mutual-TLS endpoint::

    identity = peer_identity(request)   # None unless a verified client cert was presented
    if identity is not None: account = accounts[identity.common_name]
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.error import VerifyError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, ISSLTransport
from twisted.python.filepath import FilePath
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ilphttp._compat import h2_stream_connection

__all__ = [
    "DEFAULT_ALPN",
    "ClientTLSPolicy",
    "PeerIdentity",
    "client_tls_options",
    "identity_from_certificate",
    "load_certificates",
    "load_private_certificate",
    "load_private_key",
    "openssl_reason",
    "peer_certificate",
    "peer_identity",
]

#: ALPN protocols a client offers for HTTP/2 with fallback: h2 first, then HTTP/1.1.
DEFAULT_ALPN: tuple[bytes, ...] = (b"h2", b"http/1.1")

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _read(path: str | bytes | FilePath[Any]) -> bytes:
    if isinstance(path, FilePath):
        return path.getContent()
    if isinstance(path, bytes):
        return FilePath(path).getContent()
    return FilePath(path).getContent()


def _shown(path: str | bytes | FilePath[Any]) -> str:
    """A path as messages quote it: ``'key.pem'``."""
    if isinstance(path, FilePath):
        path = path.path
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    return repr(path)


def openssl_reason(exc: BaseException) -> str:
    """One readable line for an OpenSSL error: its ``library: reason`` pairs, without
    repeats, instead of the raw ``[('lib', 'func', 'reason'), ...]`` list; ``str(exc)``
    for any other exception."""
    if isinstance(exc, (crypto.Error, SSL.Error)) and exc.args and isinstance(exc.args[0], list):
        parts = []
        for entry in exc.args[0]:
            if isinstance(entry, tuple) and len(entry) == 3:
                lib, _func, reason = entry
                parts.append(f"{lib}: {reason}" if lib else str(reason))
            else:
                parts.append(str(entry))
        if parts:
            return "; ".join(dict.fromkeys(parts))
    return str(exc) or type(exc).__name__


def _certificate(block: bytes, path: str | bytes | FilePath[Any]) -> ssl.Certificate:
    try:
        return ssl.Certificate.loadPEM(block)
    except crypto.Error as exc:
        raise ValueError(
            f"the certificate in {_shown(path)} cannot be read: {openssl_reason(exc)}"
        ) from None


def load_certificates(path: str | bytes | FilePath[Any]) -> list[ssl.Certificate]:
    """
    All the certificates of a PEM file (a CA bundle or a chain).

    :raises ValueError: one line, if the file holds no PEM certificate or one
        that cannot be read; ``OSError`` if the file cannot be read.
    """
    blocks = _PEM_CERT.findall(_read(path))
    if not blocks:
        raise ValueError(f"no PEM certificate in {_shown(path)}")
    return [_certificate(block, path) for block in blocks]


class _Encrypted(Exception):
    """The key asked for a passphrase (raised by :func:`_no_passphrase`)."""


def _no_passphrase(*_args: Any) -> bytes:
    # Without a callback OpenSSL asks for the passphrase on the controlling
    # terminal, which blocks the whole reactor; refuse instead.
    raise _Encrypted


def load_private_key(path: str | bytes | FilePath[Any]) -> crypto.PKey:
    """
    The (first) private key of a PEM file, which may also hold certificates.
    A passphrase is never asked for: an encrypted key is refused.

    :raises ValueError: one line, if the key is encrypted (passphrase-protected),
        absent or invalid; ``OSError`` if the file cannot be read.
    """
    data = _read(path)
    try:
        return crypto.load_privatekey(crypto.FILETYPE_PEM, data, passphrase=_no_passphrase)
    except _Encrypted:
        raise ValueError(
            f"the private key in {_shown(path)} is encrypted (a passphrase-protected key):"
            " give an unencrypted key"
        ) from None
    except crypto.Error as exc:
        if b"PRIVATE KEY-----" not in data:
            raise ValueError(f"no PEM private key in {_shown(path)}") from None
        raise ValueError(
            f"the private key in {_shown(path)} cannot be read: {openssl_reason(exc)}"
        ) from None


def load_private_certificate(
    cert: str | bytes | FilePath[Any], key: str | bytes | FilePath[Any] | None = None
) -> ssl.PrivateCertificate:
    """
    A certificate and its private key from PEM files (``key`` defaults to
    ``cert``, for a file holding both). Only the first certificate of ``cert``
    is used; see ``load_certificates`` for the rest of a chain. The key must
    not be encrypted (see :func:`load_private_key`).

    :raises ValueError: one line, if a file holds no usable certificate or key,
        the key is encrypted, or it does not match the certificate; ``OSError``
        if a file cannot be read.
    """
    first = _PEM_CERT.search(_read(cert))
    if first is None:
        raise ValueError(f"no PEM certificate in {_shown(cert)}")
    certificate = _certificate(first.group(0), cert)
    key_path = cert if key is None else key
    pkey = load_private_key(key_path)
    try:
        return ssl.PrivateCertificate.fromCertificateAndKeyPair(certificate, ssl.KeyPair(pkey))
    except VerifyError:
        raise ValueError(
            f"the private key in {_shown(key_path)} does not match the certificate"
            f" in {_shown(cert)}"
        ) from None


def _trust_root(ca_bundle: str | bytes | FilePath[Any] | None) -> Any:
    if ca_bundle is None:
        return ssl.platformTrust()
    return ssl.trustRootFromCertificates(load_certificates(ca_bundle))


def client_tls_options(
    hostname: str,
    ca_bundle: str | bytes | FilePath[Any] | None = None,
    *,
    client_cert: str | bytes | FilePath[Any] | None = None,
    client_key: str | bytes | FilePath[Any] | None = None,
    alpn: Sequence[bytes] | None = None,
) -> IOpenSSLClientConnectionCreator:
    """
    A client connection creator for one host: the peer's certificate must
    chain to ``ca_bundle`` (a PEM file; default: the platform's trust store)
    and match ``hostname`` (a DNS name or an IP address), checked with
    service-identity. ``client_cert``/``client_key`` present a certificate for
    mutual TLS. ``alpn`` lists protocols to offer (e.g. ``DEFAULT_ALPN``).
    """
    kwargs: dict[str, Any] = {}
    if client_cert is not None:
        kwargs["clientCertificate"] = load_private_certificate(client_cert, client_key)
    if alpn:
        kwargs["acceptableProtocols"] = list(alpn)
    return ssl.optionsForClientTLS(hostname, trustRoot=_trust_root(ca_bundle), **kwargs)


@implementer(IPolicyForHTTPS)
class ClientTLSPolicy:
    """
    An ``IPolicyForHTTPS`` for outgoing ``https://`` requests, usable with
    Twisted's ``Agent`` and with ``ilphttp.http2.HTTP2Agent``.

    Every connection verifies the server's certificate against ``ca_bundle``
    (a PEM file of CA certificates; ``None``: the platform's trust store) and
    its host name or IP address with service-identity. With ``client_cert``
    (and ``client_key``, unless the key is in the same file) the client
    presents that certificate (mutual TLS).

    :ivar alpn: the ALPN protocols offered (``None``: no ALPN, which means
        HTTP/1.1). ``with_alpn`` returns a copy offering other protocols;
        ``ilphttp.http2.HTTP2Agent`` uses it to offer ``h2``.
    """

    def __init__(
        self,
        ca_bundle: str | bytes | FilePath[Any] | None = None,
        *,
        client_cert: str | bytes | FilePath[Any] | None = None,
        client_key: str | bytes | FilePath[Any] | None = None,
        alpn: Sequence[bytes] | None = None,
    ) -> None:
        self.ca_bundle = ca_bundle
        self.client_cert = client_cert
        self.client_key = client_key
        self.alpn: tuple[bytes, ...] | None = tuple(alpn) if alpn else None
        # Load once; fail early on bad paths.
        self._trust = _trust_root(ca_bundle)
        self._client_certificate = (
            load_private_certificate(client_cert, client_key) if client_cert is not None else None
        )

    def with_alpn(self, alpn: Sequence[bytes] | None) -> ClientTLSPolicy:
        """A copy of this policy offering the ALPN protocols ``alpn``."""
        copy = ClientTLSPolicy.__new__(ClientTLSPolicy)
        copy.__dict__.update(self.__dict__)
        copy.alpn = tuple(alpn) if alpn else None
        return copy

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """See ``IPolicyForHTTPS.creatorForNetloc``."""
        name = hostname.decode("idna") if not hostname.isascii() else hostname.decode("ascii")
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        kwargs: dict[str, Any] = {}
        if self._client_certificate is not None:
            kwargs["clientCertificate"] = self._client_certificate
        if self.alpn:
            kwargs["acceptableProtocols"] = list(self.alpn)
        return ssl.optionsForClientTLS(name, trustRoot=self._trust, **kwargs)


class PeerIdentity(NamedTuple):
    """
    The identity in a client certificate that the TLS layer verified.

    :ivar common_name: the subject's CN (``None`` if absent).
    :ivar dns_names: subjectAltName DNS names.
    :ivar uris: subjectAltName URIs (e.g. SPIFFE ids).
    :ivar ip_addresses: subjectAltName IP addresses, as strings.
    :ivar fingerprint_sha256: hex SHA-256 of the DER certificate (lower case).
    :ivar certificate: the ``cryptography.x509.Certificate``.
    """

    common_name: str | None
    dns_names: tuple[str, ...]
    uris: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    fingerprint_sha256: str
    certificate: x509.Certificate

    def names(self) -> tuple[str, ...]:
        """The SAN DNS names, or the CN if the certificate has none."""
        if self.dns_names:
            return self.dns_names
        return (self.common_name,) if self.common_name else ()


def identity_from_certificate(cert: x509.Certificate) -> PeerIdentity:
    """Read a ``PeerIdentity`` from a certificate."""
    from cryptography.hazmat.primitives.serialization import Encoding

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else None
    dns: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        dns = tuple(san.get_values_for_type(x509.DNSName))
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return PeerIdentity(common_name, dns, uris, ips, fingerprint, cert)


def _tls_transports(request_or_transport: Any) -> list[Any]:
    found = []
    candidates = [request_or_transport, getattr(request_or_transport, "transport", None)]
    channel = getattr(request_or_transport, "channel", None)
    if channel is not None:
        candidates.append(getattr(channel, "transport", None))
        # HTTP/2: the request's channel is an H2Stream; its connection holds TLS.
        connection = h2_stream_connection(channel)
        if connection is not None:
            candidates.append(getattr(connection, "transport", None))
    for candidate in candidates:
        if candidate is not None and ISSLTransport.providedBy(candidate):
            found.append(candidate)
    return found


def peer_certificate(request_or_transport: Any) -> x509.Certificate | None:
    """
    The client certificate of a TLS connection, or ``None``.

    Accepts a twisted.web request (HTTP/1.1 or HTTP/2) or a transport. The
    certificate was verified against the server's ``client_ca`` when the
    server asked for one (see ``server_tls_options``); a server without
    ``client_ca`` asks for none, so this returns ``None``.
    """
    for transport in _tls_transports(request_or_transport):
        cert = transport.getPeerCertificate()
        if cert is not None:
            return cert.to_cryptography()  # type: ignore[no-any-return,unused-ignore]
    return None


def peer_identity(request_or_transport: Any) -> PeerIdentity | None:
    """The ``PeerIdentity`` of the verified client certificate, or ``None``."""
    cert = peer_certificate(request_or_transport)
    return identity_from_certificate(cert) if cert is not None else None
