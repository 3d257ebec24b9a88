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

Failures use Twisted's usual exceptions: connection-level errors
(``ConnectError`` and subclasses, ``TimeoutError``) as they are;
:class:`~twisted.web.client.ResponseNeverReceived` when the connection or
stream failed before a response; :class:`~twisted.web.client.ResponseFailed`
when it failed while the body was arriving. The reasons inside them can be
:class:`H2StreamReset`, :class:`H2ConnectionTerminated` or
:class:`H2ProtocolError`.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from twisted.internet import error as ierror
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    succeed,
)
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IConsumer,
    IHandshakeListener,
    IProtocol,
    IPushProducer,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    RequestGenerationFailed,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http import RESPONSES
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    UNKNOWN_LENGTH,
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IClientRequest,
    IPolicyForHTTPS,
    IResponse,
)
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

__all__ = [
    "BytesProducer",
    "ErrorCodes",
    "H2ConnectionTerminated",
    "H2ProtocolError",
    "H2StreamReset",
    "HTTP2Agent",
]

_log = Logger()

#: Error codes (RFC 9113 section 7), re-exported for convenience.
ErrorCodes = h2.errors.ErrorCodes

_CONNECTION_SPECIFIC_HEADERS = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"]
)
_H2_PREFACE_RESPONSE_HTTP1 = b"HTTP/1."
_DEFAULT_CONNECTION_WINDOW = 1 << 24
_MAX_ATTEMPTS = 5

OriginKey = tuple[bytes, bytes, int]


class H2StreamReset(Exception):
    """
    The peer (or this agent) reset an HTTP/2 stream.

    :ivar error_code: the RST_STREAM error code (an ``h2.errors.ErrorCodes``
        member when known, else an int).
    :ivar remote: ``True`` if the peer sent the reset.
    """

    def __init__(self, error_code: int, remote: bool = True) -> None:
        self.error_code = error_code
        self.remote = remote
        super().__init__(f"HTTP/2 stream reset by {'peer' if remote else 'us'}: {error_code!r}")


class H2ConnectionTerminated(Exception):
    """
    The peer sent GOAWAY and this request could not be completed.

    :ivar error_code: the GOAWAY error code.
    :ivar last_stream_id: the highest stream id the peer processed.
    :ivar additional_data: opaque debug data from the peer, or ``None``.
    """

    def __init__(
        self, error_code: int, last_stream_id: int, additional_data: bytes | None = None
    ) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data
        super().__init__(
            f"HTTP/2 GOAWAY from peer: error={error_code!r} last_stream_id={last_stream_id}"
            + (f" data={additional_data!r}" if additional_data else "")
        )


class H2ProtocolError(Exception):
    """
    The HTTP/2 connection failed: the peer violated the protocol, or does not
    speak HTTP/2 at all (e.g. an HTTP/1.1-only server reached with h2c prior
    knowledge).
    """


class _H2NotNegotiated(Exception):
    """TLS ALPN did not select h2 (internal; triggers HTTP/1.1 fallback)."""

    def __init__(self, protocol: bytes | None) -> None:
        self.protocol = protocol
        super().__init__(f"ALPN negotiated {protocol!r}, not h2")


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
    if isinstance(producer, BytesProducer):
        return succeed(producer.body)
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


@implementer(IClientRequest)
class _RequestInfo:
    def __init__(self, method: bytes, absoluteURI: bytes, headers: Headers) -> None:
        self.method = method
        self.absoluteURI = absoluteURI
        self.headers = headers


class _PendingRequest:
    """One call to ``HTTP2Agent.request``, through queueing, sending and retries."""

    def __init__(
        self, method: bytes, uri: URI, absolute: bytes, headers: Headers, body: bytes | None
    ) -> None:
        self.method = method
        self.uri = uri
        self.absolute = absolute
        self.headers = headers
        self.body = body
        self.attempts = 0
        self.pool: _OriginPool | None = None
        self.stream: _Stream | None = None
        self.inner: Deferred[Any] | None = None
        self.deferred: Deferred[IResponse] = Deferred(self._cancel)

    def _cancel(self, d: Deferred[IResponse]) -> None:
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.cancel()
        elif self.stream is not None:
            self.stream.reset(ErrorCodes.CANCEL)
        elif self.pool is not None:
            self.pool.forget(self)

    @property
    def done(self) -> bool:
        return self.deferred.called

    def succeed(self, response: IResponse) -> None:
        self.stream = None
        if not self.deferred.called:
            self.deferred.callback(response)

    def fail(self, reason: Failure) -> None:
        self.stream = None
        self.inner = None
        if not self.deferred.called:
            self.deferred.errback(reason)


@implementer(IPushProducer)
class _BodyTransport:
    """
    The transport a response body protocol sees. ``pauseProducing`` stops
    acknowledging received data (back-pressure on the peer).
    ``stopProducing`` and ``loseConnection`` reset the stream (CANCEL); the
    protocol's ``connectionLost`` follows in a later reactor turn, with
    ``ResponseFailed``. ``abortConnection`` (what ``readBody``'s cancellation
    calls) resets the stream and calls ``connectionLost`` at once with
    ``CancelledError``.
    """

    def __init__(self, response: _H2Response) -> None:
        self._response = response

    def pauseProducing(self) -> None:
        self._response._pause()

    def resumeProducing(self) -> None:
        self._response._resume()

    def stopProducing(self) -> None:
        self._response._abort(immediately=False)

    def loseConnection(self) -> None:
        self._response._abort(immediately=False)

    def abortConnection(self) -> None:
        self._response._abort(immediately=True)


@implementer(IResponse)
class _H2Response:
    """An ``IResponse`` for one HTTP/2 stream."""

    version = (b"HTTP", 2, 0)

    def __init__(
        self,
        stream: _Stream,
        code: int,
        headers: Headers,
        request: IClientRequest,
        length: int | str,
    ) -> None:
        self._stream: _Stream | None = stream
        self.code = code
        self.phrase = RESPONSES.get(code, b"")
        self.headers = headers
        self.length = length
        self.request = request
        self.previousResponse: IResponse | None = None
        self._protocol: IProtocol | None = None
        self._buffer: collections.deque[tuple[bytes, int]] = collections.deque()
        self._reason: Failure | None = None
        self._delivered_end = False
        self._paused = False
        self._pumping = False

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response

    def deliverBody(self, protocol: IProtocol) -> None:
        if self._protocol is not None:
            raise RuntimeError("deliverBody called twice on the same response")
        self._protocol = protocol
        protocol.makeConnection(_BodyTransport(self))  # type: ignore[arg-type]
        self._pump()

    # Called by the stream.
    def _data(self, data: bytes, flow_controlled_length: int) -> None:
        self._buffer.append((data, flow_controlled_length))
        self._pump()

    def _end(self, reason: Failure) -> None:
        if self._reason is None:
            self._reason = reason
        self._pump()

    # Called by the body transport.
    def _pause(self) -> None:
        self._paused = True

    def _resume(self) -> None:
        self._paused = False
        self._pump()

    def _abort(self, immediately: bool) -> None:
        stream = self._stream
        if not self._delivered_end:
            if immediately:
                self._reason = Failure(CancelledError())
            else:
                self._reason = Failure(
                    ResponseFailed([Failure(H2StreamReset(ErrorCodes.CANCEL, remote=False))])
                )
        if stream is not None:
            stream.reset(ErrorCodes.CANCEL)
        self._discard_buffer()
        self._paused = False
        if immediately or stream is None:
            self._pump()
        else:
            # Like a transport's loseConnection: connectionLost comes later.
            stream.session.agent.reactor.callLater(0, self._pump)

    def _discard_buffer(self) -> None:
        unacked = sum(fcl for _, fcl in self._buffer)
        self._buffer.clear()
        if unacked and self._stream is not None:
            self._stream.acknowledge(unacked)

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._protocol is not None and not self._paused and not self._delivered_end:
                if self._buffer:
                    data, fcl = self._buffer.popleft()
                    if self._stream is not None and fcl:
                        self._stream.acknowledge(fcl)
                    if data:
                        self._protocol.dataReceived(data)
                elif self._reason is not None:
                    self._delivered_end = True
                    self._stream = None
                    self._protocol.connectionLost(self._reason)
                else:
                    break
        finally:
            self._pumping = False


def _error_code(code: Any) -> int:
    try:
        return ErrorCodes(code)  # type: ignore[no-any-return,unused-ignore]
    except ValueError:
        return int(code)


class _Stream:
    """The state of one request on one session."""

    def __init__(self, session: _H2ClientProtocol, stream_id: int, request: _PendingRequest):
        self.session = session
        self.stream_id = stream_id
        self.request = request
        self.pending = memoryview(request.body or b"")
        self.local_closed = not request.body
        self.remote_closed = False
        self.response: _H2Response | None = None
        self.finished = False

    def acknowledge(self, flow_controlled_length: int) -> None:
        self.session._acknowledge(self.stream_id, flow_controlled_length)

    def reset(self, code: int) -> None:
        """Reset this stream locally (cancellation)."""
        if self.finished:
            return
        self.session._reset_stream(self, code)
        if self.request.stream is self:
            self.request.stream = None

    # Events from the session.
    def on_response(self, headers: list[tuple[bytes, bytes]]) -> None:
        status = 0
        response_headers = Headers()
        for name, value in headers:
            if name.startswith(b":"):
                if name == b":status":
                    status = int(value)
                continue
            response_headers.addRawHeader(name, value)
        length: int | str = UNKNOWN_LENGTH
        if self.request.method == b"HEAD" or status in (204, 304):
            length = 0
        else:
            cl = response_headers.getRawHeaders(b"content-length")
            if cl:
                try:
                    length = int(cl[0])
                except ValueError:
                    length = UNKNOWN_LENGTH
        info = _RequestInfo(self.request.method, self.request.absolute, self.request.headers)
        self.response = _H2Response(self, status, response_headers, info, length)
        request = self.request
        request.stream = None
        request.succeed(self.response)

    def on_data(self, data: bytes, flow_controlled_length: int) -> None:
        if self.response is None:  # h2 does not allow this; be safe
            self.acknowledge(flow_controlled_length)
            return
        self.response._data(data, flow_controlled_length)

    def on_end(self) -> None:
        self.remote_closed = True
        if self.response is not None:
            self.response._end(Failure(ResponseDone("Response body fully received")))
        else:
            self._fail(Failure(H2ProtocolError("stream ended without a response")))

    def on_reset(self, code: int) -> None:
        self.remote_closed = True
        self.local_closed = True
        reason = Failure(H2StreamReset(code, remote=True))
        if self.response is None:
            if code == ErrorCodes.REFUSED_STREAM and self.session.pool is not None:
                # RFC 9113 8.7: not processed; safe to retry.
                self.session.pool.retry([self.request], reason)
            else:
                self.request.fail(Failure(ResponseNeverReceived([reason])))
        elif code == ErrorCodes.NO_ERROR and self.response._reason is not None:
            pass  # complete response, then "stop sending": fine
        else:
            self.response._end(Failure(ResponseFailed([reason])))

    def on_connection_lost(self, reason: Failure) -> None:
        self.finished = True
        self._fail(reason)

    def _fail(self, reason: Failure) -> None:
        if self.response is None:
            self.request.fail(Failure(ResponseNeverReceived([reason])))
        else:
            self.response._end(Failure(ResponseFailed([reason])))


@implementer(IHandshakeListener)
class _H2ClientProtocol(Protocol):
    """One HTTP/2 client session (connection)."""

    def __init__(self, pool: _OriginPool, tls: bool) -> None:
        self.pool: _OriginPool | None = pool
        self.agent = pool.agent
        self._tls = tls
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # Twisted's Headers already refuse CR/LF; we lowercase names and
            # drop connection-specific fields ourselves. Saves ~10% CPU.
            validate_outbound_headers=False,
            normalize_outbound_headers=True,
            validate_inbound_headers=True,
        )
        self.conn = h2.connection.H2Connection(config=config)
        tolerant = _goaway_tolerant_state_machine()
        self._goaway_tolerant = tolerant is not None
        if tolerant is not None:
            self.conn.state_machine = tolerant
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.agent.initial_window_size,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        self.streams: dict[int, _Stream] = {}
        self.ready: Deferred[_H2ClientProtocol] = Deferred(self._cancel_ready)
        self.closed: Deferred[None] = Deferred()
        self.accepting = True
        self.requests_started = 0
        self.goaway: H2ConnectionTerminated | None = None
        self._h2_started = False
        self._is_ready = False
        self._lost = False
        self._closing = False
        self._first_bytes = True
        self._idle_call: IDelayedCall | None = None
        self._drain_call: IDelayedCall | None = None
        self._at_h2_limit = False

    # -- connection setup -------------------------------------------------
    def _cancel_ready(self, d: Deferred[_H2ClientProtocol]) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        self.agent._track(self)
        if ITCPTransport.providedBy(self.transport):
            try:
                self.transport.setTcpNoDelay(True)
            except Exception:  # pragma: no cover - not a socket
                pass
        if not self._tls:
            self._start_h2()

    def handshakeCompleted(self) -> None:
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated == b"h2":
            self._start_h2()
        else:
            self._fail_ready(Failure(_H2NotNegotiated(negotiated)))
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _start_h2(self) -> None:
        self._h2_started = True
        self.conn.initiate_connection()
        extra = self.agent.connection_window - 65535
        if extra > 0:
            self.conn.increment_flow_control_window(extra)
        self._flush()

    def _fail_ready(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(reason)

    # -- IProtocol --------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self._lost:
            return
        if self._first_bytes:
            self._first_bytes = False
            if data.startswith(_H2_PREFACE_RESPONSE_HTTP1):
                self._protocol_failure(
                    H2ProtocolError("the peer answered in HTTP/1.x: it does not speak HTTP/2")
                )
                return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._protocol_failure(H2ProtocolError(f"HTTP/2 protocol error: {e!r}"))
            return
        for event in events:
            if self._lost:
                break
            self._handle_event(event)
        self._flush()

    def _handle_event(self, event: Any) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_response(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_data(event.data, event.flow_controlled_length)
            else:
                self._acknowledge(event.stream_id, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                # Update our bookkeeping before user code runs.
                stream.remote_closed = True
                self._maybe_finish(stream)
                stream.on_end()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.remote_closed = stream.local_closed = True
                self._maybe_finish(stream)
                stream.on_reset(_error_code(event.error_code))
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                self._send_all_pending()
            else:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    self._send_pending(stream)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._send_all_pending()
            if not self._is_ready:
                self._is_ready = True
                if not self.ready.called:
                    self.ready.callback(self)
            elif self.pool is not None:
                self.pool.dispatch()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)
        # Other events (pings, settings acks, informational responses, trailers,
        # priority, unknown frames) need nothing from us: h2 answers pings and
        # acknowledges settings itself.

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self.accepting = False
        self._cancel_idle()
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        if not self.ready.called:
            self.ready.errback(Failure(ResponseNeverReceived([reason])))
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.on_connection_lost(reason)
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.session_lost(self)
        self.agent._untrack(self)
        self.closed.callback(None)

    # -- sending ----------------------------------------------------------
    def _flush(self) -> None:
        if self._lost or self.transport is None:
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def capacity(self) -> int:
        if not self.accepting or not self._is_ready or self._lost:
            return 0
        limit = min(
            self.conn.remote_settings.max_concurrent_streams, self.agent.max_streams_per_session
        )
        if self._at_h2_limit:
            return 0
        # Our own count: h2's open_outbound_streams walks all streams.
        free = limit - len(self.streams)
        if self.agent.max_requests_per_session is not None:
            free = min(free, self.agent.max_requests_per_session - self.requests_started)
        return max(free, 0)

    def submit(self, request: _PendingRequest) -> bool:
        """Open a stream for ``request``. Returns ``False`` if it could not."""
        try:
            stream_id = self.conn.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self._retire()
            return False
        uri = request.uri
        authority = uri.host if b":" not in uri.host else b"[" + uri.host + b"]"
        default_port = 443 if uri.scheme == b"https" else 80
        if uri.port != default_port:
            authority += b":" + str(uri.port).encode("ascii")
        headers: list[tuple[bytes, bytes]] = []
        for name, values in request.headers.getAllRawHeaders():
            lname = name.lower()
            if lname == b"host":
                if values:
                    authority = values[0]
                continue
            if lname in _CONNECTION_SPECIFIC_HEADERS:
                continue
            if lname == b"te":
                values = [v for v in values if v.strip().lower() == b"trailers"]
            if lname == b"content-length" and request.body is not None:
                continue
            for value in values:
                headers.append((lname, value))
        pseudo = [
            (b":method", request.method),
            (b":scheme", uri.scheme),
            (b":authority", authority),
            (b":path", uri.originForm),
        ]
        if request.body is not None:
            headers.append((b"content-length", str(len(request.body)).encode("ascii")))
        stream = _Stream(self, stream_id, request)
        try:
            self.conn.send_headers(stream_id, pseudo + headers, end_stream=stream.local_closed)
        except h2.exceptions.TooManyStreamsError:
            # h2 counts a stream we consider finished: wait for one to end.
            self._at_h2_limit = True
            return False
        except h2.exceptions.ProtocolError as e:
            request.fail(
                Failure(RequestTransmissionFailed([Failure(H2ProtocolError(f"bad request: {e}"))]))
            )
            self._flush()
            return True
        self._cancel_idle()
        self.streams[stream_id] = stream
        request.stream = stream
        request.attempts += 1
        self.requests_started += 1
        if (
            self.agent.max_requests_per_session is not None
            and self.requests_started >= self.agent.max_requests_per_session
        ):
            self._retire()
        self._send_pending(stream)
        self._flush()
        return True

    def _send_pending(self, stream: _Stream) -> None:
        if stream.local_closed or stream.finished:
            return
        conn = self.conn
        sid = stream.stream_id
        try:
            while len(stream.pending):
                window = conn.local_flow_control_window(sid)
                if window <= 0:
                    break
                size = min(window, conn.max_outbound_frame_size, len(stream.pending))
                chunk = stream.pending[:size]
                stream.pending = stream.pending[size:]
                last = not len(stream.pending)
                conn.send_data(sid, chunk.tobytes(), end_stream=last)
                if last:
                    stream.local_closed = True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            stream.local_closed = True
        self._maybe_finish(stream)

    def _send_all_pending(self) -> None:
        for stream in list(self.streams.values()):
            if len(stream.pending):
                self._send_pending(stream)

    def _acknowledge(self, stream_id: int, flow_controlled_length: int) -> None:
        if self._lost or not flow_controlled_length:
            return
        try:
            self.conn.acknowledge_received_data(flow_controlled_length, stream_id)
        except h2.exceptions.ProtocolError:  # pragma: no cover - connection closed
            return
        self._flush()

    def _reset_stream(self, stream: _Stream, code: int) -> None:
        if stream.stream_id in self.streams and not self._lost:
            try:
                self.conn.reset_stream(stream.stream_id, error_code=code)
            except h2.exceptions.ProtocolError:
                pass
            stream.local_closed = stream.remote_closed = True
            self._maybe_finish(stream)
            self._flush()

    def _maybe_finish(self, stream: _Stream) -> None:
        if stream.finished or not (stream.local_closed and stream.remote_closed):
            return
        stream.finished = True
        self._at_h2_limit = False
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        self._stream_finished()

    def _stream_finished(self) -> None:
        if self.streams:
            if self.pool is not None:
                self.pool.dispatch()
            return
        if not self.accepting:
            self.close_session()
            return
        self._schedule_idle()
        if self.pool is not None:
            self.pool.dispatch()

    # -- lifecycle ----------------------------------------------------------
    def _retire(self) -> None:
        if self.accepting:
            self.accepting = False
            if self.pool is not None:
                self.pool.retired(self)
        if not self.streams:
            self.close_session()

    def _schedule_idle(self) -> None:
        self._cancel_idle()
        timeout = self.agent.idle_timeout
        if timeout is not None and not self._lost:
            self._idle_call = self.agent.reactor.callLater(timeout, self._idle_timed_out)

    def _cancel_idle(self) -> None:
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None

    def _idle_timed_out(self) -> None:
        self._idle_call = None
        if not self.streams:
            self._retire()

    def close_session(self, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """Send GOAWAY (if HTTP/2 started) and close the connection."""
        self.accepting = False
        self._cancel_idle()
        if self._lost or self._closing or self.transport is None:
            return
        self._closing = True
        if self._h2_started:
            try:
                self.conn.close_connection(error_code=error_code)
            except h2.exceptions.ProtocolError:
                pass
            self._flush()
        self.transport.loseConnection()

    def drain(self, timeout: float) -> None:
        """Take no new stream; close when idle, or abort after ``timeout``."""
        self.accepting = False
        if not self.streams:
            self.close_session()
        elif self._drain_call is None and not self._lost:
            self._drain_call = self.agent.reactor.callLater(timeout, self.abort)

    def abort(self) -> None:
        if not self._lost and self.transport is not None:
            self.accepting = False
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _protocol_failure(self, exc: Exception) -> None:
        self._flush()  # h2 may have queued a GOAWAY
        self.accepting = False
        reason = Failure(exc)
        if not self.ready.called:
            self.ready.errback(Failure(ResponseNeverReceived([reason])))
        for stream in list(self.streams.values()):
            stream.on_connection_lost(reason)
        self.streams.clear()
        self.abort()

    def _on_goaway(self, event: Any) -> None:
        code = _error_code(event.error_code)
        last = event.last_stream_id
        exc = H2ConnectionTerminated(code, last, event.additional_data)
        self.goaway = exc
        _log.debug("GOAWAY from peer: {exc}", exc=exc)
        self.accepting = False
        if self.pool is not None:
            self.pool.retired(self)
        graceful = code == ErrorCodes.NO_ERROR and self._goaway_tolerant
        reason = Failure(exc)
        to_retry: list[_PendingRequest] = []
        for sid, stream in sorted(self.streams.items()):
            if sid > last:
                # Not processed by the peer: retry elsewhere.
                del self.streams[sid]
                stream.finished = True
                if graceful:
                    try:
                        self.conn.reset_stream(sid, error_code=ErrorCodes.CANCEL)
                    except h2.exceptions.ProtocolError:
                        pass
                if stream.response is None:
                    to_retry.append(stream.request)
                else:  # pragma: no cover - a peer answering a stream it disowns
                    stream._fail(reason)
            elif not graceful:
                del self.streams[sid]
                stream.finished = True
                stream._fail(reason)
        if not self.ready.called:
            self.ready.errback(Failure(ResponseNeverReceived([reason])))
        if to_retry:
            if self.pool is not None:
                self.pool.retry(to_retry, reason)
            else:  # pragma: no cover
                for request in to_retry:
                    request.fail(Failure(ResponseNeverReceived([reason])))
        if not self.streams:
            self.close_session()
        else:
            self._flush()


def _goaway_tolerant_state_machine() -> Any:
    """
    h2 moves its connection state machine to CLOSED as soon as it receives
    GOAWAY, and then refuses every later frame -- even in the same
    ``receive_data`` call -- including the rest of the responses the peer
    still owes on streams at or below ``last_stream_id`` (RFC 9113 6.8: those
    may complete). Servers send such graceful GOAWAYs when they close idle or
    old connections (node's ``session.close()``, nginx reloads...). This
    returns a state machine that stays open on GOAWAY, so that those streams
    can finish; the session takes no new stream after a GOAWAY (our own
    bookkeeping) and closes once they are done. ``None`` if h2's internals are
    not what we expect: GOAWAY then fails those streams, as h2 intends.
    """
    machine_class = getattr(h2.connection, "H2ConnectionStateMachine", None)
    inputs = getattr(h2.connection, "ConnectionInputs", None)
    states = getattr(h2.connection, "ConnectionState", None)
    if machine_class is None or inputs is None or states is None:
        return None
    recv_goaway = getattr(inputs, "RECV_GOAWAY", None)
    closed = getattr(states, "CLOSED", None)
    if recv_goaway is None or closed is None:
        return None

    class _GoawayTolerant(machine_class):  # type: ignore[misc,valid-type]
        def process_input(self, input_: Any) -> Any:
            if input_ is recv_goaway and self.state is not closed:
                return []
            return super().process_input(input_)

    return _GoawayTolerant()


class _SessionFactory(Factory):
    def __init__(self, pool: _OriginPool, tls: bool) -> None:
        self.pool = pool
        self.tls = tls

    def buildProtocol(self, addr: Any) -> _H2ClientProtocol:
        return _H2ClientProtocol(self.pool, self.tls)


class _OriginPool:
    """The HTTP/2 sessions and the queue of one origin."""

    def __init__(self, agent: HTTP2Agent, key: OriginKey) -> None:
        self.agent = agent
        self.key = key
        self.active: list[_H2ClientProtocol] = []
        self.retiring: set[_H2ClientProtocol] = set()
        self.queue: collections.deque[_PendingRequest] = collections.deque()
        self.connecting: Deferred[Any] | None = None
        self.http1 = False
        self.closed = False
        self._dispatching = False
        self._again = False

    def submit(self, request: _PendingRequest) -> None:
        request.pool = self
        if self.http1:
            self.agent._send_http1(request)
            return
        self.queue.append(request)
        self.dispatch()

    def retry(self, requests: list[_PendingRequest], reason: Failure) -> None:
        """Put requests the peer did not process back at the head of the queue."""
        for request in reversed(requests):
            request.stream = None
            if request.done:
                continue
            if request.attempts >= _MAX_ATTEMPTS or self.closed:
                request.fail(Failure(ResponseNeverReceived([reason])))
                continue
            self.queue.appendleft(request)
        self.dispatch()

    def forget(self, request: _PendingRequest) -> None:
        try:
            self.queue.remove(request)
        except ValueError:
            pass

    def dispatch(self) -> None:
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._dispatch_once()
        finally:
            self._dispatching = False

    def _dispatch_once(self) -> None:
        if self.closed:
            return
        if self.http1:
            while self.queue:
                self.agent._send_http1(self.queue.popleft())
            return
        while self.queue:
            if self.queue[0].done:
                self.queue.popleft()
                continue
            session = self._pick()
            if session is None:
                break
            request = self.queue.popleft()
            if not session.submit(request):
                self.queue.appendleft(request)
                break
        if (
            self.queue
            and self.connecting is None
            and len(self.active) < self.agent.max_sessions_per_origin
        ):
            self._connect()

    def _pick(self) -> _H2ClientProtocol | None:
        for session in self.active:
            if session.capacity() > 0:
                return session
        return None

    def _connect(self) -> None:
        scheme, host, port = self.key
        tls = scheme == b"https"
        endpoint = self.agent._endpoint(scheme, host, port, for_h2=True)
        factory = _SessionFactory(self, tls)
        timed_out: list[bool] = []
        d: Deferred[Any] = endpoint.connect(factory)

        def ready(proto: _H2ClientProtocol) -> Deferred[_H2ClientProtocol]:
            return proto.ready

        d.addCallback(ready)
        self.connecting = d

        def time_out() -> None:
            timed_out.append(True)
            d.cancel()

        timeout = self.agent.reactor.callLater(self.agent.connect_timeout, time_out)

        def connected(proto: _H2ClientProtocol) -> None:
            if timeout.active():
                timeout.cancel()
            self.connecting = None
            if self.closed:
                proto.close_session()
                return
            if proto.accepting:
                self.active.append(proto)
                proto._schedule_idle()
            self.dispatch()

        def failed(reason: Failure) -> None:
            if timeout.active():
                timeout.cancel()
            self.connecting = None
            if reason.check(_H2NotNegotiated):
                _log.info(
                    "{origin}: TLS ALPN chose {proto!r}; using HTTP/1.1",
                    origin=self.key,
                    proto=getattr(reason.value, "protocol", None),
                )
                self.http1 = True
                self.dispatch()
                return
            if timed_out and reason.check(CancelledError):
                reason = Failure(
                    ierror.TimeoutError(f"HTTP/2 session setup with {host!r}:{port} timed out")
                )
            if not self.active:
                queued, self.queue = self.queue, collections.deque()
                for request in queued:
                    request.fail(reason)

        d.addCallbacks(connected, failed)

    def retired(self, session: _H2ClientProtocol) -> None:
        if session in self.active:
            self.active.remove(session)
        if not session._lost:
            self.retiring.add(session)
        self.dispatch()

    def session_lost(self, session: _H2ClientProtocol) -> None:
        if session in self.active:
            self.active.remove(session)
        self.retiring.discard(session)
        self.dispatch()

    def close(self, drain_timeout: float) -> None:
        self.closed = True
        queued, self.queue = self.queue, collections.deque()
        for request in queued:
            request.fail(Failure(RequestNotSent()))
        if self.connecting is not None:
            self.connecting.cancel()
        sessions = list(self.active) + list(self.retiring)
        self.active = []
        for session in sessions:
            if drain_timeout > 0 and session.streams:
                self.retiring.add(session)
                session.drain(drain_timeout)
            else:
                session.close_session()

    def stats(self) -> dict[str, Any]:
        return {
            "http1": self.http1,
            "active": len(self.active),
            "retiring": len(self.retiring),
            "connecting": self.connecting is not None,
            "queued": len(self.queue),
            "open_streams": sum(len(s.streams) for s in self.active)
            + sum(len(s.streams) for s in self.retiring),
        }


@implementer(IAgentEndpointFactory)
class _HTTP1EndpointFactory:
    def __init__(self, agent: HTTP2Agent) -> None:
        self.agent = agent

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return self.agent._endpoint(uri.scheme, uri.host, uri.port, for_h2=False)


TCPEndpointFactory = Callable[[str, int], IStreamClientEndpoint]


@implementer(IAgent)
class HTTP2Agent:
    """
    An ``IAgent`` that speaks HTTP/2 (see the module docstring for the details).

    :param reactor: the reactor (``IReactorTCP`` and ``IReactorTime``).
    :param max_requests_per_session: retire a session after this many requests
        (``None``: unlimited). The JS plugin's ``http2MaxRequestsPerSession``.
    :param tls_policy: an ``IPolicyForHTTPS`` for ``https://`` peers. The
        default, ``ilphttp.tls.ClientTLSPolicy()``, trusts the system's CAs and
        checks the host name with service-identity. To negotiate HTTP/2 the
        policy must offer ALPN ``h2``: ``ilphttp.tls.ClientTLSPolicy`` does (via
        its ``with_alpn`` method); any other policy is used as given, and
        HTTP/2 is then used only if its connections offer ``h2``.
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
        used to make TCP connections (default: ``HostnameEndpoint``); TLS is
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
        connection_window: int = _DEFAULT_CONNECTION_WINDOW,
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
            from ilphttp.tls import ClientTLSPolicy

            tls_policy = ClientTLSPolicy()
        self.tls_policy = tls_policy
        with_alpn = getattr(tls_policy, "with_alpn", None)
        self._h2_tls_policy: IPolicyForHTTPS = (
            with_alpn([b"h2", b"http/1.1"]) if with_alpn is not None else tls_policy
        )
        self._tcp_endpoint_factory = tcp_endpoint_factory
        self._pools: dict[OriginKey, _OriginPool] = {}
        self._protocols: set[_H2ClientProtocol] = set()
        self._http1_pool = http1_pool or HTTPConnectionPool(reactor, persistent=True)
        self._http1_agent = Agent.usingEndpointFactory(
            reactor, _HTTP1EndpointFactory(self), pool=self._http1_pool
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
            request = _PendingRequest(method, parsed, uri, headers, None)
            self._pool(key).submit(request)
            return request.deferred
        if isinstance(bodyProducer, BytesProducer):
            request = _PendingRequest(method, parsed, uri, headers, bodyProducer.body)
            self._pool(key).submit(request)
            return request.deferred

        request = _PendingRequest(method, parsed, uri, headers, b"")
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
        ``retiring``, ``connecting``, ``queued``, ``open_streams``, ``http1``.
        """
        out = {}
        for (scheme, host, port), pool in self._pools.items():
            out[f"{scheme.decode()}://{host.decode()}:{port}"] = pool.stats()
        return out

    # -- internals ----------------------------------------------------------
    def _pool(self, key: OriginKey) -> _OriginPool:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _OriginPool(self, key)
        return pool

    def _track(self, proto: _H2ClientProtocol) -> None:
        self._protocols.add(proto)

    def _untrack(self, proto: _H2ClientProtocol) -> None:
        self._protocols.discard(proto)

    def _endpoint(self, scheme: bytes, host: bytes, port: int, for_h2: bool) -> Any:
        host_str = host.decode("idna") if not host.isascii() else host.decode("ascii")
        if self._tcp_endpoint_factory is not None:
            endpoint = self._tcp_endpoint_factory(host_str, port)
        else:
            endpoint = HostnameEndpoint(self.reactor, host_str, port, timeout=self.connect_timeout)
        if scheme == b"https":
            policy = self._h2_tls_policy if for_h2 else self.tls_policy
            creator = policy.creatorForNetloc(host, port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint

    def _send_http1(self, request: _PendingRequest) -> None:
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
