"""Listener limits (issue 13): the options, slow clients on real sockets, the connection cap."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp.config import OptionError, options_from_js, options_from_python
from ilphttp.nodeconfig import parse_node
from ilphttp.plugin import PluginHttp
from ilphttp.server_limits import DEFAULT_LIMITS, ServerLimits
from tests.support.clients import RawClient, raw_connect, raw_request
from tests.support.fakes import RecordingHandler
from tests.support.packets import expect_fulfill
from tests.support.ports import LOOPBACK_ENDPOINT, listen_port, plugin_url
from tests.support.reactor import global_reactor, within

TOKEN = "limits-token"


class OptionTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = options_from_python({"static_token": TOKEN}, None)
        assert options.incoming is not None
        self.assertEqual(options.incoming.server_limits, DEFAULT_LIMITS)
        self.assertEqual((DEFAULT_LIMITS.head_timeout, DEFAULT_LIMITS.body_timeout), (10.0, 10.0))
        self.assertEqual((DEFAULT_LIMITS.idle_timeout, DEFAULT_LIMITS.grace_period), (60.0, 15.0))

    def test_python_seconds_and_js_milliseconds(self) -> None:
        python = options_from_python(
            {
                "static_token": TOKEN,
                "max_connections": 50,
                "head_timeout": 2,
                "body_timeout": 3.5,
                "idle_timeout": None,
                "max_header_bytes": 4096,
                "max_headers": 20,
                "grace_period": 30,
            },
            None,
        )
        js = options_from_js(
            {
                "incoming": {
                    "staticToken": TOKEN,
                    "maxConnections": 50,
                    "headTimeout": 2000,
                    "bodyTimeout": 3500,
                    "idleTimeout": None,
                    "maxHeaderBytes": 4096,
                    "maxHeaders": 20,
                    "gracePeriod": 30000,
                }
            }
        )
        expected = ServerLimits(50, 2.0, 3.5, None, 4096, 20, 30.0)
        assert python.incoming is not None and js.incoming is not None
        self.assertEqual(python.incoming.server_limits, expected)
        self.assertEqual(js.incoming.server_limits, expected)

    def test_errors_name_the_option(self) -> None:
        cases = [
            ({"headTimeout": 0}, "incoming.headTimeout must be a number of milliseconds > 0"),
            ({"gracePeriod": "15s"}, "incoming.gracePeriod"),
            ({"maxConnections": 0}, "incoming.maxConnections"),
            ({"maxHeaderBytes": 10}, "incoming.maxHeaderBytes"),
            ({"head_timeout": 1}, "head_timeout"),  # the other spelling is unknown here
        ]
        for extra, words in cases:
            with self.assertRaises(OptionError) as caught:
                options_from_js({"incoming": {"staticToken": TOKEN, **extra}})
            self.assertIn(words, str(caught.exception))

    def test_node_server_object(self) -> None:
        node = parse_node(
            {
                "ilpAddress": "test.node",
                "assetCode": "XRP",
                "assetScale": 9,
                "listen": "tcp:0:interface=127.0.0.1",
                "server": {"maxConnections": 7, "gracePeriod": 5000},
                "accounts": {
                    "a": {"relation": "child", "options": {"incoming": {"staticToken": TOKEN}}}
                },
            }
        )
        self.assertEqual(node.server_limits, ServerLimits(max_connections=7, grace_period=5.0))
        with self.assertRaises(OptionError) as caught:
            parse_node(
                {
                    "ilpAddress": "test.node",
                    "assetCode": "XRP",
                    "assetScale": 9,
                    "server": {"maxConections": 7},
                    "accounts": {
                        "a": {
                            "relation": "child",
                            "options": {"incoming": {"port": 0, "staticToken": TOKEN}},
                        }
                    },
                }
            )
        self.assertIn("maxConections", str(caught.exception))


def _sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    global_reactor().callLater(seconds, d.callback, None)
    return d


class SlowClientTests(TestCase):
    """Slow connections are closed at the head deadline while a real peer's packets flow."""

    timeout = 120
    SLOW = 300  # a few hundred real sockets: the 2,000 of the issue take too long for CI
    # far above the time it takes to open them all on a loaded CI machine (coverage, PyPy)
    HEAD_TIMEOUT = 6.0

    @inlineCallbacks
    def test_slow_heads_closed_while_packets_flow(self) -> Any:
        handler = RecordingHandler()
        receiver = PluginHttp(
            incoming={
                "endpoint": LOOPBACK_ENDPOINT,
                "static_token": TOKEN,
                "head_timeout": self.HEAD_TIMEOUT,
            }
        )
        receiver.register_data_handler(handler)
        yield receiver.connect()
        self.addCleanup(receiver.disconnect)
        port = listen_port(receiver)
        sender = PluginHttp(outgoing={"url": plugin_url(receiver), "static_token": TOKEN})
        yield sender.connect()
        self.addCleanup(sender.disconnect)

        def start_head(client: RawClient) -> RawClient:
            # At once on each connection: the head's deadline runs from the
            # accept, and a connection that sent nothing is closed silently
            # (opening hundreds of sockets can take longer than the deadline).
            client.transport.write(b"POST / HTTP/1.1\r\nHost: x\r\n")  # type: ignore[union-attr]
            return client

        opened = time.monotonic()
        slow: list[RawClient] = yield gatherResults(
            [raw_connect(self, port).addCallback(start_head) for _ in range(self.SLOW)]
        )
        calls: list[Any] = []

        def trickle() -> None:
            for client in slow:
                # Not once the answer came: a write after the server's close
                # draws a reset, and the reset discards the unread 408.
                if not client.closed.called and not client.data:
                    client.transport.write(b"X-Slow: 1\r\n")  # type: ignore[union-attr]
            calls[:] = [global_reactor().callLater(0.5, trickle)]

        trickle()
        self.addCleanup(lambda: calls[0].cancel() if calls[0].active() else None)

        # The legitimate peer's packets, one after the other, while the slow ones hang on.
        for _ in range(20):
            made = handler.make(time.time())
            reply = yield within(sender.send_data(made.packet), 10)
            expect_fulfill(self, reply, made.fulfillment)
            yield _sleep(0.05)

        closed = yield within(gatherResults([c.closed for c in slow]), 60)
        elapsed = time.monotonic() - opened
        # Every slow connection got the 408, despite the trickle that kept it busy.
        self.assertEqual(
            sum(1 for data in closed if data.startswith(b"HTTP/1.1 408 Request Timeout")),
            self.SLOW,
        )
        self.assertGreaterEqual(elapsed, self.HEAD_TIMEOUT)
        self.assertEqual(len(handler.calls), 20)


class MaxConnectionsTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_past_the_cap_the_port_waits_until_one_closes(self) -> Any:
        receiver = PluginHttp(
            incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN, "max_connections": 3}
        )
        yield receiver.connect()
        self.addCleanup(receiver.disconnect)
        port = listen_port(receiver)
        held: list[RawClient] = []
        for _ in range(3):
            client = yield raw_connect(self, port)
            client.transport.write(raw_request(method=b"GET"))  # type: ignore[union-attr]
            yield within(client.wait_for(b"\r\n\r\nOK"), 5)
            held.append(client)
        # The kernel completes the handshake (backlog), but nothing reads it yet.
        waiting = yield raw_connect(self, port)
        waiting.transport.write(raw_request(method=b"GET"))  # type: ignore[union-attr]
        yield _sleep(0.3)
        self.assertEqual(waiting.data, b"")
        held[0].transport.loseConnection()  # type: ignore[union-attr]
        yield within(waiting.wait_for(b"\r\n\r\nOK"), 5)
        tracker: Any = receiver._tracker
        self.assertEqual(tracker.connections_total, 4)
