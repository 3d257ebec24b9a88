"""The lean HTTP/1.1 server: a Twisted Protocol per connection over a :class:`~ilphttp.front.Door`.

twisted.web's request machinery (line-based header parsing, ``Request`` and
``Headers`` objects, a Deferred per request) costs most of a server's time
per packet; this protocol parses with :mod:`ilphttp.http1_parse` (llhttp via
httptools on CPython, h11 on PyPy) and writes each answer in one call.  What
is answered is the door's decision; this module only does HTTP/1.1 framing
(RFC 9112) the way :class:`~ilphttp.server.IlpResource` in an
:class:`~ilphttp.server.IlpSite` does it:

- a ``Content-Length`` over :data:`~ilphttp.packet.MAX_PREPARE_LENGTH` (over
  :data:`~ilphttp.packet.MAX_REJECT_LENGTH` for what may be an RFC 35 reply:
  :func:`ilphttp.front.body_limit`) is answered ``413`` and the connection
  closed before the body is read (no ``100 Continue``); a chunked body is
  counted and ``413`` past the limit;
- ``Expect: 100-continue`` (HTTP/1.1) gets ``100 Continue`` when the body will be read;
- HTTP/1.1 keeps the connection open unless ``Connection: close``; HTTP/1.0
  closes unless ``Connection: keep-alive``; a closing answer says
  ``Connection: close``;
- no protocol switch is offered: ``Upgrade`` (``h2c``, ``websocket``) is
  ignored and the request served as any other, body included (RFC 9110
  section 7.8); ``CONNECT`` is answered with ``Connection: close``;
- pipelined requests are all handed to the door as they arrive, and answered
  strictly in order; past :data:`MAX_PIPELINED` unanswered requests the
  connection stops reading until answers go out;
- a client that goes away cancels the door's pending answers;
- malformed heads (request line, header syntax, bare LF, NUL, obs-fold,
  ``Content-Length`` with ``Transfer-Encoding``, an invalid or repeated
  ``Content-Length``, a missing ``Host`` on HTTP/1.1) are ``400`` and close;
  heads over ``max_header_bytes`` or ``max_headers`` headers are ``431``
  (RFC 6585 section 5) and close; the door is never called, but these
  answers, as the ``408`` and ``413`` below, are shown to its ``observer``
  (:func:`ilphttp.front.show_refusal`: metrics);
- deadlines (:class:`~ilphttp.server_limits.ServerLimits`): a request's head
  must be complete ``head_timeout`` seconds after its first byte (the first
  request: after the accept), its body ``body_timeout`` seconds after its
  head; bytes trickling in do not extend them.  Past one: ``408`` and close,
  or a silent close when not a byte of the request came;
- a connection idle for ``idle_timeout`` seconds (no request in progress) is
  closed, as twisted.web's ``Site`` does after ``timeOut``;
- :meth:`Http1ServerProtocol.drain` (a graceful stop): an idle connection
  closes at once; otherwise the requests already read are answered, the last
  answer with ``Connection: close``, and the connection closes after it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ilphttp._compat import write_now
from ilphttp._http1_wire import encode_answer
from ilphttp.front import FRAMING_FIELDS, Answer, Door, body_limit, show_refusal, too_large
from ilphttp.http1_parse import (
    PARSE_ERRORS,
    PARSER,
    UPGRADE,
    HeadTooLarge,
    new_parser,
    plain_head,
)
from ilphttp.packet import MAX_PREPARE_LENGTH
from ilphttp.server_limits import DEFAULT_LIMITS, ServerLimits
from ilphttp.tls import peer_identity

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "MAX_PIPELINED",
    "Http1ServerProtocol",
]

_log = Logger()

#: seconds a connection may stay idle, as twisted.web's ``HTTPFactory.timeOut``
IDLE_TIMEOUT = DEFAULT_LIMITS.idle_timeout
#: seconds a timed-out connection may take to flush before it is aborted
#: (twisted.web's ``HTTPChannel.abortTimeout``)
ABORT_TIMEOUT = 15.0
#: bytes of request line and header lines (without line ends), by default
MAX_HEAD_BYTES = DEFAULT_LIMITS.max_header_bytes
#: headers per request, by default
MAX_HEADERS = DEFAULT_LIMITS.max_headers
#: unanswered pipelined requests before the connection stops reading
MAX_PIPELINED = 16

_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"  # twisted.web's, byte for byte
#: what :data:`_BAD_REQUEST` is shown to the door's observer as (metrics)
_BAD_REQUEST_ANSWER = Answer(400, b"")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEAD_TOO_LARGE = Answer(431, b"request header fields too large")
_TIMED_OUT = Answer(408, b"request timed out")
_TOO_LARGE_EARLY = b"ILP packet too large: %d bytes, the limit is %d"
_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}


class _Stop(Exception):
    """Raised from a parser callback to stop parsing (the connection is closing)."""


def _length(value: bytes) -> int:
    """A Content-Length the parser checked (digits only): huge ones are capped."""
    digits = value.strip().lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 18 else 10**18


class _Slot:
    """One request's place in the answer order: its bytes once known."""

    __slots__ = ("close", "data", "deferred")

    def __init__(self, close: bool) -> None:
        self.data: bytes | None = None
        self.close = close
        self.deferred: Deferred[Answer] | None = None


class Http1ServerProtocol(Protocol):
    """One HTTP/1.1 connection answered by ``door`` (see the module docstring).

    :param door: decides every answer.
    :param clock: the reactor's clock (a ``Clock`` in tests), for the timeouts and ``Date``.
    :param idle_timeout: seconds without a request in progress or a byte
        received before the connection is closed; ``None``: never (used when
        ``limits`` is not given).
    :param parser: ``"httptools"`` or ``"h11"`` (default: the best installed).
    :param limits: the deadlines, header limits and idle timeout (seconds).
    """

    def __init__(
        self,
        door: Door,
        clock: IReactorTime,
        idle_timeout: float | None = IDLE_TIMEOUT,
        parser: str = PARSER,
        *,
        limits: ServerLimits | None = None,
    ) -> None:
        if limits is None:
            limits = replace(DEFAULT_LIMITS, idle_timeout=idle_timeout)
        self._door = door
        self._clock = clock
        self._limits = limits
        self._idle_timeout = limits.idle_timeout
        self._max_head = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._parser = new_parser(self, parser, 2 * limits.max_header_bytes)
        #: the head to parse again without its Upgrade (llhttp stopped after it)
        self._plain_head: bytes | None = None
        self._queue: deque[_Slot] = deque()
        self._reading = True  # False once a closing request or a bad one was seen
        self._paused = False
        self._gone = False
        self._draining = False
        self._linger: IDelayedCall | None = None  # a draining idle connection's last seconds
        self._timer: IDelayedCall | None = None
        self._timer_due = 0.0
        self._last_seen = 0.0
        self._now = 0.0
        #: when the head or body in progress must be complete (None: no request in progress)
        self._deadline: float | None = None
        self._silent = True  # not a byte of the request in progress came yet
        self._in_head = False  # a head has begun and is not complete
        self._heads = 0  # heads begun
        self._head_bytes = 0  # raw bytes of the head in progress, after its first read
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_count = 0
        self._head_size = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        #: the largest body this request may have (a reply's is larger than a Prepare's)
        self._limit = MAX_PREPARE_LENGTH

    # -- connection ------------------------------------------------------------------

    def connectionMade(self) -> None:
        now = self._last_seen = self._clock.seconds()
        # The first request's head is due from the accept: a connection that
        # sends nothing is closed as soon as one that trickles.
        self._deadline = now + self._limits.head_timeout
        self._schedule(now, self._deadline)

    def _schedule(self, now: float, due: float) -> None:
        """Run :meth:`_check` at ``due`` (or earlier, if it is set to run earlier)."""
        timer = self._timer
        if timer is not None:
            if self._timer_due <= due:
                return
            timer.cancel()
        self._timer_due = due
        self._timer = self._clock.callLater(max(due - now, 0.0), self._check)

    def _check(self) -> None:
        """The deadline of the request in progress, or the idle timeout."""
        self._timer = None
        if self._gone or not self._reading:
            return
        now = self._clock.seconds()
        deadline = self._deadline
        if deadline is not None:
            if now >= deadline:
                self._timed_out()
            else:
                self._schedule(now, deadline)
            return
        idle = self._idle_timeout
        if idle is None:
            return
        if self._queue:  # an answer is pending: not idle
            self._schedule(now, now + idle)
            return
        due = self._last_seen + idle
        if now >= due:
            self._close_quietly()
        else:
            self._schedule(now, due)

    def _timed_out(self) -> None:
        """A head or body was not complete in time: 408 (unless nothing came) and close."""
        if self._silent:
            self._close_quietly()
            return
        self._stop_reading()
        show_refusal(self._door, _TIMED_OUT)
        slot = _Slot(True)
        slot.data = self._encode(_TIMED_OUT, b"HTTP/1.1", True, False)
        self._queue.append(slot)
        self._flush()
        self._abort_later()

    def _close_quietly(self) -> None:
        self._stop_reading()
        transport = self.transport
        assert transport is not None
        transport.loseConnection()
        self._abort_later()

    def _abort_later(self) -> None:
        """Abort if the close takes :data:`ABORT_TIMEOUT` (a client that does not read)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer_due = float("inf")
        self._timer = self._clock.callLater(ABORT_TIMEOUT, self._abort)

    def _abort(self) -> None:
        self._timer = None
        if not self._gone and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def drain(self) -> None:
        """Stop gracefully: answer what was read, then close.

        The answer that ends the connection says ``Connection: close``; an
        idle connection is closed after ``drain_linger`` seconds unless a
        request comes on it first (which is answered, with ``Connection: close``).
        """
        if self._draining or self._gone:
            return
        self._draining = True
        if not self._reading:
            return  # closing already, after its last answer
        if self._deadline is None or self._silent:
            if not self._queue:
                # Idle: kept open a little, so that a request a load balancer
                # has just written into it is answered (with Connection: close)
                # rather than lost; then closed if still idle.
                self._linger = self._clock.callLater(self._limits.drain_linger, self._linger_over)
                return
            # Answers are pending, nothing more is being read: the last one closes.
            self._stop_reading()
            last = self._queue[-1]
            last.close = True
        # else: a request is in progress; its answer closes (on_message_complete)

    def _linger_over(self) -> None:
        self._linger = None
        if self._gone or not self._reading:
            return
        if (self._deadline is None or self._silent) and not self._queue:
            self._close_quietly()

    def detach(self) -> None:
        """Stop this protocol's timers: the connection was handed to another protocol."""
        self._gone = True
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.detach()
        queue, self._queue = self._queue, deque()
        for slot in queue:
            if slot.deferred is not None and not slot.deferred.called:
                slot.deferred.cancel()  # the client went away: so does its packet's handling

    def dataReceived(self, data: bytes) -> None:
        if not self._reading:
            return  # after a closing request: what the client sends more is dropped
        now = self._now = self._last_seen = self._clock.seconds()
        if self._deadline is None:
            self._deadline = now + self._limits.head_timeout  # a new request begins
        self._silent = False
        heads = self._heads
        try:
            self._parser.feed_data(data)
        except _Stop:
            return
        except UPGRADE as exc:
            head = self._plain_head
            if head is not None:
                # llhttp acted on an Upgrade we ignore: the same request again
                # without it, to a new parser, with the bytes that followed its head.
                self._plain_head = None
                self._parser = new_parser(self, "httptools")  # only llhttp stops there
                self.dataReceived(head + data[exc.args[0] :])
                return
            # CONNECT, answered with Connection: close (on_message_complete).
            self._stop_reading()
            return
        except HeadTooLarge:
            if self._reading:
                self._refused(_HEAD_TOO_LARGE)
            return
        except PARSE_ERRORS:
            if self._reading:  # not a _Stop raised through httptools
                self._bad_request()
            return
        if self._in_head and self._reading:
            # Bound a head that never ends (the parser buffers it): after the
            # read it began in, its raw bytes may be twice the checked size.
            if heads == self._heads:
                self._head_bytes += len(data)
                if self._head_bytes > 2 * self._max_head:
                    self._refused(_HEAD_TOO_LARGE)
                    return
            else:
                self._head_bytes = 0
        if self._deadline is not None and self._reading:
            self._schedule(now, self._deadline)

    def _stop_reading(self) -> None:
        self._reading = False
        self._deadline = None

    def _bad_request(self) -> None:
        self._stop_reading()
        show_refusal(self._door, _BAD_REQUEST_ANSWER)
        slot = _Slot(True)
        slot.data = _BAD_REQUEST
        self._queue.append(slot)
        self._flush()

    def _refused(self, answer: Answer) -> None:
        """Answer ``answer`` (a head that cannot be read) and close."""
        self._stop_reading()
        show_refusal(self._door, answer)
        slot = _Slot(True)
        slot.data = self._encode(answer, b"HTTP/1.1", True, False)
        self._queue.append(slot)
        self._flush()

    # -- parser callbacks (httptools' names) ---------------------------------------------

    def on_message_begin(self) -> None:
        self._silent = False
        self._reset()
        self._in_head = True
        self._heads += 1
        if self._deadline is None:  # a pipelined request in the same read
            self._deadline = self._now + self._limits.head_timeout

    def on_url(self, piece: bytes) -> None:
        self._url += piece
        self._head_size += len(piece)
        if self._head_size > self._max_head:
            self._refuse(_HEAD_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 2
        if self._header_count > self._max_headers or self._head_size > self._max_head:
            self._refuse(_HEAD_TOO_LARGE)
        name = name.lower()
        previous = self._headers.get(name)
        if previous is None or name in FRAMING_FIELDS:
            self._headers[name] = value
        else:
            # RFC 9110 section 5.3: a repeated field is one comma-separated
            # list (a repeated Request-Id or Callback-Url is then invalid:
            # 400).  The parser refuses repeated framing fields itself.
            self._headers[name] = previous + b", " + value

    def _refuse(self, answer: Answer | None = None) -> None:
        if answer is None:
            self._bad_request()
        else:
            self._refused(answer)
        raise _Stop()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._deadline = self._now + self._limits.body_timeout
        headers = self._headers
        version = self._parser.get_http_version()
        if version not in _VERSIONS or (version == "1.1" and b"host" not in headers):
            self._refuse()  # HTTP/0.9 or 2+; RFC 9112 section 3.2: Host is a MUST
        self._limit = body_limit(headers.get)
        length = headers.get(b"content-length")
        if length is not None and _length(length) > self._limit:
            # Answered at once, before the body is read; nothing after it.
            message = _TOO_LARGE_EARLY % (_length(length), self._limit)
            self._stop_reading()
            refusal = Answer(413, message)
            show_refusal(self._door, refusal)
            self._enqueue(refusal, _VERSIONS[version], True, b"POST")
            raise _Stop()
        if b"upgrade" in headers and self._parser.should_upgrade():
            method = self._parser.get_method()
            if method != b"CONNECT":
                # No protocol switch is offered (RFC 9110 section 7.8: the
                # server may ignore Upgrade): the request is read again
                # without it; llhttp completes it now, bodiless, unanswered.
                self._plain_head = plain_head(method, self._url, version, headers)
                return
        expect = headers.get(b"expect")
        if expect is not None and version == "1.1" and expect.lower() == b"100-continue":
            slot = _Slot(False)
            slot.data = _CONTINUE
            self._queue.append(slot)
            self._flush()

    def on_body(self, piece: bytes) -> None:
        if self._too_large:
            return
        self._body_size += len(piece)
        if self._body_size > self._limit:
            # Counted and dropped: one 413 once the message is complete.
            self._too_large = True
            self._body = []
            return
        self._body.append(piece)

    def on_message_complete(self) -> None:
        if self._plain_head is not None:
            return  # read again without its Upgrade (dataReceived)
        parser = self._parser
        version_name = parser.get_http_version()
        version = _VERSIONS[version_name]
        method = parser.get_method()
        connection = self._headers.get(b"connection")
        tokens = () if connection is None else [t.strip() for t in connection.lower().split(b",")]
        if version_name == "1.1":
            close = b"close" in tokens
        else:
            close = b"keep-alive" not in tokens
        # CONNECT is not served as a tunnel, and what follows it is not HTTP.
        close = close or method == b"CONNECT"
        if self._too_large:
            refusal = too_large(self._limit)
            show_refusal(self._door, refusal)
            self._enqueue(refusal, version, True, method)
        else:
            url = self._url
            query = url.find(b"?")
            path = url if query < 0 else url[:query]
            body = b"".join(self._body) if method != b"GET" else b""
            result = self._door.answer(method, path, self._headers.get, body, self._identity)
            close = close or self._draining  # a drain may begin in the door's call
            self._enqueue(result, version, close, method)
        # Only now is the request no longer in progress (a drain during the
        # door's call must not take the connection for idle).
        self._deadline = None
        self._silent = True
        self._reset()
        if close or self._too_large:
            self._stop_reading()
            raise _Stop()
        if len(self._queue) > MAX_PIPELINED and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def _identity(self) -> Any:
        return peer_identity(self.transport)

    # -- answers, in order -------------------------------------------------------------

    def _enqueue(
        self, result: Answer | Deferred[Answer], version: bytes, close: bool, method: bytes
    ) -> None:
        slot = _Slot(close)
        head_only = method == b"HEAD"
        if isinstance(result, Answer):
            if not self._queue and self.transport is not None:  # the common case
                write_now(self.transport, self._encode(result, version, close, head_only))
                if close:
                    self.transport.loseConnection()
                return
            slot.data = self._encode(result, version, close, head_only)
            self._queue.append(slot)
            self._flush()
            return
        slot.deferred = result
        self._queue.append(slot)
        result.addCallbacks(
            self._answered,
            self._failed,
            callbackArgs=(slot, version, head_only),
        )

    def _answered(self, answer: Answer, slot: _Slot, version: bytes, head_only: bool) -> None:
        slot.deferred = None
        if self._gone:
            return
        slot.data = self._encode(answer, version, slot.close, head_only)
        self._flush()

    def _failed(self, failure: Failure) -> None:
        # A door's answer never fails; a cancellation (the client left) is quiet.
        if not failure.check(CancelledError):
            _log.failure("front door failed", failure)

    def _encode(self, answer: Answer, version: bytes, close: bool, head_only: bool) -> bytes:
        return encode_answer(answer, version, close, head_only, self._clock.seconds())

    def _flush(self) -> None:
        """Write the answers that are ready, in order; close after a closing one."""
        queue = self._queue
        transport = self.transport
        if transport is None or self._gone:
            return
        while queue and queue[0].data is not None:
            slot = queue.popleft()
            assert slot.data is not None
            write_now(transport, slot.data)
            if slot.close:
                # Nothing after it: later requests' answers are dropped, cancelled.
                rest, self._queue = queue, deque()
                for later in rest:
                    if later.deferred is not None:
                        later.deferred.cancel()
                self._stop_reading()
                transport.loseConnection()
                return
        if self._paused and len(queue) <= MAX_PIPELINED // 2:
            self._paused = False
            transport.resumeProducing()  # type: ignore[attr-defined]


def http1_factory(
    door: Door, clock: IReactorTime, idle_timeout: float | None = IDLE_TIMEOUT
) -> Callable[[ITransport], Http1ServerProtocol]:
    """A function that gives a connected :class:`Http1ServerProtocol` for a transport."""

    def build(transport: ITransport) -> Http1ServerProtocol:
        protocol = Http1ServerProtocol(door, clock, idle_timeout)
        protocol.makeConnection(transport)
        return protocol

    return build
