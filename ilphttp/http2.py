"""
An HTTP/2 client for Twisted: an :class:`~twisted.web.iweb.IAgent` built on the
sans-IO ``h2`` library, usable by ``treq.HTTPClient``::

    from treq import HTTPClient
    from ilphttp.http2 import HTTP2Agent

    agent = HTTP2Agent(reactor, max_requests_per_session=1000)
    client = HTTPClient(agent)
    response = yield client.post("http://127.0.0.1:8000/ilp?x=1", data=packet)
    body = yield response.content()
    ...
    yield agent.close()

How it talks:

- ``http://`` URLs: HTTP/2 over cleartext TCP with *prior knowledge* (h2c; what
  node's ``http2.connect("http://...")`` does). The peer must speak HTTP/2.
  Pass ``cleartext_h2=False`` to send ``http://`` requests over HTTP/1.1.
- ``https://`` URLs: TLS with ALPN offering ``h2`` and ``http/1.1``. If the
  server picks HTTP/1.1 (or does not negotiate), the origin is remembered as
  HTTP/1.1-only and its requests go through an ordinary Twisted
  :class:`~twisted.web.client.Agent` with a persistent connection pool.

Per origin (scheme, host, port) the agent keeps a small pool of HTTP/2
sessions:

- A session never has more streams open than the peer's
  ``SETTINGS_MAX_CONCURRENT_STREAMS`` (nor ``max_streams_per_session``).
  Requests beyond the capacity of the sessions wait in a FIFO queue; a new
  session is opened only while fewer than ``max_sessions_per_origin`` sessions
  accept new streams.
- ``max_requests_per_session`` (the JS plugin's ``http2MaxRequestsPerSession``)
  retires a session after that many requests: it takes no new stream, its
  open streams finish, then it is closed (GOAWAY + TCP close). New requests go
  to a fresh session.
- GOAWAY from the peer: streams above ``last_stream_id`` were not processed and
  are retried transparently on another session. Streams at or below it are
  allowed to finish when the GOAWAY is graceful (``NO_ERROR``) -- the peer is
  still going to answer them -- and fail otherwise (or if the connection then
  drops). A stream refused with ``REFUSED_STREAM`` is retried too.
- Flow control: received data is acknowledged as it is handed to the response
  body's protocol (a paused body stops acknowledging, which back-pressures the
  peer); request bodies are sent within the peer's stream and connection
  windows, the rest waits for WINDOW_UPDATE.
- Cancelling the Deferred returned by :meth:`HTTP2Agent.request` before the
  response arrives resets the stream with ``RST_STREAM(CANCEL)``; stopping the
  body transport (e.g. cancelling ``treq.content``) does the same afterwards.
- Sessions idle for ``idle_timeout`` seconds are closed.
- :meth:`HTTP2Agent.close` closes every session and connection and returns a
  Deferred that fires once all of them are gone.

Request bodies are read from the ``IBodyProducer`` into memory before the
request is sent (that makes retries possible; ILP packets are at most a few
tens of kilobytes). :class:`BytesProducer` skips the producer machinery for
``bytes`` bodies: ``HTTPClient(agent, data_to_body_producer=BytesProducer)``.

How it is built: the HTTP/2 session logic (stream bookkeeping, flow control,
concurrency limits, GOAWAY, resets, timers as deadlines) is a sans-IO core in
:mod:`ilphttp.http2_session` (on :mod:`ilphttp.http2_connection` and
:mod:`ilphttp.http2_events`), which imports no Twisted. The Twisted edges are
internal: ``_h2_protocol`` (bytes between the transport and the core, events to
Deferreds), ``_h2_response`` (the request and ``IResponse`` objects),
``_h2_pool`` (the per-origin queue and sessions) and this module's agent.

Failures use Twisted's usual exceptions: connection-level errors
(``ConnectError`` and subclasses, ``TimeoutError``) as they are;
:class:`~twisted.web.client.ResponseNeverReceived` when the connection or
stream failed before a response; :class:`~twisted.web.client.ResponseFailed`
when it failed while the body was arriving. The reasons inside them can be
:class:`H2StreamReset`, :class:`H2ConnectionTerminated` or
:class:`H2ProtocolError`.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, HTTPConnectionPool, RequestGenerationFailed
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IPolicyForHTTPS,
    IResponse,
)
from zope.interface import implementer

from ilphttp._h2_pool import OriginKey, OriginPool
from ilphttp._h2_protocol import H2ClientProtocol
from ilphttp._h2_response import PendingRequest
from ilphttp.http2_connection import DEFAULT_CONNECTION_WINDOW
from ilphttp.http2_events import (
    ErrorCodes,
    H2ConnectionTerminated,
    H2ProtocolError,
    H2StreamReset,
)
from ilphttp.http2_session import ClientSession
from ilphttp.peer_endpoints import tcp_endpoint

__all__ = [
    "BytesProducer",
    "ErrorCodes",
    "H2ConnectionTerminated",
    "H2ProtocolError",
    "H2StreamReset",
    "HTTP2Agent",
]


@implementer(IBodyProducer)
class BytesProducer:
    """
    An ``IBodyProducer`` for a body already in memory. ``HTTP2Agent`` uses its
    bytes directly; other agents get them in a single write.

    Use with treq: ``HTTPClient(agent, data_to_body_producer=BytesProducer)``.
    """

    def __init__(self, body: bytes) -> None:
        self.body = bytes(body)
        self.length = len(self.body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IConsumer)
class _BodyCollector:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


def _collect_body(producer: IBodyProducer) -> Deferred[bytes]:
    """Read an ``IBodyProducer`` completely into memory."""
    collector = _BodyCollector()

    def cancel(d: Deferred[bytes]) -> None:
        producer.stopProducing()

    result: Deferred[bytes] = Deferred(cancel)

    def done(_: object) -> None:
        if not result.called:
            result.callback(b"".join(collector.chunks))

    def failed(f: Failure) -> None:
        if not result.called:
            result.errback(f)

    try:
        producing = producer.startProducing(collector)
    except BaseException:
        return fail(Failure())
    producing.addCallbacks(done, failed)
    return result


@implementer(IAgentEndpointFactory)
class _HTTP1EndpointFactory:
    def __init__(self, endpoint: Callable[[bytes, bytes, int, bool], IStreamClientEndpoint]):
        self._endpoint = endpoint

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return self._endpoint(uri.scheme, uri.host, uri.port, False)


TCPEndpointFactory = Callable[[str, int], IStreamClientEndpoint]


@implementer(IAgent)
class HTTP2Agent:
    """
    An ``IAgent`` that speaks HTTP/2 (see the module docstring for the details).

    :param reactor: the reactor (``IReactorTCP`` and ``IReactorTime``).
    :param max_requests_per_session: retire a session after this many requests
        (``None``: unlimited). The JS plugin's ``http2MaxRequestsPerSession``.
    :param tls_policy: an ``IPolicyForHTTPS`` for ``https://`` peers. The
        default, ``ilphttp.tls_identity.ClientTLSPolicy()``, trusts the
        system's CAs and checks the host name with service-identity. To
        negotiate HTTP/2 the policy must offer ALPN ``h2``:
        ``ilphttp.tls_identity.ClientTLSPolicy`` does (via its ``with_alpn``
        method); any other policy is used as given, and HTTP/2 is then used
        only if its connections offer ``h2``.
    :param idle_timeout: close a session after this many seconds without an
        open stream (``None``: never).
    :param connect_timeout: seconds allowed to connect, finish TLS and receive
        the peer's HTTP/2 SETTINGS.
    :param max_sessions_per_origin: how many sessions of one origin may accept
        new streams at once; when all are at the peer's stream limit, requests
        queue. (Sessions being retired do not count.)
    :param max_streams_per_session: our own cap on concurrent streams per
        session, on top of the peer's ``MAX_CONCURRENT_STREAMS``.
    :param cleartext_h2: use h2c prior knowledge for ``http://`` URLs (default);
        if ``False``, ``http://`` requests use HTTP/1.1.
    :param initial_window_size: our per-stream receive window
        (``SETTINGS_INITIAL_WINDOW_SIZE``).
    :param connection_window: our connection-level receive window.
    :param tcp_endpoint_factory: ``f(host, port) -> IStreamClientEndpoint``
        used to make TCP connections (default:
        :func:`ilphttp.peer_endpoints.tcp_endpoint`: an IP literal directly, a
        name through ``HostnameEndpoint``); TLS is
        layered on top by the agent. Useful to pin names to addresses.
    :param http1_pool: the ``HTTPConnectionPool`` for HTTP/1.1 fallback (a
        persistent one is made if not given; ``close`` closes it either way).
    """

    def __init__(
        self,
        reactor: Any,
        max_requests_per_session: int | None = None,
        tls_policy: IPolicyForHTTPS | None = None,
        idle_timeout: float | None = 60.0,
        *,
        connect_timeout: float = 10.0,
        max_sessions_per_origin: int = 1,
        max_streams_per_session: int = 1000,
        cleartext_h2: bool = True,
        initial_window_size: int = 65535,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        tcp_endpoint_factory: TCPEndpointFactory | None = None,
        http1_pool: HTTPConnectionPool | None = None,
    ) -> None:
        if max_requests_per_session is not None and max_requests_per_session < 1:
            raise ValueError("max_requests_per_session must be >= 1 or None")
        if max_sessions_per_origin < 1:
            raise ValueError("max_sessions_per_origin must be >= 1")
        if max_streams_per_session < 1:
            raise ValueError("max_streams_per_session must be >= 1")
        self.reactor = reactor
        self.max_requests_per_session = max_requests_per_session
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_sessions_per_origin = max_sessions_per_origin
        self.max_streams_per_session = max_streams_per_session
        self.cleartext_h2 = cleartext_h2
        self.initial_window_size = initial_window_size
        self.connection_window = max(connection_window, 65535)
        if tls_policy is None:
            from ilphttp.tls_identity import ClientTLSPolicy

            tls_policy = ClientTLSPolicy()
        self.tls_policy = tls_policy
        with_alpn = getattr(tls_policy, "with_alpn", None)
        self._h2_tls_policy: IPolicyForHTTPS = (
            with_alpn([b"h2", b"http/1.1"]) if with_alpn is not None else tls_policy
        )
        self._tcp_endpoint_factory = tcp_endpoint_factory
        self._pools: dict[OriginKey, OriginPool] = {}
        self._protocols: set[H2ClientProtocol] = set()
        self._http1_pool = http1_pool or HTTPConnectionPool(reactor, persistent=True)
        self._http1_agent = Agent.usingEndpointFactory(
            reactor, _HTTP1EndpointFactory(self._endpoint), pool=self._http1_pool
        )

    # -- IAgent -------------------------------------------------------------
    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        """
        Issue a request; see ``IAgent.request``. The query string is kept.
        Cancelling the returned Deferred before the response arrives resets
        the stream (``RST_STREAM CANCEL``) or removes the request from the
        queue.
        """
        try:
            parsed = URI.fromBytes(uri)
        except Exception:
            return fail(Failure())
        if parsed.scheme not in (b"http", b"https"):
            return fail(Failure(SchemeNotSupported(f"Unsupported scheme: {parsed.scheme!r}")))
        if headers is None:
            headers = Headers()
        key = (parsed.scheme, parsed.host, parsed.port)
        if parsed.scheme == b"http" and not self.cleartext_h2:
            return self._http1_agent.request(method, uri, headers, bodyProducer)
        pool = self._pools.get(key)
        if pool is not None and pool.http1:
            return self._http1_agent.request(method, uri, headers, bodyProducer)
        if bodyProducer is None:
            request = PendingRequest(method, parsed, uri, headers, None)
            self._pool(key).submit(request)
            return request.deferred
        if isinstance(bodyProducer, BytesProducer):
            request = PendingRequest(method, parsed, uri, headers, bodyProducer.body)
            self._pool(key).submit(request)
            return request.deferred

        request = PendingRequest(method, parsed, uri, headers, b"")
        collecting = _collect_body(bodyProducer)
        request.inner = collecting

        def collected(body: bytes) -> None:
            if request.inner is not collecting:
                return
            request.inner = None
            request.body = body
            self._pool(key).submit(request)

        def failed(reason: Failure) -> None:
            if request.inner is collecting:
                request.fail(Failure(RequestGenerationFailed([reason])))

        collecting.addCallbacks(collected, failed)
        return request.deferred

    # -- public helpers -------------------------------------------------------
    def close(self, drain_timeout: float = 0.0) -> Deferred[None]:
        """
        Close every session and HTTP/1.1 connection. Queued requests fail
        with ``RequestNotSent``. With ``drain_timeout`` > 0, requests in flight
        may finish for up to that many seconds; otherwise they fail now. The
        Deferred fires when every connection is closed. The agent may be used
        again afterwards (it opens new sessions).
        """
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close(drain_timeout)
        waits: list[Deferred[Any]] = [p.closed for p in list(self._protocols)]
        for proto in list(self._protocols):
            if drain_timeout > 0:
                proto.drain(drain_timeout)
            else:
                proto.close_session()
        waits.append(self._http1_pool.closeCachedConnections())
        d: Deferred[Any] = DeferredList(waits, consumeErrors=True)
        return d.addCallback(lambda _: None)

    def stats(self) -> dict[str, dict[str, Any]]:
        """
        A snapshot per origin (``"https://host:port"``): ``active``,
        ``retiring``, ``connecting``, ``queued``, ``open_streams``, ``http1``,
        ``buffered`` (response body bytes received but not yet delivered to a
        body protocol, e.g. while it is paused).
        """
        out = {}
        for (scheme, host, port), pool in self._pools.items():
            out[f"{scheme.decode()}://{host.decode()}:{port}"] = pool.stats()
        return out

    # -- internals ----------------------------------------------------------
    def _pool(self, key: OriginKey) -> OriginPool:
        pool = self._pools.get(key)
        if pool is None:
            scheme, host, port = key
            pool = self._pools[key] = OriginPool(
                self.reactor,
                key,
                endpoint=lambda: self._endpoint(scheme, host, port, True),
                send_http1=self._send_http1,
                new_session=self._new_session,
                registry=self._protocols,
                max_sessions=self.max_sessions_per_origin,
                connect_timeout=self.connect_timeout,
            )
        return pool

    def _new_session(self) -> ClientSession:
        return ClientSession(
            initial_window_size=self.initial_window_size,
            connection_window=self.connection_window,
            max_streams=self.max_streams_per_session,
            max_requests=self.max_requests_per_session,
            idle_timeout=self.idle_timeout,
        )

    def _endpoint(self, scheme: bytes, host: bytes, port: int, for_h2: bool) -> Any:
        host_str = host.decode("idna") if not host.isascii() else host.decode("ascii")
        if self._tcp_endpoint_factory is not None:
            endpoint = self._tcp_endpoint_factory(host_str, port)
        else:
            endpoint = tcp_endpoint(self.reactor, host_str, port, self.connect_timeout)
        if scheme == b"https":
            policy = self._h2_tls_policy if for_h2 else self.tls_policy
            creator = policy.creatorForNetloc(host, port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint

    def _send_http1(self, request: PendingRequest) -> None:
        if request.done:
            return
        body = request.body
        producer = BytesProducer(body) if body is not None else None
        d = self._http1_agent.request(request.method, request.absolute, request.headers, producer)
        request.inner = d

        def done(result: Any) -> None:
            if request.inner is d:
                request.inner = None
            if isinstance(result, Failure):
                request.fail(result)
            else:
                request.succeed(result)

        d.addBoth(done)
