"""
The HTTP/2 sessions of one origin and the queue of requests waiting for a
stream. Internal to :mod:`ilphttp.http2`.
"""

from __future__ import annotations

import collections
from typing import Any, Callable

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import RequestNotSent, ResponseNeverReceived

from ilphttp._h2_protocol import H2ClientProtocol, H2NotNegotiated
from ilphttp._h2_response import PendingRequest
from ilphttp.http2_session import ClientSession

_log = Logger()

#: How many times a request the peer did not process is sent at most.
MAX_ATTEMPTS = 5

OriginKey = tuple[bytes, bytes, int]


class SessionFactory(Factory):
    def __init__(self, pool: OriginPool, tls: bool) -> None:
        self.pool = pool
        self.tls = tls

    def buildProtocol(self, addr: Any) -> H2ClientProtocol:
        return self.pool.new_protocol(self.tls)


class OriginPool:
    """
    The HTTP/2 sessions and the FIFO queue of one origin.

    A request waits in the queue until a session has capacity (see
    ``ClientSession.capacity``); a new session is connected while fewer than
    ``max_sessions`` accept streams. Requests the peer did not process go back
    to the head of the queue, at most ``MAX_ATTEMPTS`` sends each.

    :param clock: the reactor, for the connect timeout and the sessions' timers.
    :param key: ``(scheme, host, port)``.
    :param endpoint: makes the (TLS-wrapped for ``https``) endpoint to connect.
    :param send_http1: sends a request over HTTP/1.1 (after ALPN chose it).
    :param new_session: makes a sans-IO session core.
    :param registry: the agent's set of live protocols.
    :param max_sessions: sessions accepting streams at once.
    :param connect_timeout: seconds to connect, finish TLS and get SETTINGS.
    """

    def __init__(
        self,
        clock: IReactorTime,
        key: OriginKey,
        *,
        endpoint: Callable[[], IStreamClientEndpoint],
        send_http1: Callable[[PendingRequest], None],
        new_session: Callable[[], ClientSession],
        registry: set[H2ClientProtocol],
        max_sessions: int,
        connect_timeout: float,
    ) -> None:
        self.clock = clock
        self.key = key
        self._endpoint = endpoint
        self._send_http1 = send_http1
        self._new_session = new_session
        self._registry = registry
        self._max_sessions = max_sessions
        self._connect_timeout = connect_timeout
        self.active: list[H2ClientProtocol] = []
        self.retiring: set[H2ClientProtocol] = set()
        self.queue: collections.deque[PendingRequest] = collections.deque()
        self.connecting: Deferred[Any] | None = None
        self.http1 = False
        self.closed = False
        self._dispatching = False
        self._again = False

    def new_protocol(self, tls: bool) -> H2ClientProtocol:
        return H2ClientProtocol(self, self._new_session(), tls, self.clock, self._registry)

    def submit(self, request: PendingRequest) -> None:
        request.pool = self
        if self.http1:
            self._send_http1(request)
            return
        self.queue.append(request)
        self.dispatch()

    def retry(self, requests: list[tuple[PendingRequest, Failure]]) -> None:
        """Put requests the peer did not process back at the head of the queue, in order."""
        for request, reason in reversed(requests):
            request.stream = None
            if request.done:
                continue
            if request.attempts >= MAX_ATTEMPTS or self.closed:
                request.fail(Failure(ResponseNeverReceived([reason])))
                continue
            self.queue.appendleft(request)
        self.dispatch()

    def forget(self, request: PendingRequest) -> None:
        try:
            self.queue.remove(request)
        except ValueError:
            pass

    def dispatch(self) -> None:
        """Hand queued requests to sessions with capacity; connect if needed."""
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
                self._send_http1(self.queue.popleft())
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
        if self.queue and self.connecting is None and len(self.active) < self._max_sessions:
            self._connect()

    def _pick(self) -> H2ClientProtocol | None:
        for session in self.active:
            if session.capacity() > 0:
                return session
        return None

    def _connect(self) -> None:
        scheme, host, port = self.key
        factory = SessionFactory(self, scheme == b"https")
        timed_out: list[bool] = []
        d: Deferred[Any] = self._endpoint().connect(factory)

        def ready(proto: H2ClientProtocol) -> Deferred[H2ClientProtocol]:
            return proto.ready

        d.addCallback(ready)
        self.connecting = d

        def time_out() -> None:
            timed_out.append(True)
            d.cancel()

        timeout = self.clock.callLater(self._connect_timeout, time_out)

        def connected(proto: H2ClientProtocol) -> None:
            if timeout.active():
                timeout.cancel()
            self.connecting = None
            if self.closed:
                proto.close_session()
                return
            if proto.accepting:
                self.active.append(proto)
            self.dispatch()

        def failed(reason: Failure) -> None:
            if timeout.active():
                timeout.cancel()
            self.connecting = None
            if reason.check(H2NotNegotiated):
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

    def retired(self, session: H2ClientProtocol) -> None:
        if session in self.active:
            self.active.remove(session)
        if not session.lost:
            self.retiring.add(session)
        self.dispatch()

    def session_lost(self, session: H2ClientProtocol) -> None:
        if session in self.active:
            self.active.remove(session)
        self.retiring.discard(session)
        self.dispatch()

    def close(self, drain_timeout: float) -> None:
        """Fail the queue; drain (up to ``drain_timeout`` seconds) or close every session."""
        self.closed = True
        queued, self.queue = self.queue, collections.deque()
        for request in queued:
            request.fail(Failure(RequestNotSent()))
        if self.connecting is not None:
            self.connecting.cancel()
        sessions = list(self.active) + list(self.retiring)
        self.active = []
        for session in sessions:
            if drain_timeout > 0 and session.open_streams:
                self.retiring.add(session)
                session.drain(drain_timeout)
            else:
                session.close_session()

    def stats(self) -> dict[str, Any]:
        sessions = list(self.active) + list(self.retiring)
        return {
            "http1": self.http1,
            "active": len(self.active),
            "retiring": len(self.retiring),
            "connecting": self.connecting is not None,
            "queued": len(self.queue),
            "open_streams": sum(s.open_streams for s in sessions),
            "buffered": sum(s.buffered for s in sessions),
        }
