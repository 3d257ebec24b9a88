"""
The HTTP/2 session core, sans-IO: the bookkeeping of one HTTP/2 connection
with no socket, no clock and no callback into the caller (the shape of
hyper-h2's ``H2Connection``, one level up: h2 parses frames, this decides what
the session does with them).

The I/O layer (``ilphttp._h2_protocol``) drives a :class:`ClientSession`::

    session = ClientSession(max_requests=1000, idle_timeout=60.0)
    session.initiate()                          # once the transport is up
    transport.write(session.data_to_send())
    stream_id = session.start_request(headers, body)   # None: no capacity now
    session.receive_data(data_from_peer)        # -> list of events
    session.acknowledge(stream_id, n)           # body bytes consumed
    session.cancel(stream_id)                   # RST_STREAM(CANCEL)
    session.timer                               # a Timer to run, or None
    session.timer_expired(timer)

Every method that changes state may queue events; ``receive_data`` returns
them, :meth:`H2Session.next_events` collects the others. After any call the
I/O layer should write :meth:`H2Session.data_to_send`, handle the events and
(re)arm :attr:`H2Session.timer`.

What the session does (RFC 9113):

- never more open streams than the peer's ``SETTINGS_MAX_CONCURRENT_STREAMS``
  (section 5.1.2) nor our own ``max_streams``: :attr:`ClientSession.capacity`
  says how many more may start;
- flow control both ways (section 5.2, 6.9): request bodies go out within the
  peer's windows, the rest waits for WINDOW_UPDATE; received data is credited
  back only when the caller acknowledges it;
- GOAWAY (section 6.8): streams above ``last_stream_id`` were not processed and
  fail with ``retry=True``; the others finish when the GOAWAY is graceful
  (``NO_ERROR``) and fail otherwise; REFUSED_STREAM (section 8.7) is retryable;
- ``max_requests`` retires the session (no new stream; it closes once its
  streams are done), as does an idle timeout or running out of stream ids.

:class:`~ilphttp.http2_connection.H2Session` holds what a server role would
share (the h2 connection, outbound body flow control, acknowledgement,
closing, timers); :class:`ClientSession` adds the client's stream life cycle.
The events, errors and :class:`~ilphttp.http2_events.Timer` live in
:mod:`ilphttp.http2_events` and are re-exported here.
"""

from __future__ import annotations

from typing import Any

import h2.events
import h2.exceptions
import h2.settings

from ilphttp.http2_connection import (
    DEFAULT_CONNECTION_WINDOW,
    DEFAULT_WINDOW,
    H2Session,
    StreamState,
)
from ilphttp.http2_events import (
    CapacityChanged,
    DataReceived,
    ErrorCodes,
    Event,
    H2ConnectionTerminated,
    H2ProtocolError,
    H2StreamReset,
    ResponseComplete,
    ResponseReceived,
    SessionReady,
    SessionRetired,
    StreamFailed,
    Timer,
    error_code,
)

__all__ = ["ClientSession"]

_HTTP1_REPLY = b"HTTP/1."


class ClientSession(H2Session):
    """
    The client role of one HTTP/2 connection.

    :param initial_window_size: our per-stream receive window in bytes
        (``SETTINGS_INITIAL_WINDOW_SIZE``).
    :param connection_window: our connection-level receive window in bytes.
    :param max_streams: our own cap on concurrent streams, on top of the
        peer's ``SETTINGS_MAX_CONCURRENT_STREAMS``.
    :param max_requests: retire the session after this many streams
        (``None``: never).
    :param idle_timeout: seconds without an open stream before the session
        retires and closes (``None``: never).
    """

    def __init__(
        self,
        *,
        initial_window_size: int = DEFAULT_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        max_streams: int = 1000,
        max_requests: int | None = None,
        idle_timeout: float | None = 60.0,
    ) -> None:
        codes = h2.settings.SettingCodes
        super().__init__(
            client_side=True,
            local_settings={
                codes.ENABLE_PUSH: 0,
                codes.INITIAL_WINDOW_SIZE: initial_window_size,
                codes.MAX_CONCURRENT_STREAMS: 100,
                codes.MAX_HEADER_LIST_SIZE: 65536,
            },
            connection_window=connection_window,
        )
        self.max_streams = max_streams
        self.max_requests = max_requests
        self.idle_timeout = idle_timeout
        self.accepting = True
        self.ready = False
        self.requests_started = 0
        self.goaway: H2ConnectionTerminated | None = None
        self._first_bytes = True
        self._at_h2_limit = False

    @property
    def capacity(self) -> int:
        """How many more streams may start now (0 before the peer's SETTINGS)."""
        if not self.accepting or not self.ready or self.lost or self._at_h2_limit:
            return 0
        limit = min(self._conn.remote_settings.max_concurrent_streams, self.max_streams)
        # Our own count: h2's open_outbound_streams walks all streams.
        free = limit - len(self._streams)
        if self.max_requests is not None:
            free = min(free, self.max_requests - self.requests_started)
        return max(free, 0)

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; returns every queued event."""
        if self.lost:
            return self.next_events()
        if self._first_bytes:
            self._first_bytes = False
            if data.startswith(_HTTP1_REPLY):
                self._protocol_failure(
                    H2ProtocolError("the peer answered in HTTP/1.x: it does not speak HTTP/2")
                )
                return self.next_events()
        self._receive(data)
        return self.next_events()

    def start_request(self, headers: list[tuple[bytes, bytes]], body: bytes | None) -> int | None:
        """
        Open a stream: send ``headers`` (see :func:`request_headers`) and as
        much of ``body`` as the windows allow. Returns the stream id, or
        ``None`` if the session cannot take it now (try another session).

        :raises H2ProtocolError: h2 refused the request (bad headers).
        """
        try:
            stream_id: int = self._conn.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self.retire()
            return None
        stream = StreamState(stream_id, body)
        try:
            self._conn.send_headers(stream_id, headers, end_stream=stream.local_closed)
        except h2.exceptions.TooManyStreamsError:
            # h2 counts a stream we consider finished: wait for one to end.
            self._at_h2_limit = True
            return None
        except h2.exceptions.ProtocolError as e:
            raise H2ProtocolError(f"bad request: {e}") from e
        if self._timer is not None and self._timer.kind == "idle":
            self._timer = None
        self._streams[stream_id] = stream
        self.requests_started += 1
        if self.max_requests is not None and self.requests_started >= self.max_requests:
            self.retire()
        self._send_pending(stream)
        return stream_id

    def cancel(self, stream_id: int, code: int = ErrorCodes.CANCEL) -> None:
        """Reset an open stream (RST_STREAM, RFC 9113 section 6.4); no event follows for it."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.finished or self.lost:
            return
        self._reset(stream, code)

    def retire(self) -> None:
        """Take no new stream; close once the open ones are done."""
        if self.accepting:
            self.accepting = False
            self._events.append(SessionRetired())
        if not self._streams:
            self.close()

    def drain(self, timeout: float) -> None:
        """Take no new stream; close when idle, or abort after ``timeout`` seconds."""
        self.accepting = False
        if not self._streams:
            self.close()
        elif not self.lost and (self._timer is None or self._timer.kind != "drain"):
            self._timer = Timer("drain", timeout)

    # -- internals -------------------------------------------------------------
    def _stop_accepting(self) -> None:
        self.accepting = False

    def _timer_expired(self, timer: Timer) -> None:
        if timer.kind == "drain":
            self.abort()
        elif not self._streams:
            self.retire()

    def _arm_idle(self) -> None:
        if self.idle_timeout is not None and not self.lost:
            self._timer = Timer("idle", self.idle_timeout)

    def _stream_finished(self) -> None:
        self._at_h2_limit = False
        if not self._streams:
            if not self.accepting:
                self.close()
                return
            self._arm_idle()
        self._events.append(CapacityChanged())

    def _handle(self, event: Any) -> None:
        stream = self._streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived):
            if stream is not None:
                self._on_response(stream, event.headers)
        elif isinstance(event, h2.events.DataReceived):
            if stream is not None and stream.responded:
                self._events.append(
                    DataReceived(stream.stream_id, event.data, event.flow_controlled_length)
                )
            else:
                self.acknowledge(event.stream_id, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream.remote_closed = True
                if stream.responded:
                    self._events.append(ResponseComplete(stream.stream_id))
                else:  # pragma: no cover - h2 refuses END_STREAM before a final response
                    error = H2ProtocolError("stream ended without a response")
                    self._events.append(StreamFailed(stream.stream_id, error))
                self._finish_if_done(stream)
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                self._on_reset(stream, error_code(event.error_code))
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                self._send_all_pending()
            elif stream is not None:
                self._send_pending(stream)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._send_all_pending()
            if not self.ready:
                self.ready = True
                self._events.append(SessionReady())
                if self.accepting and not self._streams:
                    self._arm_idle()
            else:
                self._events.append(CapacityChanged())
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)
        # Other events (pings, settings acks, informational responses, trailers,
        # priority, unknown frames) need nothing from us: h2 answers pings and
        # acknowledges settings itself.

    def _on_response(self, stream: StreamState, headers: list[tuple[bytes, bytes]]) -> None:
        status = 0
        regular: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            if name.startswith(b":"):
                if name == b":status":
                    status = int(value)
                continue
            regular.append((name, value))
        stream.responded = True
        self._events.append(ResponseReceived(stream.stream_id, status, regular))

    def _on_reset(self, stream: StreamState, code: int) -> None:
        # After a complete response a reset ("stop sending") fails nothing.
        if not stream.remote_closed:
            # RFC 9113 8.7: a refused stream was not processed; safe to retry.
            retry = code == ErrorCodes.REFUSED_STREAM and not stream.responded
            self._events.append(StreamFailed(stream.stream_id, H2StreamReset(code), retry))
        stream.remote_closed = stream.local_closed = True
        self._finish_if_done(stream)

    def _on_goaway(self, event: Any) -> None:
        code = error_code(event.error_code)
        last = event.last_stream_id
        error = H2ConnectionTerminated(code, last, event.additional_data)
        self.goaway = error
        self.accepting = False
        self._events.append(SessionRetired(error))
        graceful = code == ErrorCodes.NO_ERROR and self.goaway_tolerant
        for sid, stream in sorted(self._streams.items()):
            if sid > last:
                # Not processed by the peer: retry elsewhere.
                del self._streams[sid]
                stream.finished = True
                if graceful:
                    try:
                        self._conn.reset_stream(sid, error_code=ErrorCodes.CANCEL)
                    except h2.exceptions.ProtocolError:
                        pass
                self._events.append(StreamFailed(sid, error, retry=not stream.responded))
            elif not graceful:
                del self._streams[sid]
                stream.finished = True
                self._events.append(StreamFailed(sid, error))
        if not self._streams:
            self.close()
