"""
The HTTP/2 server session core, sans-IO: one server connection with no
socket, no clock and no callback into the caller (hyper-h2's shape, one level
up: h2 parses frames, this decides what the server does with them).

The I/O layer (:mod:`ilphttp.h2_server`) drives a :class:`ServerSession`::

    session = ServerSession()
    session.initiate()                            # once the transport is up
    events = session.receive_data(data, now)      # now: seconds, any epoch
    session.answer(stream_id, 200, headers, body) # for a RequestReceived
    transport.write(session.data_to_send())
    session.stop(timeout)                         # GOAWAY(NO_ERROR), drain
    session.timer / session.timer_expired(timer)  # the drain deadline

After any call the I/O layer writes :meth:`data_to_send`, handles
:meth:`next_events` (``receive_data`` returns them) and (re)arms :attr:`timer`.

What it does (RFC 9113):

- collects each request's headers and body on its stream
  (:class:`~ilphttp.h2_server_stream.RequestStream`, which holds the
  request's rules); only a complete request is an event
  (:class:`RequestReceived`). A ``content-length`` over
  :data:`~ilphttp.packet.MAX_PREPARE_LENGTH` (a possible RFC 35 reply:
  :func:`ilphttp.rfc35.request_body_limit`) is answered ``413`` at once, so
  is a body that grows past it, more than ``max_headers`` fields is
  ``431``, and a request not complete by its deadline
  (:meth:`ServerSession.expire_incomplete`) ``408``; the rest of such a
  request is reset (``NO_ERROR``, section 8.1), and :class:`RequestRefused`
  tells the caller of the answer (for its metrics);
- credits received DATA back at once (section 6.9: the body is capped, so
  buffering it is bounded) and sends answer bodies within the client's
  windows, the rest when WINDOW_UPDATE or SETTINGS open them;
- advertises ``max_streams`` (``SETTINGS_MAX_CONCURRENT_STREAMS``) and
  refuses streams over it with ``RST_STREAM(REFUSED_STREAM)`` (section
  5.1.2), which a client may retry;
- a stream the client resets (or that h2 resets for it) is forgotten: its
  answer is dropped quietly and :class:`RequestCancelled` tells the caller to
  stop working on it; a request reset in the same read is never delivered.
  Answers to a closed stream never raise (h2's ``StreamClosedError``,
  ``StreamIDTooLowError``... are all caught): every other stream is answered;
- a protocol error ends the connection with h2's GOAWAY and its code
  (:class:`ConnectionError`); :class:`~ilphttp.h2_guard.H2FrameGuard` counts
  the client's frames and the server's resets, and a flood (Rapid Reset,
  provoked resets, PING, SETTINGS, PRIORITY, CONTINUATION, empty DATA) ends
  it with GOAWAY ``ENHANCE_YOUR_CALM`` (:class:`Calmed`).
"""

from __future__ import annotations

from typing import Any, cast

import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from ilphttp.h2_guard import GuardLimits, H2FrameGuard
from ilphttp.h2_server_events import (
    Calmed,
    ConnectionError,
    RequestCancelled,
    RequestReceived,
    RequestRefused,
    ServerEvent,
)
from ilphttp.h2_server_stream import TEXT_PLAIN, TIMED_OUT, Refusal, RequestStream
from ilphttp.http2_connection import H2Session, StreamState
from ilphttp.http2_events import CloseConnection, ErrorCodes, Timer
from ilphttp.packet import MAX_PREPARE_LENGTH

# The events (ilphttp.h2_server_events) stay importable from here, as documented.
__all__ = [
    "HEADER_LIST_SIZE",
    "IDLE_TIMEOUT",
    "MAX_HEADERS",
    "MAX_STREAMS",
    "Calmed",
    "ConnectionError",
    "RequestCancelled",
    "RequestReceived",
    "ServerEvent",
    "ServerSession",
]

#: Concurrent streams a client may open (``SETTINGS_MAX_CONCURRENT_STREAMS``);
#: one more is refused with REFUSED_STREAM.
MAX_STREAMS = 256
#: Extra streams a client may open past :data:`MAX_STREAMS` (say, before it
#: read our SETTINGS) that are refused one by one; past that h2 ends the
#: connection (PROTOCOL_ERROR).
_STREAM_SLACK = 256
#: Header fields of one request, as the HTTP/1.1 servers allow; more is 431.
MAX_HEADERS = 100
#: ``SETTINGS_MAX_HEADER_LIST_SIZE`` (RFC 9113 section 6.5.2), bytes; a larger
#: header list ends the connection (ENHANCE_YOUR_CALM, from hpack).
HEADER_LIST_SIZE = 16 * 1024
#: Seconds a connection may stay without an open request before it is closed
#: (GOAWAY ``NO_ERROR``); longer than ilphttp's and node's client idle timeouts,
#: so that clients normally close first.
IDLE_TIMEOUT = 120.0
#: Our per-stream receive window; the connection's is widened to 16 MiB.
_STREAM_WINDOW = 65535
_CONNECTION_WINDOW = 1 << 24


class ServerSession(H2Session):
    """
    The server role of one HTTP/2 connection; see the module documentation.

    :param max_streams: ``SETTINGS_MAX_CONCURRENT_STREAMS``.
    :param max_body: the largest request body in bytes; more is ``413``.  At its
        default, a possible RFC 35 reply may be larger
        (:func:`ilphttp.rfc35.request_body_limit`).
    :param limits: the flood guard's limits (by default the constants of
        :mod:`ilphttp.h2_guard`).
    :param idle_timeout: seconds without an open request before the session
        stops (``None``: never); see :attr:`timer`.
    :param max_headers: header fields a request may have; more is ``431``.
    """

    def __init__(
        self,
        *,
        max_streams: int = MAX_STREAMS,
        max_body: int = MAX_PREPARE_LENGTH,
        limits: GuardLimits | None = None,
        idle_timeout: float | None = IDLE_TIMEOUT,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        codes = h2.settings.SettingCodes
        self._advertised = {
            codes.MAX_CONCURRENT_STREAMS: max_streams,
            codes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
            codes.MAX_HEADER_LIST_SIZE: HEADER_LIST_SIZE,
        }
        super().__init__(
            client_side=False,
            local_settings=self._advertised,
            connection_window=_CONNECTION_WINDOW,
        )
        self.max_streams = max_streams
        self.max_body = max_body
        self.max_headers = max_headers
        self.idle_timeout = idle_timeout
        # Our answers' fields are lower case already (front.Answer's rule):
        # no need for h2 to normalize them (a few µs per answer).
        self._conn.config.normalize_outbound_headers = False
        self.guard = H2FrameGuard(limits)
        #: whether the session takes new requests (not after :meth:`stop`)
        self.accepting = True
        self._out: list[bytes] = []  # frames queued ahead of h2's own output
        self._done = False  # GOAWAY with an error sent: h2 writes nothing more
        self._now = 0.0
        self._undelivered: set[int] = set()  # requests reset before delivery
        self._last_stream_id = 0
        #: the base class's streams, as this role's (the same dict)
        self._requests = cast("dict[int, RequestStream]", self._streams)

    # -- for the I/O layer ---------------------------------------------------------
    def initiate(self) -> None:
        """Queue our SETTINGS (the server's preface) and widen the connection window."""
        super().initiate()
        # The SETTINGS frame is queued with max_streams; h2 itself refuses
        # (with a connection error) only past a slack, so that we can refuse
        # one stream at a time with REFUSED_STREAM first.
        enforced = dict(self._advertised)
        enforced[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = self.max_streams + _STREAM_SLACK
        self._conn.local_settings = h2.settings.Settings(client=False, initial_values=enforced)
        self._arm_idle()

    def receive_data(self, data: bytes, now: float) -> list[ServerEvent]:
        """
        Feed bytes from the client (from the connection preface on).

        :param now: the time in seconds (any epoch), for the guard's rates.
        :returns: every event queued since the last call.
        """
        if self.lost or self._done:
            return self._drain_events()
        self._now = now
        chunks = self.guard.receive_data(data, now)
        # The guard's cuts matter to servers that answer between frames; this
        # session handles a reset behind a request itself, so h2 gets the read
        # whole (one call instead of one per frame), or up to a tripped limit.
        if self.guard.tripped is None:
            self._receive(data)
        elif chunks:
            self._receive(b"".join(chunks))
        if self.guard.tripped is not None and not self._done:
            self._calm()
        return self._drain_events()

    def data_to_send(self) -> bytes:
        """The bytes to write now (``b""``: nothing); counted by the guard."""
        if self.lost:
            return b""
        if self._done:
            out = b"".join(self._out)
            self._out = []
            return out
        data = self._conn.data_to_send()
        if self._out:
            self._out.append(data)
            data = b"".join(self._out)
            self._out = []
        if data:
            # Server resets are provoked by the client's frames, so the time
            # of the last read is theirs.
            self.guard.data_sent(data, self._now)
            if self.guard.tripped is not None:
                self._calm()
                data += self.data_to_send()
        return data

    def next_events(self) -> list[ServerEvent]:  # type: ignore[override]
        """The events queued since the last call, oldest first."""
        return self._drain_events()

    def answer(
        self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """
        Answer a :class:`RequestReceived`: ``:status``, ``headers`` (regular
        fields, lower case, without ``content-length``, which is added) and
        ``body``, sent as the client's windows allow. An answer to a stream
        that is gone (reset, connection ended) is dropped quietly.
        """
        stream = self._requests.get(stream_id)
        if stream is None or self._done or self.lost or stream.responded:
            return
        self._respond(stream, status, headers, body)

    def stop(self, timeout: float) -> None:
        """
        Stop gracefully (RFC 9113 section 6.8): send GOAWAY ``NO_ERROR`` with
        the last stream id seen, refuse later streams, and close once every
        open request is answered or ``timeout`` seconds have passed
        (:attr:`timer`; ``0``: close now, cancelling the open requests).
        """
        if self.lost or self.closing:
            return
        if self.accepting:
            self.accepting = False
            if self.started and not self._done:
                frame = GoAwayFrame(
                    stream_id=0, last_stream_id=self._last_stream_id, error_code=ErrorCodes.NO_ERROR
                )
                self._out.append(self._conn.data_to_send())
                self._out.append(bytes(frame.serialize()))
        if timeout <= 0 or not self._streams:
            self._close_now()
        elif self._timer is None:
            self._timer = Timer("drain", timeout)

    def oldest_incomplete(self) -> float | None:
        """When the oldest request still being received began (``now`` of its read), or None."""
        oldest = None
        for stream in self._requests.values():
            if stream.incomplete:
                if oldest is None or stream.started < oldest:
                    oldest = stream.started
        return oldest

    def expire_incomplete(self, began_before: float) -> int:
        """
        Answer ``408`` to every request still being received that began before
        ``began_before`` (its rest is reset, ``NO_ERROR``); how many there were.
        A client that opens streams and never ends them holds nothing past
        its deadline.
        """
        expired = 0
        if self._done or self.lost:
            return 0
        for stream in list(self._requests.values()):
            if stream.incomplete and stream.started < began_before:
                self._answer_self(stream, TIMED_OUT)
                expired += 1
        return expired

    def connection_lost(self) -> None:
        """The transport is gone: every delivered request is cancelled."""
        if self.lost:
            return
        self._cancel_all()
        super().connection_lost()

    # -- internals ---------------------------------------------------------------
    def _emit(self, event: ServerEvent) -> None:
        self._events.append(event)  # type: ignore[arg-type]

    def _drain_events(self) -> list[ServerEvent]:
        events: list[Any] = self._events
        self._events = []
        if self._undelivered:
            dropped = self._undelivered
            self._undelivered = set()
            events = [
                e for e in events if not (type(e) is RequestReceived and e.stream_id in dropped)
            ]
        for event in events:
            if type(event) is RequestReceived:
                stream = self._requests.get(event.stream_id)
                if stream is not None:
                    stream.delivered = True
        return events

    def _timer_expired(self, timer: Timer) -> None:
        if timer.kind == "drain":
            self._close_now()
        elif not self._requests:
            self.stop(0)

    def _arm_idle(self) -> None:
        if self.idle_timeout is not None and self.accepting and not self.lost:
            self._timer = Timer("idle", self.idle_timeout)

    def _close_now(self) -> None:
        self.accepting = False
        self._timer = None
        if self.closing:
            return
        self.closing = True
        self._cancel_all()
        self._events.append(CloseConnection())

    def _cancel_all(self) -> None:
        for stream in list(self._requests.values()):
            self._forget(stream)
        self._streams.clear()

    def _forget(self, stream: RequestStream) -> None:
        """Drop a stream; tell the caller if it had the request."""
        stream.finished = True
        self._streams.pop(stream.stream_id, None)
        if not (stream.responded or stream.refused):
            if stream.delivered:
                self._emit(RequestCancelled(stream.stream_id))
            elif stream.remote_closed:
                self._undelivered.add(stream.stream_id)
        if not self._streams:
            self._stream_finished()

    def _calm(self) -> None:
        """The guard tripped: GOAWAY ENHANCE_YOUR_CALM after what is queued, and close."""
        trip = self.guard.tripped
        assert trip is not None
        self._out.append(self._conn.data_to_send())
        self._out.append(self.guard.goaway())
        self._done = True
        self._cancel_all()
        self._emit(Calmed(trip.reason, trip.last_stream_id))
        self._close_now()

    def _receive(self, data: bytes) -> bool:
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            # h2 queued its GOAWAY with the error's code and the last stream id.
            self._out.append(self._conn.data_to_send())
            self._done = True
            self._cancel_all()
            code = int(getattr(e, "error_code", ErrorCodes.PROTOCOL_ERROR))
            self._emit(ConnectionError(code, str(e) or type(e).__name__))
            self._close_now()
            return False
        for event in events:
            self._handle(event)
        return True

    def _handle(self, event: Any) -> None:
        kind = type(event)
        if kind is h2.events.RequestReceived:
            self._on_request(event)
        elif kind is h2.events.DataReceived:
            self._on_data(event)
        elif kind is h2.events.StreamEnded:
            stream = self._requests.get(event.stream_id)
            if stream is not None:
                self._on_end(stream)
        elif kind is h2.events.StreamReset:
            stream = self._requests.get(event.stream_id)
            if stream is not None:
                self._forget(stream)
        elif kind is h2.events.WindowUpdated:
            if event.stream_id == 0:
                self._send_all_pending()
            else:
                stream = self._requests.get(event.stream_id)
                if stream is not None:
                    self._send_pending(stream)
        elif kind is h2.events.RemoteSettingsChanged:
            self._send_all_pending()
        elif kind is h2.events.ConnectionTerminated:
            # The client goes away: answer what it sent, then close.
            self.accepting = False
            if not self._streams:
                self._close_now()
        # Pings, settings acks, priority, trailers, unknown frames: h2 answers
        # pings and acknowledges settings itself.

    def _on_request(self, event: Any) -> None:
        sid = event.stream_id
        if sid > self._last_stream_id:
            self._last_stream_id = sid
        if not self.accepting or len(self._streams) >= self.max_streams:
            self._refuse(sid)
            return
        stream = RequestStream(sid, self._now)
        self._requests[sid] = stream
        if self._timer is not None and self._timer.kind == "idle":
            self._timer = None
        refusal = stream.read_headers(
            event.headers, max_body=self.max_body, max_headers=self.max_headers
        )
        if refusal is not None:
            self._answer_self(stream, refusal)

    def _on_data(self, event: Any) -> None:
        sid = event.stream_id
        # The body is capped: credit every byte back at once.
        self.acknowledge(sid, event.flow_controlled_length)
        stream = self._requests.get(sid)
        if stream is None or stream.refused:
            return
        refusal = stream.add_data(event.data)
        if refusal is not None:
            self._answer_self(stream, refusal)

    def _on_end(self, stream: RequestStream) -> None:
        stream.remote_closed = True
        if stream.refused:
            self._finish_if_done(stream)
            return
        self._emit(
            RequestReceived(
                stream.stream_id, stream.method, stream.path, stream.headers, stream.take_body()
            )
        )

    def _refuse(self, sid: int) -> None:
        try:
            self._conn.reset_stream(sid, error_code=ErrorCodes.REFUSED_STREAM)
        except h2.exceptions.ProtocolError:  # pragma: no cover - closed already
            pass

    def _answer_self(self, stream: RequestStream, refusal: Refusal) -> None:
        stream.refused = True
        status, body = refusal
        self._emit(RequestRefused(stream.stream_id, status, body))
        self._respond(stream, status, [(b"content-type", TEXT_PLAIN)], body)

    def _respond(
        self, stream: RequestStream, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        stream.responded = True
        block = [(b":status", b"%d" % status), *headers, (b"content-length", b"%d" % len(body))]
        try:
            self._conn.send_headers(stream.stream_id, block, end_stream=not body)
        except h2.exceptions.ProtocolError:
            # Closed under us (StreamClosedError, StreamIDTooLowError...).
            self._forget(stream)
            return
        if body:
            stream.pending = memoryview(body)
            self._send_pending(stream)
        else:
            stream.local_closed = True
            self._sent(stream)

    def _send_pending(self, stream: StreamState) -> None:
        super()._send_pending(stream)
        if stream.local_closed:
            self._sent(stream)  # type: ignore[arg-type]

    def _sent(self, stream: RequestStream) -> None:
        """The answer is out: done, or stop the rest of a refused request (section 8.1)."""
        if not stream.remote_closed and stream.refused:
            self._reset(stream, ErrorCodes.NO_ERROR)
        else:
            self._finish_if_done(stream)

    def _stream_finished(self) -> None:
        if self._streams:
            return
        if self.accepting:
            self._arm_idle()
        elif not self.closing:
            self._close_now()
