"""
Cleartext HTTP/2 (h2c, "prior knowledge") for twisted.web servers.

twisted.web serves HTTP/2 only when TLS ALPN selects ``h2``. Clients such as
node's ``http2.connect("http://...")`` (and :class:`ilphttp.http2.HTTP2Agent`)
speak HTTP/2 over plain TCP straight away, starting with the connection
preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``. This module wraps a
:class:`~twisted.web.server.Site` (or any ``twisted.web.http.HTTPFactory``)
so that one listener serves both::

    from ilphttp.h2c import wrap_site_for_h2c
    endpoint = serverFromString(reactor, "tcp:8000:interface=127.0.0.1")
    endpoint.listen(wrap_site_for_h2c(Site(resource)))

Each connection's first bytes are buffered until they either match the
preface (HTTP/2) or diverge from it (HTTP/1.x); then everything is passed on
unchanged. HTTP/1.x is handled by the Site's own channel as usual.

How it hands the connection to HTTP/2: the Site's protocol,
``twisted.web.http._GenericHTTPChannelProtocol``, already switches itself to
``twisted.web._http2.H2Connection`` (for the same Site, request factory and
timeouts) on its first ``dataReceived`` when its transport's
``negotiatedProtocol`` is ``b"h2"``; that is how ALPN works. The wrapper sits
between the transport and that protocol and reports ``b"h2"`` once it has
seen the preface. Both names are private Twisted API, so
:func:`check_twisted_support` verifies what this relies on, and the tests
call it (and fail loudly if a Twisted upgrade changes it).

Upgrading with ``Upgrade: h2c`` from HTTP/1.1 is not supported (node and
most clients use prior knowledge; the upgrade dance is being dropped from
HTTP/2, RFC 9113 section 3.1).

On a TLS listener the wrapper leaves ALPN's choice alone, and also accepts
HTTP/2 prior knowledge inside TLS when ALPN chose nothing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocol, IProtocolFactory, IProtocolNegotiationFactory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "H2C_PREFACE",
    "H2CProtocol",
    "H2CSiteFactory",
    "check_twisted_support",
    "wrap_site_for_h2c",
]

#: The HTTP/2 client connection preface (RFC 9113 section 3.4).
H2C_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def check_twisted_support() -> None:
    """
    Check that the installed Twisted still provides what h2c relies on.

    :raises RuntimeError: with a message saying what changed.
    """
    try:
        from twisted.web import _http2, http
    except ImportError as e:  # pragma: no cover - h2 missing
        raise RuntimeError(f"twisted.web HTTP/2 support is not importable: {e}") from e
    if not getattr(http, "H2_ENABLED", False):
        raise RuntimeError("twisted.web.http.H2_ENABLED is false: install twisted[http2]")
    generic = getattr(http, "_GenericHTTPChannelProtocol", None)
    if generic is None:
        raise RuntimeError("twisted.web.http._GenericHTTPChannelProtocol is gone")
    if getattr(http, "H2Connection", None) is not getattr(_http2, "H2Connection", None):
        raise RuntimeError("twisted.web.http no longer uses twisted.web._http2.H2Connection")
    import inspect

    try:
        source = inspect.getsource(generic.dataReceived)
    except (OSError, TypeError):  # pragma: no cover - no source available
        return
    if "negotiatedProtocol" not in source or "H2Connection" not in source:
        raise RuntimeError(
            "_GenericHTTPChannelProtocol.dataReceived no longer switches to "
            "H2Connection on transport.negotiatedProtocol == b'h2'"
        )


class H2CProtocol(ProtocolWrapper):
    """
    Wraps one connection's HTTP channel; detects the HTTP/2 preface.

    Acts as the channel's transport; ``negotiatedProtocol`` is ``b"h2"`` once
    the preface has been seen, the real transport's value when TLS ALPN chose
    a protocol, and ``None`` (HTTP/1.1) otherwise.
    """

    def __init__(self, factory: WrappingFactory[Any], wrappedProtocol: IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self._decided = False
        self._buffer = b""
        self._h2c = False

    @property
    def negotiatedProtocol(self) -> bytes | None:
        if self._h2c:
            return b"h2"
        return getattr(self.transport, "negotiatedProtocol", None)

    def dataReceived(self, data: bytes) -> None:
        if self._decided:
            self.wrappedProtocol.dataReceived(data)
            return
        if getattr(self.transport, "negotiatedProtocol", None) is not None:
            # TLS ALPN already decided.
            self._decided = True
            self.wrappedProtocol.dataReceived(data)
            return
        self._buffer += data
        prefix = self._buffer[: len(H2C_PREFACE)]
        if not H2C_PREFACE.startswith(prefix):
            self._decided = True
        elif len(self._buffer) >= len(H2C_PREFACE):
            self._decided = True
            self._h2c = True
        else:
            return  # could still be either: wait for more bytes
        data, self._buffer = self._buffer, b""
        self.wrappedProtocol.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if not self._decided and self._buffer and self.wrappedProtocol is not None:
            self._decided = True
            data, self._buffer = self._buffer, b""
            self.wrappedProtocol.dataReceived(data)
        super().connectionLost(reason)


@implementer(IProtocolNegotiationFactory)
class H2CSiteFactory(WrappingFactory):
    """
    A protocol factory serving a twisted.web ``Site`` over HTTP/1.1 and over
    cleartext HTTP/2 with prior knowledge, on the same listener. Use it with
    any stream server endpoint's ``listen``.

    Unknown attributes are looked up on the wrapped site (e.g. ``site.resource``).
    On a TLS listener it passes on the site's ALPN protocols (a twisted.web
    ``Site`` offers ``h2`` and ``http/1.1``).
    """

    protocol = H2CProtocol

    def __init__(self, site: IProtocolFactory) -> None:
        check_twisted_support()
        super().__init__(site)

    def acceptableProtocols(self) -> list[bytes]:
        """
        See ``IProtocolNegotiationFactory``: the wrapped factory's protocols
        (a ``Site``'s are ``h2`` and ``http/1.1``), else ``h2`` and ``http/1.1``
        since any twisted.web ``HTTPFactory`` channel switches to HTTP/2 on
        ALPN. Never empty: a Twisted TLS server whose factory offers no ALPN
        protocol fails the handshake of every client that offers some.
        """
        inner = IProtocolNegotiationFactory(self.wrappedFactory, None)
        if inner is not None:
            protocols = list(inner.acceptableProtocols())
            if protocols:
                return protocols
        return [b"h2", b"http/1.1"]

    def __getattr__(self, name: str) -> Any:
        if name == "wrappedFactory":  # during unpickling / before __init__
            raise AttributeError(name)
        return getattr(self.wrappedFactory, name)


def wrap_site_for_h2c(site: IProtocolFactory) -> H2CSiteFactory:
    """Return a factory serving ``site`` over HTTP/1.1 and h2c; see ``H2CSiteFactory``."""
    return H2CSiteFactory(site)
