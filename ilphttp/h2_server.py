"""
The plugin's HTTP/2 server: a plain Twisted ``Protocol`` over the sans-IO
:class:`~ilphttp.h2_server_core.ServerSession`, answering every request as an
:class:`ilphttp.front.Door` decides.

:class:`H2ServerProtocol` is given a connection's bytes from the client's
connection preface on: on cleartext listeners once the preface was seen (h2c
prior knowledge), on TLS listeners after ALPN chose ``h2``.  For each complete
request it calls ``door.answer(method, path, header, body, identity)`` and
writes the :class:`~ilphttp.front.Answer` (``:status``, ``content-type``,
``content-length`` and the answer's headers) when it is ready; the door's
Deferred is cancelled when the client resets the stream or the connection is
lost.  The answers the session gives itself (``413``, ``431``, ``408``) are
shown to the door's ``observer`` (:func:`ilphttp.front.show_refusal`:
metrics).  :meth:`H2ServerProtocol.close` sends GOAWAY (``NO_ERROR``) and closes
once the answers in flight are written.  Protocol errors and flood limits (see
:mod:`ilphttp.h2_guard`) end the connection with a GOAWAY and one log line.

:class:`H2ServerFactory` listens with it (every connection is HTTP/2: use it
where the client is known to speak h2c, or on TLS with ALPN ``h2``).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocolNegotiationFactory,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ilphttp.front import TEXT_PLAIN, Answer, Door, answer_now, combined_fields, show_refusal
from ilphttp.h2_guard import GuardLimits
from ilphttp.h2_server_core import ServerSession
from ilphttp.h2_server_events import (
    Calmed,
    ConnectionError,
    RequestCancelled,
    RequestReceived,
    RequestRefused,
)
from ilphttp.http2_events import CloseConnection, Timer
from ilphttp.server_limits import DEFAULT_LIMITS, ServerLimits
from ilphttp.tls_identity import peer_identity

__all__ = ["ABORT_TIMEOUT", "DRAIN_TIMEOUT", "H2ServerFactory", "H2ServerProtocol"]

_log = Logger()

#: Seconds a closing connection may take to flush its last frames before it
#: is aborted (a client that does not read would keep it open).
ABORT_TIMEOUT = 15.0
#: Seconds :meth:`H2ServerProtocol.close` waits for the answers in flight.
DRAIN_TIMEOUT = 5.0

_BROKEN = Answer(500, b"internal error", TEXT_PLAIN)


class H2ServerProtocol(Protocol):
    """
    One HTTP/2 server connection answering through ``door``.

    :param door: decides every answer (see :mod:`ilphttp.front`).
    :param clock: the time source of the flood guard's rates and the timers.
    :param limits: the flood guard's limits; by default the constants of
        :mod:`ilphttp.h2_guard`.
    :param server_limits: the listener's: ``max_headers``, and the deadline of
        a request, ``head_timeout + body_timeout`` seconds from its HEADERS to
        its end (``408`` past it).
    """

    def __init__(
        self,
        door: Door,
        clock: IReactorTime,
        limits: GuardLimits | None = None,
        server_limits: ServerLimits = DEFAULT_LIMITS,
    ) -> None:
        self.door = door
        self.clock = clock
        self.session = ServerSession(limits=limits, max_headers=server_limits.max_headers)
        #: seconds from a request's HEADERS to its END_STREAM
        self.request_timeout = server_limits.head_timeout + server_limits.body_timeout
        self._deadline_call: IDelayedCall | None = None
        self._waiting: dict[int, Deferred[Answer]] = {}
        self._timer: Timer | None = None
        self._timer_call: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        self._close_waiters: list[Deferred[None]] = []
        self._gone = False

    def connectionMade(self) -> None:
        self.session.initiate()
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        events = self.session.receive_data(data, self.clock.seconds())
        if events:
            self._handle(events)
        self._flush()

    def close(self, timeout: float = DRAIN_TIMEOUT) -> Deferred[None]:
        """
        GOAWAY ``NO_ERROR`` now, close once the open requests are answered (at
        most ``timeout`` seconds); fires when the connection is gone.
        """
        if self._gone:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        self.session.stop(timeout)
        self._flush()
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self.session.connection_lost()
        for call in (self._timer_call, self._abort_call, self._deadline_call):
            if call is not None and call.active():
                call.cancel()
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.cancel()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- internals --------------------------------------------------------------
    def _handle(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self._request(event)
            elif kind is RequestCancelled:
                d = self._waiting.pop(event.stream_id, None)
                if d is not None:
                    d.cancel()
            elif kind is CloseConnection:
                self._close_transport(event.abort)
            elif kind is RequestRefused:
                # Answered by the session (413, 431, 408): counted as the door's answers are.
                show_refusal(self.door, Answer(event.status, event.body, TEXT_PLAIN))
            elif kind is Calmed:
                _log.warn(
                    "HTTP/2 client {peer} exceeded the {reason} limit: sent GOAWAY "
                    "ENHANCE_YOUR_CALM (last stream {last_stream_id}) and closed the connection",
                    peer=self._peer(),
                    reason=event.reason,
                    last_stream_id=event.last_stream_id,
                )
            elif kind is ConnectionError:
                _log.info(
                    "HTTP/2 client {peer} broke the protocol ({message}): sent GOAWAY "
                    "(error {code}) and closed the connection",
                    peer=self._peer(),
                    message=event.message,
                    code=event.error_code,
                )

    def _request(self, request: RequestReceived) -> None:
        fields = combined_fields(request.headers)  # RFC 9110 section 5.3
        try:
            result = self.door.answer(
                request.method,
                request.path,
                fields.get,
                request.body,
                lambda: peer_identity(self.transport),
            )
        except Exception:
            # A door promises not to raise; if one does, 500 and the details
            # in our log, as twisted.web does, and the other streams go on.
            _log.failure("HTTP/2 front door failed")
            result = _BROKEN
        answer = answer_now(result)
        if answer is not None:
            self._answer(request.stream_id, answer)
            return
        assert isinstance(result, Deferred)
        sid = request.stream_id
        self._waiting[sid] = result
        result.addCallbacks(self._answered, _cancelled, callbackArgs=(sid,))

    def _answered(self, answer: Answer, stream_id: int) -> None:
        if self._waiting.pop(stream_id, None) is None or self._gone:
            return
        self._answer(stream_id, answer)
        self._handle(self.session.next_events())
        self._flush()

    def _answer(self, stream_id: int, answer: Answer) -> None:
        headers = [(b"content-type", answer.content_type), *answer.headers]
        self.session.answer(stream_id, answer.status, headers, answer.body)

    def _flush(self) -> None:
        data = self.session.data_to_send()
        transport = self.transport
        if data and transport is not None and not self._gone and self._abort_call is None:
            transport.write(data)
        events = self.session.next_events()
        if events:
            self._handle(events)
        self._arm()
        if self._deadline_call is None and not self._gone:
            oldest = self.session.oldest_incomplete()
            if oldest is not None:
                delay = max(oldest + self.request_timeout - self.clock.seconds(), 0.0)
                self._deadline_call = self.clock.callLater(delay, self._request_deadline)

    def _request_deadline(self) -> None:
        """Requests still incomplete at their deadline are answered ``408``."""
        self._deadline_call = None
        if self._gone:
            return
        expired = self.session.expire_incomplete(self.clock.seconds() - self.request_timeout + 1e-6)
        if expired:
            _log.info(
                "HTTP/2 client {peer}: {n} request(s) not complete in {t} s, answered 408",
                peer=self._peer(),
                n=expired,
                t=self.request_timeout,
            )
        self._flush()

    def _arm(self) -> None:
        timer = self.session.timer
        if timer is self._timer:
            return
        if self._timer_call is not None and self._timer_call.active():
            self._timer_call.cancel()
        self._timer, self._timer_call = timer, None
        if timer is not None and not self._gone:
            self._timer_call = self.clock.callLater(timer.seconds, self._expired, timer)

    def _expired(self, timer: Timer) -> None:
        self.session.timer_expired(timer)
        self._flush()

    def _close_transport(self, abort: bool) -> None:
        transport = self.transport
        if transport is None or self._gone or self._abort_call is not None:
            return
        data = self.session.data_to_send()
        if data:
            transport.write(data)
        if abort:
            cast(ITCPTransport, transport).abortConnection()
            return
        transport.loseConnection()
        self._abort_call = self.clock.callLater(ABORT_TIMEOUT, self._abort)

    def _abort(self) -> None:
        if self.transport is not None and not self._gone:
            cast(ITCPTransport, self.transport).abortConnection()

    def _peer(self) -> Any:
        return self.transport.getPeer() if self.transport is not None else None


def _cancelled(failure: Failure) -> None:
    # The door's Deferred never fails; a cancellation (stream reset,
    # connection lost) needs nothing more.
    return None


@implementer(IProtocolNegotiationFactory)
class H2ServerFactory(Factory):
    """
    Serves every connection with :class:`H2ServerProtocol` (h2c prior
    knowledge on TCP; on TLS it offers ALPN ``h2`` only) and knows the open
    connections, so that :meth:`close_all` can stop them.

    :param door: decides every answer.
    :param clock: the time source (by default the global reactor).
    :param limits: the flood guard's limits for every connection.
    """

    def __init__(
        self, door: Door, clock: IReactorTime | None = None, limits: GuardLimits | None = None
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.door = door
        self.clock = clock
        self.limits = limits
        self.protocols: set[H2ServerProtocol] = set()

    def buildProtocol(self, addr: Any) -> H2ServerProtocol:
        protocol = _TrackedProtocol(self.door, self.clock, self.limits)
        protocol.factory = self
        return protocol

    def acceptableProtocols(self) -> list[bytes]:
        """See ``IProtocolNegotiationFactory``: ``h2``."""
        return [b"h2"]

    def close_all(self, timeout: float = DRAIN_TIMEOUT) -> Deferred[None]:
        """Send every connection GOAWAY and close it (see :meth:`H2ServerProtocol.close`)."""
        if not self.protocols:
            return succeed(None)
        done = gatherResults([p.close(timeout) for p in list(self.protocols)])
        return done.addCallback(lambda _: None)


class _TrackedProtocol(H2ServerProtocol):
    factory: H2ServerFactory

    def connectionMade(self) -> None:
        self.factory.protocols.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.protocols.discard(self)
        super().connectionLost(reason)
