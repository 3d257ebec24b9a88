"""Endpoint strings checked when the config is read, not when the port is opened.

Twisted parses a server endpoint string (``tcp:8000:interface=127.0.0.1``,
``ssl:8443:privateKey=key.pem``, ``unix:/run/ilp.sock``) only when it
listens, and some mistakes then surface as a traceback from deep inside:
``tcp:99999`` or ``tcp:-5`` as an ``OverflowError`` from ``bind``, a unix
socket in a directory that does not exist as a ``FileNotFoundError`` from its
lock file.  :func:`check_endpoint` finds those in the text alone (nothing is
opened), with a message naming the option; whatever it does not know
(another endpoint type, a missing key file) is left to Twisted, which already
reports it in one line.
"""

from __future__ import annotations

import os

from ilphttp.errors import ConfigError

__all__ = ["check_endpoint"]

#: endpoint types whose first argument (or ``port=``) is a TCP port
_PORT_TYPES = ("tcp", "tcp6", "ssl")


def _cut(text: str, separator: str) -> list[str]:
    """``text`` cut at each ``separator`` not escaped by ``\\`` (escapes kept)."""
    parts = [""]
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("")
            continue
        parts[-1] += char
    return parts


def _unescape(text: str) -> str:
    """``text`` with each ``\\x`` read as ``x``."""
    out = []
    escaped = False
    for char in text:
        if char == "\\" and not escaped:
            escaped = True
            continue
        escaped = False
        out.append(char)
    return "".join(out)


def _arguments(description: str) -> tuple[str, list[str], dict[str, str]]:
    """The type, the positional arguments and the keyword ones (as Twisted reads
    them: a field with an unescaped ``=`` is a keyword)."""
    fields = _cut(description, ":")
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for field in fields[1:]:
        key_value = _cut(field, "=")
        if len(key_value) == 1:
            positional.append(_unescape(field))
        else:
            keywords[_unescape(key_value[0])] = _unescape("=".join(key_value[1:]))
    return _unescape(fields[0]), positional, keywords


def check_endpoint(where: str, description: str) -> str:
    """``description`` when what it names can be listened on, as far as its text says.

    Checked: a ``tcp``, ``tcp6`` or ``ssl`` port is a number from 0 to 65535;
    a ``unix`` socket's directory exists.

    :param where: the option, for the message (``incoming.endpoint``,
        ``listen[0]``, ``--listen``).
    :raises ConfigError: ``--listen 'tcp:99999': the port must be a number
        from 0 to 65535, got '99999'``.
    """
    kind, positional, keywords = _arguments(description)
    if kind in _PORT_TYPES:
        port = keywords.get("port", positional[0] if positional else None)
        if port is not None and not (port.isascii() and port.isdigit() and int(port) <= 65535):
            raise ConfigError(
                f"{where} {description!r}: the port must be a number from 0 to 65535, got {port!r}"
            )
    elif kind == "unix":
        address = keywords.get("address", positional[0] if positional else "")
        directory = os.path.dirname(address)
        if directory and not os.path.isdir(directory):
            raise ConfigError(
                f"{where} {description!r}: the socket's directory {directory} does not exist"
            )
    return description
