"""The client endpoints our senders connect to peers with: IP literals without Happy Eyeballs.

Twisted's ``HostnameEndpoint`` (what twisted.web's Agent uses for every URL)
resolves even an IP literal, then starts one connection attempt per address
every ``attemptDelay`` (0.3 s, RFC 8305 "Happy Eyeballs"), and reports
failure only at the tick after the last attempt started: a peer that refuses
the connection (a dead node on loopback, ``ECONNREFUSED`` within a
millisecond) became ``T01`` some 300 ms later.  For an IP literal there is
nothing to resolve and no second address to race, so :func:`tcp_endpoint`
connects with ``TCP4ClientEndpoint``/``TCP6ClientEndpoint`` directly and a
refusal is reported at once.  A host name keeps ``HostnameEndpoint`` (and so
its delay after the last address fails).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

__all__ = ["CONNECT_TIMEOUT", "PeerEndpoints", "tcp_endpoint"]

#: seconds a TCP connect may take when no timeout is given (Twisted's default)
CONNECT_TIMEOUT = 30.0


def tcp_endpoint(
    reactor: Any, host: str, port: int, timeout: float | None = None
) -> IStreamClientEndpoint:
    """A TCP client endpoint to ``host`` (a name, or an IP literal without brackets) and ``port``.

    ``timeout``: seconds for the connect (None: :data:`CONNECT_TIMEOUT`).
    An IPv4 or IPv6 literal (without a zone: ``getaddrinfo`` resolves those)
    is connected to directly; a name goes through ``HostnameEndpoint``.
    """
    seconds = CONNECT_TIMEOUT if timeout is None else timeout
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=seconds)
    if isIPv6Address(host) and "%" not in host:
        return TCP6ClientEndpoint(reactor, host, port, timeout=seconds)
    return HostnameEndpoint(reactor, host, port, timeout=seconds)


@implementer(IAgentEndpointFactory)
class PeerEndpoints:
    """twisted.web's standard URI -> endpoint choice, with :func:`tcp_endpoint`.

    ``http`` URLs get the TCP endpoint; ``https`` URLs the same wrapped in
    TLS with ``tls_policy.creatorForNetloc(host, port)`` (an ``IPolicyForHTTPS``),
    as twisted.web's ``_StandardEndpointFactory`` does.

    :param connect_timeout: seconds for the TCP connect (None: Twisted's 30 s).
    """

    def __init__(self, reactor: Any, tls_policy: Any, connect_timeout: float | None) -> None:
        self._reactor = reactor
        self._tls_policy = tls_policy
        self._connect_timeout = connect_timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """The endpoint for ``uri``'s scheme, host and port.

        :raises ValueError: for a host that is not ASCII (as twisted.web's).
        :raises SchemeNotSupported: for a scheme other than ``http``/``https``.
        """
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("the URL's host contains non-ASCII octets") from None
        endpoint = tcp_endpoint(self._reactor, host, uri.port, self._connect_timeout)
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            creator = self._tls_policy.creatorForNetloc(uri.host, uri.port)
            return wrapClientTLS(creator, endpoint)
        raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
