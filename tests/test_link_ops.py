"""Issue 14 through a real plugin: limits answer before the handler, metrics count real packets."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp.errors import OptionError
from ilphttp.limits import Limits, RateLimit, Throughput, amount_too_large_data
from ilphttp.link_ops import LinkOps, reply_code
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    Reject,
    deserialize,
    serialize_fulfill,
    serialize_reject,
)
from ilphttp.plugin import PluginHttp
from tests.support.clients import http_agent, request
from tests.support.fakes import LogCapture
from tests.support.packets import (
    CLOCK_START,
    data_prepare,
    expect_fulfill,
    expect_reject,
    fulfil_from_data,
    make_prepare,
)
from tests.support.plugins import connected_plugin
from tests.support.ports import LOOPBACK_ENDPOINT, plugin_url
from tests.support.reactor import within

TOKEN = "link-ops-test-token-0123456789"
ADDRESS = "test.ours"
AUTH = {b"authorization": b"Bearer " + TOKEN.encode(), b"content-type": b"application/octet-stream"}


class Calls:
    """A data handler that fulfils from the data and counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, data: bytes) -> bytes:
        self.count += 1
        return fulfil_from_data(data)


class LimitsOverHttpTests(TestCase):
    """Each limit's code, for a Prepare POSTed to a real listener; the handler is never asked."""

    @inlineCallbacks
    def serve(self, limits: dict[str, Any]) -> Any:
        self.calls = Calls()
        self.plugin = yield connected_plugin(
            self,
            self.calls,
            incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN},
            address=ADDRESS,
            limits=limits,
        )
        self.agent = http_agent(self)

    @inlineCallbacks
    def post(self, amount: int) -> Any:
        _, body, _ = data_prepare("test.ours.x", amount=amount)
        result = yield within(request(self.agent, plugin_url(self.plugin), body, AUTH), 10)
        self.assertEqual(result.code, 200)
        return result.body

    @inlineCallbacks
    def test_rate_limit_is_t05(self) -> Any:
        yield self.serve({"rate_limit": {"refill_period": 3600, "refill_count": 1, "capacity": 2}})
        for _ in range(2):
            self.assertNotIsInstance(deserialize((yield self.post(1))), Reject)
        reject = expect_reject(self, (yield self.post(1)), ErrorCode.T05_RATE_LIMITED)
        self.assertEqual(reject.triggered_by, ADDRESS)
        self.assertEqual(reject.message, "too many requests, throttling.")
        self.assertEqual(self.calls.count, 2)

    @inlineCallbacks
    def test_max_packet_amount_is_f08_with_rfc27_data(self) -> Any:
        yield self.serve({"max_packet_amount": 1000})
        self.assertNotIsInstance(deserialize((yield self.post(1000))), Reject)
        reject = expect_reject(self, (yield self.post(1001)), ErrorCode.F08_AMOUNT_TOO_LARGE)
        self.assertEqual(reject.triggered_by, ADDRESS)
        # RFC 27: amount received, then the maximum, each a big-endian UInt64
        self.assertEqual(reject.data, (1001).to_bytes(8, "big") + (1000).to_bytes(8, "big"))
        self.assertEqual(reject.data, amount_too_large_data(1001, 1000))
        self.assertEqual(self.calls.count, 1)

    @inlineCallbacks
    def test_throughput_is_t04(self) -> Any:
        yield self.serve({"throughput": {"incoming_amount": 100, "refill_period": 3600}})
        self.assertNotIsInstance(deserialize((yield self.post(60))), Reject)
        reject = expect_reject(self, (yield self.post(60)), ErrorCode.T04_INSUFFICIENT_LIQUIDITY)
        self.assertEqual(reject.triggered_by, ADDRESS)
        self.assertNotIsInstance(deserialize((yield self.post(40))), Reject)
        self.assertEqual(self.calls.count, 2)

    @inlineCallbacks
    def test_js_spelling_through_from_options(self) -> Any:
        plugin = PluginHttp.from_options(
            {
                "incoming": {"endpoint": LOOPBACK_ENDPOINT, "staticToken": TOKEN},
                "address": ADDRESS,
                "maxPacketAmount": "5",
                "rateLimit": {"refillPeriod": 3_600_000, "refillCount": 1, "capacity": 9},
            }
        )
        self.assertEqual(plugin.options.limits.max_packet_amount, 5)
        self.assertEqual(plugin.options.limits.rate_limit, RateLimit(3600.0, 1, 9))
        self.calls = Calls()
        plugin.register_data_handler(self.calls)
        self.addCleanup(plugin.disconnect)
        yield plugin.connect()
        self.plugin, self.agent = plugin, http_agent(self)
        expect_reject(self, (yield self.post(6)), ErrorCode.F08_AMOUNT_TOO_LARGE)
        self.assertEqual(self.calls.count, 0)


class OutgoingLimitTests(TestCase):
    @inlineCallbacks
    def test_outgoing_throughput_is_t04_without_sending(self) -> Any:
        receiver = yield connected_plugin(
            self, Calls(), incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN}
        )
        sender = yield connected_plugin(
            self,
            None,
            outgoing={"url": plugin_url(receiver), "static_token": TOKEN},
            address=ADDRESS,
            limits={"throughput": {"outgoing_amount": 10, "refill_period": 3600}},
        )
        _, first, _ = data_prepare("test.peer.x", amount=10)
        _, second, _ = data_prepare("test.peer.x", amount=1)
        self.assertNotIsInstance(deserialize((yield within(sender.send_data(first), 10))), Reject)
        reply = yield within(sender.send_data(second), 10)
        reject = expect_reject(self, reply, ErrorCode.T04_INSUFFICIENT_LIQUIDITY)
        self.assertEqual(reject.triggered_by, ADDRESS)
        self.assertEqual(receiver.options.limits, Limits())
        sent = sender.registry.get_sample_value(
            "ilp_packets_total",
            {"account": "", "direction": "outgoing", "result": "reject", "code": "T04"},
        )
        self.assertEqual(sent, 1.0)


class MetricsOverHttpTests(TestCase):
    """Two plugins over loopback HTTP, recording into one registry: the counters
    match the packets sent, by result, code, amount and HTTP status."""

    @inlineCallbacks
    def setUp(self) -> Any:
        self.registry = CollectorRegistry()

        def handler(data: bytes) -> bytes:
            prepare = deserialize(data)
            if prepare.amount == 7:  # type: ignore[union-attr]
                return serialize_reject(Reject("F99", "test.bob", "seven is refused"))
            return fulfil_from_data(data)

        self.bob = PluginHttp(
            incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN},
            address="test.bob",
            registry=self.registry,
        )
        self.bob.setName("bob")
        self.bob.register_data_handler(handler)
        self.addCleanup(self.bob.disconnect)
        yield self.bob.connect()
        self.alice = PluginHttp(
            outgoing={"url": plugin_url(self.bob), "static_token": TOKEN},
            registry=self.registry,
        )
        self.alice.setName("alice")
        self.addCleanup(self.alice.disconnect)
        yield self.alice.connect()

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    @inlineCallbacks
    def test_counts_match_the_packets(self) -> Any:
        for amount in (10, 20, 7, 7, 30):
            _, data, _ = data_prepare("test.bob.x", amount=amount)
            yield within(self.alice.send_data(data), 10)
        for account, direction in (("bob", "incoming"), ("alice", "outgoing")):
            labels = {"account": account, "direction": direction}
            self.assertEqual(
                self.value("ilp_packets_total", **labels, result="fulfill", code=""), 3
            )
            self.assertEqual(
                self.value("ilp_packets_total", **labels, result="reject", code="F99"), 2
            )
            self.assertEqual(self.value("ilp_amount_total", **labels, result="fulfill"), 60)
            self.assertEqual(self.value("ilp_amount_total", **labels, result="reject"), 14)
            self.assertEqual(self.value("ilp_packet_duration_seconds_count", **labels), 5)
            self.assertGreater(self.value("ilp_packet_duration_seconds_sum", **labels), 0)
            self.assertEqual(self.value("ilp_packets_in_flight", **labels), 0)
        # 200 given by bob, 200 got by alice
        self.assertEqual(self.value("ilp_http_requests_total", account="bob", status="200"), 5)
        self.assertEqual(self.value("ilp_http_requests_total", account="alice", status="200"), 5)
        listener = self.bob.options.incoming.listen_description  # type: ignore[union-attr]
        self.assertEqual(self.value("ilp_connections", listener=listener), 1)

    @inlineCallbacks
    def test_wrong_token_is_an_auth_failure_on_both_sides(self) -> Any:
        liar = PluginHttp(
            outgoing={"url": plugin_url(self.bob), "static_token": "not-the-token-0123456789"},
            registry=self.registry,
        )
        liar.setName("liar")
        self.addCleanup(liar.disconnect)
        yield liar.connect()
        _, data, _ = data_prepare("test.bob.x")
        LogCapture(self)
        expect_reject(self, (yield within(liar.send_data(data), 10)), ErrorCode.T00_INTERNAL_ERROR)
        self.assertEqual(self.value("ilp_auth_failures_total", account="bob"), 1)
        self.assertEqual(self.value("ilp_http_requests_total", account="bob", status="401"), 1)
        self.assertEqual(self.value("ilp_http_requests_total", account="liar", status="401"), 1)
        self.assertEqual(
            self.value(
                "ilp_packets_total",
                account="liar",
                direction="outgoing",
                result="reject",
                code="T00",
            ),
            1,
        )
        # bob never saw a Prepare
        self.assertEqual(
            self.value(
                "ilp_packets_total", account="bob", direction="incoming", result="fulfill", code=""
            ),
            0,
        )

    @inlineCallbacks
    def test_packet_events_at_debug_only_when_asked(self) -> Any:
        captured = LogCapture(self)
        _, data, _ = data_prepare("test.bob.x", amount=7)
        yield within(self.alice.send_data(data), 10)
        self.assertEqual([e for e in captured.events if e.get("event") == "packet"], [])
        self.patch(LinkOps, "log_packets", True)
        yield within(self.alice.send_data(data_prepare("test.bob.x", amount=7)[1]), 10)
        events = [e for e in captured.events if e.get("event") == "packet"]
        self.assertEqual(
            sorted((e["account"], e["direction"], e["code"], e["amount"]) for e in events),
            [("alice", "outgoing", "F99", 7), ("bob", "incoming", "F99", 7)],
        )
        for e in events:
            self.assertEqual(e["log_level"].name, "debug")
            self.assertEqual(e["destination"], "test.bob.x")
            self.assertGreaterEqual(e["duration_ms"], 0)


class ReplyCodeTests(SynchronousTestCase):
    def test_codes(self) -> None:
        fulfill = serialize_fulfill(Fulfill(b"\0" * 32, b"data"))
        self.assertEqual(reply_code(fulfill), ("fulfill", ""))
        short = serialize_reject(Reject("T05", "test.x", "m"))
        self.assertEqual(reply_code(short), ("reject", "T05"))
        # a Reject longer than 127 bytes has a long length prefix
        long = serialize_reject(Reject("F08", "test.x", "m" * 300, b"d" * 300))
        self.assertEqual(reply_code(long), ("reject", "F08"))


class OptionTests(SynchronousTestCase):
    def test_python_limits_keyword(self) -> None:
        plugin = PluginHttp(
            incoming={"port": 0, "static_token": TOKEN},
            limits={"throughput": {"incoming_amount": "9"}, "max_packet_amount": 3},
        )
        self.assertEqual(
            plugin.options.limits,
            Limits(max_packet_amount=3, throughput=Throughput(1.0, incoming_amount=9)),
        )

    def test_bad_limits(self) -> None:
        with self.assertRaises(OptionError) as caught:
            PluginHttp(incoming={"port": 0, "static_token": TOKEN}, limits={"rateLimt": {}})
        self.assertIn("rateLimt", str(caught.exception))
        with self.assertRaises(OptionError) as caught:
            PluginHttp(
                incoming={"port": 0, "static_token": TOKEN}, limits={"max_packet_amount": -1}
            )
        self.assertIn("max_packet_amount", str(caught.exception))

    def test_registry_is_its_own_or_the_one_given(self) -> None:
        registry = CollectorRegistry()
        one = PluginHttp(incoming={"port": 0, "static_token": TOKEN}, registry=registry)
        two = PluginHttp(incoming={"port": 0, "static_token": TOKEN}, registry=registry)
        self.assertIs(one.registry, registry)
        self.assertIs(two.registry, registry)
        alone = PluginHttp(incoming={"port": 0, "static_token": TOKEN})
        self.assertIsNot(alone.registry, registry)
        self.assertIsInstance(alone.registry, CollectorRegistry)


class AnsweredAtOnceTests(SynchronousTestCase):
    """A Prepare a handler answers within its call is answered and counted without a
    Deferred and never shows as in flight; a later answer is in flight until it comes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.plugin = PluginHttp(
            incoming={"static_token": TOKEN}, reactor=self.clock, address=ADDRESS
        )
        self.plugin.setName("bob")
        self.successResultOf(self.plugin.connect())
        self.made = make_prepare(self.clock.seconds(), amount=5)

    def value(self, name: str, **labels: str) -> float:
        found = self.plugin.registry.get_sample_value(name, {"account": "bob", **labels})
        return 0.0 if found is None else found

    def receive(self) -> Any:
        return self.plugin.receive_prepare(self.made.packet, self.made.prepare, None)

    def assert_counted(self, result: str, code: str) -> None:
        incoming = {"direction": "incoming"}
        self.assertEqual(self.value("ilp_packets_total", **incoming, result=result, code=code), 1)
        self.assertEqual(self.value("ilp_amount_total", **incoming, result=result), 5)
        self.assertEqual(self.value("ilp_packet_duration_seconds_count", **incoming), 1)
        self.assertEqual(self.value("ilp_packets_in_flight", **incoming), 0)

    def test_synchronous_handler_gives_bytes(self) -> None:
        self.plugin.register_data_handler(lambda data: self.made.fulfill(b"now"))
        reply = self.receive()
        self.assertIsInstance(reply, bytes)
        self.assertEqual(expect_fulfill(self, reply, self.made.fulfillment).data, b"now")
        self.assert_counted("fulfill", "")

    def test_failing_handler_is_t00_at_once(self) -> None:
        def broken(data: bytes) -> bytes:
            raise RuntimeError("handler bug")

        self.plugin.register_data_handler(broken)
        reply = self.receive()
        self.assertIsInstance(reply, bytes)
        expect_reject(self, reply, ErrorCode.T00_INTERNAL_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assert_counted("reject", "T00")

    def test_unserializable_answer_is_t00_not_an_error(self) -> None:
        LogCapture(self)
        # serialize() raises AttributeError here, not a packet error: still T00, never a 500
        self.plugin.register_prepare_handler(
            lambda prepare, data, sender: Reject(123, ADDRESS, "m")  # type: ignore[arg-type]
        )
        expect_reject(self, self.receive(), ErrorCode.T00_INTERNAL_ERROR)
        self.assert_counted("reject", "T00")

    def test_limit_reject_is_counted_at_once(self) -> None:
        self.plugin.ops.set_limits(Limits(max_packet_amount=1))
        self.plugin.register_data_handler(lambda data: self.fail("the handler was asked"))
        reply = self.receive()
        self.assertIsInstance(reply, bytes)
        expect_reject(self, reply, ErrorCode.F08_AMOUNT_TOO_LARGE)
        self.assert_counted("reject", "F08")

    def test_later_answer_is_in_flight_until_it_comes(self) -> None:
        later: Deferred[bytes] = Deferred()
        self.plugin.register_data_handler(lambda data: later)
        reply = self.receive()
        self.assertIsInstance(reply, Deferred)
        self.assertNoResult(reply)
        self.assertEqual(self.value("ilp_packets_in_flight", direction="incoming"), 1)
        later.callback(self.made.fulfill())
        expect_fulfill(self, self.successResultOf(reply), self.made.fulfillment)
        self.assert_counted("fulfill", "")
