"""
Tests for ilphttp.h2_guard: the sans-IO HTTP/2 frame guard. No reactor: frames
are built with hyperframe and fed in, the way hyper-h2's own tests do it.
"""

from __future__ import annotations

import dataclasses

from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import h2_guard
from ilphttp.h2_guard import ENHANCE_YOUR_CALM, PREFACE, GuardLimits, H2FrameGuard, Rate


def b(frame: Frame) -> bytes:
    return bytes(frame.serialize())


def headers(sid: int, end_stream: bool = True, block: bytes = b"\x82", end: bool = True) -> bytes:
    flags = {"END_STREAM"} if end_stream else set()
    if end:
        flags.add("END_HEADERS")
    return b(HeadersFrame(sid, data=block, flags=flags))


def data(sid: int, payload: bytes = b"x", end_stream: bool = True) -> bytes:
    return b(DataFrame(sid, data=payload, flags={"END_STREAM"} if end_stream else set()))


def rst(sid: int) -> bytes:
    return b(RstStreamFrame(sid, error_code=8))


def ping(ack: bool = False) -> bytes:
    return b(PingFrame(0, opaque_data=b"12345678", flags={"ACK"} if ack else set()))


def settings(ack: bool = False) -> bytes:
    return b(SettingsFrame(0, flags={"ACK"} if ack else set()))


def continuation(sid: int, block: bytes = b"", end: bool = False) -> bytes:
    return b(ContinuationFrame(sid, data=block, flags={"END_HEADERS"} if end else set()))


def parse(stream: bytes) -> list[Frame]:
    frames = []
    while stream:
        frame, length = Frame.parse_frame_header(memoryview(stream[:9]))
        frame.parse_body(memoryview(stream[9 : 9 + length]))
        frames.append(frame)
        stream = stream[9 + length :]
    return frames


def limits(**changes: object) -> GuardLimits:
    return dataclasses.replace(GuardLimits.from_constants(), **changes)  # type: ignore[arg-type]


def feed_all(guard: H2FrameGuard, stream: bytes, now: float = 0.0) -> list[bytes]:
    return guard.receive_data(stream, now)


class ChunkingTests(SynchronousTestCase):
    """Reads are cut right after every HEADERS, CONTINUATION and DATA frame."""

    def test_table(self) -> None:
        settings_frame = settings()
        cases: list[tuple[str, list[bytes], list[list[bytes]]]] = [
            # (what, frames in one read, frames of each chunk)
            ("control frames only", [settings_frame, ping()], [[settings_frame, ping()]]),
            ("one request", [headers(1)], [[headers(1)]]),
            (
                "the lost-Fulfill read",
                [headers(1), rst(1), headers(3)],
                [[headers(1)], [rst(1), headers(3)]],
            ),
            (
                "request with a body",
                [headers(1, False), data(1), headers(3, False), data(3)],
                [[headers(1, False)], [data(1)], [headers(3, False)], [data(3)]],
            ),
            (
                "window update behind a request",
                [headers(1), b(WindowUpdateFrame(1, window_increment=2**31 - 1)), headers(3)],
                [[headers(1)], [b(WindowUpdateFrame(1, window_increment=2**31 - 1)), headers(3)]],
            ),
            (
                "empty DATA frame",
                [headers(1, False), data(1, b""), ping()],
                [[headers(1, False)], [data(1, b"")], [ping()]],
            ),
        ]
        for what, frames, expected in cases:
            guard = H2FrameGuard()
            chunks = guard.receive_data(PREFACE + b"".join(frames), 0.0)
            self.assertEqual(chunks[0][: len(PREFACE)], PREFACE, what)
            chunks[0] = chunks[0][len(PREFACE) :]
            self.assertEqual(chunks, [b"".join(c) for c in expected], what)
            self.assertIsNone(guard.tripped, what)

    def test_any_cut_of_the_stream_gives_the_same_bytes(self) -> None:
        """Frames split anywhere across reads: nothing lost, cuts still right."""
        stream = PREFACE + b"".join(
            [settings(), headers(1, False), data(1, b"a" * 100), rst(1), headers(3), ping()]
        )
        for size in (1, 2, 5, 9, 10, 17, 50, len(stream)):
            guard = H2FrameGuard()
            out: list[bytes] = []
            for i in range(0, len(stream), size):
                out.extend(guard.receive_data(stream[i : i + size], 0.0))
            self.assertEqual(b"".join(out), stream, size)
            self.assertTrue(all(out), size)  # never an empty chunk
            self.assertEqual(guard.last_stream_id, 3)
        guard = H2FrameGuard()
        whole = guard.receive_data(stream, 0.0)
        ends = [len(b"".join(whole[: i + 1])) for i in range(len(whole))]
        boundary_after_data = len(PREFACE + settings() + headers(1, False) + data(1, b"a" * 100))
        self.assertIn(boundary_after_data, ends)

    def test_without_preface(self) -> None:
        guard = H2FrameGuard(preface=False)
        self.assertEqual(guard.receive_data(headers(1) + rst(1), 0.0), [headers(1), rst(1)])


class LimitTests(SynchronousTestCase):
    def trips_after(
        self, frame: bytes, guard: H2FrameGuard, limit: int = 10_000, now: float = 0.0
    ) -> int:
        """How many copies of ``frame`` pass before the guard trips."""
        guard.receive_data(PREFACE, now)
        for n in range(limit):
            guard.receive_data(frame, now)
            if guard.tripped is not None:
                return n
        return limit

    def test_rates_table(self) -> None:
        cases = [
            # frame, limits field, reason
            (rst(1), "client_resets", "RST_STREAM rate"),
            (ping(), "pings", "PING rate"),
            (settings(), "settings", "SETTINGS rate"),
            (b(PriorityFrame(3, depends_on=1)), "priorities", "PRIORITY rate"),
            (data(1, b"", end_stream=False), "empty_data", "empty DATA rate"),
        ]
        for frame, name, reason in cases:
            burst = getattr(GuardLimits.from_constants(), name).burst
            guard = H2FrameGuard()
            self.assertEqual(self.trips_after(frame, guard), burst, name)
            assert guard.tripped is not None
            self.assertEqual(guard.tripped.reason, reason)
            # the same limit made smaller
            guard = H2FrameGuard(limits(**{name: Rate(3, 1.0)}))
            self.assertEqual(self.trips_after(frame, guard), 3, name)

    def test_not_counted(self) -> None:
        """Acknowledgements, END_STREAM DATA and non-empty DATA are free."""
        for frame in (ping(ack=True), settings(ack=True), data(1, b""), data(1, b"x", False)):
            guard = H2FrameGuard(limits(pings=Rate(1, 0), settings=Rate(1, 0)))
            self.assertEqual(self.trips_after(frame, guard, 2_000), 2_000)

    def test_rapid_reset_trips_well_before_3000(self) -> None:
        guard = H2FrameGuard()
        guard.receive_data(PREFACE + settings(), 0.0)
        passed = 0
        for i in range(3_000):
            sid = 2 * i + 1
            now = i * 0.0001  # 3,000 streams in 0.3 s
            chunks = guard.receive_data(headers(sid) + rst(sid), now)
            passed += b"".join(chunks).count(rst(sid))
            if guard.tripped is not None:
                break
        assert guard.tripped is not None
        self.assertEqual(guard.tripped.reason, "RST_STREAM rate")
        self.assertLess(passed, 500)
        self.assertGreaterEqual(passed, h2_guard.CLIENT_RESET_BURST)
        # the HEADERS of the stream whose reset tripped was passed on
        self.assertEqual(guard.tripped.last_stream_id, sid)
        self.assertEqual(guard.receive_data(headers(sid + 2), 1.0), [])

    def test_honest_cancels_never_trip(self) -> None:
        """
        300 requests in flight; 100 Prepares expire at the same moment and
        their streams are reset; then 100 requests a second, 1 in 3 expiring,
        for a minute.
        """
        guard = H2FrameGuard()
        guard.receive_data(PREFACE + settings(), 0.0)
        guard.receive_data(
            b"".join(headers(2 * i + 1, False) + data(2 * i + 1) for i in range(300)), 0.0
        )
        guard.receive_data(b"".join(rst(2 * i + 1) for i in range(100)), 30.0)
        sid = 601
        for tick in range(6000):
            now = 30.0 + tick / 100
            chunk = headers(sid, False) + data(sid)
            if tick % 3 == 0:
                chunk += rst(sid - 60)
            guard.receive_data(chunk, now)
            sid += 2
        self.assertIsNone(guard.tripped)

    def test_rate_refills(self) -> None:
        guard = H2FrameGuard(limits(pings=Rate(2, 1.0)))
        guard.receive_data(PREFACE + ping() + ping(), 0.0)
        guard.receive_data(ping(), 1.0)  # one token back after 1 s
        self.assertIsNone(guard.tripped)
        guard.receive_data(ping(), 1.0)
        self.assertIsNotNone(guard.tripped)

    def test_clock_stepping_back_refills_nothing(self) -> None:
        guard = H2FrameGuard(limits(pings=Rate(2, 1.0)))
        guard.receive_data(PREFACE + ping() + ping(), 100.0)
        guard.receive_data(ping(), 50.0)
        self.assertIsNotNone(guard.tripped)

    def test_continuation_flood(self) -> None:
        guard = H2FrameGuard()
        chunks = guard.receive_data(PREFACE + headers(1, end=False) + continuation(1) * 100, 0.0)
        assert guard.tripped is not None
        self.assertEqual(guard.tripped.reason, "CONTINUATION frames in one header block")
        passed = b"".join(chunks)
        self.assertEqual(passed.count(continuation(1)), h2_guard.MAX_CONTINUATION_FRAMES)

    def test_header_block_size(self) -> None:
        guard = H2FrameGuard()
        big = b"a" * 16_000
        guard.receive_data(PREFACE + headers(1, block=big, end=False), 0.0)
        for _ in range(3):
            guard.receive_data(continuation(1, big), 0.0)
        self.assertIsNone(guard.tripped)
        guard.receive_data(continuation(1, big), 0.0)
        assert guard.tripped is not None
        self.assertEqual(guard.tripped.reason, "header block size")

    def test_header_blocks_are_counted_separately(self) -> None:
        guard = H2FrameGuard()
        guard.receive_data(PREFACE, 0.0)
        for sid in range(1, 200, 2):
            guard.receive_data(
                headers(sid, end=False) + continuation(sid) * 10 + continuation(sid, end=True), 0.0
            )
        self.assertIsNone(guard.tripped)

    def test_server_resets(self) -> None:
        """MadeYouReset: the server's own RST_STREAMs are counted too."""
        guard = H2FrameGuard()
        guard.data_sent(settings() + b(HeadersFrame(1, data=b"\x88", flags={"END_HEADERS"})), 0.0)
        self.assertTrue(guard.frame_aligned)
        sent = rst(1) * h2_guard.SERVER_RESET_BURST
        for i in range(0, len(sent), 7):  # cut anywhere
            guard.data_sent(sent[i : i + 7], 0.0)
        self.assertIsNone(guard.tripped)
        big = data(1, b"z" * 1000)
        guard.data_sent(big[:20], 0.0)
        self.assertFalse(guard.frame_aligned)
        guard.data_sent(big[20:] + rst(3), 0.0)
        assert guard.tripped is not None
        self.assertEqual(guard.tripped.reason, "server RST_STREAM rate")


class GoAwayTests(SynchronousTestCase):
    def test_goaway(self) -> None:
        guard = H2FrameGuard(limits(pings=Rate(0, 0)))
        guard.receive_data(PREFACE + headers(1) + headers(7) + ping() + headers(9), 0.0)
        [frame] = parse(guard.goaway())
        assert isinstance(frame, GoAwayFrame)
        self.assertEqual(frame.stream_id, 0)
        self.assertEqual(frame.error_code, ENHANCE_YOUR_CALM)
        self.assertEqual(frame.last_stream_id, 7)
        self.assertEqual(frame.additional_data, b"PING rate")

    def test_limits_follow_module_constants(self) -> None:
        self.patch(h2_guard, "PING_BURST", 1)
        guard = H2FrameGuard()
        guard.receive_data(PREFACE + ping() + ping(), 0.0)
        self.assertIsNotNone(guard.tripped)
