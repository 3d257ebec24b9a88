"""
One request on the HTTP/2 server, sans-IO: the state of its stream and the
rules it is received under, for :class:`ilphttp.h2_server_core.ServerSession`
(which owns the connection: h2, flow control, the frame guard, GOAWAY and
timers).

A :class:`RequestStream` takes the request's header block
(:meth:`~RequestStream.read_headers`) and its DATA
(:meth:`~RequestStream.add_data`), and says when the session must answer in
its place (RFC 9113 section 8.1 lets a server answer before the request is
complete, then reset the rest with ``NO_ERROR``):

- more than ``max_headers`` regular fields is ``431``;
- a ``content-length`` over the body limit is ``413`` at once, so is a body
  that grows past it. At the default limit
  (:data:`~ilphttp.packet.MAX_PREPARE_LENGTH`) a possible RFC 35 reply may be
  larger (:func:`ilphttp.rfc35.request_body_limit`);
- a request not complete by its deadline is ``408``
  (:data:`TIMED_OUT`, the session's
  :meth:`~ilphttp.h2_server_core.ServerSession.expire_incomplete`).

No I/O and no clock: the time a stream started is given to it.
"""

from __future__ import annotations

from ilphttp.http2_connection import StreamState
from ilphttp.packet import MAX_PREPARE_LENGTH
from ilphttp.rfc35 import request_body_limit

__all__ = ["TEXT_PLAIN", "TIMED_OUT", "TOO_LARGE_BODY", "Refusal", "RequestStream"]

#: The content type of the session's own answers (413, 431, 408).
TEXT_PLAIN = b"text/plain; charset=utf-8"
#: the same words as :data:`ilphttp.front.TOO_LARGE` (a test checks)
TOO_LARGE_BODY = b"ILP packet too large: the limit is %d bytes" % MAX_PREPARE_LENGTH

#: An answer the session sends in the request's place: ``(status, body)``.
Refusal = tuple[int, bytes]

#: A request not complete by its deadline.
TIMED_OUT: Refusal = (408, b"request timed out")
_TOO_MANY_HEADERS: Refusal = (431, b"too many header fields")


def _too_large(limit: int) -> Refusal:
    if limit == MAX_PREPARE_LENGTH:
        return 413, TOO_LARGE_BODY
    return 413, b"ILP packet too large: the limit is %d bytes" % limit


class RequestStream(StreamState):
    """A request being received, then its answer being sent.

    :param stream_id: the client's stream (odd).
    :param started: when its HEADERS came, in seconds on the session's clock
        (any epoch), for its deadline.
    """

    __slots__ = (
        "body",
        "delivered",
        "headers",
        "limit",
        "method",
        "path",
        "received",
        "refused",
        "started",
    )

    def __init__(self, stream_id: int, started: float) -> None:
        super().__init__(stream_id, None)
        #: when its HEADERS came (the session's clock), for its deadline
        self.started = started
        self.local_closed = False  # until the answer is sent
        self.method = b""
        self.path = b""
        #: regular (non-pseudo) fields, names lower case, in order
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        #: body bytes received so far
        self.received = 0
        #: the largest body this request may have, in bytes
        self.limit = MAX_PREPARE_LENGTH
        #: answered by the session itself (413, 431, 408); the rest is ignored
        self.refused = False
        #: handed to the caller (a ``RequestReceived`` was returned)
        self.delivered = False

    @property
    def incomplete(self) -> bool:
        """Still being received: neither ended, refused nor answered."""
        return not (self.remote_closed or self.refused or self.responded)

    def read_headers(
        self, fields: list[tuple[bytes, bytes]], *, max_body: int, max_headers: int
    ) -> Refusal | None:
        """
        Take the request's header block (h2's, names lower case): the method,
        the path and the regular fields, and the body limit (``max_body``
        bytes; at :data:`~ilphttp.packet.MAX_PREPARE_LENGTH`, RFC 35's limit
        for this request).

        :returns: the answer to send in the request's place (``431``: more than
            ``max_headers`` regular fields; ``413``: a ``content-length`` over
            the limit), or ``None``.
        """
        count = 0
        length = None
        request_id = callback_url = False
        headers = self.headers
        for name, value in fields:
            if name[:1] == b":":
                if name == b":method":
                    self.method = value
                elif name == b":path":
                    self.path = value
                continue
            count += 1
            if name == b"content-length":
                length = value
            elif name == b"request-id":
                request_id = True
            elif name == b"callback-url":
                callback_url = True
            headers.append((name, value))
        self.limit = max_body
        if max_body == MAX_PREPARE_LENGTH:
            self.limit = request_body_limit(request_id, callback_url)
        if count > max_headers:
            return _TOO_MANY_HEADERS
        if length is not None and length.isdigit() and int(length) > self.limit:
            return _too_large(self.limit)
        return None

    def add_data(self, data: bytes) -> Refusal | None:
        """
        Take a DATA frame's bytes.

        :returns: ``413`` when the body grows past the limit (what came is
            dropped), else ``None``.
        """
        self.received += len(data)
        if self.received > self.limit:
            self.body = []
            return _too_large(self.limit)
        self.body.append(data)
        return None

    def take_body(self) -> bytes:
        """The whole body, once the request ended; the stream keeps none of it."""
        body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body = []
        return body
