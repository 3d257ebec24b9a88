"""Reading HTTP/1.1 responses, sans-IO: bytes in, one complete response out.

One small interface over two well-kept parsers: ``httptools`` (llhttp, node's
own parser) where it installs (CPython), ``h11`` (pure Python) elsewhere
(PyPy, where httptools does not build).  Both frame the body the same way
(RFC 9112 section 6: ``Content-Length``, chunked, or read until the close) and
refuse a malformed response; the reader adds what the ILP client needs: a
body limit, and whether the connection may carry another request.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "BadResponse",
    "ReplyTooLarge",
    "Response",
    "ResponseReader",
    "reader_class",
    "reader_kinds",
]


class ReplyTooLarge(Exception):
    """The peer's reply body is longer than any ILP reply can be."""


class BadResponse(Exception):
    """The peer's bytes are not an HTTP/1.x response (the parser's reason in ``args``)."""


class Response(NamedTuple):
    """One complete response: its status, its body, and whether the
    connection may be used again (HTTP/1.1 keep-alive, no ``Connection:
    close``, nothing sent after it)."""

    status: int
    body: bytes
    keep_alive: bool


class ResponseReader:
    """Reads the response to one request at a time (no pipelining).

    Call :meth:`start` when a request has been written, then :meth:`feed`
    with each chunk of bytes until it returns a :class:`Response`; when the
    connection closes first, :meth:`eof` returns the response if its end was
    the close (a body without length), else None (the response was cut).

    A body over ``max_body`` bytes raises :class:`ReplyTooLarge` for a 200;
    for any other status the response is returned with an empty body and
    ``keep_alive`` false (its status is all the caller reads).
    Interim 1xx responses (``100 Continue``) are skipped.

    :raises BadResponse: from :meth:`feed`, when the bytes are not a response.
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body

    def start(self) -> None:
        raise NotImplementedError

    def feed(self, data: bytes) -> Response | None:
        raise NotImplementedError

    def eof(self) -> Response | None:
        raise NotImplementedError


class _HttptoolsReader(ResponseReader):
    """The reader on ``httptools.HttpResponseParser`` (its callbacks are the
    ``on_*`` methods)."""

    def __init__(self, max_body: int) -> None:
        super().__init__(max_body)
        import httptools

        self._errors = (httptools.HttpParserError,)
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._framed = False  # a Content-Length or Transfer-Encoding was seen
        self._headers_done = False
        self._done: Response | None = None
        self._too_large = False
        self._more = False  # bytes of a further response arrived

    def start(self) -> None:
        self._reset()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self._done is not None:
            self._more = True

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            self._framed = True
            if value.strip().isdigit() and int(value) > self.max_body:
                self._too_large = True
        elif lower == b"transfer-encoding":
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        if self._too_large or self._done is not None:
            return
        self._size += len(body)
        if self._size > self.max_body:
            self._too_large = True
            self._chunks = []
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._done is not None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._reset()  # an interim response: the real one follows
            return
        self._done = Response(status, b"".join(self._chunks), self._parser.should_keep_alive())

    # -- the interface
    def feed(self, data: bytes) -> Response | None:
        try:
            self._parser.feed_data(data)
        except self._errors as exc:
            if self._done is None:
                raise BadResponse(str(exc) or exc.__class__.__name__) from None
            self._more = True  # garbage after a complete response
        if self._too_large:
            return self._over_limit()
        done = self._done
        if done is not None and self._more and done.keep_alive:
            return done._replace(keep_alive=False)
        return done

    def _over_limit(self) -> Response:
        status = self._parser.get_status_code() if self._headers_done else 200
        if status == 200:
            raise ReplyTooLarge()
        return Response(status, b"", False)

    def eof(self) -> Response | None:
        if self._headers_done and self._done is None and not self._framed:
            # The body ran to the close (RFC 9112 section 6.3, rule 8).
            return Response(self._parser.get_status_code(), b"".join(self._chunks), False)
        return None


class _H11Reader(ResponseReader):
    """The reader on an ``h11.Connection`` in the client role."""

    def __init__(self, max_body: int) -> None:
        super().__init__(max_body)
        import h11

        self._h11 = h11
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16384)
        # h11 must see a request before it reads a response; this stands in
        # for the one actually written (only its framing matters to h11).
        self._request = h11.Request(
            method=b"POST", target=b"/", headers=[(b"host", b"peer"), (b"content-length", b"0")]
        )
        self._end = h11.EndOfMessage()

    def start(self) -> None:
        h11, conn = self._h11, self._conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        conn.send(self._request)
        conn.send(self._end)
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False

    def feed(self, data: bytes) -> Response | None:
        self._conn.receive_data(data)
        return self._events()

    def eof(self) -> Response | None:
        try:
            self._conn.receive_data(b"")
            return self._events()
        except (BadResponse, ReplyTooLarge):
            return None

    def _events(self) -> Response | None:
        h11, conn = self._h11, self._conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadResponse(str(exc)) from None
            kind = type(event)
            if kind is h11.Data:
                if self._too_large:
                    continue
                self._size += len(event.data)  # type: ignore[union-attr]
                if self._size > self.max_body:
                    return self._over_limit()
                self._chunks.append(bytes(event.data))  # type: ignore[union-attr]
            elif kind is h11.Response:
                self._status = event.status_code  # type: ignore[union-attr]
                for name, value in event.headers:  # type: ignore[union-attr]
                    if name == b"content-length" and int(value) > self.max_body:
                        return self._over_limit()
            elif kind is h11.EndOfMessage:
                keep_alive = (
                    conn.their_state is h11.DONE
                    and conn.our_state is h11.DONE
                    and not conn.trailing_data[0]
                )
                return Response(self._status, b"".join(self._chunks), keep_alive)
            elif event is h11.NEED_DATA or event is h11.PAUSED or kind is h11.ConnectionClosed:
                return None
            # InformationalResponse (1xx): skipped

    def _over_limit(self) -> Response:
        if self._status == 200:
            raise ReplyTooLarge()
        self._too_large = True
        return Response(self._status, b"", False)


def reader_kinds() -> dict[str, type[ResponseReader]]:
    """The readers that can run here, by parser name, fastest first."""
    kinds: dict[str, type[ResponseReader]] = {}
    try:
        import httptools  # noqa: F401
    except ImportError:
        pass
    else:
        kinds["httptools"] = _HttptoolsReader
    try:
        import h11  # noqa: F401
    except ImportError:
        pass
    else:
        kinds["h11"] = _H11Reader
    return kinds


def reader_class(kind: str | None = None) -> type[ResponseReader]:
    """The :class:`ResponseReader` on ``kind`` ("httptools" or "h11"; default: the fastest here).

    Call the class with the body limit (bytes) for a reader.
    :raises ImportError: when neither parser is installed, or ``kind`` is not.
    """
    kinds = reader_kinds()
    if kind is None:
        if not kinds:
            raise ImportError("the HTTP/1.1 client needs httptools or h11")
        return next(iter(kinds.values()))
    if kind not in kinds:
        raise ImportError(f"the {kind} parser is not installed")
    return kinds[kind]
