"""
Tests for ilphttp.h2_server: the Twisted protocol over the sans-IO session
(in memory, with h2's client side as the frame factory), then loopback: the
HTTP/2 client of ilphttp's own PluginHttp and the JS plugin's ``http2: true``
sender against it.
"""

from __future__ import annotations

import time
from typing import Any

import h2.errors
import h2.events
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import readBody

from ilphttp import h2_guard
from ilphttp.auth import IncomingAuth
from ilphttp.front import AccountDoor
from ilphttp.h2_server import ABORT_TIMEOUT, H2ServerFactory, H2ServerProtocol
from ilphttp.h2_server_core import IDLE_TIMEOUT
from ilphttp.http2 import HTTP2Agent
from ilphttp.packet import Fulfill, Prepare, deserialize, serialize_fulfill
from ilphttp.plugin import PluginHttp
from ilphttp.tls import server_endpoint
from ilphttp.tls_identity import ClientTLSPolicy
from tests.support.certs import CertificateAuthority
from tests.support.fakes import LogCapture
from tests.support.h2server import (
    RecordingDoor,
    answered,
    goaways,
    h2_client,
    request,
    statuses,
)
from tests.support.jsinterop import plugin_options, require_node, start_peer
from tests.support.packets import data_prepare, largest_data_prepare
from tests.support.ports import free_port

Codes = h2.errors.ErrorCodes


class ProtocolTests(SynchronousTestCase):
    """One connection on a StringTransport, the client's reads fed by hand."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.door = RecordingDoor()
        self.protocol = H2ServerProtocol(self.door, self.clock)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1234))
        self.protocol.makeConnection(self.transport)
        self.client = h2_client()
        self.logged = LogCapture(self)

    def tearDown(self) -> None:
        if not self.transport.disconnected:
            self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.logged.errors(), [])

    def send(self) -> None:
        self.protocol.dataReceived(self.client.data_to_send())

    def reply(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return self.client.receive_data(data)

    def test_door_gets_the_request(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/ilp", (b"authorization", b"Bearer t")))
        c.send_data(1, b"prepare", end_stream=True)
        self.send()
        [(method, path, header, body, identity)] = self.door.calls
        self.assertEqual((method, path, body), (b"POST", b"/ilp", b"prepare"))
        self.assertEqual(header(b"authorization"), b"Bearer t")
        self.assertIsNone(header(b"content-type"))
        self.assertIsNone(identity())  # no TLS
        events = self.reply()
        self.assertEqual(answered(events), {1: b"ok /ilp"})
        [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
        self.assertEqual(
            response.headers,
            [
                (b":status", b"200"),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"7"),
            ],
        )

    def test_answer_later_and_its_headers(self) -> None:
        door = AccountDoor(IncomingAuth("t", None, time.time), _Later())
        self.protocol.door = door
        self.client.send_headers(1, request(b"POST", b"/", (b"authorization", b"Bearer t")))
        self.client.send_data(1, b"not a prepare", end_stream=True)
        self.send()
        self.assertEqual(statuses(self.reply()), {1: 400})

    def test_deferred_answer(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/later1"), end_stream=True)
        self.send()
        self.assertEqual(answered(self.reply()), {})
        self.door.answer_all()
        self.assertEqual(answered(self.reply()), {1: b"ok /later1"})

    def test_reset_between_requests_in_one_read(self) -> None:
        """The lost-answers regression: stream 3 is answered, nothing logged."""
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        c.reset_stream(1)
        c.send_headers(3, request(b"POST", b"/3"), end_stream=True)
        self.send()
        self.assertEqual(answered(self.reply()), {3: b"ok /3"})
        self.assertFalse(self.transport.disconnecting)
        c.send_headers(5, request(b"POST", b"/5"), end_stream=True)
        self.send()
        self.assertEqual(answered(self.reply()), {5: b"ok /5"})
        self.assertEqual(self.logged.at_least(LogLevel.info), [])

    def test_reset_cancels_the_door(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/later1"), end_stream=True)
        c.send_headers(3, request(b"POST", b"/later3"), end_stream=True)
        self.send()
        c.reset_stream(1, error_code=Codes.CANCEL)
        self.send()
        self.assertEqual(self.door.cancelled, [b"/later1"])
        self.door.answer_all()
        self.assertEqual(answered(self.reply()), {3: b"ok /later3"})

    def test_connection_lost_cancels_the_door(self) -> None:
        self.client.send_headers(1, request(b"POST", b"/later1"), end_stream=True)
        self.send()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.door.cancelled, [b"/later1"])

    def test_close_sends_goaway_and_waits(self) -> None:
        self.client.send_headers(1, request(b"POST", b"/later1"), end_stream=True)
        self.send()
        closed = self.protocol.close(5.0)
        [goaway] = goaways(self.reply())
        self.assertEqual((goaway.error_code, goaway.last_stream_id), (Codes.NO_ERROR, 1))
        self.assertFalse(self.transport.disconnecting)
        self.door.answer_all()
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(closed)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)

    def test_close_times_out(self) -> None:
        self.client.send_headers(1, request(b"POST", b"/later1"), end_stream=True)
        self.send()
        self.protocol.close(5.0)
        self.clock.advance(5.0)
        self.assertEqual(self.door.cancelled, [b"/later1"])
        self.assertTrue(self.transport.disconnecting)

    def test_idle_connection_is_closed(self) -> None:
        self.send()
        self.clock.advance(IDLE_TIMEOUT)
        self.assertEqual(goaways(self.reply())[0].error_code, Codes.NO_ERROR)
        self.assertTrue(self.transport.disconnecting)

    def test_own_answers_are_shown_to_the_door_observer(self) -> None:
        """413 (Content-Length, then a body past it), 431 and 408 reach metrics; the
        door's answers are not shown again."""
        c = self.client
        c.send_headers(1, request(b"POST", b"/", (b"content-length", b"40000")))
        c.send_headers(3, request(b"POST", b"/"))
        c.send_data(3, b"x" * 16_000)
        c.send_data(3, b"x" * 16_000)
        c.send_data(3, b"x" * 16_000)
        fields = [(b"x-%d" % i, b"v") for i in range(200)]
        c.send_headers(5, request(b"POST", b"/", *fields), end_stream=True)
        c.send_headers(7, request(b"POST", b"/ok"), end_stream=True)
        c.send_headers(9, request(b"POST", b"/slow"))
        self.send()
        self.clock.advance(self.protocol.request_timeout + 1)
        self.assertEqual(statuses(self.reply()), {1: 413, 3: 413, 5: 431, 7: 200, 9: 408})
        self.assertEqual(self.door.observed, [413, 413, 431, 408])
        self.assertEqual(self.door.paths, [b"/ok"])

    def test_door_that_raises_is_a_500(self) -> None:
        class Broken:
            def answer(self, *args: Any) -> Any:
                raise RuntimeError("a bug")

        self.protocol.door = Broken()
        self.client.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        self.client.send_headers(3, request(b"POST", b"/3"), end_stream=True)
        self.send()
        self.assertEqual(statuses(self.reply()), {1: 500, 3: 500})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.logged.events.clear()

    def test_garbage_after_preface(self) -> None:
        self.send()
        self.protocol.dataReceived(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA on stream 0
        self.assertEqual(goaways(self.reply())[0].error_code, Codes.PROTOCOL_ERROR)
        self.assertTrue(self.transport.disconnecting)
        [line] = self.logged.at_least(LogLevel.info)
        self.assertEqual(line["log_level"], LogLevel.info)
        self.assertEqual(line["code"], Codes.PROTOCOL_ERROR)

    def test_upgrade_field_is_malformed(self) -> None:
        """HTTP/2 has no Upgrade: a request with it is malformed (RFC 9113 section
        8.2.2), refused as a protocol error; no door call, no traceback."""
        self.client.config.validate_outbound_headers = False
        self.client.config.normalize_outbound_headers = False  # it would drop the field
        self.client.send_headers(1, request(b"POST", b"/", (b"upgrade", b"h2c")), end_stream=True)
        self.send()
        self.assertEqual(self.door.calls, [])
        self.assertEqual(goaways(self.reply())[0].error_code, Codes.PROTOCOL_ERROR)
        self.assertTrue(self.transport.disconnecting)

    def test_rapid_reset(self) -> None:
        c = self.client
        self.send()
        for i in range(3_000):
            sid = 2 * i + 1
            c.send_headers(sid, request(b"POST", b"/later%d" % sid), end_stream=True)
            self.send()
            c.reset_stream(sid)
            self.send()
            if self.transport.disconnecting:
                break
        self.assertLessEqual(len(self.door.calls), h2_guard.CLIENT_RESET_BURST + 1)
        goaway = goaways(self.reply())[0]
        self.assertEqual(goaway.error_code, Codes.ENHANCE_YOUR_CALM)
        [warning] = self.logged.at_least(LogLevel.warn)
        self.assertEqual(warning["reason"], "RST_STREAM rate")
        # a client that does not read is cut off
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(ABORT_TIMEOUT)
        self.assertTrue(self.transport.disconnected)

    def test_ping_flood(self) -> None:
        c = self.client
        self.send()
        for i in range(1_000):
            c.ping(b"%08d" % i)
        self.send()
        events = self.reply()
        acks = [e for e in events if isinstance(e, h2.events.PingAckReceived)]
        self.assertEqual(len(acks), h2_guard.PING_BURST)
        self.assertEqual(goaways(events)[0].error_code, Codes.ENHANCE_YOUR_CALM)
        self.assertTrue(self.transport.disconnecting)


class _Later:
    """A receiver that is never called (the body is not a Prepare)."""

    def receive_prepare(self, body: bytes, prepare: Prepare, peer_name: bytes | None) -> Any:
        raise AssertionError("not reached")


class _Fulfiller:
    """Fulfills every Prepare whose data starts with its fulfillment (after
    ``delay`` seconds, if set)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.count = 0
        self.cancelled = 0
        self.delay = delay

    def receive_prepare(
        self, body: bytes, prepare: Prepare, peer_name: bytes | None
    ) -> Deferred[bytes]:
        self.count += 1
        reply = serialize_fulfill(Fulfill(prepare.data[:32], prepare.data[32:]))
        if not self.delay:
            return succeed(reply)
        from twisted.internet import reactor

        d: Deferred[bytes] = Deferred(lambda _: call.cancel())
        call = reactor.callLater(self.delay, d.callback, reply)
        d.addErrback(self._cancelled)
        return d

    def _cancelled(self, failure: Failure) -> Failure:
        self.cancelled += 1
        return failure


class LoopbackTests(TestCase):
    """Real senders over loopback against an H2ServerFactory listener."""

    timeout = 60

    @defer.inlineCallbacks
    def listen(self, delay: float = 0.0) -> Any:
        self.receiver = _Fulfiller(delay)
        door = AccountDoor(IncomingAuth("in-token", None, time.time), self.receiver)
        from twisted.internet import reactor

        self.factory = H2ServerFactory(door, reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.factory)
        self.addCleanup(port.stopListening)
        self.addCleanup(self.factory.close_all)
        return port.getHost().port

    @defer.inlineCallbacks
    def test_ilphttp_http2_sender(self) -> Any:
        port = yield self.listen()
        sender = PluginHttp.from_options(
            {
                "outgoing": {
                    "url": f"http://127.0.0.1:{port}/",
                    "staticToken": "in-token",
                    "http2": True,
                }
            }
        )
        yield sender.connect()
        self.addCleanup(sender.disconnect)
        prepares = [data_prepare("test.x.y", payload=b"p%d" % i) for i in range(200)]
        replies = yield defer.gatherResults([sender.send_data(raw) for _, raw, _ in prepares])
        for (_, _, fulfillment), reply in zip(prepares, replies):
            self.assertEqual(deserialize(reply).fulfillment, fulfillment)  # type: ignore[union-attr]
        raw, fulfillment = largest_data_prepare()
        reply = yield sender.send_data(raw)
        self.assertEqual(deserialize(reply).fulfillment, fulfillment)  # type: ignore[union-attr]
        self.assertEqual(len(self.factory.protocols), 1)

    @defer.inlineCallbacks
    def test_burst_with_expiring_prepares(self) -> Any:
        """
        The issue's burst: 300 Prepares to a receiver that takes 50 ms, 100 of
        them with 30 ms left (the sender resets their streams when they
        expire): all 200 others are fulfilled, nothing is logged.
        """
        logged = LogCapture(self)
        port = yield self.listen(delay=0.05)
        sender = PluginHttp.from_options(
            {
                "outgoing": {
                    "url": f"http://127.0.0.1:{port}/",
                    "staticToken": "in-token",
                    "http2": True,
                }
            }
        )
        yield sender.connect()
        self.addCleanup(sender.disconnect)
        normal = [data_prepare("test.x.y", payload=b"n%d" % i) for i in range(200)]
        short = [data_prepare("test.x.y", payload=b"s%d" % i, seconds=0.03) for i in range(100)]
        sent = [sender.send_data(raw) for _, raw, _ in short[:50]]
        sent += [sender.send_data(raw) for _, raw, _ in normal]
        sent += [sender.send_data(raw) for _, raw, _ in short[50:]]
        replies = yield defer.gatherResults(sent)
        for (_, _, fulfillment), reply in zip(normal, replies[50:250]):
            self.assertEqual(deserialize(reply).fulfillment, fulfillment)  # type: ignore[union-attr]
        for reply in replies[:50] + replies[250:]:
            self.assertEqual(deserialize(reply).code, "R00")  # type: ignore[union-attr]
        self.assertGreaterEqual(self.receiver.count, 200)
        self.assertEqual(logged.at_least(LogLevel.warn), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_js_plugin_http2_sender(self) -> Any:
        require_node()
        port = yield self.listen()
        options = plugin_options(free_port(), port, "js-in", "in-token")
        options["outgoing"]["http2"] = True
        js = yield start_peer(self, options)
        for i in range(20):
            _, raw, fulfillment = data_prepare("test.py.x", payload=b"over h2 %d" % i)
            reply = yield js.send(raw)
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"over h2 %d" % i))
        self.assertEqual(self.receiver.count, 20)

    @defer.inlineCallbacks
    def test_tls_alpn_h2_with_client_certificate(self) -> Any:
        """On TLS, ALPN h2; the door can ask for the client's verified identity."""
        from twisted.internet import reactor

        directory = self.mktemp()
        ca = CertificateAuthority()
        ca_path = ca.write_cert(directory)
        server = ca.issue("s", ip_addresses=["127.0.0.1"]).write(directory, "s")
        client = ca.issue("peer.test", dns_names=["peer.test"], client=True, server=False)
        client_paths = client.write(directory, "c")
        door = RecordingDoor()
        endpoint = server_endpoint(
            reactor, 0, server.cert, server.key, interface="127.0.0.1", client_ca=ca_path
        )
        factory = H2ServerFactory(door, reactor)
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        self.addCleanup(factory.close_all)
        policy = ClientTLSPolicy(
            ca_path, client_cert=client_paths.cert, client_key=client_paths.key
        )
        agent = HTTP2Agent(reactor, tls_policy=policy)
        self.addCleanup(agent.close)
        url = f"https://127.0.0.1:{port.getHost().port}/tls"
        response = yield agent.request(b"GET", url.encode())
        self.assertEqual(response.version, (b"HTTP", 2, 0))
        self.assertEqual((yield readBody(response)), b"ok /tls")
        [(_, _, _, _, identity)] = door.calls
        self.assertIn("peer.test", identity().names())
