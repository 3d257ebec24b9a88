"""Graceful drain (issue 13): disconnect()/stopService() stop accepting, answer what was read,
close idle connections, report 503 on the health check, and close what is left after the grace."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import endpoints
from twisted.internet import error as net_error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp import ildcp
from ilphttp.front import Answer
from ilphttp.listener import IlpListener
from ilphttp.packet import deserialize_fulfill
from ilphttp.plugin import PluginHttp
from ilphttp.server_limits import DRAIN_LINGER, ServerLimits
from tests.support.clients import raw_connect, raw_request
from tests.support.fakes import Pending, RecordingHandler
from tests.support.packets import make_prepare
from tests.support.ports import LOOPBACK_ENDPOINT, listen_port
from tests.support.reactor import global_reactor, within

TOKEN = "drain-token"
AUTH = (b"Authorization", b"Bearer " + TOKEN.encode())


def _health(door: Any) -> Answer:
    answer = door.answer(b"GET", b"/", lambda name: None, b"", lambda: None)
    assert isinstance(answer, Answer)
    return answer


def _post(packet: bytes) -> bytes:
    return raw_request(headers=[AUTH, (b"Content-Length", b"%d" % len(packet))], body=packet)


class PluginDrainTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_in_flight_request_answered_with_connection_close(self) -> Any:
        plugin = PluginHttp(incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN})
        handler = RecordingHandler()
        pending = Pending()
        handler.respond = lambda data: pending.deferred
        plugin.register_data_handler(handler)
        yield plugin.connect()
        port = listen_port(plugin)
        door = plugin.resource.door  # type: ignore[union-attr]
        self.assertEqual(_health(door).status, 200)

        idle = yield raw_connect(self, port)  # kept alive after one answer
        idle.transport.write(raw_request(method=b"GET"))  # type: ignore[union-attr]
        yield within(idle.wait_for(b"\r\n\r\nOK"), 5)

        busy = yield raw_connect(self, port)
        made = make_prepare(time.time())
        called = handler.next_call()
        busy.transport.write(_post(made.packet))  # type: ignore[union-attr]
        yield within(called, 5)

        stopped = plugin.disconnect()
        self.assertNoResult(stopped)
        health = _health(door)
        self.assertEqual((health.status, health.body), (503, b"draining"))
        yield within(idle.closed, 5)  # the idle keep-alive connection: closed at once
        refused = endpoints.TCP4ClientEndpoint(global_reactor(), "127.0.0.1", port)
        yield self.assertFailure(
            endpoints.connectProtocol(refused, Protocol()), net_error.ConnectionRefusedError
        )
        self.assertFalse(busy.closed.called, busy.data)

        pending.deferred.callback(made.fulfill(b"drained"))
        data = yield within(busy.closed, 5)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"))
        self.assertIn(b"Connection: close", head)
        self.assertEqual(deserialize_fulfill(body).data, b"drained")
        yield within(stopped, 5)
        self.assertFalse(plugin.is_connected())

    @inlineCallbacks
    def test_stop_service_drains_too(self) -> Any:
        plugin = PluginHttp(incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN})
        plugin.register_data_handler(RecordingHandler())
        plugin.startService()
        yield within(_listening(plugin), 5)
        idle = yield raw_connect(self, listen_port(plugin))
        stopped = plugin.stopService()
        yield within(idle.closed, 5)
        yield within(stopped, 5)


def _listening(plugin: PluginHttp) -> Deferred[None]:
    d: Deferred[None] = Deferred()

    def check() -> None:
        if plugin.port is not None:
            d.callback(None)
        else:
            global_reactor().callLater(0.01, check)

    check()
    return d


class HealthTests(SynchronousTestCase):
    def test_503_before_connect_and_until_ildcp_is_known(self) -> None:
        clock = Clock()
        plugin = PluginHttp(
            incoming={"static_token": TOKEN}, multi=True, reactor=clock, address=None
        )
        door = plugin.resource.door  # type: ignore[union-attr]
        self.assertEqual(_health(door).body, b"starting")
        asked: list[Deferred[bytes]] = []

        def handler(data: bytes) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            asked.append(d)
            return d

        plugin.register_data_handler(handler)
        self.successResultOf(plugin.connect())
        answer = _health(door)
        self.assertEqual(answer.status, 503)
        self.assertIn(b"IL-DCP", answer.body)
        self.assertIn((b"retry-after", b"1"), answer.headers)
        self.assertEqual(len(asked), 1)  # asking started the fetch
        _health(door)
        self.assertEqual(len(asked), 1)  # one fetch at a time
        info = ildcp.IldcpResponse("test.hub", 9, "XRP")
        asked[0].callback(ildcp.serialize_response(info))
        self.assertEqual(_health(door).status, 200)
        self.successResultOf(plugin.disconnect())

    def test_ready_checks(self) -> None:
        plugin = PluginHttp(incoming={"static_token": TOKEN}, reactor=Clock())
        self.successResultOf(plugin.connect())
        reasons: list[str | None] = ["starting: our address is not known yet (IL-DCP)"]
        plugin.ready_checks.append(lambda: reasons[0])
        door = plugin.resource.door  # type: ignore[union-attr]
        self.assertEqual(_health(door).status, 503)
        reasons[0] = None
        self.assertEqual(_health(door).status, 200)
        self.successResultOf(plugin.disconnect())


class ListenerDrainTests(SynchronousTestCase):
    """IlpListener.drain on in-memory connections and a Clock: the grace period."""

    def connect(self, listener: IlpListener) -> tuple[Any, StringTransport]:
        protocol = listener.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_grace_expiry_closes_a_stuck_request(self) -> None:
        clock = Clock()
        stuck: Deferred[Answer] = Deferred()
        cancelled: list[bool] = []
        stuck.addErrback(lambda f: cancelled.append(True))

        class Door:
            def answer(self, *args: Any) -> Any:
                return stuck

        listener = IlpListener(Door(), clock, limits=ServerLimits(grace_period=15))
        protocol, transport = self.connect(listener)
        protocol.dataReceived(raw_request(headers=[(b"Content-Length", b"1")], body=b"x"))
        drained = listener.drain()
        clock.advance(14.9)
        self.assertNoResult(drained)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnected)  # aborted
        protocol.connectionLost()
        self.successResultOf(drained)
        self.assertEqual(cancelled, [True])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_connection_accepted_while_draining_is_closed(self) -> None:
        clock = Clock()
        listener = IlpListener(_Health(), clock)
        self.successResultOf(listener.drain())
        _, transport = self.connect(listener)
        clock.advance(DRAIN_LINGER)  # idle: kept only as long as a drain lingers
        self.assertTrue(transport.disconnecting)


class _Health:
    def answer(self, *args: Any) -> Answer:
        return Answer(200, b"OK")
