"""Readiness and graceful drain: what a plugin or a shared listener tells its health check.

A :class:`Drain` is kept by each :class:`~ilphttp.PluginHttp` and each
:class:`~ilphttp.shared.SharedListener`.  Its :meth:`Drain.readiness` is the
door's readiness hook (:attr:`ilphttp.front.AccountDoor.readiness`): ``None``
when ready, else the reason the health check's ``503`` gives (``starting``,
``draining``, or what one of :attr:`Drain.checks` says, e.g. the router's
``starting: our address is not known yet (IL-DCP)``).  :meth:`Drain.start`
stops the listening port at once and drains the listener's connections
(:func:`ilphttp.listener.drain_listener`), once.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from ilphttp.handlers import settled
from ilphttp.listener import drain_listener

__all__ = ["Drain", "ReadyCheck"]

#: ``check() -> None`` when ready, else why not
ReadyCheck = Callable[[], "str | None"]


class Drain:
    """One service's readiness and drain (see the module docstring)."""

    def __init__(self) -> None:
        #: more reasons not to be ready, asked in order
        self.checks: list[ReadyCheck] = []
        self._draining: Deferred[None] | None = None

    @property
    def draining(self) -> bool:
        return self._draining is not None

    def readiness(self, running: bool) -> str | None:
        """``"draining"``, ``"starting"`` (not ``running``), a check's reason, or None."""
        if self._draining is not None:
            return "draining"
        if not running:
            return "starting"
        for check in self.checks:
            reason = check()
            if reason is not None:
                return reason
        return None

    def start(self, port: Any, factory: Any, grace: float) -> Deferred[None]:
        """Stop ``port`` listening and drain ``factory`` within ``grace`` seconds (once);
        fires when every connection is closed."""
        if self._draining is None:
            self._draining = drain_listener(port, factory, grace)
        return settled(self._draining)

    def reset(self) -> None:
        """Stopped: ready to start again (a plugin may connect again)."""
        self._draining = None
