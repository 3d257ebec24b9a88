"""
Tests for the sans-IO HTTP/2 session core (ilphttp.http2_session): frames
built with a small frame factory are fed to a ClientSession and its events and
outgoing frames are read back. No reactor, no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import h2.connection
import hpack
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from twisted.trial.unittest import SynchronousTestCase

import ilphttp.http2_connection
import ilphttp.http2_session
from ilphttp.http2_connection import H2Session, StreamState, goaway_tolerant_state_machine
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
    request_headers,
)
from ilphttp.http2_session import ClientSession

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]


class FrameFactory:
    """Builds the server's frames."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def settings(self, **values: int) -> bytes:
        codes = {
            "max_concurrent_streams": SettingsFrame.MAX_CONCURRENT_STREAMS,
            "initial_window_size": SettingsFrame.INITIAL_WINDOW_SIZE,
        }
        return SettingsFrame(0, settings={codes[k]: v for k, v in values.items()}).serialize()

    def response(self, stream_id: int, status: int = 200, end_stream: bool = False) -> bytes:
        frame = HeadersFrame(stream_id)
        frame.data = self.encoder.encode([(b":status", str(status).encode()), (b"x-a", b"1")])
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def data(self, stream_id: int, data: bytes, end_stream: bool = False) -> bytes:
        frame = DataFrame(stream_id, data=data)
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def rst(self, stream_id: int, code: int) -> bytes:
        return RstStreamFrame(stream_id, error_code=code).serialize()

    def goaway(self, last_stream_id: int, code: int, data: bytes = b"") -> bytes:
        return GoAwayFrame(0, last_stream_id, code, data).serialize()

    def window_update(self, stream_id: int, increment: int) -> bytes:
        return WindowUpdateFrame(stream_id, window_increment=increment).serialize()


def parse(data: bytes) -> list[Frame]:
    """The frames in what the client wrote (its preface skipped)."""
    if data.startswith(PREFACE):
        data = data[len(PREFACE) :]
    frames = []
    view = memoryview(data)
    while len(view):
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def of_type(frames: list[Frame], kind: type) -> list[Any]:
    return [f for f in frames if isinstance(f, kind)]


class _Base(SynchronousTestCase):
    def connect(self, **settings: int) -> ClientSession:
        """A ready session (preface written, the peer's SETTINGS received)."""
        return self.connect_with(ClientSession(), **settings)

    def connect_with(self, session: ClientSession, **settings: int) -> ClientSession:
        self.ff = FrameFactory()
        session.initiate()
        self.assertTrue(session.data_to_send().startswith(PREFACE))
        self.assertEqual(session.capacity, 0)
        events = session.receive_data(self.ff.settings(**settings))
        self.assertEqual(events, [SessionReady()])
        session.data_to_send()  # the SETTINGS ack
        return session

    def failed(self, events: list[Event]) -> dict[int, StreamFailed]:
        return {e.stream_id: e for e in events if isinstance(e, StreamFailed)}


class PurityTests(SynchronousTestCase):
    def test_no_twisted_in_a_fresh_interpreter(self) -> None:
        """
        The core loads no Twisted. ``ilphttp/__init__`` is bypassed (it imports
        the plugin today), so this checks the core modules' own imports.
        """
        package_dir = os.path.dirname(ilphttp.http2_session.__file__)
        code = (
            "import importlib, sys, types\n"
            "pkg = types.ModuleType('ilphttp'); pkg.__path__ = [sys.argv[1]]\n"
            "sys.modules['ilphttp'] = pkg\n"
            "importlib.import_module('ilphttp.http2_session')\n"
            "assert 'ilphttp.http2_events' in sys.modules\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'twisted')\n"
            "assert not bad, bad\n"
            "print('pure')\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, package_dir], capture_output=True, text=True, check=False
        )
        self.assertEqual((out.returncode, out.stdout.strip()), (0, "pure"), out.stderr)


class ConcurrencyTests(_Base):
    def test_capacity_follows_the_peers_limit(self) -> None:
        """SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 5.1.2) and our own cap."""
        for peer_limit, max_streams, expected in [(1, 1000, 1), (2, 1000, 2), (100, 3, 3)]:
            session = self.connect_with(
                ClientSession(max_streams=max_streams), max_concurrent_streams=peer_limit
            )
            self.assertEqual(session.capacity, expected)
            for i in range(expected):
                self.assertEqual(session.start_request(GET, None), 1 + 2 * i)
            self.assertEqual(session.capacity, 0)

    def test_finished_stream_frees_a_slot(self) -> None:
        session = self.connect(max_concurrent_streams=2)
        session.start_request(GET, None)
        session.start_request(GET, None)
        self.assertEqual(session.capacity, 0)
        events = session.receive_data(self.ff.response(3, end_stream=True))
        self.assertEqual(
            events,
            [ResponseReceived(3, 200, [(b"x-a", b"1")]), ResponseComplete(3), CapacityChanged()],
        )
        self.assertEqual((session.capacity, session.open_streams), (1, 1))

    def test_raised_limit_is_announced(self) -> None:
        session = self.connect(max_concurrent_streams=1)
        session.start_request(GET, None)
        events = session.receive_data(self.ff.settings(max_concurrent_streams=3))
        self.assertEqual(events, [CapacityChanged()])
        self.assertEqual(session.capacity, 2)


class FlowControlTests(_Base):
    def test_request_body_waits_for_window_updates(self) -> None:
        """RFC 9113 6.9: DATA never exceeds the peer's stream window."""
        session = self.connect(initial_window_size=10)
        sid = session.start_request(POST, b"a" * 25)
        assert sid is not None
        sent = []
        for update in [None, 10, 10]:
            if update is not None:
                session.receive_data(self.ff.window_update(sid, update))
            frames = of_type(parse(session.data_to_send()), DataFrame)
            sent.append([(len(f.data), "END_STREAM" in f.flags) for f in frames])
        self.assertEqual(sent, [[(10, False)], [(10, False)], [(5, True)]])

    def test_connection_window_limits_too(self) -> None:
        session = self.connect(initial_window_size=1 << 20)
        session.start_request(POST, b"b" * 70000)
        first = of_type(parse(session.data_to_send()), DataFrame)
        self.assertEqual(sum(len(f.data) for f in first), 65535)
        self.assertLessEqual(max(len(f.data) for f in first), 16384)
        session.receive_data(self.ff.window_update(0, 10000))
        rest = of_type(parse(session.data_to_send()), DataFrame)
        self.assertEqual(sum(len(f.data) for f in rest), 70000 - 65535)
        self.assertIn("END_STREAM", rest[-1].flags)

    def test_received_data_is_credited_only_when_acknowledged(self) -> None:
        session = self.connect()
        sid = session.start_request(GET, None)
        assert sid is not None
        session.data_to_send()
        payload = self.ff.response(sid) + b"".join(
            self.ff.data(sid, b"x" * 16000) for _ in range(3)
        )
        events = session.receive_data(payload)
        data = [e for e in events if isinstance(e, DataReceived)]
        self.assertEqual([len(e.data) for e in data], [16000] * 3)
        self.assertEqual(of_type(parse(session.data_to_send()), WindowUpdateFrame), [])
        for event in data:
            session.acknowledge(sid, event.flow_controlled_length)
        updates = of_type(parse(session.data_to_send()), WindowUpdateFrame)
        self.assertEqual([(u.stream_id, u.window_increment) for u in updates], [(sid, 48000)])


class GoawayTests(_Base):
    def test_graceful_and_error_goaway(self) -> None:
        """
        RFC 9113 6.8: streams above last_stream_id are retryable either way;
        at or below it they finish after NO_ERROR and fail otherwise.
        """
        cases = [
            (ErrorCodes.NO_ERROR, {5: True}, [1, 3]),
            (ErrorCodes.INTERNAL_ERROR, {1: False, 3: False, 5: True}, []),
        ]
        for code, expected_failures, still_open in cases:
            session = self.connect()
            for _ in range(3):
                session.start_request(GET, None)
            events = session.receive_data(self.ff.goaway(3, code, b"bye"))
            retired = [e for e in events if isinstance(e, SessionRetired)]
            self.assertEqual(len(retired), 1)
            self.assertIsInstance(retired[0].reason, H2ConnectionTerminated)
            failed = self.failed(events)
            self.assertEqual({sid: e.retry for sid, e in failed.items()}, expected_failures)
            for event in failed.values():
                self.assertIsInstance(event.error, H2ConnectionTerminated)
                self.assertEqual((event.error.error_code, event.error.last_stream_id), (code, 3))
            self.assertEqual(session.capacity, 0)
            self.assertEqual(session.open_streams, len(still_open))
            self.assertEqual(CloseConnection() in events, not still_open)
            for sid in still_open:
                events = session.receive_data(self.ff.response(sid, end_stream=True))
                self.assertIn(ResponseComplete(sid), events)
            if still_open:
                self.assertIn(CloseConnection(), events)
                self.assertEqual(len(of_type(parse(session.data_to_send()), GoAwayFrame)), 1)

    def test_without_the_tolerant_state_machine(self) -> None:
        """
        If h2's internals are not what the tolerant machine needs, the session
        uses h2's own: a graceful GOAWAY then fails the streams at or below
        last_stream_id too (h2 would refuse their frames).
        """
        missing = [
            ("H2ConnectionStateMachine", None),
            ("ConnectionInputs", type("NoGoaway", (), {})),
            ("ConnectionState", type("NoClosed", (), {})),
        ]
        for name, replacement in missing:
            patched = self.patch(ilphttp.http2_connection.h2.connection, name, replacement)
            self.assertIsNone(goaway_tolerant_state_machine())
            patched.restore()
        self.patch(ilphttp.http2_connection, "goaway_tolerant_state_machine", lambda: None)
        session = self.connect()
        self.assertFalse(session.goaway_tolerant)
        session.start_request(GET, None)
        session.start_request(GET, None)
        events = session.receive_data(self.ff.goaway(1, ErrorCodes.NO_ERROR))
        self.assertEqual(
            {sid: e.retry for sid, e in self.failed(events).items()}, {1: False, 3: True}
        )
        self.assertEqual(events[-1], CloseConnection())

    def test_late_frames_on_a_stream_cancelled_by_graceful_goaway(self) -> None:
        """
        A graceful GOAWAY resets the streams above last_stream_id (CANCEL);
        what the peer still sends on them makes no event, and the stream at
        or below it completes.
        """
        session = self.connect()
        first = session.start_request(GET, None)
        above = session.start_request(POST, b"x" * 100)
        assert first is not None and above is not None
        session.data_to_send()
        session.receive_data(self.ff.goaway(1, ErrorCodes.NO_ERROR))
        resets = of_type(parse(session.data_to_send()), RstStreamFrame)
        self.assertEqual(
            [(r.stream_id, r.error_code) for r in resets], [(above, ErrorCodes.CANCEL)]
        )
        late = [
            self.ff.window_update(above, 100),
            self.ff.response(above),
            self.ff.data(above, b"late", end_stream=True),
        ]
        for frame in late:
            self.assertEqual(session.receive_data(frame), [])
        events = session.receive_data(self.ff.response(first, end_stream=True))
        self.assertEqual(events[-1], CloseConnection())

    def test_goaway_tolerant_state_machine_available(self) -> None:
        """Without it, graceful GOAWAYs would fail streams the peer still answers."""
        machine = goaway_tolerant_state_machine()
        self.assertIsNotNone(machine)
        machine.process_input(h2.connection.ConnectionInputs.SEND_HEADERS)
        machine.process_input(h2.connection.ConnectionInputs.RECV_GOAWAY)
        self.assertEqual(machine.state, h2.connection.ConnectionState.CLIENT_OPEN)
        conn = h2.connection.H2Connection()
        self.assertIsInstance(conn.state_machine, type(machine).__mro__[1])


class ResetTests(_Base):
    def test_peer_resets(self) -> None:
        """RFC 9113 8.7: only REFUSED_STREAM before a response may be retried."""
        cases = [
            (ErrorCodes.REFUSED_STREAM, False, True),
            (ErrorCodes.CANCEL, False, False),
            (ErrorCodes.INTERNAL_ERROR, False, False),
            (ErrorCodes.REFUSED_STREAM, True, False),
        ]
        for code, after_response, retry in cases:
            session = self.connect()
            sid = session.start_request(GET, None)
            assert sid is not None
            data = (self.ff.response(sid) if after_response else b"") + self.ff.rst(sid, code)
            failed = self.failed(session.receive_data(data))
            self.assertEqual(list(failed), [sid])
            self.assertEqual(failed[sid].retry, retry)
            error = failed[sid].error
            assert isinstance(error, H2StreamReset)
            self.assertEqual((error.error_code, error.remote), (code, True))
            self.assertEqual((session.open_streams, session.capacity), (0, 1000))

    def test_reset_after_complete_response_is_not_a_failure(self) -> None:
        session = self.connect()
        sid = session.start_request(POST, b"x" * 100000)  # still sending
        assert sid is not None
        session.receive_data(self.ff.response(sid, end_stream=True))
        events = session.receive_data(self.ff.rst(sid, ErrorCodes.NO_ERROR))
        self.assertEqual(self.failed(events), {})
        self.assertEqual(session.open_streams, 0)

    def test_cancel_after_our_goaway(self) -> None:
        """Cancelling after close() (GOAWAY sent; h2 refuses RST_STREAM) just forgets it."""
        session = self.connect()
        sid = session.start_request(GET, None)
        assert sid is not None
        session.close()
        self.assertEqual(session.next_events(), [CloseConnection()])
        self.assertEqual(len(of_type(parse(session.data_to_send()), GoAwayFrame)), 1)
        session.cancel(sid)
        self.assertEqual((session.next_events(), session.data_to_send()), ([], b""))
        self.assertEqual(session.open_streams, 0)

    def test_cancel_sends_rst_stream(self) -> None:
        session = self.connect(max_concurrent_streams=1)
        sid = session.start_request(GET, None)
        assert sid is not None
        session.data_to_send()
        session.cancel(sid)
        resets = of_type(parse(session.data_to_send()), RstStreamFrame)
        self.assertEqual([(r.stream_id, r.error_code) for r in resets], [(sid, ErrorCodes.CANCEL)])
        self.assertEqual(session.next_events(), [CapacityChanged()])
        self.assertEqual(session.capacity, 1)
        # What the peer still sends on it produces nothing.
        events = session.receive_data(self.ff.response(sid) + self.ff.data(sid, b"late"))
        self.assertEqual(events, [])
        session.data_to_send()  # h2 answers them with RST_STREAM(STREAM_CLOSED)
        session.cancel(sid)  # twice: nothing more
        self.assertEqual(of_type(parse(session.data_to_send()), RstStreamFrame), [])


class LifecycleTests(_Base):
    def test_max_requests_per_session(self) -> None:
        session = self.connect_with(ClientSession(max_requests=2))
        self.assertEqual(session.capacity, 2)
        session.start_request(GET, None)
        self.assertEqual(session.next_events(), [])
        session.start_request(GET, None)
        self.assertEqual(session.next_events(), [SessionRetired()])
        self.assertEqual(session.capacity, 0)
        session.receive_data(self.ff.response(1, end_stream=True))
        events = session.receive_data(self.ff.response(3, end_stream=True))
        self.assertEqual(events[-1], CloseConnection())
        goaways = of_type(parse(session.data_to_send()), GoAwayFrame)
        self.assertEqual([g.error_code for g in goaways], [ErrorCodes.NO_ERROR])

    def test_protocol_errors(self) -> None:
        bad_window = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # increment 0
        for garbage in [bad_window, b"HTTP/1.1 400 Bad Request\r\n\r\n"]:
            session = ClientSession()
            session.initiate()
            session.data_to_send()
            if garbage is bad_window:
                self.ff = FrameFactory()
                session.receive_data(self.ff.settings())
                session.start_request(GET, None)
            events = session.receive_data(garbage)
            failures = [e for e in events if isinstance(e, ConnectionFailed)]
            self.assertEqual(len(failures), 1)
            self.assertIsInstance(failures[0].error, H2ProtocolError)
            self.assertEqual(events[-1], CloseConnection(abort=True))
            if garbage is bad_window:
                self.assertEqual(list(self.failed(events)), [1])
            self.assertEqual((session.capacity, session.open_streams), (0, 0))

    def test_idle_timer(self) -> None:
        session = self.connect_with(ClientSession(idle_timeout=7.5))
        first = session.timer
        assert first is not None
        self.assertEqual((first.kind, first.seconds), ("idle", 7.5))
        session.start_request(GET, None)
        self.assertIsNone(session.timer)
        session.receive_data(self.ff.response(1, end_stream=True))
        second = session.timer
        self.assertIsNotNone(second)
        self.assertIsNot(second, first)
        session.timer_expired(first)  # stale: ignored
        self.assertEqual((session.next_events(), session.accepting), ([], True))
        assert second is not None
        session.timer_expired(second)
        self.assertEqual(session.next_events(), [SessionRetired(), CloseConnection()])

    def test_no_idle_timer_when_disabled(self) -> None:
        session = self.connect_with(ClientSession(idle_timeout=None))
        self.assertIsNone(session.timer)

    def test_drain(self) -> None:
        session = self.connect()
        session.start_request(GET, None)
        session.drain(5.0)
        timer = session.timer
        assert timer is not None
        self.assertEqual((timer.kind, timer.seconds, session.capacity), ("drain", 5.0, 0))
        session.timer_expired(timer)
        self.assertEqual(session.next_events(), [CloseConnection(abort=True)])

    def test_drain_when_idle_closes_now(self) -> None:
        session = self.connect()
        session.drain(5.0)
        self.assertEqual(session.next_events(), [CloseConnection()])
        self.assertEqual(len(of_type(parse(session.data_to_send()), GoAwayFrame)), 1)

    def test_stream_ids_exhausted(self) -> None:
        """RFC 9113 5.1.1: out of stream ids, the session retires (a new connection is needed)."""
        session = self.connect()
        session._conn.highest_outbound_stream_id = 2**31 - 1  # fast-forward
        self.assertEqual(session.start_request(GET, None), None)
        self.assertEqual(session.next_events(), [SessionRetired(), CloseConnection()])
        self.assertEqual(session.capacity, 0)

    def test_h2_counting_more_streams_than_we_do(self) -> None:
        """
        If h2 counts an open stream we do not (here one opened behind the
        session's back), start_request returns None and capacity stays 0 until
        one of our streams ends.
        """
        session = self.connect(max_concurrent_streams=2)
        ours = session.start_request(GET, None)
        assert ours is not None
        session._conn.send_headers(3, GET, end_stream=True)
        self.assertEqual(session.capacity, 1)
        self.assertIsNone(session.start_request(GET, None))
        self.assertEqual(session.capacity, 0)
        events = session.receive_data(self.ff.response(ours, end_stream=True))
        self.assertEqual(events[-1], CapacityChanged())
        self.assertEqual(session.capacity, 2)  # our count again; h2 has room for one
        self.assertEqual(session.start_request(GET, None), 5)
        # The peer's answer on the stream we do not track makes no event.
        answer = self.ff.response(3) + self.ff.data(3, b"x", end_stream=True)
        self.assertEqual(session.receive_data(answer), [])
        self.assertEqual(session.open_streams, 1)

    def test_start_request_after_close(self) -> None:
        session = self.connect()
        session.close()
        self.assertRaises(H2ProtocolError, session.start_request, GET, None)

    def test_retire_twice(self) -> None:
        session = self.connect()
        session.start_request(GET, None)
        session.retire()
        session.retire()
        self.assertEqual(session.next_events(), [SessionRetired()])

    def test_closed_before_the_preface(self) -> None:
        """Closed before HTTP/2 started (TLS still in progress): no GOAWAY, just close."""
        session = ClientSession(idle_timeout=5.0)
        session.close()
        self.assertEqual(
            (session.next_events(), session.data_to_send()), ([CloseConnection()], b"")
        )
        self.assertIsNone(session.timer)

    def test_after_connection_lost_nothing_happens(self) -> None:
        session = self.connect()
        sid = session.start_request(GET, None)
        assert sid is not None
        session.connection_lost()
        self.assertEqual(session.receive_data(self.ff.response(sid, end_stream=True)), [])
        session.acknowledge(sid, 100)
        session.abort()
        session.close()
        session.cancel(sid)
        self.assertEqual((session.next_events(), session.data_to_send()), ([], b""))

    def test_connection_lost(self) -> None:
        session = self.connect()
        session.start_request(GET, None)
        session.connection_lost()
        self.assertEqual((session.open_streams, session.capacity, session.timer), (0, 0, None))
        self.assertEqual(session.data_to_send(), b"")


class BaseSessionTests(SynchronousTestCase):
    def test_role_hooks_default_to_nothing(self) -> None:
        """
        H2Session without a role: closing, timers and finished streams need
        no hook; handling h2's events does (a role must say what they mean).
        """
        session = H2Session(client_side=True, local_settings={}, connection_window=1)
        session.initiate()
        self.assertTrue(session.data_to_send().startswith(PREFACE))
        self.assertRaises(NotImplementedError, session._receive, FrameFactory().settings())
        session._timer = timer = Timer("idle", 1.0)
        session.timer_expired(timer)
        stream = StreamState(1, None)
        session._streams[1] = stream
        session._reset(stream, ErrorCodes.CANCEL)
        self.assertEqual((session.open_streams, stream.finished), (0, True))
        session.close()
        self.assertEqual(session.next_events(), [CloseConnection()])


class RequestHeadersTests(SynchronousTestCase):
    def test_header_block(self) -> None:
        """RFC 9113 8.3.1 pseudo-headers and 8.2.2 connection-specific fields."""
        cases: list[tuple[Any, list[tuple[bytes, bytes]]]] = [
            (
                (b"GET", b"http", b"h", 80, b"/a?b", [], None),
                [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h"),
                 (b":path", b"/a?b")],
            ),
            (
                (b"POST", b"https", b"::1", 8443, b"/", [(b"Content-Length", [b"9"])], 3),
                [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"[::1]:8443"),
                 (b":path", b"/"), (b"content-length", b"3")],
            ),
            (
                (b"GET", b"http", b"h", 8000, b"/",
                 [(b"Host", [b"other"]), (b"Connection", [b"close"]),
                  (b"TE", [b"gzip", b"trailers"]), (b"X-A", [b"1", b"2"])], None),
                [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"other"),
                 (b":path", b"/"), (b"te", b"trailers"), (b"x-a", b"1"), (b"x-a", b"2")],
            ),
        ]  # fmt: skip
        for args, expected in cases:
            self.assertEqual(request_headers(*args), expected)
