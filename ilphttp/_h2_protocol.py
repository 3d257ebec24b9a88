"""
The Twisted edge of one HTTP/2 client session: :class:`H2ClientProtocol`
moves bytes between the transport and a sans-IO
:class:`~ilphttp.http2_session.ClientSession`, arms the timers the session
asks for, and turns the session's events into ``IResponse`` objects and
Deferred results. Internal to :mod:`ilphttp.http2`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import implementer

from ilphttp._h2_response import H2Response, PendingRequest, RequestInfo
from ilphttp.http2_events import (
    CapacityChanged,
    CloseConnection,
    ConnectionFailed,
    DataReceived,
    Event,
    H2ProtocolError,
    ResponseComplete,
    ResponseReceived,
    SessionReady,
    SessionRetired,
    StreamFailed,
    Timer,
    request_headers,
)
from ilphttp.http2_session import ClientSession

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from ilphttp._h2_pool import OriginPool

_log = Logger()


class H2NotNegotiated(Exception):
    """TLS ALPN did not select h2 (triggers the HTTP/1.1 fallback)."""

    def __init__(self, protocol: bytes | None) -> None:
        self.protocol = protocol
        super().__init__(f"ALPN negotiated {protocol!r}, not h2")


class StreamHandle:
    """The protocol's side of one stream: its request and, later, its response."""

    def __init__(self, protocol: H2ClientProtocol, stream_id: int, request: PendingRequest):
        self.protocol = protocol
        self.stream_id = stream_id
        self.request = request
        self.response: H2Response | None = None

    def acknowledge(self, flow_controlled_length: int) -> None:
        self.protocol.acknowledge(self.stream_id, flow_controlled_length)

    def cancel(self) -> None:
        """Reset the stream (RST_STREAM CANCEL)."""
        self.protocol.cancel_stream(self.stream_id)
        if self.request.stream is self:
            self.request.stream = None

    def call_soon(self, f: Callable[[], None]) -> None:
        self.protocol.clock.callLater(0, f)

    def response_received(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        headers = Headers()
        for name, value in fields:
            headers.addRawHeader(name, value)
        request = self.request
        length: int | str = UNKNOWN_LENGTH
        if request.method == b"HEAD" or status in (204, 304):
            length = 0
        else:
            cl = headers.getRawHeaders(b"content-length")
            if cl:
                try:
                    length = int(cl[0])
                except ValueError:
                    length = UNKNOWN_LENGTH
        info = RequestInfo(request.method, request.absolute, request.headers)
        self.response = H2Response(self, status, headers, info, length)
        request.stream = None
        request.succeed(self.response)

    def fail(self, reason: Failure) -> None:
        if self.response is None:
            self.request.fail(Failure(ResponseNeverReceived([reason])))
        else:
            self.response.finish(Failure(ResponseFailed([reason])))


@implementer(IHandshakeListener)
class H2ClientProtocol(Protocol):
    """
    One HTTP/2 client session (connection).

    :param pool: the origin's pool, told about capacity, retirement, retries
        and loss.
    :param session: the sans-IO session core.
    :param tls: whether to wait for the TLS handshake (and ALPN ``h2``).
    :param clock: for the session's timers.
    :param registry: a set this protocol is in while connected.
    """

    def __init__(
        self,
        pool: OriginPool,
        session: ClientSession,
        tls: bool,
        clock: IReactorTime,
        registry: set[H2ClientProtocol],
    ) -> None:
        self.pool: OriginPool | None = pool
        self.session = session
        self.clock = clock
        self._tls = tls
        self._registry = registry
        self._handles: dict[int, StreamHandle] = {}
        self.ready: Deferred[H2ClientProtocol] = Deferred(self._cancel_ready)
        self.closed: Deferred[None] = Deferred()
        self._lost = False
        self._processing = False
        self._pushed: list[Event] = []
        self._timer: Timer | None = None
        self._timer_call: IDelayedCall | None = None

    # -- state for the pool ----------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self.session.accepting and not self._lost

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def open_streams(self) -> int:
        return self.session.open_streams

    @property
    def buffered(self) -> int:
        """Body bytes received on open streams but not yet delivered."""
        return sum(h.response.buffered for h in self._handles.values() if h.response is not None)

    def capacity(self) -> int:
        return 0 if self._lost else self.session.capacity

    # -- connection setup ------------------------------------------------------
    def _cancel_ready(self, d: Deferred[H2ClientProtocol]) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        self._registry.add(self)
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
            if not self.ready.called:
                self.ready.errback(Failure(H2NotNegotiated(negotiated)))
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _start_h2(self) -> None:
        self.session.initiate()
        self._process()

    # -- IProtocol -------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if self._lost:
            return
        self._process(self.session.receive_data(data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self.session.connection_lost()
        self._arm_timer()
        if not self.ready.called:
            self.ready.errback(Failure(ResponseNeverReceived([reason])))
        handles = list(self._handles.values())
        self._handles.clear()
        for handle in handles:
            handle.fail(reason)
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.session_lost(self)
        self._registry.discard(self)
        self.closed.callback(None)

    # -- requests ----------------------------------------------------------------
    def submit(self, request: PendingRequest) -> bool:
        """Open a stream for ``request``. Returns ``False`` if it could not."""
        if self._lost:
            return False
        uri = request.uri
        headers = request_headers(
            request.method,
            uri.scheme,
            uri.host,
            uri.port,
            uri.originForm,
            request.headers.getAllRawHeaders(),
            None if request.body is None else len(request.body),
        )
        try:
            stream_id = self.session.start_request(headers, request.body)
        except H2ProtocolError as e:
            request.fail(Failure(RequestTransmissionFailed([Failure(e)])))
            self._process()
            return True
        if stream_id is None:
            self._process()
            return False
        handle = StreamHandle(self, stream_id, request)
        self._handles[stream_id] = handle
        request.stream = handle
        request.attempts += 1
        self._process()
        return True

    def acknowledge(self, stream_id: int, flow_controlled_length: int) -> None:
        if self._lost or not flow_controlled_length:
            return
        self.session.acknowledge(stream_id, flow_controlled_length)
        self._process()

    def cancel_stream(self, stream_id: int) -> None:
        if self._handles.pop(stream_id, None) is None or self._lost:
            return
        self.session.cancel(stream_id)
        self._process()

    # -- lifecycle ---------------------------------------------------------------
    def close_session(self) -> None:
        """Send GOAWAY (if HTTP/2 started) and close the connection."""
        self.session.close()
        self._process()

    def drain(self, timeout: float) -> None:
        """Take no new stream; close when idle, or abort after ``timeout`` seconds."""
        self.session.drain(timeout)
        self._process()

    # -- events --------------------------------------------------------------------
    def _process(self, events: list[Event] | None = None) -> None:
        """Handle ``events`` and the session's queued ones, write its bytes, arm its timer."""
        if self._processing:
            # The loop below picks up what a nested call queued.
            self._pushed.extend(events or ())
            return
        self._processing = True
        try:
            events = events or []
            while not self._lost:
                events = self._pushed + events + self.session.next_events()
                self._pushed = []
                if not events:
                    break
                retries: list[tuple[PendingRequest, Failure]] = []
                for event in events:
                    if self._lost:
                        break
                    self._handle(event, retries)
                if retries and self.pool is not None:
                    self.pool.retry(retries)
                events = []
            self._flush()
            self._arm_timer()
        finally:
            self._processing = False

    def _handle(self, event: Event, retries: list[tuple[PendingRequest, Failure]]) -> None:
        if isinstance(event, ResponseReceived):
            handle = self._handles.get(event.stream_id)
            if handle is not None:
                handle.response_received(event.status, event.headers)
        elif isinstance(event, DataReceived):
            handle = self._handles.get(event.stream_id)
            if handle is not None and handle.response is not None:
                handle.response.data_received(event.data, event.flow_controlled_length)
            else:
                self.session.acknowledge(event.stream_id, event.flow_controlled_length)
        elif isinstance(event, ResponseComplete):
            handle = self._handles.pop(event.stream_id, None)
            if handle is not None and handle.response is not None:
                handle.response.finish(Failure(ResponseDone("Response body fully received")))
        elif isinstance(event, StreamFailed):
            handle = self._handles.pop(event.stream_id, None)
            if handle is None:
                return
            reason = Failure(event.error)
            if event.retry and handle.response is None and self.pool is not None:
                handle.request.stream = None
                retries.append((handle.request, reason))
            else:
                handle.fail(reason)
        elif isinstance(event, (CapacityChanged, SessionReady)):
            if isinstance(event, SessionReady) and not self.ready.called:
                self.ready.callback(self)
            elif self.pool is not None:
                self.pool.dispatch()
        elif isinstance(event, SessionRetired):
            if event.reason is not None:
                _log.debug("GOAWAY from peer: {exc}", exc=event.reason)
                if not self.ready.called:
                    self.ready.errback(Failure(ResponseNeverReceived([Failure(event.reason)])))
            if self.pool is not None:
                self.pool.retired(self)
        elif isinstance(event, ConnectionFailed):
            if not self.ready.called:
                self.ready.errback(Failure(ResponseNeverReceived([Failure(event.error)])))
        elif isinstance(event, CloseConnection):
            self._flush()
            if self.transport is not None and not self._lost:
                if event.abort:
                    self.transport.abortConnection()  # type: ignore[attr-defined]
                else:
                    self.transport.loseConnection()

    def _flush(self) -> None:
        if self._lost or self.transport is None:
            return
        data = self.session.data_to_send()
        if data:
            self.transport.write(data)

    def _arm_timer(self) -> None:
        wanted = None if self._lost else self.session.timer
        if wanted is self._timer:
            return
        if self._timer_call is not None and self._timer_call.active():
            self._timer_call.cancel()
        self._timer_call = None
        self._timer = wanted
        if wanted is not None:
            self._timer_call = self.clock.callLater(wanted.seconds, self._timer_fired, wanted)

    def _timer_fired(self, timer: Timer) -> None:
        self._timer_call = None
        self.session.timer_expired(timer)
        self._process()
