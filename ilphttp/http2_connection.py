"""
The role-agnostic part of the sans-IO HTTP/2 core: :class:`H2Session` wraps
an h2 connection that survives a graceful GOAWAY (RFC 9113 section 6.8) and
does what a client and a server session share -- outbound bodies within the
flow-control windows (section 6.9), acknowledgement of received data,
resets, closing, :class:`~ilphttp.http2_events.Timer` deadlines and the event
queue. :class:`~ilphttp.http2_session.ClientSession` builds the client role
on it; a server role would subclass it the same way. No I/O, no Twisted.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.settings

from ilphttp.http2_events import (
    CloseConnection,
    ConnectionFailed,
    ErrorCodes,
    Event,
    H2ProtocolError,
    StreamFailed,
    Timer,
)

__all__ = ["DEFAULT_CONNECTION_WINDOW", "H2Session", "StreamState", "goaway_tolerant_state_machine"]

#: Our default connection-level receive window, in bytes.
DEFAULT_CONNECTION_WINDOW = 1 << 24
DEFAULT_WINDOW = 65535


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


class StreamState:
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
        self._connection_window = max(connection_window, DEFAULT_WINDOW)
        self._streams: dict[int, StreamState] = {}
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
        extra = self._connection_window - DEFAULT_WINDOW
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

    def _send_pending(self, stream: StreamState) -> None:
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

    def _reset(self, stream: StreamState, code: int) -> None:
        try:
            self._conn.reset_stream(stream.stream_id, error_code=code)
        except h2.exceptions.ProtocolError:
            pass
        stream.local_closed = stream.remote_closed = True
        self._finish_if_done(stream)

    def _finish_if_done(self, stream: StreamState) -> None:
        if stream.finished or not (stream.local_closed and stream.remote_closed):
            return
        stream.finished = True
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._stream_finished()
