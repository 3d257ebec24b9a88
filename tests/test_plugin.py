"""PluginHttp's life cycle: events, connect/disconnect, draining, services, mounting."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from ilphttp import ildcp
from ilphttp.config import OptionError
from ilphttp.packet import ErrorCode
from ilphttp.plugin import NotConnectedError, PluginHttp
from ilphttp.server import make_site
from tests.support.clients import http_agent, raw_connect, request
from tests.support.fakes import FakeAgent, FakeResponse, LogCapture, Pending, RecordingHandler
from tests.support.packets import CLOCK_START, expect_fulfill, expect_reject, make_prepare
from tests.support.ports import LOOPBACK_ENDPOINT, listen_port, plugin_url
from tests.support.reactor import global_reactor, within

TOKEN = "plugin-token"
HEADERS = {b"authorization": b"Bearer " + TOKEN.encode()}


def listening_plugin(**top: Any) -> PluginHttp:
    incoming = {"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN}
    incoming.update(top.pop("incoming", {}))
    return PluginHttp(incoming=incoming, **top)


def plugin_on_fake_agent(
    case: SynchronousTestCase, **top: Any
) -> tuple[Clock, FakeAgent, PluginHttp]:
    """A connected PluginHttp sending through a FakeAgent, on a Clock at CLOCK_START."""
    clock = Clock()
    clock.advance(CLOCK_START)
    agent = FakeAgent()
    plugin = PluginHttp(
        outgoing={"url": "http://peer.invalid/", "static_token": "t"},
        reactor=clock,
        agent=agent,
        **top,
    )
    case.successResultOf(plugin.connect())
    return clock, agent, plugin


class EventTests(SynchronousTestCase):
    def test_connect_and_disconnect_events(self) -> None:
        plugin = PluginHttp(incoming={"static_token": TOKEN}, reactor=Clock())
        events: list[str] = []
        plugin.on("connect", lambda: events.append("connect"))
        plugin.on("disconnect", lambda: events.append("disconnect"))
        self.assertFalse(plugin.is_connected())
        self.successResultOf(plugin.connect())
        self.assertTrue(plugin.is_connected())
        self.successResultOf(plugin.connect())  # a no-op
        self.assertEqual(events, ["connect"])
        self.successResultOf(plugin.disconnect())
        self.successResultOf(plugin.disconnect())  # a no-op too
        self.assertFalse(plugin.is_connected())
        self.assertEqual(events, ["connect", "disconnect"])
        self.successResultOf(plugin.connect())
        self.assertEqual(events, ["connect", "disconnect", "connect"])

    def test_off_and_failing_listener(self) -> None:
        plugin = PluginHttp(incoming={"static_token": TOKEN}, reactor=Clock())
        calls: list[str] = []

        def listener() -> None:
            calls.append("x")

        def broken() -> None:
            raise RuntimeError("listener bug")

        plugin.on("connect", broken)
        plugin.on("connect", listener)
        self.successResultOf(plugin.connect())
        self.assertEqual(calls, ["x"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(plugin.is_connected())
        plugin.off("connect", listener)
        plugin.off("connect", broken)
        self.successResultOf(plugin.disconnect())
        self.successResultOf(plugin.connect())
        self.assertEqual(calls, ["x"])
        self.assertRaises(ValueError, plugin.on, "data", listener)

    def test_handler_registration(self) -> None:
        plugin = PluginHttp(incoming={"static_token": TOKEN}, reactor=Clock())
        self.assertRaises(TypeError, plugin.register_data_handler, b"not callable")
        money: list[str] = []
        plugin.register_money_handler(money.append)
        self.assertIsNone(self.successResultOf(plugin.send_money("100")))
        self.assertEqual(money, [])
        plugin.deregister_money_handler()


class InMemoryRoundTripTests(SynchronousTestCase):
    """Two plugins joined by treq's RequestTraversalAgent, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.handler = RecordingHandler()
        self.receiver = PluginHttp(
            incoming={"jwt_secret": "s" * 32}, reactor=self.clock, address="test.receiver"
        )
        self.receiver.register_data_handler(self.handler)
        assert self.receiver.resource is not None
        self.agent = RequestTraversalAgent(self.receiver.resource)
        self.sender = PluginHttp(
            outgoing={"url": "http://receiver.invalid/", "jwt_secret": "s" * 32},
            reactor=self.clock,
            agent=self.agent,
        )
        self.successResultOf(self.receiver.connect())
        self.successResultOf(self.sender.connect())

    def test_fulfil_over_jwt(self) -> None:
        made = self.handler.make(self.clock.seconds(), data=b"ping")
        d = self.sender.send_data(made.packet)
        self.agent.flush()
        self.assertEqual(
            expect_fulfill(self, self.successResultOf(d), made.fulfillment).data, b"ping"
        )
        self.assertEqual(self.handler.calls, [made.packet])

    def test_async_handler_expires_on_the_clock(self) -> None:
        pending = Pending()
        self.handler.respond = lambda data: pending.deferred
        made = make_prepare(self.clock.seconds(), expires_in=3)
        d = self.sender.send_data(made.packet)
        self.agent.flush()
        self.clock.advance(2.9)
        self.agent.flush()
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.agent.flush()
        # Both sides timed the Prepare out; whichever fired first, it is R00.
        expect_reject(self, self.successResultOf(d), ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertTrue(pending.cancelled.called)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_disconnected_receiver_is_t00_for_the_sender(self) -> None:
        self.successResultOf(self.receiver.disconnect())
        d = self.sender.send_data(make_prepare(self.clock.seconds()).packet)
        self.agent.flush()
        reject = expect_reject(self, self.successResultOf(d), ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("502", reject.message)


class LifecycleTests(TestCase):
    timeout = 10

    def setUp(self) -> None:
        self.agent = http_agent(self)
        self.handler = RecordingHandler()

    @inlineCallbacks
    def test_connect_twice_is_a_no_op(self) -> Any:
        plugin = listening_plugin()
        self.addCleanup(plugin.disconnect)
        connects: list[int] = []
        plugin.on("connect", lambda: connects.append(1))
        yield plugin.connect()
        port = listen_port(plugin)
        yield plugin.connect()
        self.assertEqual(listen_port(plugin), port)
        self.assertEqual(connects, [1])

    @inlineCallbacks
    def test_disconnect_waits_for_in_flight_and_closes_everything(self) -> Any:
        plugin = listening_plugin()
        events: list[str] = []
        plugin.on("disconnect", lambda: events.append("disconnect"))
        pending = Pending()
        self.handler.respond = lambda data: pending.deferred
        plugin.register_data_handler(self.handler)
        yield plugin.connect()
        port = listen_port(plugin)
        # An idle keep-alive connection, open before the disconnect.
        idle = yield raw_connect(self, port)
        made = make_prepare(time.time())
        called = self.handler.next_call()
        reply = request(self.agent, plugin_url(plugin), made.packet, HEADERS)
        yield within(called, 5)
        stopped = plugin.disconnect()
        self.assertFalse(plugin.is_connected())
        self.assertFalse(stopped.called, "disconnect did not wait for the request in flight")
        self.assertEqual(events, [])
        pending.deferred.callback(made.fulfill(b"last"))
        result = yield within(reply, 5)
        self.assertEqual(result.code, 200)
        self.assertEqual(expect_fulfill(self, result.body, made.fulfillment).data, b"last")
        yield within(stopped, 5)
        self.assertEqual(events, ["disconnect"])
        self.assertIsNone(plugin.port)
        # Every server connection is closed, and nothing listens any more.
        yield within(idle.closed, 5)
        refused = endpoints.TCP4ClientEndpoint(global_reactor(), "127.0.0.1", port)
        from twisted.internet.protocol import Protocol

        yield self.assertFailure(
            endpoints.connectProtocol(refused, Protocol()), net_error.ConnectionRefusedError
        )

    @inlineCallbacks
    def test_disconnect_waits_for_outgoing_in_flight(self) -> Any:
        from tests.support.fakes import CaptureServer, hang

        capture = yield CaptureServer(self).start()
        capture.resource.responder = hang
        plugin = PluginHttp(outgoing={"url": capture.url(), "static_token": "t"})
        yield plugin.connect()
        arrived = capture.resource.next_request()
        d = plugin.send_data(make_prepare(time.time(), expires_in=0.3).packet)
        yield within(arrived, 5)
        stopped = plugin.disconnect()
        self.assertFalse(stopped.called)
        reply = yield within(d, 5)
        expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)
        yield within(stopped, 5)

    @inlineCallbacks
    def test_reconnect_after_disconnect(self) -> Any:
        plugin = listening_plugin()
        plugin.register_data_handler(self.handler)
        yield plugin.connect()
        yield plugin.disconnect()
        yield plugin.connect()
        self.addCleanup(plugin.disconnect)
        made = self.handler.make(time.time())
        result = yield request(self.agent, plugin_url(plugin), made.packet, HEADERS)
        expect_fulfill(self, result.body, made.fulfillment)

    @inlineCallbacks
    def test_port_in_use_fails_clearly(self) -> Any:
        first = listening_plugin()
        yield first.connect()
        self.addCleanup(first.disconnect)
        port = listen_port(first)
        second = listening_plugin(
            incoming={"endpoint": None, "port": port},
        )
        failure = yield self.assertFailure(second.connect(), net_error.CannotListenError)
        self.assertIn(str(port), str(failure))
        self.assertIn("in use", str(failure))
        self.assertFalse(second.is_connected())
        self.assertFalse(second.running)
        self.assertIsNone(second.port)

    @inlineCallbacks
    def test_invalid_endpoint_string(self) -> Any:
        plugin = PluginHttp(incoming={"endpoint": "nonsense:1234", "static_token": TOKEN})
        failure = yield self.assertFailure(plugin.connect(), OptionError)
        self.assertIn("incoming.endpoint", str(failure))
        self.assertFalse(plugin.is_connected())

    @inlineCallbacks
    def test_start_and_stop_through_a_multiservice(self) -> Any:
        parent = MultiService()
        plugin = listening_plugin()
        plugin.register_data_handler(self.handler)
        plugin.setServiceParent(parent)
        events: list[str] = []
        plugin.on("connect", lambda: events.append("connect"))
        plugin.on("disconnect", lambda: events.append("disconnect"))
        parent.startService()
        self.assertTrue(plugin.running)
        self.assertTrue(plugin.is_connected())
        made = self.handler.make(time.time())
        result = yield request(self.agent, plugin_url(plugin), made.packet, HEADERS)
        expect_fulfill(self, result.body, made.fulfillment)
        yield within(parent.stopService(), 5)
        self.assertFalse(plugin.running)
        self.assertFalse(plugin.is_connected())
        self.assertEqual(events, ["connect", "disconnect"])

    @inlineCallbacks
    def test_start_service_raises_when_the_port_is_in_use(self) -> Any:
        first = listening_plugin()
        yield first.connect()
        self.addCleanup(first.disconnect)
        parent = MultiService()
        second = listening_plugin(
            incoming={"endpoint": f"tcp:{listen_port(first)}:interface=127.0.0.1"}
        )
        second.setServiceParent(parent)
        self.assertRaises(net_error.CannotListenError, parent.startService)
        self.assertFalse(second.is_connected())
        self.assertFalse(second.running)

    @inlineCallbacks
    def test_resource_in_a_users_own_site(self) -> Any:
        plugin = PluginHttp(incoming={"static_token": TOKEN}, address="test.mounted")
        plugin.register_data_handler(self.handler)
        yield plugin.connect()
        self.addCleanup(plugin.disconnect)
        self.assertIsNone(plugin.port)  # nothing of its own listens
        assert plugin.resource is not None
        for site_factory in (Site, make_site):
            root = Resource()
            api = Resource()
            root.putChild(b"api", api)
            api.putChild(b"ilp", plugin.resource)
            endpoint = endpoints.TCP4ServerEndpoint(global_reactor(), 0, interface="127.0.0.1")
            port = yield endpoint.listen(site_factory(root))
            self.addCleanup(port.stopListening)
            base = f"http://127.0.0.1:{port.getHost().port}"
            for path in ("/api/ilp", "/api/ilp/deeper/still"):
                made = self.handler.make(time.time())
                result = yield request(self.agent, base + path, made.packet, HEADERS)
                self.assertEqual(result.code, 200, path)
                expect_fulfill(self, result.body, made.fulfillment)
            health = yield request(self.agent, base + "/api/ilp", method=b"GET")
            self.assertEqual(health.body, b"OK")
            outside = yield request(self.agent, base + "/api/other", b"x", HEADERS)
            self.assertEqual(outside.code, 404)
            unauthorized = yield request(self.agent, base + "/api/ilp", b"x", {})
            self.assertEqual(unauthorized.code, 401)

    @inlineCallbacks
    def test_no_log_noise_per_packet(self) -> Any:
        logs = LogCapture(self)
        plugin = listening_plugin()
        plugin.register_data_handler(self.handler)
        yield plugin.connect()
        self.addCleanup(plugin.disconnect)
        for _ in range(3):
            made = self.handler.make(time.time())
            yield request(self.agent, plugin_url(plugin), made.packet, HEADERS)
        access = [e for e in logs.events if "POST" in str(e.get("log_format", "")) + str(e)]
        self.assertEqual(access, [])


class PluginWithFakeAgentTests(SynchronousTestCase):
    """PluginHttp's send path over an injected IAgent and a Clock."""

    def test_expiry_through_the_plugin(self) -> None:
        clock, agent, plugin = plugin_on_fake_agent(self, address="test.me")
        made = make_prepare(clock.seconds(), expires_in=2)
        d = plugin.send_data(made.packet)
        stopped = plugin.disconnect()
        self.assertNoResult(stopped)  # waits for the packet in flight
        clock.advance(2.001)
        expect_reject(self, self.successResultOf(d), ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.successResultOf(stopped)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(agent.cancelled, 1)

    def test_only_the_envelope_of_the_callers_bytes_is_sent(self) -> None:
        """Strict writer: bytes after a forwarded Prepare's envelope never go out
        (interledger-rs built with ``strict`` refuses them)."""
        clock, agent, plugin = plugin_on_fake_agent(self)
        made = make_prepare(clock.seconds())
        for data in (made.packet, made.packet + b"\0", made.packet + made.packet):
            d = plugin.send_prepare(made.prepare, data)
            self.assertEqual(agent.requests[-1][3], made.packet)
            agent.pending[-1].callback(FakeResponse(200, made.fulfill() + b"\0"))
            self.assertEqual(self.successResultOf(d).data, made.fulfill())


class ExpiredIldcpTests(SynchronousTestCase):
    """One expiry rule: an expired IL-DCP request is R00 on every path."""

    def test_expired_ildcp_request_is_r00(self) -> None:
        clock = Clock()
        clock.advance(CLOCK_START)
        hub = {"client_address": "test.hub", "asset_scale": 6, "asset_code": "USD"}
        handler = RecordingHandler()
        for options in (
            {"multi": True, "ildcp": hub},  # answered by the plugin
            {"multi": False},  # handed to the handler (the router's path)
        ):
            plugin = PluginHttp(incoming={"static_token": TOKEN}, reactor=clock, **options)
            plugin.register_data_handler(handler)
            self.successResultOf(plugin.connect())
            assert plugin.resource is not None
            agent = RequestTraversalAgent(plugin.resource)
            for expires_in in (0.0, -1.0, -3600.0):
                expires = dt.datetime.fromtimestamp(clock.seconds() + expires_in, dt.timezone.utc)
                d = request(
                    agent,
                    "http://hub.invalid/",
                    ildcp.serialize_request(expires),
                    {**HEADERS, b"ilp-peer-name": b"alice"},
                )
                agent.flush()
                reply = self.successResultOf(d).body
                expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)
            # and a live one is answered
            d = request(
                agent,
                "http://hub.invalid/",
                ildcp.serialize_request(
                    dt.datetime.fromtimestamp(clock.seconds() + 1, dt.timezone.utc)
                ),
                {**HEADERS, b"ilp-peer-name": b"alice"},
            )
            agent.flush()
            self.assertEqual(self.successResultOf(d).code, 200)
            self.successResultOf(plugin.disconnect())
        # the handler saw only the live request of the bilateral plugin
        self.assertEqual(len(handler.calls), 1)


class InFlightTests(SynchronousTestCase):
    """disconnect() waits for packets in flight without touching their results."""

    def test_caller_still_sees_its_own_result_after_disconnect(self) -> None:
        clock, agent, plugin = plugin_on_fake_agent(self)
        cancelled = plugin.send_data(make_prepare(clock.seconds()).packet)
        made = make_prepare(clock.seconds())
        answered = plugin.send_data(made.packet)
        stopped = plugin.disconnect()
        self.assertNoResult(stopped)
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        agent.pending[1].callback(FakeResponse(200, made.fulfill(b"x")))
        self.assertEqual(
            expect_fulfill(self, self.successResultOf(answered), made.fulfillment).data, b"x"
        )
        self.successResultOf(stopped)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_send_while_disconnecting_is_refused(self) -> None:
        clock, agent, plugin = plugin_on_fake_agent(self)
        first = plugin.send_data(make_prepare(clock.seconds(), expires_in=1).packet)
        stopped = plugin.disconnect()
        self.assertNoResult(stopped)
        # Disconnecting: a new packet is not sent (and not left behind the drain).
        self.assertRaises(NotConnectedError, plugin.send_data, make_prepare(clock.seconds()).packet)
        self.assertEqual(len(agent.requests), 1)
        clock.advance(1.001)
        expect_reject(self, self.successResultOf(first), ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.successResultOf(stopped)


class AsyncListenFailureTests(SynchronousTestCase):
    def test_start_service_logs_a_listen_failure_that_comes_later(self) -> None:
        from twisted.internet.defer import Deferred

        import ilphttp.plugin as plugin_module

        listening: Deferred[Any] = Deferred()

        class SlowEndpoint:
            def listen(self, factory: Any) -> Deferred[Any]:
                return listening

        self.patch(plugin_module, "server_endpoint_from_string", lambda r, d: SlowEndpoint())
        plugin = PluginHttp(
            incoming={"endpoint": "tcp:8000", "static_token": TOKEN}, reactor=Clock()
        )
        parent = MultiService()
        plugin.setServiceParent(parent)
        parent.startService()  # nothing known yet: no exception
        listening.errback(net_error.CannotListenError("127.0.0.1", 8000, OSError("in use")))
        self.assertEqual(len(self.flushLoggedErrors(net_error.CannotListenError)), 1)
        self.assertFalse(plugin.is_connected())
        self.assertFalse(plugin.running)


class OverCapacityTests(SynchronousTestCase):
    """incoming.max_in_flight bounds the Prepares a slow handler holds: 503 past it."""

    def test_503_past_max_in_flight_then_recovers(self) -> None:
        from twisted.internet.defer import Deferred

        from ilphttp.packet import Fulfill, serialize
        from ilphttp.testing import MemoryLink, expect_fulfill, expect_reject, make_prepare

        pending: list[tuple[Deferred[bytes], bytes]] = []
        fulfillments: dict[bytes, bytes] = {}

        def slow(data: bytes) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            pending.append((d, data))
            return d

        link = MemoryLink(
            receiver_handler=slow, receiver_options={"incoming": {"max_in_flight": 2}}
        )
        sends = []
        for _ in range(3):
            packet, fulfillment = make_prepare(now=link.now())
            fulfillments[packet] = fulfillment
            sends.append(link.send(packet))
        self.assertEqual(len(pending), 2)
        reject = expect_reject(self.successResultOf(sends[2]), "T00")
        self.assertIn("503", reject.message)
        for d, data in pending:
            d.callback(serialize(Fulfill(fulfillments[data])))
        link.flush()
        for d in sends[:2]:
            expect_fulfill(self.successResultOf(d))
        packet, _ = make_prepare(now=link.now())
        again = link.send(packet)
        self.assertEqual(len(pending), 3)  # accepted again once the others answered
        self.assertNoResult(again)
