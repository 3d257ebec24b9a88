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

Every HTTP/2 connection, h2c or TLS ALPN, also gets an
:class:`ilphttp.h2_guard.H2FrameGuard`: the wrapper feeds it the client's
bytes and the server's, passes the client's bytes on in the chunks the guard
cuts (so that Twisted answers each request before it reads a later frame
that could close its stream), and when a limit is exceeded (Rapid Reset,
PING, SETTINGS, PRIORITY, CONTINUATION or empty-DATA floods, provoked server
resets) writes a GOAWAY with ``ENHANCE_YOUR_CALM``, logs one warning and
closes the connection; a client that does not read is cut off
:data:`ABORT_TIMEOUT` seconds later.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IReactorTime,
    ITCPTransport,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ilphttp.h2_guard import GuardLimits, H2FrameGuard

__all__ = [
    "ABORT_TIMEOUT",
    "H2C_PREFACE",
    "H2CProtocol",
    "H2CSiteFactory",
    "check_twisted_support",
    "wrap_site_for_h2c",
]

#: The HTTP/2 client connection preface (RFC 9113 section 3.4).
H2C_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Seconds a connection stopped by the guard may take to flush its GOAWAY
#: before it is aborted (a client that does not read would keep it open).
ABORT_TIMEOUT = 15.0

_log = Logger()


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
    # The guard's chunking relies on H2Connection handling each
    # dataReceived's events (and the synchronous answers to them) before it
    # returns, and on it writing through its transport (our wrapper).
    try:
        source = inspect.getsource(_http2.H2Connection.dataReceived)
    except (OSError, TypeError):  # pragma: no cover - no source available
        return
    if "receive_data(data)" not in source or "for event in events" not in source:
        raise RuntimeError(
            "twisted.web._http2.H2Connection.dataReceived no longer handles the "
            "events of one read before returning"
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
        self._site_factory = cast("H2CSiteFactory", factory)
        self._decided = False
        self._buffer = b""
        self._h2c = False
        self._guard: H2FrameGuard | None = None
        self._closing = False
        self._abort_call: IDelayedCall | None = None

    @property
    def negotiatedProtocol(self) -> bytes | None:
        if self._h2c:
            return b"h2"
        return getattr(self.transport, "negotiatedProtocol", None)

    def dataReceived(self, data: bytes) -> None:
        if self._decided:
            self._deliver(data)
            return
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated is not None:
            # TLS ALPN already decided.
            self._decided = True
            if negotiated == b"h2":
                self._guard = H2FrameGuard(self._site_factory.limits)
            self._deliver(data)
            return
        self._buffer += data
        prefix = self._buffer[: len(H2C_PREFACE)]
        if not H2C_PREFACE.startswith(prefix):
            self._decided = True
        elif len(self._buffer) >= len(H2C_PREFACE):
            self._decided = True
            self._h2c = True
            self._guard = H2FrameGuard(self._site_factory.limits)
        else:
            return  # could still be either: wait for more bytes
        data, self._buffer = self._buffer, b""
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        """Pass the client's bytes on: through the guard on HTTP/2."""
        guard = self._guard
        if guard is None:
            self.wrappedProtocol.dataReceived(data)
            return
        for chunk in guard.receive_data(data, self._site_factory.clock.seconds()):
            if self._closing:
                return  # e.g. a protocol error: the channel sent GOAWAY itself
            self.wrappedProtocol.dataReceived(chunk)
        if guard.tripped is not None:
            self._enhance_your_calm(guard)

    def write(self, data: bytes) -> None:
        guard = self._guard
        if guard is None:
            super().write(data)
            return
        if self._abort_call is not None:
            return  # GOAWAY sent: nothing more
        guard.data_sent(data, self._site_factory.clock.seconds())
        super().write(data)
        if guard.tripped is not None:
            self._enhance_your_calm(guard)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        if self._guard is None:
            super().writeSequence(data)
        else:
            self.write(b"".join(data))

    def loseConnection(self) -> None:
        self._closing = True
        super().loseConnection()

    def abortConnection(self) -> None:
        self._closing = True
        self._abort()

    def _abort(self) -> None:
        transport = self.transport
        if transport is not None:
            cast(ITCPTransport, transport).abortConnection()

    def _enhance_your_calm(self, guard: H2FrameGuard) -> None:
        """Send GOAWAY ENHANCE_YOUR_CALM (once), log it, close the connection."""
        transport = self.transport
        if self._abort_call is not None or transport is None:
            return
        trip = guard.tripped
        assert trip is not None
        _log.warn(
            "HTTP/2 client {peer} exceeded the {reason} limit: sent GOAWAY "
            "ENHANCE_YOUR_CALM (last stream {last_stream_id}) and closed the connection",
            peer=transport.getPeer(),
            reason=trip.reason,
            last_stream_id=trip.last_stream_id,
        )
        if guard.frame_aligned:
            transport.write(guard.goaway())
        self._closing = True
        transport.loseConnection()
        self._abort_call = self._site_factory.clock.callLater(ABORT_TIMEOUT, self._abort)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
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

    :param limits: the HTTP/2 guard's limits for every connection; by default
        those of :mod:`ilphttp.h2_guard`'s module constants.
    :param clock: the time source for the guard's rates and the abort timer;
        by default the site's ``reactor``, else the global reactor.
    """

    protocol = H2CProtocol

    def __init__(
        self,
        site: IProtocolFactory,
        *,
        limits: GuardLimits | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        check_twisted_support()
        super().__init__(site)
        #: the guard's limits; ``None``: the module constants as they are when
        #: a connection starts
        self.limits = limits
        if clock is None:
            clock = getattr(site, "reactor", None)  # twisted.web.http.HTTPFactory's
        if not IReactorTime.providedBy(clock):
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        #: the time source of the guard's rates and of the abort timer
        self.clock: IReactorTime = clock

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


def wrap_site_for_h2c(
    site: IProtocolFactory,
    *,
    limits: GuardLimits | None = None,
    clock: IReactorTime | None = None,
) -> H2CSiteFactory:
    """Return a factory serving ``site`` over HTTP/1.1 and h2c; see ``H2CSiteFactory``."""
    return H2CSiteFactory(site, limits=limits, clock=clock)
