"""What the plugin's own listeners listen with: HTTP/1.1 or HTTP/2 per connection, over a Door.

:func:`make_listener` gives the protocol factory that :class:`~ilphttp.plugin.PluginHttp`,
the shared listener (:mod:`ilphttp.shared`) and a node's extra ``--listen``
listeners pass to an endpoint's ``listen``.  Each connection decides on its
first bytes:

- TLS ALPN chose ``h2``, or the bytes are the HTTP/2 connection preface
  (h2c prior knowledge, RFC 9113 section 3.4; buffered until it matches or
  diverges): HTTP/2, served by :class:`~ilphttp.h2_server.H2ServerProtocol`
  (on ``h2`` directly, with the frame guard of :mod:`ilphttp.h2_guard`);
- anything else: the lean HTTP/1.1 protocol of :mod:`ilphttp.http1_server`.

The factory also knows its open connections (:meth:`IlpListener.close_all`,
``connections_total``) and offers ``h2`` and ``http/1.1`` to TLS ALPN.  It
applies its :class:`~ilphttp.server_limits.ServerLimits`: past
``max_connections`` open connections its port stops accepting (the kernel's
backlog holds the rest) until one closes; the protocols apply the deadlines
and header limits.  :meth:`IlpListener.drain` stops it gracefully.

:func:`site_listener` is the same over twisted.web for HTTP/1.1 too (a
``Site`` with :class:`~ilphttp.server.IlpRequest`), the engine before the lean
one; set ``PluginHttp.listener_factory``/``SharedListener.listener_factory``
to it to compare, or as an escape hatch.
"""

from __future__ import annotations

import errno
from dataclasses import replace
from typing import Any, Callable, Union

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolNegotiationFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ilphttp.front import Door
from ilphttp.h2_guard import GuardLimits
from ilphttp.h2_server import H2ServerProtocol
from ilphttp.h2c import H2C_PREFACE
from ilphttp.http1_server import IDLE_TIMEOUT, Http1ServerProtocol
from ilphttp.server import ConnectionTracker, DoorResource, make_site
from ilphttp.server_limits import DEFAULT_LIMITS, ServerLimits

__all__ = [
    "IlpListener",
    "ListenerFactory",
    "default_reactor",
    "drain_listener",
    "make_listener",
    "set_limits",
    "site_listener",
    "startup_error",
]

_log = Logger()
#: seconds between two "too many connections" lines
_LOG_EVERY = 60.0


def default_reactor() -> Any:
    """The global reactor, imported only when asked for (not at import time)."""
    from twisted.internet import reactor

    return reactor


def _http2_protocol(listener: IlpListener, transport: ITransport, data: bytes) -> H2ServerProtocol:
    """An HTTP/2 server protocol connected to ``transport``, given the bytes read so far."""
    protocol = H2ServerProtocol(listener.door, listener.clock, listener.h2_limits, listener.limits)
    protocol.makeConnection(transport)
    if data:
        protocol.dataReceived(data)
    if listener.draining:
        protocol.close(listener.limits.grace_period)
    return protocol


class _Connection(Protocol):
    """One accepted connection: HTTP/1.1 until its first bytes say HTTP/2."""

    def __init__(self, listener: IlpListener) -> None:
        self._listener = listener
        self._buffer = b""
        self._http1: Http1ServerProtocol | None = None
        self._served: IProtocol | None = None

    def connectionMade(self) -> None:
        listener = self._listener
        if not listener.opened(self):
            return
        # Made now so that its deadlines run from the accept; dropped if HTTP/2.
        self._http1 = Http1ServerProtocol(
            listener.door, listener.clock, limits=listener.protocol_limits()
        )
        self._http1.makeConnection(self.transport)
        if listener.draining:
            self._http1.drain()

    def dataReceived(self, data: bytes) -> None:
        served = self._served
        if served is not None:
            served.dataReceived(data)
            return
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated is None:
            data = self._buffer + data
            prefix = data[: len(H2C_PREFACE)]
            if H2C_PREFACE.startswith(prefix):
                if len(data) < len(H2C_PREFACE):
                    self._buffer = data  # could still be either: wait for more bytes
                    return
                negotiated = b"h2"
            self._buffer = b""
        http1 = self._http1
        if http1 is None or self.transport is None:
            return  # refused at the accept
        if negotiated == b"h2":
            http1.detach()
            self._http1 = None
            self._served = _http2_protocol(self._listener, self.transport, data)
        else:
            self._served = http1
            http1.dataReceived(data)

    def drain(self, grace: float) -> None:
        """Stop gracefully: HTTP/2 with GOAWAY, HTTP/1.1 as :meth:`Http1ServerProtocol.drain`."""
        if isinstance(self._served, H2ServerProtocol):
            self._served.close(grace)
        elif self._http1 is not None:
            self._http1.drain()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Close: HTTP/2 with GOAWAY after the answers in flight, HTTP/1.1 after what is queued."""
        if isinstance(self._served, H2ServerProtocol):
            self._served.close()
        elif self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        served = self._served or self._http1
        self._served = self._http1 = None
        if served is not None:
            served.connectionLost(reason)
        self._listener.closed(self)


@implementer(IProtocolNegotiationFactory)
class IlpListener(Factory):
    """The protocol factory of a listener answered by ``door`` (see the module docstring).

    :param door: decides every answer (:class:`~ilphttp.front.AccountDoor`,
        :class:`~ilphttp.front.SharedDoor`).
    :param clock: the reactor's clock, for the deadlines and timeouts.
    :param idle_timeout: seconds an HTTP/1.1 connection may stay idle; ``None``:
        forever (replaces ``limits.idle_timeout``).
    :param limits: the connection cap, deadlines, header limits and drain grace.
    """

    noisy = False

    def __init__(
        self,
        door: Door,
        clock: IReactorTime,
        idle_timeout: float | None = IDLE_TIMEOUT,
        limits: ServerLimits = DEFAULT_LIMITS,
    ) -> None:
        self.door = door
        self.clock = clock
        self.idle_timeout = idle_timeout
        #: the limits of its connections (set before listening; see :meth:`protocol_limits`)
        self.limits = limits
        #: True from :meth:`drain` on: new connections close once answered or idle
        self.draining = False
        #: connections refused at the accept, past ``max_connections``
        self.refused_total = 0
        self._paused_port: Any = None
        self._logged_at: float | None = None
        #: the HTTP/2 flood guard's limits; None: :mod:`ilphttp.h2_guard`'s constants
        self.h2_limits: GuardLimits | None = None
        #: connections accepted since listening began
        self.connections_total = 0
        #: called with +1 and -1 as connections open and close (metrics)
        self.on_change: Callable[[int], object] | None = None
        self._open: set[_Connection] = set()
        self._waiting: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self)

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN (RFC 7301): ``h2`` first, then ``http/1.1``."""
        return [b"h2", b"http/1.1"]

    def protocol_limits(self) -> ServerLimits:
        """:attr:`limits` with :attr:`idle_timeout` (which a caller may have set apart)."""
        if self.limits.idle_timeout == self.idle_timeout:
            return self.limits
        return replace(self.limits, idle_timeout=self.idle_timeout)

    def opened(self, connection: _Connection) -> bool:
        """Count a new connection; False if it is over the cap (it is aborted)."""
        open_now = len(self._open)
        cap = self.limits.max_connections
        if open_now >= cap:
            # Accepted in the same batch as the one that reached the cap.
            self.refused_total += 1
            connection.abort()
            return False
        self.connections_total += 1
        self._open.add(connection)
        if self.on_change is not None:
            self.on_change(1)
        if open_now + 1 >= cap:
            self._pause(connection)
        return True

    def _pause(self, connection: _Connection) -> None:
        """Stop accepting: the port's reading stops until a connection closes."""
        port = _port_of(connection.transport)
        if port is None or self._paused_port is not None:
            return
        port.stopReading()
        self._paused_port = port
        now = self.clock.seconds()
        if self._logged_at is None or now - self._logged_at >= _LOG_EVERY:
            self._logged_at = now
            _log.warn(
                "{n} connections open, the listener's maxConnections: not accepting more"
                " until one closes",
                n=len(self._open),
            )

    def closed(self, connection: _Connection) -> None:
        if connection in self._open and self.on_change is not None:
            self.on_change(-1)
        self._open.discard(connection)
        port = self._paused_port
        if port is not None and len(self._open) < self.limits.max_connections:
            self._paused_port = None
            if not self.draining and getattr(port, "connected", True):
                port.startReading()
        if not self._open and self._waiting:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def drain(self, grace: float | None = None) -> Deferred[None]:
        """Stop gracefully; fire when every connection is closed.

        Idle connections close after ``drain_linger``, the others after answering the
        requests already read (HTTP/1.1: the last answer says ``Connection:
        close``; HTTP/2: GOAWAY); after ``grace`` seconds (default
        ``limits.grace_period``) what is left is aborted.  New connections
        (a port still open) are closed as they come.  Stopping the port is the
        caller's part (:func:`drain_listener`).
        """
        if grace is None:
            grace = self.limits.grace_period
        self.draining = True
        for connection in list(self._open):
            connection.drain(grace)
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        timer = self.clock.callLater(grace, self._abort_all)

        def done(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        return d.addCallback(done)

    def _abort_all(self) -> None:
        if self._open:
            _log.info(
                "{n} connections still open after the grace period: closing them",
                n=len(self._open),
            )
        for connection in list(self._open):
            connection.abort()

    def close_all(self) -> Deferred[None]:
        """Close every connection (after what is queued is written); fire when all are."""
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        for connection in list(self._open):
            connection.close()
        return d


#: what listens: connections_total, close_all() and an endpoint's ``listen`` argument
ListenerFactory = Union[IlpListener, ConnectionTracker]


def _port_of(transport: Any) -> Any:
    """The listening port that accepted ``transport`` (TCP, or TCP under TLS), or None."""
    for _ in range(3):
        if transport is None:
            return None
        port = getattr(transport, "server", None)
        if port is not None and hasattr(port, "stopReading"):
            return port
        transport = getattr(transport, "transport", None)
    return None


def make_listener(
    door: Door, clock: IReactorTime, idle_timeout: float | None = IDLE_TIMEOUT
) -> IlpListener:
    """The lean listener: HTTP/1.1 by :mod:`ilphttp.http1_server`, HTTP/2 by
    :mod:`ilphttp.h2_server`."""
    return IlpListener(door, clock, idle_timeout)


def set_limits(factory: Any, limits: ServerLimits) -> None:
    """Give a listener ``limits`` before it listens (the twisted.web one: its idle timeout)."""
    if isinstance(factory, IlpListener):
        factory.limits = limits
        factory.idle_timeout = limits.idle_timeout
    else:
        site = getattr(factory, "wrappedFactory", None)
        if site is not None and hasattr(site, "timeOut"):
            site.timeOut = limits.idle_timeout


def drain_listener(port: Any, factory: Any, grace: float) -> Deferred[None]:
    """Stop accepting at once (``port.stopListening()``, if a port), then drain
    ``factory``'s connections within ``grace`` seconds; fire when done."""
    stopped = maybeDeferred(port.stopListening) if port is not None else succeed(None)
    if isinstance(factory, IlpListener):
        draining = factory.drain(grace)
    elif factory is not None:
        draining = factory.close_all()
    else:
        draining = succeed(None)
    both = DeferredList([stopped, draining], consumeErrors=True)
    return both.addCallback(lambda _: None)


def site_listener(
    door: Door, clock: IReactorTime, idle_timeout: float | None = IDLE_TIMEOUT
) -> ConnectionTracker:
    """The twisted.web listener: ``door`` in an :class:`~ilphttp.server.IlpSite`, h2c beside."""
    site = make_site(DoorResource(door))
    site.timeOut = idle_timeout
    return ConnectionTracker(site)


#: the signature of :func:`make_listener` and :func:`site_listener`
ListenerMaker = Callable[[Door, IReactorTime], ListenerFactory]


#: errno -> the few words a start-up error gives for it
_LISTEN_REASONS = {
    errno.EADDRINUSE: "address in use",
    errno.EACCES: "permission denied",
    errno.EADDRNOTAVAIL: "address not available on this host",
}


def startup_error(what: str, exc: Exception) -> str:
    """One line for a service that cannot start, without the word "up" left dangling.

    ``startup_error("account 'up'", CannotListenError("127.0.0.1", 7770,
    OSError(EADDRINUSE, ...)))`` is ``"cannot start account 'up': cannot listen
    on 127.0.0.1:7770 (address in use)"``; any other error is given as its text.

    :param what: the service, e.g. ``"account 'up'"`` or ``"listener 'listen-1'"``.
    """
    if not isinstance(exc, CannotListenError):
        return f"cannot start {what}: {exc}"
    interface = exc.interface or ""
    host = f"[{interface}]" if ":" in interface else interface
    where = f"{host}:{exc.port}" if host else f"port {exc.port}"
    cause = exc.socketError
    code = getattr(cause, "errno", None)
    reason = _LISTEN_REASONS.get(code) if isinstance(code, int) else None
    if reason is None:
        reason = getattr(cause, "strerror", None) or str(cause)
    return f"cannot start {what}: cannot listen on {where} ({reason})"
