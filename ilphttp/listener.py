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
``connections_total``) and offers ``h2`` and ``http/1.1`` to TLS ALPN.

:func:`site_listener` is the same over twisted.web for HTTP/1.1 too (a
``Site`` with :class:`~ilphttp.server.IlpRequest`), the engine before the lean
one; set ``PluginHttp.listener_factory``/``SharedListener.listener_factory``
to it to compare, or as an escape hatch.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolNegotiationFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ilphttp.front import Door
from ilphttp.h2_guard import GuardLimits
from ilphttp.h2_server import H2ServerProtocol
from ilphttp.h2c import H2C_PREFACE
from ilphttp.http1_server import IDLE_TIMEOUT, Http1ServerProtocol
from ilphttp.server import ConnectionTracker, DoorResource, make_site

__all__ = ["IlpListener", "ListenerFactory", "default_reactor", "make_listener", "site_listener"]


def default_reactor() -> Any:
    """The global reactor, imported only when asked for (not at import time)."""
    from twisted.internet import reactor

    return reactor


def _http2_protocol(listener: IlpListener, transport: ITransport, data: bytes) -> H2ServerProtocol:
    """An HTTP/2 server protocol connected to ``transport``, given the bytes read so far."""
    protocol = H2ServerProtocol(listener.door, listener.clock, listener.h2_limits)
    protocol.makeConnection(transport)
    if data:
        protocol.dataReceived(data)
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
        listener.opened(self)
        # Made now so that its idle timeout runs from the accept; dropped if HTTP/2.
        self._http1 = Http1ServerProtocol(listener.door, listener.clock, listener.idle_timeout)
        self._http1.makeConnection(self.transport)

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
        assert http1 is not None and self.transport is not None
        if negotiated == b"h2":
            http1.detach()
            self._http1 = None
            self._served = _http2_protocol(self._listener, self.transport, data)
        else:
            self._served = http1
            http1.dataReceived(data)

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
    :param clock: the reactor's clock, for the HTTP/1.1 idle timeout.
    :param idle_timeout: seconds an HTTP/1.1 connection may stay idle; ``None``: forever.
    """

    noisy = False

    def __init__(
        self, door: Door, clock: IReactorTime, idle_timeout: float | None = IDLE_TIMEOUT
    ) -> None:
        self.door = door
        self.clock = clock
        self.idle_timeout = idle_timeout
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

    def opened(self, connection: _Connection) -> None:
        self.connections_total += 1
        self._open.add(connection)
        if self.on_change is not None:
            self.on_change(1)

    def closed(self, connection: _Connection) -> None:
        if connection in self._open and self.on_change is not None:
            self.on_change(-1)
        self._open.discard(connection)
        if not self._open and self._waiting:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

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


def make_listener(
    door: Door, clock: IReactorTime, idle_timeout: float | None = IDLE_TIMEOUT
) -> IlpListener:
    """The lean listener: HTTP/1.1 by :mod:`ilphttp.http1_server`, HTTP/2 by
    :mod:`ilphttp.h2_server`."""
    return IlpListener(door, clock, idle_timeout)


def site_listener(
    door: Door, clock: IReactorTime, idle_timeout: float | None = IDLE_TIMEOUT
) -> ConnectionTracker:
    """The twisted.web listener: ``door`` in an :class:`~ilphttp.server.IlpSite`, h2c beside."""
    site = make_site(DoorResource(door))
    site.timeOut = idle_timeout
    return ConnectionTracker(site)


#: the signature of :func:`make_listener` and :func:`site_listener`
ListenerMaker = Callable[[Door, IReactorTime], ListenerFactory]
