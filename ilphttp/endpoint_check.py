"""Endpoint strings checked when the config is read, not when the port is opened.

Twisted parses a server endpoint string (``tcp:8000:interface=127.0.0.1``,
``ssl:8443:privateKey=key.pem``, ``unix:/run/ilp.sock``) only when it
listens, and some mistakes then surface as a traceback from deep inside:
``tcp:99999`` or ``tcp:-5`` as an ``OverflowError`` from ``bind``, a unix
socket in a directory that does not exist as a ``FileNotFoundError`` from its
lock file, or a missing ``ssl:`` key file only once other listeners are
open.  :func:`check_endpoint` finds those in the text alone (nothing is
opened), with a message naming the option, and
:func:`check_distinct_listeners` finds two listeners of one node that would
bind the same address.  Another endpoint type is left to Twisted, which
reports it in one line when it listens: Twisted's built-in types are a
private table (``twisted.internet.endpoints._serverParsers``) and plugin ones
are found by scanning ``twisted.plugins``, so this Twisted-free module cannot
tell an unknown type from a plugin's.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator

from ilphttp.errors import ConfigError

__all__ = ["check_distinct_listeners", "check_endpoint", "check_not_held"]

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
    a ``unix`` socket's directory exists; an ``ssl`` listener's ``privateKey``
    and ``certKey`` files exist (relative paths from the working directory, as
    Twisted opens them).

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
        if kind == "ssl":
            key = keywords.get("privateKey", "server.pem")  # Twisted's default, as ours
            for option, path in (("privateKey", key), ("certKey", keywords.get("certKey", key))):
                if not os.path.isfile(path):
                    raise ConfigError(
                        f"{where} {description!r}: the {option} file {path} does not exist"
                    )
    elif kind == "unix":
        address = keywords.get("address", positional[0] if positional else "")
        directory = os.path.dirname(address)
        if directory and not os.path.isdir(directory):
            raise ConfigError(
                f"{where} {description!r}: the socket's directory {directory} does not exist"
            )
    return description


def _bound_address(description: str) -> tuple[str, str, int] | None:
    """What ``description`` binds: ``("tcp", host, port)`` with the host as an
    address (``0.0.0.0``/``::`` for every interface) or a name as written, or
    ``("unix", path, 0)``; None when nothing can collide with it (port 0,
    another endpoint type)."""
    kind, positional, keywords = _arguments(description)
    if kind == "unix":
        address = keywords.get("address", positional[0] if positional else "")
        return ("unix", os.path.normpath(os.path.abspath(address)), 0) if address else None
    if kind not in _PORT_TYPES:
        return None
    port = keywords.get("port", positional[0] if positional else "0")
    if not (port.isascii() and port.isdigit()) or int(port) == 0:
        return None  # port 0: the system picks a free one each time
    # Twisted's parsers: tcp:PORT:INTERFACE:BACKLOG, tcp6:PORT:BACKLOG:INTERFACE, ssl keywords only
    if kind == "tcp":
        host = keywords.get("interface", positional[1] if len(positional) > 1 else "")
    elif kind == "tcp6":
        host = keywords.get("interface", positional[2] if len(positional) > 2 else "::")
    else:
        host = keywords.get("interface", "")
    try:
        host = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        host = host or "0.0.0.0"  # '': every IPv4 interface (a name is compared as written)
    return ("tcp", host, int(port))


def _overlap(one: str, other: str) -> bool:
    """Whether two hosts on one TCP port collide, as Linux binds them: the same
    host; ``::`` (dual stack: IPv6 and IPv4) with any; ``0.0.0.0`` with any IPv4
    host (but not with an IPv6 one other than ``::``)."""
    if one == other or "::" in (one, other):
        return True
    return "0.0.0.0" in (one, other) and ":" not in one + other


def check_distinct_listeners(listeners: Iterable[tuple[str, str]]) -> None:
    """No two of ``listeners`` would bind the same address, so the node does not
    fail to start (or a reload to bind) with "address in use" for a port that
    only its own config holds twice.

    :param listeners: (the option, for the message; its endpoint string), e.g.
        ``("accounts.bob.options.incoming.endpoint", "tcp:8260:interface=127.0.0.1")``.
        Descriptions that :func:`check_endpoint` refuses are skipped.
    :raises ConfigError: naming both options, e.g. ``accounts.alice.options.incoming.endpoint
        'tcp:8260:interface=127.0.0.1' and accounts.bob.options.incoming.endpoint
        'tcp:8260:interface=127.0.0.1' would both listen on port 8260 of 127.0.0.1: ...``.
    """
    seen: list[_Bound] = []
    for where, description, bound in _bound(listeners):
        for other_where, other_description, what in _clashes(bound, seen):
            raise ConfigError(
                f"{other_where} {other_description!r} and {where} {description!r} would"
                f" both listen on {what}: give each its own port (accounts without a port"
                " or endpoint of their own share the node's listen)"
            )
        seen.append((where, description, bound))


def check_not_held(listeners: Iterable[tuple[str, str]], held: Iterable[tuple[str, str]]) -> None:
    """None of ``listeners`` (to be bound by a reload) binds an address one of
    ``held`` (the running configuration's listeners) still holds: a reload binds
    its new ports before it releases the old ones, so handing a port from one
    account to another (or widening ``tcp:8333:interface=127.0.0.1`` to
    ``tcp:8333``) fails with "address in use".

    :param listeners: (the option, its endpoint string), as for :func:`check_distinct_listeners`.
    :param held: the same, of the running configuration.
    :raises ConfigError: naming both, and how to make the move (two reloads, or a restart).
    """
    running = list(_bound(held))
    for where, description, bound in _bound(listeners):
        for held_where, held_description, what in _clashes(bound, running):
            raise ConfigError(
                f"{where} {description!r} would listen on {what}, which the running"
                f" configuration's {held_where} {held_description!r} still holds: a reload"
                " binds new ports before it releases old ones, so free the port in one"
                " reload and take it in the next (or restart)"
            )


#: (the option, its endpoint string, the address it binds: :func:`_bound_address`)
_Bound = tuple[str, str, tuple[str, str, int]]


def _bound(listeners: Iterable[tuple[str, str]]) -> Iterator[_Bound]:
    """``listeners`` with the address each binds; those that bind none we can tell are left out."""
    for where, description in listeners:
        bound = _bound_address(description)
        if bound is not None:
            yield where, description, bound


def _clashes(bound: tuple[str, str, int], others: list[_Bound]) -> Iterator[tuple[str, str, str]]:
    """(option, endpoint string, what both would bind) for each of ``others`` ``bound`` hits."""
    for where, description, other in others:
        what = _clash(other, bound)
        if what is not None:
            yield where, description, what


def _clash(first: tuple[str, str, int], second: tuple[str, str, int]) -> str | None:
    """What two bound addresses (:func:`_bound_address`) would both bind, for the
    message (``port 8260 of 127.0.0.1``), or None if they do not collide."""
    other_kind, other_host, other_port = first
    kind, host, port = second
    if kind != other_kind or port != other_port:
        return None
    if kind == "unix":
        return f"the socket {host}" if host == other_host else None
    if not _overlap(host, other_host):
        return None
    if host == other_host:
        return f"port {port} of {host}"
    return f"port {port} ({other_host} and {host})"
