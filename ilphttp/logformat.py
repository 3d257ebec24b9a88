"""Log observers for a node: one JSON object per line, or escaped text lines.

``twistd ilphttp --log-format json`` (wired in the node) writes each
:mod:`twisted.logger` event as one line of JSON::

    {"time": "2026-01-02T03:04:05.678Z", "level": "debug", "namespace": "ilphttp.plugin",
     "event": "packet", "message": "...", "account": "bob", "code": "F02",
     "destination": "g.x", "amount": 10, "duration_ms": 1.25}

- ``event``: the emitter's ``event`` key when it gave one as text, otherwise
  the rendered message; ``message``: the rendered message, when it differs.
- every other field the emitter gave whose value is a string, number, bool or
  None, under its own name (``account``, ``code``, ``destination``,
  ``amount``, ``duration_ms``, ...); Twisted's ``log_*`` keys, other objects
  and Twisted's internal keys are left out.
- secrets never appear: a field whose name contains ``token``, ``secret``,
  ``authorization``, ``jwt``, ``password`` or ``passphrase`` is
  ``"[redacted]"`` (in the message too, which is rendered from the redacted
  fields), and any text shaped like a JWT (three base64url parts, the first
  starting ``eyJ``) or following ``Bearer`` is replaced by ``[redacted]``.
- a failure is one line, ``"failure": "ValueError: the message"``; at level
  critical -- where :meth:`twisted.logger.Logger.failure` logs unexpected
  errors, i.e. bugs -- its traceback is added as the string ``traceback``
  (still one JSON line: newlines are ``\\n`` in JSON).

JSON is written ASCII-only, so peer text cannot break a line or reach a
terminal raw.  The text observer writes ``time [namespace#level] message``
with every field and the message escaped by :func:`ilphttp.logtext.escape`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from typing import IO, Any, Callable

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)
from twisted.python.failure import Failure
from zope.interface import provider

from ilphttp.logtext import escape

__all__ = [
    "FORMATS",
    "REDACTED",
    "LevelFilter",
    "json_observer",
    "redact_text",
    "text_observer",
    "to_json_dict",
]

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"token|secret|authori[sz]ation|jwt|password|passphrase", re.IGNORECASE)
# base64url header.payload.signature whose header is JSON ("eyJ" = '{"'), or a
# bearer credential: the value shapes that give a secret away whatever the key.
_SECRET_TEXT = re.compile(
    r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|(?<=Bearer )\S+", re.IGNORECASE
)
_SCALARS = (str, int, float, bool, type(None))
# Keys twisted.logger's legacy bridge adds, left out of the fields written
# out; a format string may still use them ({message}, {why}): the message is
# rendered from every field.
_INTERNAL = frozenset({"format", "isError", "message", "system", "why", "failure", "time"})
_FIRST = ("time", "level", "namespace", "event", "message")


def redact_text(text: str) -> str:
    """``text`` with anything shaped like a JWT or a bearer credential made ``[redacted]``."""
    return _SECRET_TEXT.sub(REDACTED, text)


def _iso_utc(when: float) -> str:
    moment = _dt.datetime.fromtimestamp(when, _dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _fields(event: LogEvent, skip: frozenset[str] = _INTERNAL) -> dict[str, Any]:
    """The emitter's own fields but ``skip``, redacted by name and by value shape."""
    fields: dict[str, Any] = {}
    for key, value in event.items():
        if not isinstance(key, str) or key.startswith("log_") or key in skip:
            continue
        if _SECRET_KEY.search(key):
            fields[key] = REDACTED
        elif isinstance(value, str):
            fields[key] = redact_text(value)
        else:
            fields[key] = value
    return fields


def _render(event: LogEvent, fields: Mapping[str, Any]) -> str:
    """The event's message rendered from the redacted fields (never the raw ones)."""
    safe = {k: v for k, v in event.items() if isinstance(k, str) and k.startswith("log_")}
    safe.update(fields)
    return redact_text(formatEvent(safe))


def _failure_line(failure: Failure) -> str:
    name = getattr(failure.type, "__qualname__", str(failure.type))
    return redact_text(f"{name}: {failure.getErrorMessage()}")


def to_json_dict(event: LogEvent) -> dict[str, Any]:
    """The JSON object :func:`json_observer` writes for ``event`` (see the module's doc)."""
    fields = _fields(event)
    level = event.get("log_level")
    message = _render(event, _fields(event, frozenset()))
    explicit = fields.pop("event", None)
    out: dict[str, Any] = {
        "time": _iso_utc(event.get("log_time") or 0.0),
        "level": getattr(level, "name", None),
        "namespace": event.get("log_namespace"),
        "event": explicit if isinstance(explicit, str) and explicit else message,
    }
    if out["event"] != message and message:
        out["message"] = message
    for key, value in fields.items():
        if key in _FIRST or not isinstance(value, _SCALARS):
            continue
        # NaN and infinities are not JSON
        out[key] = str(value) if isinstance(value, float) and not math.isfinite(value) else value
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        out["failure"] = _failure_line(failure)
        if level == LogLevel.critical:
            out["traceback"] = redact_text(failure.getTraceback())
    return out


class LevelFilter(FilteringLogObserver):
    """Passes the events at ``level`` or above to ``observer``; a reload of the
    node's ``logLevel`` changes the level (:meth:`set_level`)."""

    def __init__(self, observer: ILogObserver, level: LogLevel) -> None:
        self._predicate = LogLevelFilterPredicate(defaultLogLevel=level)
        FilteringLogObserver.__init__(self, observer, [self._predicate])

    def set_level(self, level: LogLevel) -> None:
        """From now on, events at ``level`` or above pass (every namespace)."""
        self._predicate.setLogLevelForNamespace("", level)


def _filtered(observer: ILogObserver, level: LogLevel) -> LevelFilter:
    return LevelFilter(observer, level)


def json_observer(out: IO[str], level: LogLevel = LogLevel.info) -> ILogObserver:
    """A log observer writing one ASCII JSON object per line to ``out``, for events at
    ``level`` or above (packet events are emitted at debug)."""

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        out.write(json.dumps(to_json_dict(event), ensure_ascii=True) + "\n")
        out.flush()

    return _filtered(observe, level)


def _text_line(event: LogEvent) -> str:
    fields = {
        k: escape(v) if isinstance(v, str) else v for k, v in _fields(event, frozenset()).items()
    }
    level = event.get("log_level")
    text = escape(_render(event, fields))
    head = "{} [{}#{}] ".format(
        _iso_utc(event.get("log_time") or 0.0),
        escape(str(event.get("log_namespace", "-"))),
        getattr(level, "name", "-"),
    )
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        text += " (" + escape(_failure_line(failure)) + ")"
        if level == LogLevel.critical:
            lines = redact_text(failure.getTraceback()).splitlines()
            text += "".join("\n\t" + escape(line) for line in lines)
    return head + text + "\n"


def text_observer(out: IO[str], level: LogLevel = LogLevel.info) -> ILogObserver:
    """A log observer writing ``time [namespace#level] message`` lines to ``out``, with
    peer text escaped (:func:`ilphttp.logtext.escape`) and secrets redacted as in JSON;
    a critical failure's traceback follows on tab-indented lines."""

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        out.write(_text_line(event))
        out.flush()

    return _filtered(observe, level)


#: ``--log-format`` values and their observer factories.
FORMATS: dict[str, Callable[[IO[str], LogLevel], ILogObserver]] = {
    "json": json_observer,
    "text": text_observer,
}
