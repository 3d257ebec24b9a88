"""
A sans-IO guard for the HTTP/2 frames a client sends to our server.

It sits in front of Twisted's HTTP/2 server (``twisted.web._http2``, on
hyper-h2), which on some supported Twisted versions has no limit on
client-reset streams (HTTP/2 "Rapid Reset", CVE-2023-44487) nor on PING,
SETTINGS or CONTINUATION floods, and which loses answers when one read holds
both a request and something that closes its stream. The guard does two
things and nothing else:

1. It counts per-connection events with token buckets and, when one runs
   dry, says "stop": the caller sends :meth:`H2FrameGuard.goaway` (GOAWAY
   with ``ENHANCE_YOUR_CALM``, RFC 9113 sections 6.8 and 7) and closes.
2. It cuts each read into chunks that end right after every HEADERS,
   CONTINUATION and DATA frame (see :meth:`H2FrameGuard.receive_data`), so
   that whatever the server writes while handling a request's frame is
   written before hyper-h2 has seen any later frame that could close that
   stream.

Like hyper-h2 it does no I/O and reads no clock: it is fed the client's bytes
(after the 24-byte connection preface, which it skips), the bytes the server
writes, and the time in seconds. It only reads the 9-byte frame headers
(RFC 9113 section 4.1); payloads are skipped, never buffered, so a frame split
across reads costs nothing.

The limits are the module constants below; pass a :class:`GuardLimits` to
override them per listener. All rates are per connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from hyperframe.frame import GoAwayFrame

__all__ = [
    "CLIENT_RESET_BURST",
    "CLIENT_RESET_RATE",
    "EMPTY_DATA_BURST",
    "EMPTY_DATA_RATE",
    "ENHANCE_YOUR_CALM",
    "MAX_CONTINUATION_FRAMES",
    "MAX_HEADER_BLOCK_BYTES",
    "PING_BURST",
    "PING_RATE",
    "PRIORITY_BURST",
    "PRIORITY_RATE",
    "SERVER_RESET_BURST",
    "SERVER_RESET_RATE",
    "SETTINGS_BURST",
    "SETTINGS_RATE",
    "GuardLimits",
    "H2FrameGuard",
    "Rate",
    "Trip",
]

#: The HTTP/2 client connection preface (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: GOAWAY error code ENHANCE_YOUR_CALM (RFC 9113 section 7).
ENHANCE_YOUR_CALM = 0xB

# Frame types (RFC 9113 section 6) and flags.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FRAME_HEADER_LENGTH = 9

#: RST_STREAM frames a client may send in a burst (RFC 9113 section 6.4), and
#: refilled per second. Rapid Reset (CVE-2023-44487) opens and resets streams
#: in a loop; it is stopped after about this many. An honest client resets a
#: stream when it gives up on it (ilphttp's HTTP2Agent and node when an ILP
#: Prepare expires): even all of 300 in-flight Prepares expiring at once, then
#: 100 a second, stays under it.
CLIENT_RESET_BURST = 400
CLIENT_RESET_RATE = 100.0

#: RST_STREAM frames the *server* may send in a burst, and per second. A
#: client can make hyper-h2 reset streams for it ("MadeYouReset",
#: CVE-2025-8671: WINDOW_UPDATEs that overflow a stream window, frames on
#: half-closed streams); each such reset may have started a request. Honest
#: clients provoke almost none.
SERVER_RESET_BURST = 100
SERVER_RESET_RATE = 10.0

#: PING frames (not acknowledgements, RFC 9113 section 6.7) in a burst, and
#: per second. Clients ping to keep a connection alive or measure round trips:
#: a few a minute.
PING_BURST = 50
PING_RATE = 5.0

#: SETTINGS frames (not acknowledgements, RFC 9113 section 6.5) in a burst, and
#: per second. A client sends one at the start and rarely another.
SETTINGS_BURST = 50
SETTINGS_RATE = 5.0

#: PRIORITY frames (RFC 9113 section 6.3, deprecated by RFC 9113 section 5.3.2)
#: in a burst, and per second. Each one reshapes the server's priority tree.
PRIORITY_BURST = 200
PRIORITY_RATE = 20.0

#: DATA frames with no payload and no END_STREAM (an "empty frames" flood,
#: CVE-2019-9518) in a burst, and per second.
EMPTY_DATA_BURST = 100
EMPTY_DATA_RATE = 10.0

#: The most bytes of one header block: a HEADERS frame and its CONTINUATION
#: frames (RFC 9113 section 4.3), compressed. An ILP request's headers take
#: well under 1 KiB.
MAX_HEADER_BLOCK_BYTES = 64 * 1024

#: The most CONTINUATION frames one header block may have (CONTINUATION flood,
#: VU#421644). Clients split a header block only when it exceeds the 16 KiB
#: frame size.
MAX_CONTINUATION_FRAMES = 16


@dataclass(frozen=True)
class Rate:
    """A token bucket's size (``burst``, events) and refill (``per_second``)."""

    burst: int
    per_second: float


@dataclass(frozen=True)
class GuardLimits:
    """
    The limits of one connection. :meth:`from_constants` makes them from the
    module constants; change one with :func:`dataclasses.replace`.
    """

    client_resets: Rate
    server_resets: Rate
    pings: Rate
    settings: Rate
    priorities: Rate
    empty_data: Rate
    #: bytes
    max_header_block_bytes: int
    #: frames per header block
    max_continuation_frames: int

    @classmethod
    def from_constants(cls) -> GuardLimits:
        """The module constants' values now (so changing them affects new guards)."""
        return cls(
            client_resets=Rate(CLIENT_RESET_BURST, CLIENT_RESET_RATE),
            server_resets=Rate(SERVER_RESET_BURST, SERVER_RESET_RATE),
            pings=Rate(PING_BURST, PING_RATE),
            settings=Rate(SETTINGS_BURST, SETTINGS_RATE),
            priorities=Rate(PRIORITY_BURST, PRIORITY_RATE),
            empty_data=Rate(EMPTY_DATA_BURST, EMPTY_DATA_RATE),
            max_header_block_bytes=MAX_HEADER_BLOCK_BYTES,
            max_continuation_frames=MAX_CONTINUATION_FRAMES,
        )


@dataclass(frozen=True)
class Trip:
    """Why the guard stopped a connection, and the GOAWAY's last stream id."""

    #: what ran over, e.g. ``"RST_STREAM rate"`` (fit for a log line)
    reason: str
    #: the highest client stream id passed on to the server (RFC 9113 section 6.8)
    last_stream_id: int


class _Bucket:
    """A token bucket: ``rate.burst`` tokens, ``rate.per_second`` back a second."""

    __slots__ = ("burst", "last", "per_second", "tokens")

    def __init__(self, rate: Rate) -> None:
        self.burst = float(rate.burst)
        self.per_second = rate.per_second
        self.tokens = self.burst
        self.last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token at time ``now`` (seconds); ``False`` when there is none."""
        last = self.last
        if last is not None and now > last:
            self.tokens = min(self.burst, self.tokens + (now - last) * self.per_second)
        if last is None or now > last:
            self.last = now  # a clock stepping back refills nothing
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class _FrameHeaders:
    """Finds frame headers in a byte stream fed in arbitrary pieces."""

    __slots__ = ("partial", "payload_left")

    def __init__(self) -> None:
        self.partial = b""  # the start of a frame header cut by a read
        self.payload_left = 0  # payload bytes of the current frame still to come


def _sent_reset_count(parser: _FrameHeaders, data: bytes) -> int:
    """How many RST_STREAM frame headers ``data`` completes, advancing ``parser``."""
    count = 0
    pos = 0
    end = len(data)
    while pos < end:
        if parser.payload_left:
            step = min(parser.payload_left, end - pos)
            parser.payload_left -= step
            pos += step
            continue
        need = FRAME_HEADER_LENGTH - len(parser.partial)
        header = parser.partial + data[pos : pos + need]
        pos += need
        if len(header) < FRAME_HEADER_LENGTH:
            parser.partial = header
            break
        parser.partial = b""
        parser.payload_left = int.from_bytes(header[:3], "big")
        if header[3] == RST_STREAM:
            count += 1
    return count


class H2FrameGuard:
    """
    Watches one HTTP/2 server connection; see the module documentation.

    Feed the client's bytes, from the connection preface on, to
    :meth:`receive_data` and pass on the chunks it returns, in order; feed
    what the server writes to :meth:`data_sent`. Once :attr:`tripped` is set,
    send :meth:`goaway` and close the connection; the guard then passes
    nothing more.
    """

    def __init__(self, limits: GuardLimits | None = None, *, preface: bool = True) -> None:
        """
        :param limits: the limits; by default the module constants.
        :param preface: whether the client's bytes start with the connection
            preface (RFC 9113 section 3.4), which is skipped unparsed.
        """
        limits = GuardLimits.from_constants() if limits is None else limits
        self.limits = limits
        #: set when a limit is exceeded; nothing is passed on after that
        self.tripped: Trip | None = None
        #: the highest client stream id in a HEADERS frame passed on
        self.last_stream_id = 0
        self._preface_left = len(PREFACE) if preface else 0
        self._in = _FrameHeaders()
        self._out = _FrameHeaders()
        self._client_resets = _Bucket(limits.client_resets)
        self._server_resets = _Bucket(limits.server_resets)
        self._pings = _Bucket(limits.pings)
        self._settings = _Bucket(limits.settings)
        self._priorities = _Bucket(limits.priorities)
        self._empty_data = _Bucket(limits.empty_data)
        self._block_frames = 0  # CONTINUATION frames of the open header block
        self._block_bytes = 0  # bytes of the open header block
        self._in_block = False

    def receive_data(self, data: bytes, now: float) -> list[bytes]:
        """
        Account for bytes from the client; return them cut into chunks.

        Each chunk but the last ends right after a HEADERS, CONTINUATION or
        DATA frame. Passing the chunks on one at a time makes the server
        handle (and, when it can, answer) each request frame before its HTTP/2
        state machine reads the frames after it: so a RST_STREAM, a
        WINDOW_UPDATE or an illegal frame right behind a request can no longer
        close the stream under the server's synchronous answer. (That is what
        makes Twisted's ``H2Connection`` raise ``StreamIDTooLowError`` and
        drop the connection, losing the answers to the other streams.)

        When a limit is exceeded, returns the chunks up to the frame that
        exceeded it and sets :attr:`tripped`; afterwards returns ``[]``.

        :param data: bytes as read from the connection (any size, any cut).
        :param now: the current time, seconds (any epoch, e.g. the reactor's).
        """
        if self.tripped is not None:
            return []
        chunks: list[bytes] = []
        parser = self._in
        pos = 0
        start = 0  # where the current chunk begins
        end = len(data)
        if self._preface_left:
            step = min(self._preface_left, end)
            self._preface_left -= step
            pos = step
        while pos < end:
            if parser.payload_left:
                step = min(parser.payload_left, end - pos)
                parser.payload_left -= step
                pos += step
                if not parser.payload_left and self._cut_after and pos < end:
                    chunks.append(data[start:pos])
                    start = pos
                continue
            frame_start = pos
            need = FRAME_HEADER_LENGTH - len(parser.partial)
            if parser.partial:
                header = parser.partial + data[pos : pos + need]
            else:
                header = data[pos : pos + need]
            pos += need
            if len(header) < FRAME_HEADER_LENGTH:
                parser.partial = header
                break
            parser.partial = b""
            length = int.from_bytes(header[:3], "big")
            reason = self._frame(header[3], header[4], header, length, now)
            if reason is not None:
                if frame_start > start:
                    chunks.append(data[start:frame_start])
                self.tripped = Trip(reason, self.last_stream_id)
                return chunks
            parser.payload_left = length
            if not length and self._cut_after and pos < end:
                chunks.append(data[start:pos])
                start = pos
        if start < end:
            chunks.append(data[start:] if start else data)
        return chunks

    _cut_after = False  # whether the current frame ends a chunk

    def _frame(self, kind: int, flags: int, header: bytes, length: int, now: float) -> str | None:
        """Account for one client frame header; return why to stop, if so."""
        self._cut_after = kind == DATA or kind == HEADERS or kind == CONTINUATION
        if self._in_block:
            if kind != CONTINUATION:
                # A protocol error (RFC 9113 section 6.10): hyper-h2 ends the
                # connection; the guard forgets the block.
                self._in_block = False
            else:
                self._block_frames += 1
                self._block_bytes += length
                if self._block_frames > self.limits.max_continuation_frames:
                    return "CONTINUATION frames in one header block"
                if self._block_bytes > self.limits.max_header_block_bytes:
                    return "header block size"
                if flags & FLAG_END_HEADERS:
                    self._in_block = False
                return None
        if kind == DATA:
            if not length and not flags & FLAG_END_STREAM and not self._empty_data.take(now):
                return "empty DATA rate"
        elif kind == HEADERS:
            if length > self.limits.max_header_block_bytes:
                return "header block size"
            stream_id = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            if stream_id > self.last_stream_id:
                self.last_stream_id = stream_id
            if not flags & FLAG_END_HEADERS:
                self._in_block = True
                self._block_frames = 0
                self._block_bytes = length
        elif kind == RST_STREAM:
            if not self._client_resets.take(now):
                return "RST_STREAM rate"
        elif kind == PING:
            if not flags & FLAG_ACK and not self._pings.take(now):
                return "PING rate"
        elif kind == SETTINGS:
            if not flags & FLAG_ACK and not self._settings.take(now):
                return "SETTINGS rate"
        elif kind == PRIORITY:
            if not self._priorities.take(now):
                return "PRIORITY rate"
        elif kind == CONTINUATION:
            pass  # outside a header block: a protocol error hyper-h2 reports
        return None

    def data_sent(self, data: bytes, now: float) -> None:
        """
        Account for bytes the server wrote (whole frames or not, from its
        first SETTINGS frame on; the server sends no preface). Counts the
        server's RST_STREAM frames; may set :attr:`tripped`.

        :param data: bytes as written to the connection.
        :param now: the current time, seconds.
        """
        if self.tripped is not None:
            return
        resets = _sent_reset_count(self._out, data)
        for _ in range(resets):
            if not self._server_resets.take(now):
                self.tripped = Trip("server RST_STREAM rate", self.last_stream_id)
                return

    @property
    def frame_aligned(self) -> bool:
        """Whether the server's output so far ends between frames (a GOAWAY fits)."""
        return not self._out.partial and not self._out.payload_left

    def goaway(self) -> bytes:
        """
        The GOAWAY frame that stops this connection (RFC 9113 section 6.8):
        error ``ENHANCE_YOUR_CALM``, the last client stream passed on, and
        the reason as debug data.
        """
        trip = self.tripped
        reason = trip.reason if trip is not None else "stopped"
        frame = GoAwayFrame(
            stream_id=0,
            last_stream_id=self.last_stream_id,
            error_code=ENHANCE_YOUR_CALM,
            additional_data=reason.encode("ascii", "replace"),
        )
        return bytes(frame.serialize())
