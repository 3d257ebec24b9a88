"""node's own HTTP/2 programs under ``interop/``: the h2c server ``h2server.js``
(which answers on its first stdout line with its port) and one-shot scripts."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.support.jsinterop import INTEROP_DIR

NODE = shutil.which("node")
INTEROP = str(INTEROP_DIR)


class _NodeProcess(ProcessProtocol):
    def __init__(self) -> None:
        self.first_line: defer.Deferred[bytes] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.out = b""
        self.err = b""
        self.done = False

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if b"\n" in self.out and not self.first_line.called:
            self.first_line.callback(self.out.split(b"\n", 1)[0])

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.done = True
        if not self.first_line.called:
            self.first_line.errback(
                RuntimeError(f"node exited early: {self.err.decode(errors='replace')}")
            )
        self.ended.callback(None)


class NodeH2Server:
    """Runs interop/h2server.js; C{start()} gives the port."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options or {}
        self.proto = _NodeProcess()
        self.transport: Any = None

    @defer.inlineCallbacks
    def start(self) -> Any:
        assert NODE is not None
        self.transport = reactor.spawnProcess(
            self.proto,
            NODE,
            [NODE, os.path.join(INTEROP, "h2server.js"), json.dumps(self.options)],
            env=os.environ.copy(),
            path=INTEROP,
        )
        timer = reactor.callLater(10, self.proto.first_line.cancel)
        try:
            line = yield self.proto.first_line
        finally:
            if timer.active():
                timer.cancel()
        return json.loads(line)["port"]

    @defer.inlineCallbacks
    def stop(self) -> Any:
        if self.transport is None or self.proto.done:
            return
        try:
            self.transport.closeStdin()
            self.transport.signalProcess("TERM")
        except ProcessExitedAlready:
            pass
        kill = reactor.callLater(5, self._kill)
        yield self.proto.ended
        if kill.active():
            kill.cancel()

    def _kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass


def run_node_script(script: str, options: dict[str, Any]) -> defer.Deferred[Any]:
    """Run an interop script; fires with (stdout, stderr, exit code)."""
    from twisted.internet.utils import getProcessOutputAndValue

    assert NODE is not None
    return getProcessOutputAndValue(
        NODE,
        [os.path.join(INTEROP, script), json.dumps(options)],
        env=os.environ.copy(),
        path=INTEROP,
        reactor=reactor,
    )
