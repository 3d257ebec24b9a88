"""The HTTP/1.1 request parser of the lean server: httptools on CPython, h11 elsewhere.

httptools (llhttp, node's parser) is the fastest and strictest choice, but it
does not install on PyPy; there h11 (pure Python) parses, behind an adapter
with httptools' interface, so that :mod:`ilphttp.http1_server` has one code
path.  The adapter adds what llhttp refuses and h11 would accept (bare LF line
ends, obs-fold, a repeated ``Content-Length``, control characters), so both
refuse the same heads.

The callbacks object has httptools' methods: ``on_message_begin()``,
``on_url(piece)`` (may come in pieces), ``on_header(name, value)``,
``on_headers_complete()``, ``on_body(piece)``, ``on_message_complete()``.
``feed_data`` raises one of :data:`PARSE_ERRORS` for malformed input and
:data:`UPGRADE` after a request asking to switch protocols, whose callbacks
have all been called (httptools' gives, as its first argument, the offset
in the bytes fed of what follows the request).

Protocol switches (RFC 9110 section 7.8) are never offered by the server, so
a request with ``Upgrade`` is an ordinary request, body included.  llhttp
does not know that: for ``Connection: upgrade`` with ``Upgrade`` it completes
the message after its head (``should_upgrade()`` true), without the body, and
stops.  The server then feeds a fresh parser :func:`plain_head` (the same
head without ``Upgrade``) and the bytes that followed it.  The h11 adapter
reads such a request's body itself (``should_upgrade()`` is false).  Both
treat ``CONNECT`` as a switch: no body, :data:`UPGRADE` after it.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

__all__ = [
    "PARSER",
    "PARSE_ERRORS",
    "UPGRADE",
    "HeadTooLarge",
    "RequestParser",
    "new_parser",
    "plain_head",
]


class RequestParser(Protocol):
    """What the server needs of a parser (httptools' ``HttpRequestParser``)."""

    def feed_data(self, data: bytes) -> None: ...

    def get_method(self) -> bytes: ...

    def get_http_version(self) -> str: ...

    def should_upgrade(self) -> bool: ...


class ParseError(Exception):
    """Malformed request bytes (the h11 adapter's error)."""


class HeadTooLarge(ParseError):
    """A head grew past the bytes allowed before it was complete (answered ``431``)."""


class UpgradeRequested(Exception):
    """The request asks to switch protocols (the h11 adapter's signal)."""


#: the head of a request ends at its first empty line
_HEAD_END = b"\r\n\r\n"
#: an LF without its CR, or a header line continued (obs-fold, RFC 9112 section 5.2)
_BARE_LF_OR_FOLD = re.compile(rb"(?<!\r)\n|\n[ \t]")
#: a control character other than HTAB, CR and LF: llhttp refuses them in field
#: values (RFC 9110 section 5.5), h11 lets some by (SOH, BS, US, DEL)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: h11 merges equal Content-Length lines before we see them
_CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:", re.IGNORECASE)


class H11Parser:
    """httptools' parser interface over h11 (RFC 9112 framing, pure Python).

    :param callbacks: the httptools-style callbacks object.
    :param max_head: bytes a head may take before it is refused.
    """

    def __init__(self, callbacks: Any, max_head: int = 32768) -> None:
        import h11

        self._h11 = h11
        self._callbacks = callbacks
        self._max_head = max_head
        self._conn: Any = None
        self._head = b""  # bytes of a head not yet complete
        self._method = b""
        self._version = "1.1"
        self._failed = False

    def get_method(self) -> bytes:
        return self._method

    def get_http_version(self) -> str:
        return self._version

    def should_upgrade(self) -> bool:
        """False: a request with ``Upgrade`` is read whole (only ``CONNECT`` switches, after it)."""
        return False

    def feed_data(self, data: bytes) -> None:
        if self._failed:
            raise ParseError("parser stopped")
        while data:
            if self._conn is None:
                data = self._start(data)
                if self._conn is None:
                    return
            data = self._events(data)

    def _start(self, data: bytes) -> bytes:
        """Collect a head; when complete, check it and hand it to a new h11 connection."""
        head = self._head + data
        end = head.find(_HEAD_END)
        if end < 0:
            if _BARE_LF_OR_FOLD.search(head):
                self._fail("bare LF or obs-fold in the head")
            if len(head) > self._max_head:
                self._failed = True
                raise HeadTooLarge("head too large")
            self._head = head
            return b""
        self._head = b""
        if _BARE_LF_OR_FOLD.search(head, 0, end + 2):
            self._fail("bare LF or obs-fold in the head")
        if _CONTROL.search(head, 0, end):
            self._fail("a control character in the head")
        if len(_CONTENT_LENGTH.findall(head, 0, end + 2)) > 1:
            self._fail("repeated Content-Length")
        self._conn = self._h11.Connection(
            self._h11.SERVER, max_incomplete_event_size=self._max_head
        )
        self._callbacks.on_message_begin()
        return head

    def _fail(self, message: str) -> None:
        self._failed = True
        raise ParseError(message)

    def _events(self, data: bytes) -> bytes:
        """Feed ``data``; the bytes after a complete request (for the next one)."""
        h11 = self._h11
        conn = self._conn
        callbacks = self._callbacks
        try:
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return b""
                if isinstance(event, h11.Request):
                    self._request(event)
                elif isinstance(event, h11.Data):
                    callbacks.on_body(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    callbacks.on_message_complete()
                    rest, _ = conn.trailing_data
                    self._conn = None
                    # h11 awaits our accepting the switch an Upgrade asks
                    # for; we never do, so what follows is the next request.
                    # CONNECT's switch stops parsing, as in llhttp.
                    if self._method == b"CONNECT":
                        self._failed = True
                        raise UpgradeRequested()
                    return bytes(rest)
                else:  # PAUSED, ConnectionClosed: nothing more on this connection
                    self._fail("unexpected event")
        except h11.RemoteProtocolError as exc:
            self._fail(str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, event: Any) -> None:
        self._method = bytes(event.method)
        self._version = event.http_version.decode("ascii")
        callbacks = self._callbacks
        callbacks.on_url(bytes(event.target))
        lengths = codings = 0
        for name, value in event.headers.raw_items():
            lower = name.lower()
            if lower == b"content-length":
                lengths += 1
            elif lower == b"transfer-encoding":
                codings += 1
            callbacks.on_header(bytes(name), bytes(value))
        # llhttp refuses even equal repeats, and both framings at once (h11
        # would let chunked win, RFC 9112 section 6.3): so do we.
        if lengths > 1 or codings > 1 or (lengths and codings):
            self._fail("ambiguous framing")
        callbacks.on_headers_complete()


httptools: Any
try:
    import httptools
except ImportError:  # PyPy: httptools does not build there
    httptools = None

if httptools is not None:
    PARSER = "httptools"
    PARSE_ERRORS: tuple[type[Exception], ...] = (httptools.HttpParserError, ParseError)
    UPGRADE: tuple[type[Exception], ...] = (httptools.HttpParserUpgrade, UpgradeRequested)
else:  # pragma: no cover - PyPy
    PARSER = "h11"
    PARSE_ERRORS = (ParseError,)
    UPGRADE = (UpgradeRequested,)


def plain_head(method: bytes, url: bytes, version: str, headers: dict[bytes, bytes]) -> bytes:
    """A request head for ``method url HTTP/version`` with ``headers``, without ``Upgrade``.

    ``headers``: lower-case names to values, as the server collected them.
    What httptools parses in place of a head whose ``Upgrade`` it acted on.
    """
    lines = [b"%s %s HTTP/%s" % (method, url, version.encode("ascii"))]
    lines.extend(name + b": " + value for name, value in headers.items() if name != b"upgrade")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def new_parser(callbacks: Any, parser: str = PARSER, max_head: int = 32768) -> RequestParser:
    """A request parser calling ``callbacks``; ``parser`` is ``"httptools"`` or ``"h11"``.

    ``max_head``: the raw bytes h11 buffers for an incomplete head before it
    raises :class:`HeadTooLarge` (httptools' callers count them themselves).

    Errors are :data:`PARSE_ERRORS` and :data:`UPGRADE` whichever is chosen.
    """
    if parser == "httptools":
        assert httptools is not None
        result: RequestParser = httptools.HttpRequestParser(callbacks)
        return result
    return H11Parser(callbacks, max_head)
