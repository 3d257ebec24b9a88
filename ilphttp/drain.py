"""Readiness and graceful drain: what a plugin or a shared listener tells its health check.

A :class:`Drain` is kept by each :class:`~ilphttp.PluginHttp` and each
:class:`~ilphttp.shared.SharedListener`.  Its :meth:`Drain.readiness` is the
door's readiness hook (:attr:`ilphttp.front.AccountDoor.readiness`): ``None``
when ready, else the reason the health check's ``503`` gives (``starting``,
``draining``, or what one of :attr:`Drain.checks` says, e.g. the router's
``starting: our address is not known yet (IL-DCP)``).  :meth:`Drain.start`
stops the listening port at once and drains the listener's connections
(:func:`ilphttp.listener.drain_listener`), once.

RFC 35 asynchronous mode: the replies to the Prepares *we* sent come as new
requests to our own listener.  A drain given a ``hold`` (what fires once none
of our Prepares awaits a reply) therefore keeps the port listening first --
:attr:`Drain.holding`: reply POSTs are taken, new Prepares refused (``503``),
the health check says ``draining`` -- until ``hold`` fires or the grace
period ends, and only then stops the port and drains as above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, succeed

from ilphttp.handlers import settled
from ilphttp.listener import drain_listener

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["Drain", "Hold", "ReadyCheck", "held"]

#: ``check() -> None`` when ready, else why not
ReadyCheck = Callable[[], "str | None"]
#: ``hold() -> Deferred`` firing once no reply to our asynchronous Prepares is awaited
Hold = Callable[[], "Deferred[None]"]


def held(waiting: Deferred[None], clock: IReactorTime, timeout: float) -> Deferred[None]:
    """A Deferred that fires (with None) when ``waiting`` fires, or after ``timeout`` seconds."""
    if waiting.called:
        return succeed(None)
    done: Deferred[None] = Deferred()

    def fire(_: object = None) -> None:
        if timer.active():
            timer.cancel()
        if not done.called:
            done.callback(None)

    timer = clock.callLater(timeout, fire)
    waiting.addBoth(fire)
    return done


class Drain:
    """One service's readiness and drain (see the module docstring)."""

    def __init__(self) -> None:
        #: more reasons not to be ready, asked in order
        self.checks: list[ReadyCheck] = []
        self._draining: Deferred[None] | None = None
        #: True while the drain waits for replies to our asynchronous Prepares
        #: (the port still listens; new Prepares are refused)
        self.holding = False

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

    def start(
        self,
        port: Any,
        factory: Any,
        grace: float,
        hold: Hold | None = None,
        clock: IReactorTime | None = None,
    ) -> Deferred[None]:
        """Stop ``port`` listening and drain ``factory`` within ``grace`` seconds (once);
        fires when every connection is closed.

        With ``hold`` (and ``clock``): first keep listening, :attr:`holding`,
        until ``hold()`` fires or ``grace`` seconds pass (module docstring).
        """
        if self._draining is None:
            waiting = None if hold is None or clock is None else hold()
            if waiting is None or waiting.called:
                self._draining = drain_listener(port, factory, grace)
            else:
                self.holding = True

                def close(_: object) -> Deferred[None]:
                    self.holding = False
                    return drain_listener(port, factory, grace)

                assert clock is not None
                self._draining = held(waiting, clock, grace).addCallback(close)
        return settled(self._draining)

    def reset(self) -> None:
        """Stopped: ready to start again (a plugin may connect again)."""
        self._draining = None
        self.holding = False
