"""One validator per rule, shared by plugin options, the node file and the flags.

Each takes ``where`` -- the option's name as the user wrote it
(``outgoing.staticToken``, ``accounts.bob.assetScale``, ``--asset-scale``) --
and the value, and returns the value (converted where said) or raises
:class:`~ilphttp.errors.OptionError` naming ``where``.  Pure: no Twisted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ilphttp.errors import OptionError
from ilphttp.packet import is_valid_address, is_valid_segment

__all__ = [
    "address",
    "boolean",
    "check_keys",
    "http_url",
    "integer",
    "integer_text",
    "milliseconds",
    "optional_string",
    "port_range",
    "positive_number",
    "secret",
    "segment",
    "string",
    "string_list",
    "token",
]


def string(where: str, value: Any, *, empty_ok: bool = False) -> str:
    """A string (non-empty unless ``empty_ok``)."""
    if not isinstance(value, str):
        raise OptionError(f"{where} must be a string, got {type(value).__name__}")
    if not value and not empty_ok:
        raise OptionError(f"{where} must not be empty")
    return value


def secret(where: str, value: Any) -> str:
    """A secret (JWT secret, token): a string that is not blank (whitespace only)."""
    text = string(where, value)
    if not text.strip():
        raise OptionError(f"{where} must not be blank")
    return text


def token(where: str, value: Any) -> str:
    """A static token: a :func:`secret` without surrounding whitespace or control characters.

    It travels in an Authorization header, whose value cannot begin or end
    with whitespace (RFC 9110 section 5.5): such a token could never match.
    """
    text = secret(where, value)
    if text != text.strip():
        raise OptionError(
            f"{where} must not begin or end with whitespace (a header value cannot carry it)"
        )
    if any((c < " " and c != "\t") or c == "\x7f" for c in text):
        # a header value cannot carry them (RFC 9110 section 5.5); a line
        # break would end the header, or smuggle another one in
        raise OptionError(
            f"{where} must not contain control characters such as a line break"
            " (a header value cannot carry them)"
        )
    return text


def optional_string(where: str, value: Any) -> str | None:
    """None, or a non-empty string."""
    return None if value is None else string(where, value)


def boolean(where: str, value: Any) -> bool:
    """``true``/``false`` exactly (no 0/1, no strings)."""
    if not isinstance(value, bool):
        raise OptionError(f"{where} must be true or false, got {value!r}")
    return value


def integer(where: str, value: Any, low: int, high: int) -> int:
    """An integer from ``low`` to ``high`` inclusive (booleans are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OptionError(f"{where} must be an integer from {low} to {high}, got {value!r}")
    return value


def integer_text(where: str, text: str, low: int, high: int) -> int:
    """:func:`integer` for a command-line word: decimal digits only (no ``4_5``, no sign)."""
    if not text.isascii() or not text.isdigit() or not low <= int(text, 10) <= high:
        raise OptionError(f"{where} must be an integer from {low} to {high}, got {text!r}")
    return int(text, 10)


def positive_number(where: str, value: Any) -> float:
    """A number greater than zero, as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise OptionError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def milliseconds(where: str, value: Any) -> float:
    """A duration given in milliseconds (>= 0, as ilp-connector writes them), in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise OptionError(f"{where} must be a number of milliseconds, got {value!r}")
    return float(value) / 1000.0


def http_url(where: str, value: Any, *, delimiter: str | None = None) -> str:
    """An absolute ``http://`` or ``https://`` ASCII URL without user information.

    It has a host, no whitespace and no control characters (RFC 3986 section
    2 allows neither).  A port, when given, is digits naming a TCP port from 1
    to 65535 (RFC 9110 section 4.2.1; 0 cannot be connected to); an empty one
    (``http://h:/``) is the scheme's default.  ``delimiter`` is a multi
    account's: its first occurrence in the URL template is where a child's
    name goes (the host, the port or the path: ``http://127.0.0.1:%/``), so
    it is checked as if a name stood there.

    :raises OptionError: naming ``where``.  The URL is echoed without its
        query, fragment or user information, which may carry a credential (as
        :func:`~ilphttp.logtext.loggable_url` shows it); a URL with
        ``user:password@`` is refused (credentials go in ``staticToken`` or
        ``jwtSecret``, which the logs redact).
    """
    url = string(where, value)
    if not url.isascii():  # it is sent as ASCII; an IRI must be percent-encoded
        raise OptionError(f"{where} must be ASCII (percent-encode other characters)")
    checked = url
    if delimiter and delimiter in url:
        checked = url.replace(delimiter, "1", 1)  # a name that fits a host, a port or a path
    if any(c <= " " or c == "\x7f" for c in checked):
        raise OptionError(
            f"{where} must not contain whitespace or control characters (percent-encode them)"
        )
    try:
        parts = urlsplit(checked)
    except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 host
        raise OptionError(f"{where} is not a valid URL ({exc})") from None
    if "@" in parts.netloc:
        raise OptionError(
            f"{where}: credentials in the URL are not supported; use staticToken/jwtSecret"
        )
    shown = _shown(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptionError(f"{where} must be an http:// or https:// URL, got {shown!r}")
    if not parts.hostname:
        raise OptionError(f"{where} has no host, got {shown!r}")
    port = _port_text(parts.netloc)
    digits = port.lstrip("0")
    if port and not (port.isdigit() and len(digits) <= 5 and 1 <= int(digits or "0") <= 65535):
        if port.isdigit():
            said = f"port {port[:20]} is out of range"
        else:
            said = f"port {port[:20]!r} is not a number"
        raise OptionError(f"{where}: {said} (1 to 65535), got {shown!r}")
    return url


def _shown(url: str) -> str:
    """``url`` as an error may echo it: as written, but without its query,
    fragment or user information (``bob:8000`` stays ``bob:8000``)."""
    head = url.split("?", 1)[0].split("#", 1)[0]
    scheme, slashes, rest = head.partition("//")
    if slashes:
        authority, slash, path = rest.partition("/")
        head = scheme + slashes + authority.rpartition("@")[2] + slash + path
    return head


def _port_text(netloc: str) -> str:
    """What follows the host's ``:`` in ``netloc`` (no user information), or ``""``."""
    host_end = netloc.find("]") + 1 if netloc.startswith("[") else 0
    colon = netloc.find(":", host_end)
    return "" if colon < 0 else netloc[colon + 1 :]


def address(where: str, value: Any) -> str:
    """A valid ILP address (RFC 15)."""
    text = string(where, value)
    if not is_valid_address(text):
        raise OptionError(f"{where} {text!r} is not a valid ILP address")
    return text


def segment(where: str, value: Any) -> str:
    """A valid ILP address segment (RFC 15)."""
    text = string(where, value)
    if not is_valid_segment(text):
        raise OptionError(f"{where} {text!r} is not a valid address segment")
    return text


def check_keys(
    where: str,
    given: Any,
    known: set[str],
    ignorable: frozenset[str] | set[str] = frozenset(),
    ignored: list[str] | None = None,
) -> Mapping[str, Any]:
    """``given`` if it is an object whose keys are all ``known``.

    Keys starting with ``_`` belong to whoever built the object (as in
    ilp-connector) and pass; ``ignorable`` keys are appended to ``ignored``
    as ``where.key``; anything else is an error listing the known keys, so a
    typo never passes silently.
    """
    if not isinstance(given, Mapping):
        raise OptionError(f"{where or 'the config'} must be an object, got {type(given).__name__}")
    unknown: list[str] = []
    for key in given:
        if not isinstance(key, str):
            raise OptionError(f"{where}: keys must be strings, got {key!r}")
        if key.startswith("_") or key in known:
            continue
        if key in ignorable and ignored is not None:
            ignored.append(f"{where}.{key}" if where else key)
            continue
        unknown.append(key)
    if unknown:
        unknown.sort()
        prefix = f"{where}." if where else ""
        raise OptionError(
            f"unknown setting {prefix}{unknown[0]}"
            + (f" (and {', '.join(unknown[1:])})" if unknown[1:] else "")
            + f"; known: {', '.join(sorted(known))}"
        )
    return given


def string_list(
    where: str, value: Any, first: str | None, item: Callable[[str, Any], str] = string
) -> tuple[str, ...]:
    """A list of non-empty strings, none repeated (nor equal to ``first``).

    ``item`` checks each (:func:`string`, or :func:`secret`, :func:`token`).
    """
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise OptionError(f"{where} must be a list of strings, got {type(value).__name__}")
    items = tuple(item(f"{where}[{i}]", entry) for i, entry in enumerate(value))
    seen = set() if first is None else {first}
    for i, text in enumerate(items):
        if text in seen:
            # The value itself stays out of the message: it is a secret.
            raise OptionError(f"{where}[{i}] is given twice")
        seen.add(text)
    return items


def port_range(where: str, value: Any) -> tuple[int, int]:
    """``[low, high]``: TCP ports, ``low <= high`` (None: every port, 1 to 65535)."""
    if value is None:
        return (1, 65535)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise OptionError(f"{where} must be [lowest port, highest port]")
    low = integer(f"{where}[0]", value[0], 1, 65535)
    high = integer(f"{where}[1]", value[1], low, 65535)
    return (low, high)
