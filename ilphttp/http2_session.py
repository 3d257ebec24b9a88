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

:class:`H2Session` holds what a server role would share (the h2 connection,
outbound body flow control, acknowledgement, GOAWAY, timers);
:class:`ClientSession` adds the client's stream life cycle.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from ilphttp.http2_events import (
    CapacityChanged,
    CloseConnection,
    ConnectionFailed,
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
    request_headers,
)

__all__ = [
    "DEFAULT_CONNECTION_WINDOW",
    "CapacityChanged",
    "ClientSession",
    "CloseConnection",
    "ConnectionFailed",
    "DataReceived",
    "ErrorCodes",
    "Event",
    "H2ConnectionTerminated",
    "H2ProtocolError",
    "H2Session",
    "H2StreamReset",
    "ResponseComplete",
    "ResponseReceived",
    "SessionReady",
    "SessionRetired",
    "StreamFailed",
    "Timer",
    "goaway_tolerant_state_machine",
    "request_headers",
]

#: Our default connection-level receive window, in bytes.
DEFAULT_CONNECTION_WINDOW = 1 << 24
_DEFAULT_WINDOW = 65535
_HTTP1_REPLY = b"HTTP/1."


def goaway_tolerant_state_machine() -> Any:
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


class _StreamState:
    """One stream's halves, its unsent body and whether a response started."""

    __slots__ = ("finished", "local_closed", "pending", "remote_closed", "responded", "stream_id")

    def __init__(self, stream_id: int, body: bytes | None) -> None:
        self.stream_id = stream_id
        self.pending = memoryview(body or b"")
        self.local_closed = not body
        self.remote_closed = False
        self.responded = False
        self.finished = False


class H2Session:
    """
    What both roles share: an h2 connection that survives a graceful GOAWAY,
    outbound bodies sent within the flow-control windows, acknowledgement of
    received data, closing, timers and the event queue. Subclasses handle h2's
    events in :meth:`_handle` and react to finished streams in
    :meth:`_stream_finished`.

    :param client_side: the role.
    :param local_settings: our SETTINGS (``h2.settings.SettingCodes`` -> value).
    :param connection_window: our connection-level receive window in bytes
        (at least 65,535, the initial one; RFC 9113 section 6.9.2).
    """

    def __init__(
        self,
        *,
        client_side: bool,
        local_settings: dict[h2.settings.SettingCodes, int],
        connection_window: int,
    ) -> None:
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            # The I/O layer's Headers refuse CR/LF; request_headers lowercases
            # names and drops connection-specific fields. Saves ~10% CPU.
            validate_outbound_headers=False,
            normalize_outbound_headers=True,
            validate_inbound_headers=True,
        )
        self._conn = h2.connection.H2Connection(config=config)
        tolerant = goaway_tolerant_state_machine()
        #: Whether graceful GOAWAYs let streams at or below last_stream_id finish.
        self.goaway_tolerant = tolerant is not None
        if tolerant is not None:
            self._conn.state_machine = tolerant
        self._conn.local_settings = h2.settings.Settings(
            client=client_side, initial_values=local_settings
        )
        self._connection_window = max(connection_window, _DEFAULT_WINDOW)
        self._streams: dict[int, _StreamState] = {}
        self._events: list[Event] = []
        self._timer: Timer | None = None
        self.started = False
        self.closing = False
        self.lost = False

    # -- for the I/O layer ----------------------------------------------------
    def initiate(self) -> None:
        """Queue the connection preface and SETTINGS, and widen our window."""
        self.started = True
        self._conn.initiate_connection()
        extra = self._connection_window - _DEFAULT_WINDOW
        if extra > 0:
            self._conn.increment_flow_control_window(extra)

    def data_to_send(self) -> bytes:
        """The bytes to write to the transport now (``b""``: nothing)."""
        if self.lost:
            return b""
        return self._conn.data_to_send()

    def next_events(self) -> list[Event]:
        """The events queued since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    @property
    def timer(self) -> Timer | None:
        """The deadline wanted now, or ``None``."""
        return self._timer

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def acknowledge(self, stream_id: int, flow_controlled_length: int) -> None:
        """Credit ``flow_controlled_length`` consumed bytes back to the peer (WINDOW_UPDATE)."""
        if self.lost or not flow_controlled_length:
            return
        try:
            self._conn.acknowledge_received_data(flow_controlled_length, stream_id)
        except h2.exceptions.ProtocolError:  # pragma: no cover - connection closed
            pass

    def close(self, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """Send GOAWAY (if HTTP/2 started) and ask for the connection to close."""
        self._stop_accepting()
        self._timer = None
        if self.lost or self.closing:
            return
        self.closing = True
        if self.started:
            try:
                self._conn.close_connection(error_code=error_code)
            except h2.exceptions.ProtocolError:
                pass
        self._events.append(CloseConnection())

    def abort(self) -> None:
        """Ask for the connection to be dropped at once."""
        self._stop_accepting()
        if not self.lost:
            self._events.append(CloseConnection(abort=True))

    def connection_lost(self) -> None:
        """The transport is gone: forget every stream (the caller fails them)."""
        self.lost = True
        self._stop_accepting()
        self._timer = None
        self._streams.clear()

    def timer_expired(self, timer: Timer) -> None:
        """``timer`` ran out; a timer no longer wanted is ignored."""
        if timer is not self._timer:
            return
        self._timer = None
        self._timer_expired(timer)

    # -- for subclasses ---------------------------------------------------------
    def _stop_accepting(self) -> None:
        pass

    def _timer_expired(self, timer: Timer) -> None:
        pass

    def _handle(self, event: Any) -> None:
        raise NotImplementedError

    def _stream_finished(self) -> None:
        pass

    def _receive(self, data: bytes) -> bool:
        """Feed h2; ``False`` after a protocol error (then the streams have failed)."""
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._protocol_failure(H2ProtocolError(f"HTTP/2 protocol error: {e!r}"))
            return False
        for event in events:
            self._handle(event)
        return True

    def _protocol_failure(self, error: Exception) -> None:
        self._stop_accepting()
        self._timer = None
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream.finished = True
            self._events.append(StreamFailed(stream.stream_id, error))
        self._events.append(ConnectionFailed(error))
        self._events.append(CloseConnection(abort=True))

    def _send_pending(self, stream: _StreamState) -> None:
        """Send as much of the body as the stream and connection windows allow."""
        if stream.local_closed or stream.finished:
            return
        conn = self._conn
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
        self._finish_if_done(stream)

    def _send_all_pending(self) -> None:
        for stream in list(self._streams.values()):
            if len(stream.pending):
                self._send_pending(stream)

    def _reset(self, stream: _StreamState, code: int) -> None:
        try:
            self._conn.reset_stream(stream.stream_id, error_code=code)
        except h2.exceptions.ProtocolError:
            pass
        stream.local_closed = stream.remote_closed = True
        self._finish_if_done(stream)

    def _finish_if_done(self, stream: _StreamState) -> None:
        if stream.finished or not (stream.local_closed and stream.remote_closed):
            return
        stream.finished = True
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._stream_finished()


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
        initial_window_size: int = _DEFAULT_WINDOW,
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
        stream = _StreamState(stream_id, body)
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
                else:
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

    def _on_response(self, stream: _StreamState, headers: list[tuple[bytes, bytes]]) -> None:
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

    def _on_reset(self, stream: _StreamState, code: int) -> None:
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
