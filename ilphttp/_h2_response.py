"""
The objects a request and its response are seen through while they travel
an HTTP/2 stream: :class:`PendingRequest` (one ``HTTP2Agent.request`` call,
through queueing, sending and retries) and :class:`H2Response` (the
``IResponse``, whose body is buffered until delivered and acknowledged as it
is). Internal to :mod:`ilphttp.http2`.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.python.failure import Failure
from twisted.web.client import URI, ResponseFailed
from twisted.web.http import RESPONSES
from twisted.web.http_headers import Headers
from twisted.web.iweb import IClientRequest, IResponse
from zope.interface import implementer

from ilphttp.http2_events import ErrorCodes, H2StreamReset

if TYPE_CHECKING:
    from ilphttp._h2_pool import OriginPool
    from ilphttp._h2_protocol import StreamHandle


@implementer(IClientRequest)
class RequestInfo:
    def __init__(self, method: bytes, absoluteURI: bytes, headers: Headers) -> None:
        self.method = method
        self.absoluteURI = absoluteURI
        self.headers = headers


class PendingRequest:
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
        self.pool: OriginPool | None = None
        self.stream: StreamHandle | None = None
        self.inner: Deferred[Any] | None = None
        self.deferred: Deferred[IResponse] = Deferred(self._cancel)

    def _cancel(self, d: Deferred[IResponse]) -> None:
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.cancel()
        elif self.stream is not None:
            self.stream.cancel()
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

    def __init__(self, response: H2Response) -> None:
        self._response = response

    def pauseProducing(self) -> None:
        self._response.pause()

    def resumeProducing(self) -> None:
        self._response.resume()

    def stopProducing(self) -> None:
        self._response.abort(immediately=False)

    def loseConnection(self) -> None:
        self._response.abort(immediately=False)

    def abortConnection(self) -> None:
        self._response.abort(immediately=True)


@implementer(IResponse)
class H2Response:
    """An ``IResponse`` for one HTTP/2 stream; its body is buffered until delivered."""

    version = (b"HTTP", 2, 0)

    def __init__(
        self,
        stream: StreamHandle,
        code: int,
        headers: Headers,
        request: IClientRequest,
        length: int | str,
    ) -> None:
        self._stream: StreamHandle | None = stream
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

    @property
    def buffered(self) -> int:
        """Body bytes received but not yet handed to the body protocol."""
        return sum(len(data) for data, _ in self._buffer)

    # Called by the stream handle.
    def data_received(self, data: bytes, flow_controlled_length: int) -> None:
        self._buffer.append((data, flow_controlled_length))
        self._pump()

    def finish(self, reason: Failure) -> None:
        if self._reason is None:
            self._reason = reason
        self._pump()

    # Called by the body transport.
    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._pump()

    def abort(self, immediately: bool) -> None:
        stream = self._stream
        if not self._delivered_end:
            if immediately:
                self._reason = Failure(CancelledError())
            else:
                self._reason = Failure(
                    ResponseFailed([Failure(H2StreamReset(ErrorCodes.CANCEL, remote=False))])
                )
        if stream is not None:
            stream.cancel()
        self._discard_buffer()
        self._paused = False
        if immediately or stream is None:
            self._pump()
        else:
            # Like a transport's loseConnection: connectionLost comes later.
            stream.call_soon(self._pump)

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
