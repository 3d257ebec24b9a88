"""Making text from peers safe for a log line (pure: no Twisted).

A peer chooses ``triggered_by``, Reject messages, ``ILP-Peer-Name`` and
destinations.  Written raw, a CR or LF starts a forged line, an ESC sequence
rewrites what a terminal shows, and a bidi override reverses what a reader
sees.  :func:`escape` shows each such character as a Python-style escape and
leaves printable text alone.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

__all__ = ["escape", "loggable_url"]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Controls (C0, DEL, C1 incl. NEL), format characters (bidi embeddings,
# overrides and isolates, zero-width and tag characters, BOM), line and
# paragraph separators, and lone surrogates (which also break encoders).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape_char(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str | bytes) -> str:
    """``text`` with every control, format, line- or paragraph-separator
    character shown as ``\\n``, ``\\r``, ``\\t``, ``\\xNN``, ``\\uNNNN`` or
    ``\\UNNNNNNNN``; printable text (backslashes included) is unchanged.

    ``bytes`` show printable ASCII as itself and every other byte as an escape.
    """
    if isinstance(text, bytes):
        return "".join(chr(b) if 0x20 <= b < 0x7F else _escape_char(chr(b)) for b in text)
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(
        _escape_char(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text
    )


def loggable_url(url: bytes | str) -> str:
    """``scheme://host:port/path`` of ``url``: no query (it may carry a token), no
    user information, no fragment -- what a log line may show of a peer's URL."""
    text = url.decode("ascii", "replace") if isinstance(url, bytes) else url
    try:
        parts = urlsplit(text)
    except ValueError:
        return "(an invalid URL)"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
