"""What a listener allows its clients, and how long a stop may take (pure: no Twisted).

A listener (:class:`~ilphttp.listener.IlpListener`) is given one
:class:`ServerLimits`: the cap on open connections, the deadlines of a
request's head and body, the header limits, the idle keep-alive timeout and
the grace period of a graceful drain and how long it keeps idle
connections open (docs/options.rst, "Listener limits").
:func:`parse_server_limits` reads them from an ``incoming`` option object or
a node file's ``server`` object, in either spelling: durations are seconds in
the Python spelling (``head_timeout``) and milliseconds in the JS one
(``headTimeout``), as ``jwt_leeway``/``jwtLeeway`` and every other period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ilphttp import validate
from ilphttp.errors import OptionError

__all__ = [
    "BODY_TIMEOUT",
    "DEFAULT_LIMITS",
    "DRAIN_LINGER",
    "GRACE_PERIOD",
    "HEAD_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "SERVER_LIMIT_KEYS",
    "ServerLimits",
    "parse_server_limits",
]

#: open connections per listener (per worker); past it the port stops accepting
MAX_CONNECTIONS = 10000
#: seconds from a request's first byte to the end of its head
HEAD_TIMEOUT = 10.0
#: seconds from the end of a request's head to the end of its body
BODY_TIMEOUT = 10.0
#: seconds a keep-alive connection may stay idle, as twisted.web's ``HTTPFactory.timeOut``
IDLE_TIMEOUT = 60.0
#: bytes of request line and header lines (without line ends), as twisted.web's
#: ``HTTPChannel.totalHeadersSize``
MAX_HEADER_BYTES = 16384
#: header fields per request; HTTP/2 allows at most the same
MAX_HEADERS = 100
#: seconds a graceful drain may take before what is left is closed
GRACE_PERIOD = 15.0
#: seconds a draining listener keeps an idle keep-alive connection open,
#: answering what still comes on it with ``Connection: close``: a load
#: balancer may have just written a request into it, and closing it under
#: that request would lose it (HAProxy's health check takes a node out in
#: about 1.2 s with examples/haproxy.cfg)
DRAIN_LINGER = 2.0

_DURATIONS = ("head_timeout", "body_timeout", "idle_timeout", "grace_period", "drain_linger")
_COUNTS = {
    "max_connections": (1, 2**31),
    "max_header_bytes": (1024, 2**24),
    "max_headers": (1, 10000),
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


#: the keys :func:`parse_server_limits` reads, in both spellings
SERVER_LIMIT_KEYS = frozenset(
    {*_DURATIONS, *_COUNTS} | {_camel(n) for n in (*_DURATIONS, *_COUNTS)}
)


@dataclass(frozen=True)
class ServerLimits:
    """A listener's limits; durations in seconds (``None``: no idle timeout)."""

    max_connections: int = MAX_CONNECTIONS
    head_timeout: float = HEAD_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    idle_timeout: float | None = IDLE_TIMEOUT
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    grace_period: float = GRACE_PERIOD
    drain_linger: float = DRAIN_LINGER


DEFAULT_LIMITS = ServerLimits()


def parse_server_limits(
    where: str, options: Mapping[str, Any], camel: bool, base: ServerLimits = DEFAULT_LIMITS
) -> ServerLimits:
    """The limits set in ``options`` (other keys are left alone), over ``base``.

    :param where: the object's name in errors (``"incoming"``, ``"server"``).
    :param camel: JS spelling: ``headTimeout`` in milliseconds; else
        ``head_timeout`` in seconds.
    :raises OptionError: naming the option, for a value of the wrong type or
        out of range (durations > 0; ``idle_timeout`` may be ``null``: never).
    """
    given: dict[str, Any] = {}
    unit = 0.001 if camel else 1.0
    unit_name = "milliseconds" if camel else "seconds"
    for name in _DURATIONS:
        key = _camel(name) if camel else name
        if key not in options:
            continue
        value = options[key]
        if value is None and name == "idle_timeout":
            given[name] = None
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < float("inf")
        ):
            raise OptionError(f"{where}.{key} must be a number of {unit_name} > 0, got {value!r}")
        given[name] = float(value) * unit
    for name, (low, high) in _COUNTS.items():
        key = _camel(name) if camel else name
        if options.get(key) is not None:
            given[name] = validate.integer(f"{where}.{key}", options[key], low, high)
    return replace(base, **given) if given else base
