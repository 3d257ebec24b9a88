"""A lean HTTP/1.1 client for outgoing Prepares: pooled keep-alive connections per peer.

Each POST is written in one ``transport.write`` and its response read by a
:class:`~ilphttp._http1_response.ResponseReader` (httptools on CPython, h11
elsewhere).  It does what ``twisted.web.client.Agent`` did for the plugin, at
a fraction of the cost per request:

* connections are pooled per peer (scheme, host, port), one request on a
  connection at a time (no pipelining), at most ``pool_size`` per peer;
  a request that finds them all busy waits for the first one free, in a
  FIFO queue (more connections would only queue at the peer instead);
* a connection idle for ``idle_timeout`` seconds is closed, before a peer's
  keep-alive timeout (node's is 5 s) can close it under a request;
* a POST is never retried: a pooled connection the peer closed as the
  request went out fails that request (T01), and the next one opens a new
  connection;
* cancelling a request's Deferred (the Prepare's expiry) aborts its
  connection, which cannot be reused in the middle of a response, or the
  connect in progress; it fails with ``CancelledError`` at any stage;
* ``https`` URLs connect through Twisted's endpoints with the plugin's TLS
  policy, as the Agent did; so do host names (``HostnameEndpoint``); IP
  literals connect directly (:mod:`ilphttp.peer_endpoints`), so that a
  refused connection fails at once;

Failures are Twisted's: connect errors as the endpoint gives them; a
connection lost before the response, ``ResponseNeverReceived``; lost in its
middle or malformed, ``ResponseFailed`` (each holding the reasons), so
:func:`ilphttp.client.reject_for_failure` maps them as it did for the Agent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import URI, ResponseFailed, ResponseNeverReceived

from ilphttp._compat import write_now
from ilphttp._http1_response import BadResponse, ReplyTooLarge, ResponseReader, reader_class
from ilphttp.peer_endpoints import PeerEndpoints

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
    from twisted.web.iweb import IAgentEndpointFactory

__all__ = ["Http1Client", "UnusableUrl"]


class UnusableUrl(ValueError):
    """A URL this client cannot send to (not absolute http(s), or a host it cannot
    connect to); the message never repeats the URL, which may hold credentials."""


_DONE = Failure(ConnectionDone())


class _Target(NamedTuple):
    """What a URL comes to: its peer, and the start of every request to it."""

    key: tuple[bytes, bytes, int]
    head: bytes  # request line and Host header
    uri: URI


class _Request:
    """One POST: its bytes, its Deferred, and where it is."""

    __slots__ = ("cancelled", "connecting", "connection", "data", "deferred", "peer")

    def __init__(self, data: bytes, peer: _Peer) -> None:
        self.data = data
        self.peer = peer
        self.connection: _Connection | None = None
        self.connecting: Deferred[Any] | None = None
        self.cancelled = False
        self.deferred: Deferred[tuple[int, bytes]] = Deferred(self._cancel)

    def _cancel(self, _: object) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abandon(self)
        elif self.connecting is not None:
            # Its failure is not the request's: before the host name (even an
            # IP literal) is resolved, HostnameEndpoint fails the cancelled
            # connect with DNSLookupError.  Ours is CancelledError.
            self.cancelled = True
            self.connecting.cancel()
        else:
            try:
                self.peer.waiting.remove(self)
            except ValueError:
                pass


class _Peer:
    """The connections to one (scheme, host, port)."""

    __slots__ = ("count", "endpoint", "idle", "key", "waiting")

    def __init__(self, key: tuple[bytes, bytes, int], endpoint: IStreamClientEndpoint) -> None:
        self.key = key
        self.endpoint = endpoint
        #: (idle since, connection), oldest first
        self.idle: deque[tuple[float, _Connection]] = deque()
        #: requests waiting for a free connection, first come first served
        self.waiting: deque[_Request] = deque()
        #: connections open or being opened
        self.count = 0


class _Connection(Protocol):
    """One keep-alive connection: one request at a time."""

    def __init__(self, client: Http1Client, peer: _Peer, reader: ResponseReader) -> None:
        self._client = client
        self.peer = peer
        self._reader = reader
        self.request: _Request | None = None
        self._answered = False  # a byte of the current response has arrived
        self.gone = False
        self._lost: list[Deferred[None]] = []

    def send(self, request: _Request) -> None:
        self.request = request
        request.connection = self
        self._answered = False
        self._reader.start()
        write_now(self.transport, request.data)

    def abandon(self, request: _Request) -> None:
        """``request`` was cancelled: this connection is in the middle of it."""
        if self.request is request:
            self.request = None
            self.transport.abortConnection()  # type: ignore[union-attr]

    def when_lost(self) -> Deferred[None]:
        if self.gone:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost.append(d)
        return d

    def connectionMade(self) -> None:
        self._client.connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        request = self.request
        if request is None:
            # Bytes nobody asked for: this connection cannot be trusted again.
            self._client.forget(self)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._answered = True
        try:
            response = self._reader.feed(data)
        except BadResponse as exc:
            self._fail(request, ResponseFailed([Failure(exc)]))
            return
        except ReplyTooLarge as exc:
            self._fail(request, exc)
            return
        if response is None:
            return
        self.request = request.connection = None
        if response.keep_alive:
            self._client.release(self)
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]
        request.deferred.callback((response.status, response.body))

    def _fail(self, request: _Request, exc: Exception) -> None:
        self.request = request.connection = None
        self.transport.abortConnection()  # type: ignore[union-attr]
        request.deferred.errback(Failure(exc))

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self.gone = True
        self._client.lost(self)
        request, self.request = self.request, None
        if request is not None:
            request.connection = None
            response = self._reader.eof() if self._answered else None
            if response is not None:
                request.deferred.callback((response.status, response.body))
            elif self._answered:
                request.deferred.errback(Failure(ResponseFailed([reason])))
            else:
                request.deferred.errback(Failure(ResponseNeverReceived([reason])))
        waiting, self._lost = self._lost, []
        for d in waiting:
            d.callback(None)


class _ConnectionFactory(Factory):
    """Builds the one connection it was made for, without a log line."""

    noisy = False

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def buildProtocol(self, addr: Any) -> _Connection:
        return self._connection


class Http1Client:
    """POSTs over pooled HTTP/1.1 keep-alive connections (RFC 9112), never retried.

    :param reactor: provides ``IReactorTime`` and the TCP (and TLS) connects.
    :param tls_policy: an ``IPolicyForHTTPS`` for ``https`` URLs (default:
        Twisted's ``BrowserLikePolicyForHTTPS``).
    :param connect_timeout: seconds to wait for a connection (None: the
        endpoint's default, as for the Agent).
    :param pool_size: connections per peer at most; more requests wait.
    :param idle_timeout: seconds after which an idle connection is closed.
    :param max_body: the largest response body read, in bytes.
    :param parser: ``"httptools"`` or ``"h11"`` (default: the fastest installed).
    :param endpoints: an ``IAgentEndpointFactory`` to connect with instead of
        Twisted's standard one (then ``tls_policy`` and ``connect_timeout``
        are not used).
    :raises ImportError: when the parser (or any) is not installed.
    """

    def __init__(
        self,
        reactor: Any,
        tls_policy: Any = None,
        connect_timeout: float | None = None,
        pool_size: int = 256,
        idle_timeout: float = 4.0,
        max_body: int = 65536,
        parser: str | None = None,
        endpoints: IAgentEndpointFactory | None = None,
    ) -> None:
        if endpoints is None:
            if tls_policy is None:
                from twisted.web.client import BrowserLikePolicyForHTTPS

                tls_policy = BrowserLikePolicyForHTTPS()
            endpoints = PeerEndpoints(reactor, tls_policy, connect_timeout)
        self._reactor = reactor
        self._endpoints = endpoints
        self._reader = reader_class(parser)
        self.pool_size = pool_size
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self._targets: dict[bytes, _Target] = {}
        self._peers: dict[tuple[bytes, bytes, int], _Peer] = {}
        self.connections: set[_Connection] = set()
        self._connecting: set[Deferred[Any]] = set()
        self._sweep: IDelayedCall | None = None
        self._closed = False
        self._headers: Sequence[tuple[bytes, bytes]] | None = None
        self._block = b""

    # -- requests
    def post(
        self,
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        extra: tuple[bytes, bytes] | None = None,
    ) -> Deferred[tuple[int, bytes]]:
        """POST ``body`` to ``url``; fire with ``(status, body)`` of the response.

        ``headers`` are sent as given, after ``Host`` and before
        ``Content-Length``; pass the same sequence object while it is
        unchanged (its rendering is kept).  ``extra`` is one more header for
        this request only.  Cancelling the Deferred aborts the request.

        A ``url`` it cannot use fails the Deferred with :class:`UnusableUrl`.
        """
        if self._closed:
            return fail(ResponseNeverReceived([Failure(ConnectionDone("client closed"))]))
        target = self._targets.get(url)
        if target is None:
            try:
                target = self._target(url)
            except UnusableUrl as exc:
                return fail(exc)
            except ValueError:  # e.g. an unclosed "[" of an IPv6 host
                return fail(UnusableUrl("the URL cannot be parsed"))
        if headers is not self._headers:
            self._block = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
            self._headers = headers
        parts = [target.head, self._block]
        if extra is not None:
            parts.append(extra[0] + b": " + extra[1] + b"\r\n")
        parts += [b"Content-Length: %d\r\n\r\n" % len(body), body]
        peer = self._peers.get(target.key)
        if peer is None:
            peer = self._peers[target.key] = _Peer(
                target.key, self._endpoints.endpointForURI(target.uri)
            )
        request = _Request(b"".join(parts), peer)
        self._dispatch(request)
        return request.deferred

    def _target(self, url: bytes) -> _Target:
        uri = URI.fromBytes(url)
        if uri.scheme not in (b"http", b"https") or not uri.host or b"@" in uri.netloc:
            raise UnusableUrl("not an absolute http(s) URL without user information")
        host = uri.host
        if isIPv6Address(host.decode("ascii")):
            host = b"[" + host + b"]"
        if (uri.scheme, uri.port) not in ((b"http", 80), (b"https", 443)):
            host = b"%b:%d" % (host, uri.port)
        head = b"POST " + uri.originForm + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
        if len(self._targets) > 1024:
            self._targets.clear()
        target = self._targets[url] = _Target((uri.scheme, uri.host, uri.port), head, uri)
        return target

    def _dispatch(self, request: _Request) -> None:
        peer = request.peer
        if peer.idle:
            since, connection = peer.idle.pop()
            if self._reactor.seconds() - since < self.idle_timeout:
                connection.send(request)
                return
            # The newest is stale, so all are: close them and connect anew.
            peer.idle.append((since, connection))
            self._drop_idle(peer, float("inf"))
        if peer.count < self.pool_size:
            self._connect(request)
        else:
            peer.waiting.append(request)

    def _connect(self, request: _Request) -> None:
        peer = request.peer
        peer.count += 1
        connection = _Connection(self, peer, self._reader(self.max_body))
        d = peer.endpoint.connect(_ConnectionFactory(connection))
        if d.called:  # e.g. a synchronous failure
            request.connecting = None
        else:
            request.connecting = d
            self._connecting.add(d)

        def connected(_: object) -> None:
            self._connecting.discard(d)
            request.connecting = None
            if request.deferred.called or self._closed:
                self.release(connection)  # cancelled meanwhile: keep it for the next
            else:
                connection.send(request)

        def failed(failure: Failure) -> None:
            self._connecting.discard(d)
            request.connecting = None
            peer.count -= 1
            self._next(peer)
            if request.cancelled:
                failure = Failure(CancelledError())
            elif failure.check(ValueError, OverflowError):
                # The endpoint's "invalid hostname: ...", or connect_ex()'s "port
                # must be 0-65535": the URL's fault, not a bug.
                failure = Failure(UnusableUrl("the URL's host or port cannot be connected to"))
            if not request.deferred.called:
                request.deferred.errback(failure)

        d.addCallbacks(connected, failed)

    def _next(self, peer: _Peer) -> None:
        """A connection slot came free: the first waiting request gets it."""
        if peer.waiting and peer.count < self.pool_size and not self._closed:
            self._connect(peer.waiting.popleft())
        elif not peer.count and not peer.waiting and self._peers.get(peer.key) is peer:
            del self._peers[peer.key]

    # -- connections
    def release(self, connection: _Connection) -> None:
        """``connection`` finished a response and may carry another request."""
        peer = connection.peer
        if self._closed or connection.gone:
            connection.transport.loseConnection()  # type: ignore[union-attr]
        elif peer.waiting:
            connection.send(peer.waiting.popleft())
        else:
            peer.idle.append((self._reactor.seconds(), connection))
            if self._sweep is None:
                self._sweep = self._reactor.callLater(self.idle_timeout, self._sweep_idle)

    def forget(self, connection: _Connection) -> None:
        """Take ``connection`` out of the idle list (it is about to close)."""
        idle = connection.peer.idle
        for entry in idle:
            if entry[1] is connection:
                idle.remove(entry)
                break

    def lost(self, connection: _Connection) -> None:
        """``connection`` is closed."""
        self.connections.discard(connection)
        self.forget(connection)
        peer = connection.peer
        peer.count -= 1
        self._next(peer)

    def _drop_idle(self, peer: _Peer, before: float) -> None:
        idle = peer.idle
        while idle and idle[0][0] < before:
            idle.popleft()[1].transport.loseConnection()  # type: ignore[union-attr]

    def _sweep_idle(self) -> None:
        self._sweep = None
        now = self._reactor.seconds()
        oldest = None
        for peer in list(self._peers.values()):
            self._drop_idle(peer, now - self.idle_timeout + 1e-9)
            if peer.idle and (oldest is None or peer.idle[0][0] < oldest):
                oldest = peer.idle[0][0]
        if oldest is not None:
            delay = max(oldest + self.idle_timeout - now, 0.0)
            self._sweep = self._reactor.callLater(delay, self._sweep_idle)

    def close(self) -> Deferred[None]:
        """Close every connection; fire when all are closed.

        Requests still waiting or in flight fail (T01 for the plugin, which
        only closes its client once its packets are answered).
        """
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for d in list(self._connecting):
            d.cancel()
        for peer in list(self._peers.values()):
            peer.idle.clear()
            waiting, peer.waiting = peer.waiting, deque()
            for request in waiting:
                request.deferred.errback(
                    Failure(ResponseNeverReceived([Failure(ConnectionDone("client closed"))]))
                )
        lost = []
        for connection in list(self.connections):
            lost.append(connection.when_lost())
            if connection.request is not None:
                connection.transport.abortConnection()  # type: ignore[union-attr]
            else:
                connection.transport.loseConnection()  # type: ignore[union-attr]
        return DeferredList(lost).addCallback(lambda _: None)
