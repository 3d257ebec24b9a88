"""
TLS helpers for ilphttp: client policies that verify the peer's host name
with service-identity, server endpoints with ALPN (HTTP/2) and optional
mutual TLS, and access to a verified client certificate's identity from a
twisted.web request.

Client side::

    policy = ClientTLSPolicy(ca_bundle="/etc/ilp/peers-ca.pem")          # or None: system CAs
    policy = ClientTLSPolicy(client_cert="me.pem", client_key="me.key")  # mutual TLS
    agent = HTTP2Agent(reactor, tls_policy=policy)                       # offers h2 via ALPN
    agent = Agent(reactor, contextFactory=policy)                        # plain HTTP/1.1

Server side: a twisted.web ``Site`` offers ``h2`` and ``http/1.1`` through ALPN by itself
(it provides ``IProtocolNegotiationFactory``), so a Site behind any TLS endpoint,
including a plain ``ssl:`` string, serves HTTP/2. These helpers add mutual TLS::

    endpoint = server_endpoint_from_string(
        reactor, "ssl:8443:privateKey=key.pem:certKey=cert.pem:caCerts=clients-ca.pem")
    endpoint.listen(site)

    # in a resource:
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
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
    IStreamServerEndpoint,
)
from twisted.python.filepath import FilePath
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ilphttp._compat import h2_stream_connection

__all__ = [
    "DEFAULT_ALPN",
    "ClientTLSPolicy",
    "PeerIdentity",
    "ServerTLS",
    "client_tls_options",
    "identity_from_certificate",
    "load_certificates",
    "load_private_certificate",
    "peer_certificate",
    "peer_identity",
    "server_endpoint",
    "server_endpoint_from_string",
    "server_tls_from_string",
    "server_tls_options",
    "split_endpoint",
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


def load_certificates(path: str | bytes | FilePath[Any]) -> list[ssl.Certificate]:
    """
    All the certificates of a PEM file (a CA bundle or a chain).

    :raises ValueError: if the file holds no PEM certificate.
    """
    blocks = _PEM_CERT.findall(_read(path))
    if not blocks:
        raise ValueError(f"no PEM certificate in {path!r}")
    return [ssl.Certificate.loadPEM(block) for block in blocks]


def load_private_certificate(
    cert: str | bytes | FilePath[Any], key: str | bytes | FilePath[Any] | None = None
) -> ssl.PrivateCertificate:
    """
    A certificate and its private key from PEM files (``key`` defaults to
    ``cert``, for a file holding both). Only the first certificate of ``cert``
    is used; see ``load_certificates`` for the rest of a chain.
    """
    cert_pem = _read(cert)
    key_pem = cert_pem if key is None else _read(key)
    first = _PEM_CERT.search(cert_pem)
    if first is None:
        raise ValueError(f"no PEM certificate in {cert!r}")
    return ssl.PrivateCertificate.loadPEM(first.group(0) + b"\n" + key_pem)


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


def server_tls_options(
    cert: str | bytes | FilePath[Any],
    key: str | bytes | FilePath[Any] | None = None,
    *,
    chain: str | bytes | FilePath[Any] | None = None,
    client_ca: str | bytes | FilePath[Any] | None = None,
    require_client_cert: bool = True,
    alpn: Sequence[bytes] | None = None,
    dh_parameters: str | bytes | FilePath[Any] | None = None,
) -> ssl.CertificateOptions:
    """
    Server-side TLS options.

    :param cert: PEM file with the server certificate (and possibly its key).
    :param key: PEM file with the private key (default: ``cert``).
    :param chain: PEM file with intermediate CA certificates to send.
    :param client_ca: PEM file of CA certificates that sign acceptable client
        certificates. When given, client certificates are verified against it
        (mutual TLS); without it no client certificate is asked for.
    :param require_client_cert: with ``client_ca``, refuse clients without a
        certificate (default). If ``False``, a certificate is optional, but
        verified when presented.
    :param alpn: extra ALPN protocols to accept, in order of preference.
        Usually not needed: Twisted asks the listening factory
        (``IProtocolNegotiationFactory``), and a twisted.web ``Site`` answers
        ``h2`` and ``http/1.1`` (``h2`` only when the ``h2`` package is
        installed); these come after the factory's own.
    :param dh_parameters: PEM file of DH parameters (for DHE ciphers).
    """
    private = load_private_certificate(cert, key)
    kwargs: dict[str, Any] = {}
    if chain is not None:
        kwargs["extraCertChain"] = [c.original for c in load_certificates(chain)]
    if client_ca is not None:
        kwargs["verify"] = True
        kwargs["caCerts"] = [c.original for c in load_certificates(client_ca)]
        kwargs["requireCertificate"] = require_client_cert
    if alpn:
        kwargs["acceptableProtocols"] = list(alpn)
    if dh_parameters is not None:
        if isinstance(dh_parameters, FilePath):
            dh_path: FilePath[Any] = dh_parameters
        elif isinstance(dh_parameters, bytes):
            dh_path = FilePath(dh_parameters)
        else:
            dh_path = FilePath(dh_parameters)
        kwargs["dhParameters"] = ssl.DiffieHellmanParameters.fromFile(dh_path)
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original, certificate=private.original, **kwargs
    )


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLContextFactory)
class ServerTLS:
    """A listener's TLS settings that can be replaced while it listens.

    Twisted asks its TLS context factory for each accepted connection, so
    :meth:`swap` reaches the connections accepted from then on; those already
    open keep the certificate they were given.

    :ivar options: the ``CertificateOptions`` in use now.
    """

    def __init__(self, options: ssl.CertificateOptions) -> None:
        self.options = options

    def swap(self, options: ssl.CertificateOptions) -> None:
        """Hand out ``options`` to the connections accepted from now on."""
        self.options = options

    def getContext(self) -> Any:
        """``IOpenSSLContextFactory.getContext``: the current options' context."""
        return self.options.getContext()

    def serverConnectionForTLS(self, protocol: Any) -> Any:
        """``IOpenSSLServerConnectionCreator``: a connection from the current options."""
        make = getattr(self.options, "serverConnectionForTLS", None)
        if make is not None:  # Twisted >= 25.x: ALPN set from the protocol here
            return make(protocol)
        from OpenSSL.SSL import Connection

        return Connection(self.options.getContext(), None)  # older: ALPN set by the factory


def server_endpoint(
    reactor: Any,
    port: int,
    cert: str | bytes | FilePath[Any],
    key: str | bytes | FilePath[Any] | None = None,
    *,
    interface: str = "",
    backlog: int = 50,
    chain: str | bytes | FilePath[Any] | None = None,
    client_ca: str | bytes | FilePath[Any] | None = None,
    require_client_cert: bool = True,
    alpn: Sequence[bytes] | None = None,
    dh_parameters: str | bytes | FilePath[Any] | None = None,
) -> SSL4ServerEndpoint:
    """A TLS server endpoint; the options are those of ``server_tls_options``, held in
    a :class:`ServerTLS` (its context factory), so that they can be swapped."""
    options = server_tls_options(
        cert,
        key,
        chain=chain,
        client_ca=client_ca,
        require_client_cert=require_client_cert,
        alpn=alpn,
        dh_parameters=dh_parameters,
    )
    return SSL4ServerEndpoint(
        reactor, port, ServerTLS(options), backlog=backlog, interface=interface
    )


def split_endpoint(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Split an endpoint description the way Twisted does: ``:`` separates
    fields, the first unescaped ``=`` of a field makes it a keyword, and a
    backslash escapes the next character.

    ``split_endpoint(r"ssl:8443:privateKey=C\\:\\\\k.pem")`` is
    ``(["ssl", "8443"], {"privateKey": "C:\\\\k.pem"})``.

    :returns: the positional fields (the endpoint type first) and the
        keyword fields, unescaped.
    """
    fields: list[list[tuple[str, bool]]] = [[]]
    i = 0
    while i < len(description):
        ch = description[i]
        if ch == "\\" and i + 1 < len(description):
            fields[-1].append((description[i + 1], True))
            i += 2
            continue
        if ch == ":":
            fields.append([])
        else:
            fields[-1].append((ch, False))
        i += 1
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for field in fields:
        split = next((n for n, (c, esc) in enumerate(field) if c == "=" and not esc), None)
        if split is None:
            args.append("".join(c for c, _ in field))
        else:
            key = "".join(c for c, _ in field[:split])
            kwargs[key] = "".join(c for c, _ in field[split + 1 :])
    return args, kwargs


_TRUE = {"yes", "true", "1", "on"}
_FALSE = {"no", "false", "0", "off"}


def _flag(value: str, name: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be yes or no, not {value!r}")


def server_endpoint_from_string(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    Like ``twisted.internet.endpoints.serverFromString``, but ``ssl:``
    descriptions also accept mutual TLS and extra ALPN options::

        ssl:8443:privateKey=key.pem:certKey=cert.pem[:extraCertChain=chain.pem]
            [:interface=127.0.0.1][:backlog=50][:dhParameters=dh.pem]
            [:caCerts=clients-ca.pem][:requireClientCert=yes|no]
            [:alpn=proto1,proto2]

    ``caCerts`` turns on client-certificate verification (required unless
    ``requireClientCert=no``). ``alpn`` adds ALPN protocols to those of the
    listening factory (a twisted.web ``Site`` already offers ``h2`` and
    ``http/1.1``; see ``server_tls_options``). Other
    endpoint types (``tcp:``, ``unix:``, ``systemd:``, ...) are passed to
    ``serverFromString`` unchanged.
    """
    parsed = _parse_ssl(description)
    if parsed is None:
        return serverFromString(reactor, description)
    port, interface, backlog, tls = parsed
    return server_endpoint(reactor, port, interface=interface, backlog=backlog, **tls)


def server_tls_from_string(description: str) -> ssl.CertificateOptions | None:
    """The TLS options an ``ssl:`` description (see :func:`server_endpoint_from_string`)
    gives, read from its files now and checked (the key matches the certificate);
    None for another endpoint type.

    :raises ValueError: a bad option; ``OSError``: a file that cannot be read;
        ``OpenSSL.SSL.Error``/``OpenSSL.crypto.Error``: an invalid PEM or a key
        that does not match.
    """
    parsed = _parse_ssl(description)
    if parsed is None:
        return None
    tls = parsed[3]
    options = server_tls_options(tls.pop("cert"), tls.pop("key"), **tls)
    options.getContext()  # what listenSSL checks: e.g. a key that is not the certificate's
    return options


def _parse_ssl(description: str) -> tuple[int, str, int, dict[str, Any]] | None:
    """An ``ssl:`` description as (port, interface, backlog, server_endpoint's TLS
    keywords); None for another endpoint type."""
    args, kwargs = split_endpoint(description)
    if not args or args[0].strip().lower() != "ssl":
        return None
    positional = args[1:]
    if len(positional) > 1:
        raise ValueError(f"unexpected positional arguments in {description!r}")
    port_text = kwargs.pop("port", positional[0] if positional else None)
    if port_text is None:
        raise ValueError(f"no port in {description!r}")
    private_key = kwargs.pop("privateKey", "server.pem")
    cert_key = kwargs.pop("certKey", private_key)
    if "sslmethod" in kwargs:
        raise ValueError("sslmethod is not supported: the best TLS version is negotiated")
    chain = kwargs.pop("extraCertChain", None)
    dh = kwargs.pop("dhParameters", None)
    interface = kwargs.pop("interface", "")
    backlog = int(kwargs.pop("backlog", "50"))
    client_ca = kwargs.pop("caCerts", None)
    require = _flag(kwargs.pop("requireClientCert", "yes"), "requireClientCert")
    alpn_text = kwargs.pop("alpn", "")
    if kwargs:
        raise ValueError(f"unknown ssl endpoint option(s) {sorted(kwargs)} in {description!r}")
    alpn: tuple[bytes, ...] | None
    if alpn_text.strip().lower() in ("", "none"):
        alpn = None
    else:
        alpn = tuple(p.strip().encode("ascii") for p in alpn_text.split(",") if p.strip())
    tls = {
        "cert": cert_key,
        "key": private_key,
        "chain": chain,
        "client_ca": client_ca,
        "require_client_cert": require,
        "alpn": alpn,
        "dh_parameters": dh,
    }
    return int(port_text), interface, backlog, tls


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
