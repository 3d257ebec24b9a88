"""
The vocabulary of the sans-IO HTTP/2 core (:mod:`ilphttp.http2_session`): the
errors a stream or connection fails with, the events a session returns, the
:class:`Timer` deadlines it asks for, and the request header block (RFC 9113
section 8.3). No I/O, no Twisted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import h2.errors

__all__ = [
    "CapacityChanged",
    "CloseConnection",
    "ConnectionFailed",
    "DataReceived",
    "ErrorCodes",
    "Event",
    "H2ConnectionTerminated",
    "H2ProtocolError",
    "H2StreamReset",
    "ResponseComplete",
    "ResponseReceived",
    "SessionReady",
    "SessionRetired",
    "StreamFailed",
    "Timer",
    "error_code",
    "request_headers",
]

#: Error codes (RFC 9113 section 7).
ErrorCodes = h2.errors.ErrorCodes

_CONNECTION_SPECIFIC_HEADERS = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"]
)


class H2StreamReset(Exception):
    """
    The peer (or this agent) reset an HTTP/2 stream (RFC 9113 section 6.4).

    :ivar error_code: the RST_STREAM error code (an ``h2.errors.ErrorCodes``
        member when known, else an int).
    :ivar remote: ``True`` if the peer sent the reset.
    """

    def __init__(self, error_code: int, remote: bool = True) -> None:
        self.error_code = error_code
        self.remote = remote
        super().__init__(f"HTTP/2 stream reset by {'peer' if remote else 'us'}: {error_code!r}")


class H2ConnectionTerminated(Exception):
    """
    The peer sent GOAWAY (RFC 9113 section 6.8) and this request could not be
    completed.

    :ivar error_code: the GOAWAY error code.
    :ivar last_stream_id: the highest stream id the peer processed.
    :ivar additional_data: opaque debug data from the peer, or ``None``.
    """

    def __init__(
        self, error_code: int, last_stream_id: int, additional_data: bytes | None = None
    ) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data
        super().__init__(
            f"HTTP/2 GOAWAY from peer: error={error_code!r} last_stream_id={last_stream_id}"
            + (f" data={additional_data!r}" if additional_data else "")
        )


class H2ProtocolError(Exception):
    """
    The HTTP/2 connection failed: the peer violated the protocol, or does not
    speak HTTP/2 at all (e.g. an HTTP/1.1-only server reached with h2c prior
    knowledge).
    """


# -- events -------------------------------------------------------------------
@dataclass(frozen=True)
class SessionReady:
    """The peer's first SETTINGS arrived: streams may start."""


@dataclass(frozen=True)
class CapacityChanged:
    """A stream finished or the peer's settings changed: capacity may have grown."""


@dataclass(frozen=True)
class SessionRetired:
    """
    The session takes no new stream (``max_requests`` reached, idle timeout,
    stream ids exhausted, or a GOAWAY, then in ``reason``).
    """

    reason: H2ConnectionTerminated | None = None


@dataclass(frozen=True)
class ResponseReceived:
    """Response headers: ``status`` and the regular (non-pseudo) fields, lowercase bytes."""

    stream_id: int
    status: int
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class DataReceived:
    """
    Response body bytes. ``flow_controlled_length`` (bytes, padding included)
    must be passed to :meth:`H2Session.acknowledge` once the data is consumed.
    """

    stream_id: int
    data: bytes
    flow_controlled_length: int


@dataclass(frozen=True)
class ResponseComplete:
    """The peer ended the stream after a response: the body is complete."""

    stream_id: int


@dataclass(frozen=True)
class StreamFailed:
    """
    The stream failed with ``error`` (:class:`H2StreamReset`,
    :class:`H2ConnectionTerminated` or :class:`H2ProtocolError`). With
    ``retry`` the peer did not process the request (REFUSED_STREAM, or above
    a GOAWAY's ``last_stream_id``) and it may be sent again on another session.
    """

    stream_id: int
    error: Exception
    retry: bool = False


@dataclass(frozen=True)
class ConnectionFailed:
    """The connection is unusable (``error`` is an :class:`H2ProtocolError`)."""

    error: Exception


@dataclass(frozen=True)
class CloseConnection:
    """
    Close the transport after writing :meth:`H2Session.data_to_send`
    (``abort``: drop it at once, unflushed).
    """

    abort: bool = False


Event = Union[
    SessionReady,
    CapacityChanged,
    SessionRetired,
    ResponseReceived,
    DataReceived,
    ResponseComplete,
    StreamFailed,
    ConnectionFailed,
    CloseConnection,
]


@dataclass(frozen=True, eq=False)
class Timer:
    """
    A deadline the session wants: call :meth:`H2Session.timer_expired` with
    this object ``seconds`` after it first appeared in :attr:`H2Session.timer`.
    Compared by identity: a new object is a new deadline.
    """

    kind: str  # "idle" or "drain"
    seconds: float


def error_code(code: Any) -> int:
    """An ``ErrorCodes`` member for a known code, else the int."""
    try:
        return ErrorCodes(code)  # type: ignore[no-any-return,unused-ignore]
    except ValueError:
        return int(code)


def request_headers(
    method: bytes,
    scheme: bytes,
    host: bytes,
    port: int,
    path: bytes,
    fields: Iterable[tuple[bytes, Sequence[bytes]]],
    body_length: int | None,
) -> list[tuple[bytes, bytes]]:
    """
    The header block of a request (RFC 9113 section 8.3.1): pseudo-headers,
    then ``fields`` (name, values) lowercased without connection-specific
    fields (section 8.2.2). ``Host`` becomes ``:authority``; ``TE`` keeps only
    ``trailers``; with a body (``body_length`` bytes) ``content-length`` is
    set to its real length.
    """
    authority = host if b":" not in host else b"[" + host + b"]"
    if port != (443 if scheme == b"https" else 80):
        authority += b":" + str(port).encode("ascii")
    regular: list[tuple[bytes, bytes]] = []
    for name, values in fields:
        lname = name.lower()
        if lname == b"host":
            if values:
                authority = values[0]
            continue
        if lname in _CONNECTION_SPECIFIC_HEADERS:
            continue
        if lname == b"te":
            values = [v for v in values if v.strip().lower() == b"trailers"]
        if lname == b"content-length" and body_length is not None:
            continue
        regular.extend((lname, value) for value in values)
    if body_length is not None:
        regular.append((b"content-length", str(body_length).encode("ascii")))
    pseudo = [
        (b":method", method),
        (b":scheme", scheme),
        (b":authority", authority),
        (b":path", path),
    ]
    return pseudo + regular
