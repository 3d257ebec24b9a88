"""``logLevel`` without ``--log-format``: twistd's own lines, filtered by level, in a
real twistd (one process, and ``--workers``), at start-up and after a reload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp.packet import Fulfill, deserialize
from tests.support.clients import http_agent, request
from tests.support.packets import make_prepare
from tests.support.ports import free_port
from tests.support.reactor import global_reactor, within
from tests.support.twistd import PREIMAGE, Twistd, start_twistd

TOKEN = "log-level-test-token-0123456789"
HEADERS = {
    b"authorization": b"Bearer " + TOKEN.encode(),
    b"content-type": b"application/octet-stream",
}
IGNORED = "ignored 5 bytes after the envelope of a Prepare"


def node_file(workdir: str, port: int, **top: Any) -> str:
    """A node of one child account on ``port``, with ``top``'s keys; the file's path."""
    data = {
        "ilpAddress": "test.levels",
        "assetCode": "XRP",
        "assetScale": 9,
        "accounts": {
            "bob": {
                "relation": "child",
                "options": {
                    "incoming": {
                        "endpoint": f"tcp:{port}:interface=127.0.0.1",
                        "staticToken": TOKEN,
                    }
                },
            }
        },
        **top,
    }
    path = os.path.join(workdir, "node.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def lines_at(text: str, level: str) -> list[str]:
    return [line for line in text.splitlines() if f"#{level}]" in line]


class LogLevelTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="ilphttp-levels-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.port = free_port()
        self.agent = http_agent(self)

    @defer.inlineCallbacks
    def padded(self) -> Any:
        """A Prepare with 5 bytes after its envelope (a debug line), fulfilled; its pid.

        Retried until the node listens (at ``warn`` it says nothing when it does)."""
        made = make_prepare(
            global_reactor().seconds(), destination="test.levels.x", fulfillment=PREIMAGE
        )
        url = f"http://127.0.0.1:{self.port}/"
        for attempt in range(450):
            try:
                result = yield within(
                    request(self.agent, url, headers=HEADERS, body=made.packet + b"\0" * 5), 10
                )
            except Exception:
                if attempt == 449:
                    raise
                yield deferLater(global_reactor(), 0.1, lambda: None)
                continue
            reply = deserialize(result.body)
            self.assertIsInstance(reply, Fulfill, reply)
            return int(reply.data)  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def until_logged(self, node: Twistd, words: str) -> Any:
        """Padded Prepares until ``words`` is in the log (a reload applies in its own time)."""
        for _ in range(100):
            if words in node.text():
                return
            yield self.padded()
            yield deferLater(global_reactor(), 0.1, lambda: None)
        self.fail(f"{words!r} never logged; the log:\n{node.text()[-6000:]}")

    def start(self, *argv: str, **top: Any) -> Twistd:
        config = node_file(self.workdir, self.port, **top)
        handler = "tests.support.twistd:make_pid_handler"
        return start_twistd(self, self.workdir, "--config", config, "--handler", handler, *argv)

    @defer.inlineCallbacks
    def test_default_level_drops_debug_until_a_reload_asks_for_it(self) -> Any:
        node = self.start()
        yield node.wait_for(r"account bob: child, listening on port")
        for _ in range(3):
            yield self.padded()
        node_file(self.workdir, self.port, logLevel="debug")
        node.transport.signalProcess("HUP")  # type: ignore[union-attr]
        at = (yield node.wait_for(r"reloaded: logLevel debug")).start()
        yield self.until_logged(node, IGNORED)
        yield node.stop()
        self.assertEqual(lines_at(node.text()[:at], "debug"), [])
        self.assertIn("[ilphttp.front#debug] " + IGNORED, node.text()[at:])

    @defer.inlineCallbacks
    def test_warn_drops_info_and_debug(self) -> Any:
        node = self.start("--log-level", "warn")
        for _ in range(3):
            yield self.padded()
        yield node.stop()
        text = node.text()
        self.assertEqual((lines_at(text, "info"), lines_at(text, "debug")), ([], []), text)

    @defer.inlineCallbacks
    def test_workers_events_are_filtered_by_the_parent(self) -> Any:
        node = self.start("--workers", "2", logLevel="warn")
        for _ in range(3):
            yield self.padded()  # a worker's debug line, dropped by the parent
        quiet = node.text()
        node_file(self.workdir, self.port, logLevel="debug")
        node.transport.signalProcess("HUP")  # type: ignore[union-attr]
        yield self.until_logged(node, IGNORED)
        yield node.stop()
        self.assertEqual((lines_at(quiet, "info"), lines_at(quiet, "debug")), ([], []), quiet)
        self.assertRegex(node.text(), r"\[worker \d: ilphttp\.front#debug\] " + IGNORED)


class ObserverChoiceTests(SynchronousTestCase):
    """Which observer the node's service sets, from twistd's options."""

    def observer(self, log_format: str | None, twistd: dict[str, Any] | None) -> Any:
        from twisted.application.service import Application, Service
        from twisted.logger import ILogObserver

        from ilphttp.node_logs import with_log_format

        application = Application("test")
        with_log_format(Service(), log_format, "warn", twistd).setServiceParent(application)
        return application.getComponent(ILogObserver, None)

    def test_twistds_text_lines_filtered(self) -> None:
        import io
        import sys

        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = self.observer(None, {"nodaemon": True, "logfile": ""})
        for level in (LogLevel.debug, LogLevel.info, LogLevel.warn):
            observer(
                {"log_level": level, "log_namespace": "t", "log_format": level.name, "log_time": 0}
            )
        [line] = out.getvalue().splitlines()
        self.assertRegex(line, r"^\S+ \[t#warn\] warn$")

    def test_logger_stays_twistds_and_syslog_is_filtered(self) -> None:
        self.assertIsNone(self.observer(None, {"logger": "x.y"}))
        self.assertIsNone(self.observer(None, None))  # outside twistd: not known where it logs
        if not hasattr(signal, "SIGUSR1"):
            return
        from ilphttp.logformat import LevelFilter

        try:
            import syslog  # noqa: F401
        except ImportError:
            return
        self.assertIsInstance(self.observer(None, {"syslog": True, "prefix": "t"}), LevelFilter)
