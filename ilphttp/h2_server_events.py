"""
The events of the sans-IO HTTP/2 server core
(:class:`ilphttp.h2_server_core.ServerSession`): what its ``receive_data``
and ``next_events`` return to the I/O layer (:mod:`ilphttp.h2_server`), which
answers or cancels requests and ends the connection on them. No I/O, no
Twisted.
"""

from __future__ import annotations

from typing import NamedTuple, Union

from ilphttp.http2_events import CloseConnection

__all__ = [
    "Calmed",
    "ConnectionError",
    "RequestCancelled",
    "RequestReceived",
    "RequestRefused",
    "ServerEvent",
]


class RequestReceived(NamedTuple):
    """A complete request: answer it with :meth:`ServerSession.answer()
    <ilphttp.h2_server_core.ServerSession.answer>`."""

    stream_id: int
    method: bytes
    path: bytes
    #: regular (non-pseudo) fields, names lower case, in order
    headers: list[tuple[bytes, bytes]]
    body: bytes


class RequestCancelled(NamedTuple):
    """A delivered request's stream is gone (reset, or the connection ended):
    stop working on it; its answer would be dropped."""

    stream_id: int


class RequestRefused(NamedTuple):
    """The session answered a request itself (``413``, ``431``, ``408``): it is
    never delivered; this only tells the caller (for its metrics)."""

    stream_id: int
    status: int
    body: bytes


class ConnectionError(NamedTuple):
    """The client broke the protocol: GOAWAY ``error_code`` is queued."""

    error_code: int
    message: str


class Calmed(NamedTuple):
    """A flood limit was exceeded: GOAWAY ``ENHANCE_YOUR_CALM`` is queued."""

    reason: str
    last_stream_id: int


ServerEvent = Union[
    RequestReceived, RequestCancelled, RequestRefused, ConnectionError, Calmed, CloseConnection
]
