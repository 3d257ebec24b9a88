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
- pipelined requests are all handed to the door as they arrive, and answered
  strictly in order; past :data:`MAX_PIPELINED` unanswered requests the
  connection stops reading until answers go out;
- a client that goes away cancels the door's pending answers;
- malformed heads (request line, header syntax, bare LF, NUL, obs-fold,
  ``Content-Length`` with ``Transfer-Encoding``, an invalid or repeated
  ``Content-Length``, a missing ``Host`` on HTTP/1.1, heads over
  :data:`MAX_HEAD_BYTES` or :data:`MAX_HEADERS` headers) are ``400`` and close,
  the door never called;
- a connection idle for ``idle_timeout`` seconds (no request in progress) is
  closed, as twisted.web's ``Site`` does after ``timeOut``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, datetimeToString

from ilphttp._compat import write_now
from ilphttp.front import Answer, Door, body_limit, too_large
from ilphttp.http1_parse import PARSE_ERRORS, PARSER, UPGRADE, new_parser
from ilphttp.packet import MAX_PREPARE_LENGTH
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
IDLE_TIMEOUT = 60.0
#: seconds a timed-out connection may take to flush before it is aborted
#: (twisted.web's ``HTTPChannel.abortTimeout``)
ABORT_TIMEOUT = 15.0
#: bytes of request line and header lines (without line ends), as twisted.web's
#: ``HTTPChannel.totalHeadersSize``
MAX_HEAD_BYTES = 16384
#: headers per request, as twisted.web's ``HTTPChannel.maxHeaders``
MAX_HEADERS = 500
#: unanswered pipelined requests before the connection stops reading
MAX_PIPELINED = 16

_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"  # twisted.web's, byte for byte
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TOO_LARGE_EARLY = b"ILP packet too large: %d bytes, the limit is %d"
_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}


class _Stop(Exception):
    """Raised from a parser callback to stop parsing (the connection is closing)."""


def _status_line(version: bytes, status: int) -> bytes:
    return b"%s %d %s\r\n" % (version, status, RESPONSES.get(status, b"Unknown"))


_date_cache: list[Any] = [-1, b""]


def _date(now: float) -> bytes:
    """The ``Date`` value (RFC 9110 section 6.6.1), made once a second."""
    second = int(now)
    if _date_cache[0] != second:
        _date_cache[0], _date_cache[1] = second, datetimeToString(second)
    value: bytes = _date_cache[1]
    return value


def _length(value: bytes) -> int:
    """A Content-Length the parser checked (digits only): huge ones are capped."""
    digits = value.strip().lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 18 else 10**18


def _header_name(name: bytes) -> bytes:
    return b"-".join(part.capitalize() for part in name.split(b"-"))


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
    :param clock: the reactor's clock (a ``Clock`` in tests), for the idle timeout and ``Date``.
    :param idle_timeout: seconds without a request in progress or a byte
        received before the connection is closed; ``None``: never.
    :param parser: ``"httptools"`` or ``"h11"`` (default: the best installed).
    """

    def __init__(
        self,
        door: Door,
        clock: IReactorTime,
        idle_timeout: float | None = IDLE_TIMEOUT,
        parser: str = PARSER,
    ) -> None:
        self._door = door
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._parser = new_parser(self, parser)
        self._queue: deque[_Slot] = deque()
        self._reading = True  # False once a closing request or a bad one was seen
        self._paused = False
        self._gone = False
        self._timer: IDelayedCall | None = None
        self._last_seen = 0.0
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
        if self._idle_timeout is not None:
            self._last_seen = self._clock.seconds()
            self._timer = self._clock.callLater(self._idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        assert self._idle_timeout is not None
        self._timer = None
        if self._gone:
            return
        left = self._last_seen + self._idle_timeout - self._clock.seconds()
        if self._queue or left > 0:  # a request is in progress, or bytes came since
            self._timer = self._clock.callLater(
                self._idle_timeout if left <= 0 else left, self._idle_check
            )
            return
        transport = self.transport
        assert transport is not None
        transport.loseConnection()
        self._timer = self._clock.callLater(ABORT_TIMEOUT, self._abort)

    def _abort(self) -> None:
        self._timer = None
        if not self._gone and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def detach(self) -> None:
        """Stop this protocol's timers: the connection was handed to another protocol."""
        self._gone = True
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
        if self._idle_timeout is not None:
            self._last_seen = self._clock.seconds()
        heads = self._heads
        try:
            self._parser.feed_data(data)
        except _Stop:
            return
        except UPGRADE:
            # The request was complete and is answered; no protocol switch is
            # offered, so nothing else can follow on this connection.
            self._stop_reading()
            if self._queue:
                self._queue[-1].close = True
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
                if self._head_bytes > 2 * MAX_HEAD_BYTES:
                    self._bad_request()
            else:
                self._head_bytes = 0

    def _stop_reading(self) -> None:
        self._reading = False

    def _bad_request(self) -> None:
        self._stop_reading()
        slot = _Slot(True)
        slot.data = _BAD_REQUEST
        self._queue.append(slot)
        self._flush()

    # -- parser callbacks (httptools' names) ---------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self._in_head = True
        self._heads += 1

    def on_url(self, piece: bytes) -> None:
        self._url += piece
        self._head_size += len(piece)
        if self._head_size > MAX_HEAD_BYTES:
            self._refuse()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 2
        if self._header_count > MAX_HEADERS or self._head_size > MAX_HEAD_BYTES:
            self._refuse()
        self._headers[name.lower()] = value

    def _refuse(self) -> None:
        self._bad_request()
        raise _Stop()

    def on_headers_complete(self) -> None:
        self._in_head = False
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
            self._enqueue(Answer(413, message), _VERSIONS[version], True, b"POST")
            raise _Stop()
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
        if self._too_large:
            self._enqueue(too_large(self._limit), version, True, method)
        else:
            url = self._url
            query = url.find(b"?")
            path = url if query < 0 else url[:query]
            body = b"".join(self._body) if method != b"GET" else b""
            result = self._door.answer(method, path, self._headers.get, body, self._identity)
            self._enqueue(result, version, close, method)
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
        body = answer.body
        parts = [
            _status_line(version, answer.status),
            b"Date: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            % (_date(self._clock.seconds()), answer.content_type, len(body)),
        ]
        for name, value in answer.headers:
            parts.append(b"%s: %s\r\n" % (_header_name(name), value))
        if close:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if not head_only:
            parts.append(body)
        return b"".join(parts)

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
