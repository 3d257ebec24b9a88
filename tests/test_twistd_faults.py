"""``twistd ilphttp`` and an operator's mistakes: a SIGHUP to a node started
from flags, a handler factory that cannot make a handler (one process and
``--workers``), and the exit status of a node that cannot start.

Real ``twistd -n ilphttp`` processes on loopback ports the system chose.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from ilphttp.packet import Fulfill, deserialize
from ilphttp.plugin import PluginHttp
from tests.support.packets import make_prepare
from tests.support.reactor import global_reactor, within
from tests.support.twistd import PREIMAGE, Twistd, start_twistd

TOKEN = "twistd-faults-token"
PID_HANDLER = "tests.support.twistd:make_pid_handler"
RAISING_HANDLER = "tests.support.twistd:make_raising_handler"
REFUSED = (
    r"\[ilphttp.reload#error\] reload refused, the running configuration stays: "
    r"this node was not started from a config file \(--config\)"
)


@defer.inlineCallbacks
def fulfilled_by(port: int) -> Any:
    """The pid in the Fulfill of one Prepare sent to the node on ``port``."""
    sender = PluginHttp(outgoing={"url": f"http://127.0.0.1:{port}/", "static_token": TOKEN})
    yield sender.connect()
    try:
        made = make_prepare(
            global_reactor().seconds(), 10, destination="test.f.x", fulfillment=PREIMAGE
        )
        reply = deserialize((yield within(sender.send_data(made.packet), 20)))
    finally:
        yield sender.disconnect()
    assert isinstance(reply, Fulfill), reply
    return int(reply.data)


class TwistdFaultTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        if os.name != "posix":
            raise self.skipTest("signals and twistd processes need POSIX")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.token_file = os.path.join(self.workdir, "in.token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")

    def flags(self, handler: str) -> list[str]:
        return [
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--incoming-token-file",
            self.token_file,
            "--handler",
            handler,
        ]

    @defer.inlineCallbacks
    def hangup(self, node: Twistd) -> Any:
        mark = len(node.text())
        assert node.transport is not None
        node.transport.signalProcess("HUP")
        yield node.wait_for(REFUSED, start=mark)

    @defer.inlineCallbacks
    def test_sighup_to_a_node_from_flags_is_refused_and_it_keeps_running(self) -> Any:
        node = start_twistd(self, self.workdir, *self.flags(PID_HANDLER))
        port = int((yield node.wait_for(r"account link: \S+, listening on port (\d+)")).group(1))
        pid = yield fulfilled_by(port)
        for _ in range(2):
            yield self.hangup(node)
        self.assertIsNone(node.reason, "SIGHUP stopped the node")
        self.assertEqual((yield fulfilled_by(port)), pid)  # the same process, still serving
        yield node.stop()
        self.assertEqual(len(node.text().split("Received SIGTERM")), 2, "stopped once, by TERM")
        self.assertNotIn("Traceback", node.text())

    @defer.inlineCallbacks
    def test_a_handler_factory_that_raises_stops_one_process_in_one_line(self) -> Any:
        node = start_twistd(self, self.workdir, *self.flags(RAISING_HANDLER))
        yield within(node.ended, 60)
        self.assertEqual(node.exit_code, 1, node.text())
        self.assertIn(
            f"ilphttp: --handler {RAISING_HANDLER}: the handler factory raised RuntimeError:"
            " the handler's database is down (account link)",
            node.text(),
        )
        self.assertNotIn("Traceback", node.text())

    @defer.inlineCallbacks
    def test_a_workers_node_that_cannot_start_exits_1(self) -> Any:
        node = start_twistd(self, self.workdir, *self.flags(RAISING_HANDLER), "--workers", "2")
        yield within(node.ended, 90)
        log = node.text()
        self.assertRegex(log, r"worker \d could not start \(exit status 1\); stopping the node")
        self.assertRegex(
            log,
            r"\[worker \d: ilphttp.workers#critical\] ilphttp: --handler "
            + RAISING_HANDLER
            + r": the handler factory raised RuntimeError: the handler's database is down",
        )
        self.assertNotIn("Traceback", log)
        self.assertEqual(node.exit_code, 1, log)

    @defer.inlineCallbacks
    def test_an_endpoint_that_cannot_be_listened_on_is_one_line(self) -> Any:
        config = os.path.join(self.workdir, "node.json")
        with open(config, "w") as f:
            f.write(
                '{"ilpAddress": "test.f", "assetCode": "XRP", "assetScale": 9, "accounts":'
                ' {"bob": {"relation": "child", "options": {"incoming":'
                ' {"endpoint": "unix:/nonexistent/dir/sock", "staticToken": "t"}}}}}'
            )
        for argv, line in [
            (
                [*self.flags(PID_HANDLER), "--listen", "tcp:99999:interface=127.0.0.1"],
                "twistd ilphttp: --listen 'tcp:99999:interface=127.0.0.1': the port must be"
                " a number from 0 to 65535, got '99999'\n",
            ),
            (
                ["--config", config],
                f"twistd ilphttp: {config}: accounts.bob.options: incoming.endpoint"
                " 'unix:/nonexistent/dir/sock': the socket's directory /nonexistent/dir"
                " does not exist\n",
            ),
        ]:
            node = start_twistd(self, self.workdir, *argv)
            yield within(node.ended, 60)
            self.assertEqual(node.exit_code, 2, node.text())
            self.assertEqual(node.text(), line + "twistd ilphttp: see 'twistd ilphttp --help'\n")

    @defer.inlineCallbacks
    def test_an_outgoing_url_that_cannot_be_connected_to_is_one_line(self) -> Any:
        """A port that is not a TCP port is refused at start-up (exit 2), not
        at every packet; the line shows the URL without its query."""
        config = os.path.join(self.workdir, "bad-url.json")
        with open(config, "w") as f:
            f.write(
                '{"ilpAddress": "test.f", "assetCode": "XRP", "assetScale": 9, "accounts":'
                ' {"bob": {"relation": "peer", "options": {"outgoing":'
                ' {"url": "http://127.0.0.1:-1/?token=SECRETQ1", "staticToken": "t"}}}}}'
            )
        for argv, line in [
            (
                ["--config", config],
                f"twistd ilphttp: {config}: accounts.bob.options: outgoing.url: port '-1' is"
                " not a number (1 to 65535), got 'http://127.0.0.1:-1/'\n",
            ),
            (
                [
                    *self.flags(PID_HANDLER),
                    "--outgoing-url",
                    "http://127.0.0.1:abc/?token=SECRETQ1",
                    "--outgoing-token-file",
                    self.token_file,
                ],
                "twistd ilphttp: --outgoing-url: port 'abc' is not a number (1 to 65535),"
                " got 'http://127.0.0.1:abc/'\n",
            ),
        ]:
            node = start_twistd(self, self.workdir, *argv)
            yield within(node.ended, 60)
            self.assertEqual(node.exit_code, 2, node.text())
            self.assertEqual(node.text(), line + "twistd ilphttp: see 'twistd ilphttp --help'\n")
