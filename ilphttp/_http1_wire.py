"""How the lean HTTP/1.1 server writes an answer (RFC 9112): status line, fields, body.

Split out of :mod:`ilphttp.http1_server`, which decides what to answer and
when; this only encodes, in one ``bytes`` per answer.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import RESPONSES, datetimeToString

from ilphttp.front import Answer

__all__ = ["encode_answer", "status_line"]

#: reason phrases twisted.web lacks (RFC 6585) or spells the old way (RFC 9110)
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


#: (version, status) -> its status line, made once
_status_lines: dict[tuple[bytes, int], bytes] = {}


def status_line(version: bytes, status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``."""
    line = _status_lines.get((version, status))
    if line is None:
        reason = _REASONS.get(status) or RESPONSES.get(status, b"Unknown")
        line = b"%s %d %s\r\n" % (version, status, reason)
        if len(_status_lines) < 256:  # statuses are few, but an odd one is not kept
            _status_lines[version, status] = line
    return line


_date_cache: list[Any] = [-1, b""]


def _date(now: float) -> bytes:
    """The ``Date`` value (RFC 9110 section 6.6.1), made once a second."""
    second = int(now)
    if _date_cache[0] != second:
        _date_cache[0], _date_cache[1] = second, datetimeToString(second)
    value: bytes = _date_cache[1]
    return value


def _header_name(name: bytes) -> bytes:
    return b"-".join(part.capitalize() for part in name.split(b"-"))


def encode_answer(
    answer: Answer, version: bytes, close: bool, head_only: bool, now: float
) -> bytes:
    """The bytes of ``answer``: ``Date`` (``now``, seconds since the epoch),
    ``Content-Type``, ``Content-Length``, its headers, ``Connection: close``
    when ``close``, and the body unless ``head_only`` (a ``HEAD``)."""
    body = answer.body
    parts = [
        status_line(version, answer.status),
        b"Date: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
        % (_date(now), answer.content_type, len(body)),
    ]
    for name, value in answer.headers:
        parts.append(b"%s: %s\r\n" % (_header_name(name), value))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)
