"""The global reactor, for tests that run on real time."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred


def global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def within(d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """``d``, failing with TimeoutError (and cancelled) after ``seconds`` of real time."""
    return d.addTimeout(seconds, global_reactor())
