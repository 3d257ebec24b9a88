"""``twistd -n ilphttp`` as a subprocess of a test, with this checkout on PYTHONPATH."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.packet import Fulfill, Reject, deserialize_prepare, serialize
from tests.support.reactor import global_reactor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWISTD = "from twisted.scripts.twistd import run; run()"
#: the pid handler fulfils Prepares whose condition is sha256(PREIMAGE)
PREIMAGE = bytes([9]) * 32
CONDITION = hashlib.sha256(PREIMAGE).digest()


def make_pid_handler(context: Any) -> Any:
    """A ``--handler`` factory: fulfils with the worker's process id as the data."""
    fulfill = serialize(Fulfill(PREIMAGE, str(os.getpid()).encode("ascii")))
    reject = serialize(Reject("F05", "test.ops", "wrong condition"))

    def handler(data: bytes) -> bytes:
        return fulfill if deserialize_prepare(data).execution_condition == CONDITION else reject

    return handler


#: seconds the slow pid handler takes per Prepare
SLOW_HANDLER_DELAY = 0.3


def make_slow_pid_handler(context: Any) -> Any:
    """As :func:`make_pid_handler`, answering :data:`SLOW_HANDLER_DELAY` seconds later
    (so that packets are in flight when a test stops or kills a worker)."""
    fast = make_pid_handler(context)

    def handler(data: bytes) -> Any:
        reply = fast(data)
        return deferLater(global_reactor(), SLOW_HANDLER_DELAY, lambda: reply)

    return handler


#: seconds the held pid handler takes per Prepare: long enough for a test to
#: look at the node while the Prepare is in flight, even on a loaded machine
HELD_HANDLER_DELAY = 8.0


def make_held_pid_handler(context: Any) -> Any:
    """As :func:`make_pid_handler`, answering :data:`HELD_HANDLER_DELAY` seconds later."""
    fast = make_pid_handler(context)

    def handler(data: bytes) -> Any:
        reply = fast(data)
        Logger(namespace="tests.held").info("holding a Prepare")  # it is in flight now
        return deferLater(global_reactor(), HELD_HANDLER_DELAY, lambda: reply)

    return handler


def make_raising_handler(context: Any) -> Any:
    """A ``--handler`` factory that cannot make a handler (its database is down, say)."""
    raise RuntimeError("the handler's database is down")


class Twistd(ProcessProtocol):
    """A running twistd; its stdout and stderr together in :meth:`text`."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def wait_for(self, pattern: str, timeout: float = 45.0, start: int = 0) -> Any:
        """The first match of the regular expression in the output after ``start``."""
        for _ in range(int(timeout * 10)):
            match = re.compile(pattern).search(self.text(), start)
            if match is not None:
                return match
            if self.reason is not None:
                break
            yield deferLater(global_reactor(), 0.1, lambda: None)
        raise AssertionError(f"{pattern!r} never logged; the log:\n{self.text()[-6000:]}")

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """SIGTERM, and wait until it has ended."""
        if self.reason is None and self.transport is not None:
            self.transport.signalProcess("TERM")
        yield self.ended

    @property
    def exit_code(self) -> int | None:
        """The exit status once it has ended (None while running, or killed by a signal)."""
        if self.reason is None:
            return None
        code: int | None = getattr(self.reason.value, "exitCode", None)
        return code

    def kill(self) -> None:
        if self.reason is None and self.transport is not None:
            self.transport.signalProcess("KILL")


def start_twistd(
    case: SynchronousTestCase, workdir: str, *argv: str, twistd: Sequence[str] = ()
) -> Twistd:
    """``twistd -n --pidfile= TWISTD ilphttp ARGV`` in ``workdir``, killed at cleanup."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    process = Twistd()
    args = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", *twistd, "ilphttp", *argv]
    global_reactor().spawnProcess(process, sys.executable, args, env=env, path=workdir)
    case.addCleanup(lambda: process.ended)  # runs after the kill below (cleanups are LIFO)
    case.addCleanup(process.kill)
    return process
