"""
TLS on ilphttp's servers: endpoints with ALPN (HTTP/2) and optional mutual
TLS, their options, ``ssl:`` endpoint strings, and a listener's TLS settings
that a reload can swap (:class:`ServerTLS`).

A twisted.web ``Site`` offers ``h2`` and ``http/1.1`` through ALPN by itself
(it provides ``IProtocolNegotiationFactory``), so a Site behind any TLS endpoint,
including a plain ``ssl:`` string, serves HTTP/2. These helpers add mutual TLS::

    endpoint = server_endpoint_from_string(
        reactor, "ssl:8443:privateKey=key.pem:certKey=cert.pem:caCerts=clients-ca.pem")
    endpoint.listen(site)

The client side and the identity of a verified client certificate
(``ClientTLSPolicy``, ``peer_identity``, PEM loading...) are in
:mod:`ilphttp.tls_identity`; they stay importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IStreamServerEndpoint,
)
from twisted.python.filepath import FilePath
from zope.interface import implementer

from ilphttp._compat import raise_listen_errors_synchronously
from ilphttp.tls_identity import (
    DEFAULT_ALPN,
    ClientTLSPolicy,
    PeerIdentity,
    client_tls_options,
    identity_from_certificate,
    load_certificates,
    load_private_certificate,
    peer_certificate,
    peer_identity,
)

# The names of ilphttp.tls_identity stay importable from here, as documented.
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
    "server_service",
    "server_tls_from_string",
    "server_tls_options",
    "split_endpoint",
]


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


def server_service(
    description: str, factory: Any, reactor: Any = None
) -> StreamServerEndpointService:
    """``twisted.application.strports.service``, with the endpoint of
    :func:`server_endpoint_from_string`: an ``ssl:`` key is loaded by ilphttp,
    which refuses an encrypted key, where Twisted's parser would ask for its
    passphrase on the terminal and block the process. A listen failure raises
    from ``startService``, as with strports.

    :raises ValueError: an invalid description or TLS file (one line);
        ``OSError``: a file that cannot be read.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    endpoint = server_endpoint_from_string(reactor, description)
    service: StreamServerEndpointService = raise_listen_errors_synchronously(
        StreamServerEndpointService(endpoint, factory)
    )
    return service


def server_tls_from_string(description: str) -> ssl.CertificateOptions | None:
    """The TLS options an ``ssl:`` description (see :func:`server_endpoint_from_string`)
    gives, read from its files now and checked (the key matches the certificate);
    None for another endpoint type.

    :raises ValueError: a bad option, an invalid PEM, an encrypted key or a key
        that does not match (one line each); ``OSError``: a file that cannot be
        read; ``OpenSSL.SSL.Error``: what else the context refuses (e.g. bad
        DH parameters).
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
