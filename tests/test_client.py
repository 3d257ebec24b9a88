"""The outgoing side: headers, keep-alive, every failure mapped to a Reject,
expiry and cancellation; over loopback sockets and over a fake IAgent on a Clock."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import error as net_error
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import _newclient
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import NOT_DONE_YET, Request, Site

from ilphttp.auth import IncomingAuth, OutgoingAuth
from ilphttp.client import MAX_REPLY_LENGTH, OutgoingClient, reject_for_status
from ilphttp.errors import OptionError
from ilphttp.h2c import wrap_site_for_h2c
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    InvalidPacketError,
    Reply,
    deserialize,
    serialize,
)
from ilphttp.plugin import NotConnectedError, PluginHttp
from tests.support.fakes import (
    Captured,
    CaptureServer,
    FakeAgent,
    FakeResponse,
    LogCapture,
    answer,
    hang,
)
from tests.support.packets import (
    CLOCK_START,
    Made,
    expect_fulfill,
    expect_reject,
    ildcp_reply,
    known_fulfillment,
    make_prepare,
    reject_bytes,
)
from tests.support.ports import LOOPBACK_ENDPOINT, free_port, listen_port
from tests.support.reactor import within

OUT_TOKEN = "outgoing-token"
SECRET = "an-outgoing-jwt-secret-of-32-bytes!"


def fulfilling(made: Made, data: bytes = b"") -> Any:
    """A capture responder answering with ``made``'s Fulfill."""
    return answer(200, made.fulfill(data), b"application/octet-stream")


class _LoopbackBase(TestCase):
    timeout = 10

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        self.capture = yield CaptureServer(self).start()

    @inlineCallbacks
    def sender(
        self,
        outgoing: dict[str, Any] | None = None,
        incoming: dict[str, Any] | None = {"endpoint": LOOPBACK_ENDPOINT, "static_token": "in"},  # noqa: B006
        **top: Any,
    ) -> Any:
        out = {"url": self.capture.url("/ilp"), "static_token": OUT_TOKEN}
        out.update(outgoing or {})
        plugin = PluginHttp(incoming=incoming, outgoing=out, **top)
        yield plugin.connect()
        self.addCleanup(plugin.disconnect)
        return plugin

    def now(self) -> float:
        return time.time()


class HeaderTests(_LoopbackBase):
    @inlineCallbacks
    def test_default_headers(self) -> Any:
        plugin = yield self.sender()
        made = make_prepare(self.now(), destination="test.peer.bob")
        self.capture.resource.responder = fulfilling(made, b"thanks")
        reply = yield plugin.send_data(made.packet)
        self.assertEqual(expect_fulfill(self, reply, made.fulfillment).data, b"thanks")
        [seen] = self.capture.requests
        self.assertEqual(seen.method, b"POST")
        self.assertEqual(seen.path, b"/ilp")
        self.assertEqual(seen.body, made.packet)
        self.assertEqual(seen.header(b"authorization"), b"Bearer " + OUT_TOKEN.encode())
        # RFC 35: both MUST be application/octet-stream (rafiki refuses others).
        self.assertEqual(seen.header(b"content-type"), b"application/octet-stream")
        self.assertEqual(seen.header(b"accept"), b"application/octet-stream")
        self.assertEqual(seen.header(b"content-length"), str(len(made.packet)).encode())
        self.assertEqual(seen.header(b"ilp-peer-name"), str(listen_port(plugin)).encode())
        self.assertIsNone(seen.header(b"ilp-destination"))

    @inlineCallbacks
    def test_content_type_option(self) -> Any:
        """Either spelling of the option picks the Content-Type; Accept stays octet-stream."""
        cases: list[tuple[dict[str, Any], bytes]] = [
            ({"content_type": "application/ilp+octet-stream"}, b"application/ilp+octet-stream"),
            ({"content_type": "application/octet-stream"}, b"application/octet-stream"),
            ({"content_type": None}, b"application/octet-stream"),
        ]
        for outgoing, expected in cases:
            plugin = yield self.sender(outgoing)
            yield plugin.send_data(make_prepare(self.now()).packet)
            seen = self.capture.requests[-1]
            self.assertEqual(seen.header(b"content-type"), expected, outgoing)
            self.assertEqual(seen.header(b"accept"), b"application/octet-stream", outgoing)
        js = PluginHttp.from_options(
            {
                "outgoing": {
                    "url": self.capture.url("/ilp"),
                    "staticToken": OUT_TOKEN,
                    "contentType": "application/ilp+octet-stream",
                }
            }
        )
        yield js.connect()
        self.addCleanup(js.disconnect)
        yield js.send_data(make_prepare(self.now()).packet)
        self.assertEqual(
            self.capture.requests[-1].header(b"content-type"), b"application/ilp+octet-stream"
        )

    def test_content_type_option_refuses_other_types(self) -> None:
        for value in ("text/plain", "application/octet-stream; x=1", "", 1, b"x"):
            with self.assertRaises(OptionError) as caught:
                PluginHttp(
                    outgoing={"url": "http://peer/", "static_token": "t", "content_type": value}
                )
            self.assertIn("outgoing.content_type", str(caught.exception))
        with self.assertRaises(OptionError) as caught:
            PluginHttp.from_options(
                {"outgoing": {"url": "http://peer/", "staticToken": "t", "contentType": "x/y"}}
            )
        self.assertIn("outgoing.contentType", str(caught.exception))

    @inlineCallbacks
    def test_http2_agent_sends_the_same_headers(self) -> Any:
        """h2c with prior knowledge: the same header set, plus a content-length
        (interledger-rs answers 411 without one)."""
        site = Site(self.capture.resource)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            wrap_site_for_h2c(site)
        )
        self.addCleanup(port.stopListening)
        plugin = yield self.sender(
            {"url": f"http://127.0.0.1:{port.getHost().port}/ilp", "http2": True, "name": "me"},
        )
        made = make_prepare(self.now())
        self.capture.resource.responder = fulfilling(made)
        reply = yield plugin.send_data(made.packet)
        expect_fulfill(self, reply, made.fulfillment)
        [seen] = self.capture.requests
        self.assertEqual(seen.request.clientproto, b"HTTP/2")
        self.assertEqual(seen.body, made.packet)
        expected = {
            b"authorization": b"Bearer " + OUT_TOKEN.encode(),
            b"content-type": b"application/octet-stream",
            b"accept": b"application/octet-stream",
            b"content-length": str(len(made.packet)).encode(),
            b"ilp-peer-name": b"me",
        }
        self.assertEqual({name: seen.header(name) for name in expected}, expected)

    @inlineCallbacks
    def test_configured_name_and_destination(self) -> Any:
        plugin = yield self.sender({"name": "alice", "send_ilp_destination": True})
        made = make_prepare(self.now(), destination="test.peer.carol.x")
        yield plugin.send_data(made.packet)
        [seen] = self.capture.requests
        self.assertEqual(seen.header(b"ilp-peer-name"), b"alice")
        self.assertEqual(seen.header(b"ilp-destination"), b"test.peer.carol.x")

    @inlineCallbacks
    def test_js_default_name_is_the_configured_port(self) -> Any:
        port = free_port()
        plugin = yield self.sender(
            incoming={"endpoint": f"tcp:{port}:interface=127.0.0.1", "static_token": "in"}
        )
        yield plugin.send_data(make_prepare(self.now()).packet)
        self.assertEqual(self.capture.requests[0].header(b"ilp-peer-name"), str(port).encode())

    @inlineCallbacks
    def test_send_only_plugin_sends_no_peer_name(self) -> Any:
        plugin = yield self.sender(incoming=None)
        yield plugin.send_data(make_prepare(self.now()).packet)
        self.assertIsNone(self.capture.requests[0].header(b"ilp-peer-name"))

    @inlineCallbacks
    def test_legacy_secret_token_is_sent_raw(self) -> Any:
        plugin = yield self.sender({"static_token": None, "secret_token": "legacy"})
        yield plugin.send_data(make_prepare(self.now()).packet)
        self.assertEqual(self.capture.requests[0].header(b"authorization"), b"legacy")

    @inlineCallbacks
    def test_legacy_secret_jwt_is_sent_raw(self) -> Any:
        plugin = yield self.sender({"static_token": None, "secret": SECRET})
        yield plugin.send_data(make_prepare(self.now()).packet)
        header = self.capture.requests[0].header(b"authorization")
        assert header is not None
        self.assertFalse(header.startswith(b"Bearer"))
        self.assertTrue(IncomingAuth(None, SECRET, time.time).verify(header))

    @inlineCallbacks
    def test_jwt_header_reused_within_half_life(self) -> Any:
        plugin = yield self.sender({"static_token": None, "jwt_secret": SECRET})
        for _ in range(3):
            yield plugin.send_data(make_prepare(self.now()).packet)
        headers = {seen.header(b"authorization") for seen in self.capture.requests}
        self.assertEqual(len(headers), 1)
        [header] = headers
        assert header is not None
        self.assertTrue(header.startswith(b"Bearer "))
        self.assertTrue(IncomingAuth(None, SECRET, time.time).verify(header))

    @inlineCallbacks
    def test_concurrent_first_sends_all_carry_a_valid_token(self) -> Any:
        plugin = yield self.sender({"static_token": None, "jwt_secret": SECRET})
        sends = [plugin.send_data(make_prepare(self.now()).packet) for _ in range(8)]
        yield gatherResults(sends)
        self.assertEqual(len(self.capture.requests), 8)
        checker = IncomingAuth(None, SECRET, time.time)
        for seen in self.capture.requests:
            self.assertTrue(checker.verify(seen.header(b"authorization")))

    @inlineCallbacks
    def test_keep_alive_reuses_one_connection(self) -> Any:
        plugin = yield self.sender()
        for _ in range(15):
            made = make_prepare(self.now())
            self.capture.resource.responder = fulfilling(made)
            reply = yield plugin.send_data(made.packet)
            expect_fulfill(self, reply, made.fulfillment)
        self.assertEqual(len(self.capture.requests), 15)
        self.assertEqual(self.capture.connections, 1)


class FailureMappingTests(_LoopbackBase):
    @inlineCallbacks
    def test_connection_refused_is_t01(self) -> Any:
        port = free_port()
        plugin = yield self.sender({"url": f"http://127.0.0.1:{port}/"}, address="test.me")
        reply = yield plugin.send_data(make_prepare(self.now()).packet)
        reject = expect_reject(self, reply, ErrorCode.T01_PEER_UNREACHABLE)
        self.assertEqual(reject.triggered_by, "test.me")

    @inlineCallbacks
    def test_status_codes(self) -> Any:
        plugin = yield self.sender(address="test.me")
        cases = [
            (500, ErrorCode.T00_INTERNAL_ERROR),
            (502, ErrorCode.T00_INTERNAL_ERROR),
            (503, ErrorCode.T00_INTERNAL_ERROR),
            (404, ErrorCode.F00_BAD_REQUEST),
            (400, ErrorCode.F00_BAD_REQUEST),
            (413, ErrorCode.F00_BAD_REQUEST),
            (204, ErrorCode.T00_INTERNAL_ERROR),
            (302, ErrorCode.T00_INTERNAL_ERROR),
        ]
        for status, code in cases:
            self.capture.resource.responder = answer(status, b"body of the error page")
            reply = yield plugin.send_data(make_prepare(self.now()).packet)
            reject = expect_reject(self, reply, code)
            self.assertEqual(reject.triggered_by, "test.me")
            self.assertIn(str(status), reject.message)
        # Error statuses do not cost the keep-alive connection.
        self.assertEqual(self.capture.connections, 1)

    @inlineCallbacks
    def test_401_and_403_are_t00_and_logged(self) -> Any:
        plugin = yield self.sender()
        logs = LogCapture(self)
        for status in (401, 403):
            self.capture.resource.responder = answer(status, b"invalid authorization")
            reply = yield plugin.send_data(make_prepare(self.now()).packet)
            reject = expect_reject(self, reply, ErrorCode.T00_INTERNAL_ERROR)
            self.assertIn("credentials", reject.message)
        errors = logs.errors()
        # Logged, but not once per packet: at most once a minute.
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["status"], 401)

    @inlineCallbacks
    def test_garbage_200_is_t00(self) -> Any:
        plugin = yield self.sender()
        made = make_prepare(self.now())
        for body in (b"", b"OK", made.packet, b"\x0d\x22\x00", serialize(Fulfill(b"\1" * 32))[:-1]):
            self.capture.resource.responder = answer(200, body)
            reply = yield plugin.send_data(made.packet)
            expect_reject(self, reply, ErrorCode.T00_INTERNAL_ERROR)

    @inlineCallbacks
    def test_oversized_200_is_t00(self) -> Any:
        plugin = yield self.sender()
        made = make_prepare(self.now())
        big = made.fulfill() + b"\0" * MAX_REPLY_LENGTH
        self.capture.resource.responder = answer(200, big)
        reply = yield plugin.send_data(made.packet)
        reject = expect_reject(self, reply, ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("too large", reject.message)

        def streamed(request: Request, captured: Captured) -> Any:
            # No Content-Length: the limit is counted as the body arrives.
            for _ in range(MAX_REPLY_LENGTH // 4096 + 2):
                request.write(b"\0" * 4096)
            request.finish()
            return NOT_DONE_YET

        self.capture.resource.responder = streamed
        reply = yield plugin.send_data(make_prepare(self.now()).packet)
        expect_reject(self, reply, ErrorCode.T00_INTERNAL_ERROR)

    @inlineCallbacks
    def test_wrong_fulfillment_is_f05(self) -> Any:
        plugin = yield self.sender(address="test.me")
        made = make_prepare(self.now())
        other = serialize(Fulfill(known_fulfillment(), b""))
        self.capture.resource.responder = answer(200, other)
        reply = yield plugin.send_data(made.packet)
        reject = expect_reject(self, reply, ErrorCode.F05_WRONG_CONDITION)
        self.assertEqual(reject.triggered_by, "test.me")

    @inlineCallbacks
    def test_fulfill_with_bytes_after_it_stays_a_fulfill(self) -> Any:
        """A peer's valid Fulfill followed by extra bytes: the Fulfill, without them."""
        plugin = yield self.sender()
        made = make_prepare(self.now())
        self.capture.resource.responder = answer(200, made.fulfill(b"d") + b"\0extra")
        reply = yield plugin.send_data(made.packet)
        self.assertEqual(reply, made.fulfill(b"d"))

    @inlineCallbacks
    def test_peer_reject_passes_through(self) -> Any:
        plugin = yield self.sender()
        peer_reject = reject_bytes("F99", "test.peer", "their reasons")
        self.capture.resource.responder = answer(200, peer_reject)
        reply = yield plugin.send_data(make_prepare(self.now()).packet)
        self.assertEqual(reply, peer_reject)


class ExpiryTests(_LoopbackBase):
    @inlineCallbacks
    def test_hanging_peer_is_r00_at_expiry_without_leak(self) -> Any:
        plugin = yield self.sender(address="test.me")
        self.capture.resource.responder = hang
        arrived = self.capture.resource.next_request()
        made = make_prepare(self.now(), expires_in=0.3)
        started = time.monotonic()
        d = plugin.send_data(made.packet)
        seen = yield within(arrived, 5)
        lost = seen.request.notifyFinish()
        reply = yield within(d, 5)
        elapsed = time.monotonic() - started
        reject = expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertEqual(reject.triggered_by, "test.me")
        self.assertLess(elapsed, 3)
        self.assertGreater(elapsed, 0.15)
        # The connection was closed by the client, not left open in the pool.
        yield self.assertFailure(within(lost, 5), Exception)
        yield within(self.capture.factory.all_gone(), 5)

    @inlineCallbacks
    def test_peer_hanging_mid_body_is_r00_without_leak(self) -> Any:
        plugin = yield self.sender()
        logs = LogCapture(self)

        def headers_then_hang(request: Request, captured: Captured) -> Any:
            request.setHeader(b"content-length", b"100")
            request.write(b"\x0d\x22")
            return NOT_DONE_YET

        self.capture.resource.responder = headers_then_hang
        arrived = self.capture.resource.next_request()
        d = plugin.send_data(make_prepare(self.now(), expires_in=0.3).packet)
        seen = yield within(arrived, 5)
        lost = seen.request.notifyFinish()
        reply = yield within(d, 5)
        expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)
        yield self.assertFailure(within(lost, 5), Exception)
        yield within(self.capture.factory.all_gone(), 5)
        self.assertEqual(logs.errors(), [])

    @inlineCallbacks
    def test_caller_cancelling(self) -> Any:
        plugin = yield self.sender()
        self.capture.resource.responder = hang
        arrived = self.capture.resource.next_request()
        d = plugin.send_data(make_prepare(self.now(), expires_in=30).packet)
        seen = yield within(arrived, 5)
        lost = seen.request.notifyFinish()
        d.cancel()
        yield self.assertFailure(d, CancelledError)
        yield self.assertFailure(within(lost, 5), Exception)
        # Nothing left waiting: disconnect is immediate and the reactor clean.
        yield within(plugin.disconnect(), 5)

    @inlineCallbacks
    def test_caller_cancelling_at_once(self) -> Any:
        """Cancelled before the connection (even the IP literal's resolution) is
        made: CancelledError too, never T01 DNSLookupError; no request sent."""
        for url in (
            self.capture.url("/ilp"),
            self.capture.url("/ilp").replace("127.0.0.1", "localhost"),
        ):
            for http2 in (False, True):
                plugin = yield self.sender({"url": url, "http2": http2})
                d = plugin.send_data(make_prepare(self.now(), expires_in=30).packet)
                d.cancel()
                yield self.assertFailure(d, CancelledError)
                yield within(plugin.disconnect(), 5)
        self.assertEqual(self.capture.requests, [])

    @inlineCallbacks
    def test_expired_before_sending_is_r00_without_a_request(self) -> Any:
        plugin = yield self.sender()
        reply = yield plugin.send_data(make_prepare(self.now(), expires_in=-0.5).packet)
        expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertEqual(self.capture.requests, [])


class MisuseTests(_LoopbackBase):
    @inlineCallbacks
    def test_not_connected(self) -> Any:
        plugin = PluginHttp(outgoing={"url": self.capture.url(), "static_token": "t"})
        packet = make_prepare(self.now()).packet
        self.assertRaises(NotConnectedError, plugin.send_data, packet)
        yield plugin.connect()
        yield plugin.disconnect()
        self.assertRaises(NotConnectedError, plugin.send_data, packet)
        self.assertEqual(self.capture.requests, [])

    @inlineCallbacks
    def test_not_a_prepare(self) -> Any:
        plugin = yield self.sender()
        for data in (b"", b"garbage", serialize(Fulfill(b"\0" * 32)), reject_bytes("F00")):
            self.assertRaises(InvalidPacketError, plugin.send_data, data)
        self.assertEqual(self.capture.requests, [])

    @inlineCallbacks
    def test_receive_only_plugin_cannot_send(self) -> Any:
        plugin = PluginHttp(incoming={"static_token": "t"})
        yield plugin.connect()
        self.addCleanup(plugin.disconnect)
        self.assertRaises(RuntimeError, plugin.send_data, make_prepare(self.now()).packet)


class MultiOutgoingTests(_LoopbackBase):
    HUB = {"client_address": "test.hub", "asset_scale": 9, "asset_code": "XRP"}

    @inlineCallbacks
    def test_url_template_gets_the_segment(self) -> Any:
        plugin = yield self.sender(
            {"url": self.capture.url("/children/%/ilp?x=%")}, multi=True, ildcp=self.HUB
        )
        for destination, path in (
            ("test.hub.alice", b"/children/alice/ilp?x=%"),
            ("test.hub.bob.sub.deeper", b"/children/bob/ilp?x=%"),
            ("test.hub.c_1~-", b"/children/c_1~-/ilp?x=%"),
        ):
            yield plugin.send_data(make_prepare(self.now(), destination=destination).packet)
            self.assertEqual(self.capture.requests[-1].path, path, destination)

    @inlineCallbacks
    def test_custom_delimiter(self) -> Any:
        plugin = yield self.sender(
            {"url": self.capture.url("/{child}/")},
            multi=True,
            multi_delimiter="{child}",
            ildcp=self.HUB,
        )
        yield plugin.send_data(make_prepare(self.now(), destination="test.hub.zed.1").packet)
        self.assertEqual(self.capture.requests[-1].path, b"/zed/")

    @inlineCallbacks
    def test_outside_our_prefix_is_f02_without_a_request(self) -> Any:
        plugin = yield self.sender(
            {"url": self.capture.url("/%/")}, multi=True, ildcp=self.HUB, address="test.hub"
        )
        for destination in ("test.other.alice", "test.hubby.alice", "test.hub", "g.hub.alice"):
            reply = yield plugin.send_data(make_prepare(self.now(), destination=destination).packet)
            reject = expect_reject(self, reply, ErrorCode.F02_UNREACHABLE)
            self.assertEqual(reject.triggered_by, "test.hub")
        self.assertEqual(self.capture.requests, [])

    def test_child_that_cannot_fill_the_port_is_f02_without_a_request(self) -> None:
        """A name in the port's place must be a port: no request, no T00, no critical log."""
        clock = Clock()
        clock.advance(CLOCK_START)
        agent = FakeAgent()
        plugin = PluginHttp(
            outgoing={"url": "http://127.0.0.1:%/", "static_token": "t"},
            multi=True,
            ildcp=self.HUB,
            reactor=clock,
            agent=agent,
        )
        self.successResultOf(plugin.connect())
        for name in ("alice", "4_5769", "65536", "0"):
            made = make_prepare(clock.seconds(), destination=f"test.hub.{name}.x")
            reply = self.successResultOf(plugin.send_data(made.packet))
            reject = expect_reject(self, reply, ErrorCode.F02_UNREACHABLE)
            self.assertIn("must be a number from 1 to 65535", reject.message)
            self.assertNotIn("127.0.0.1", reject.message)
        self.assertEqual(agent.requests, [])
        made = make_prepare(clock.seconds(), destination="test.hub.7790.x")
        plugin.send_data(made.packet)
        self.assertEqual([r[1] for r in agent.requests], [b"http://127.0.0.1:7790/"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_child_port_range(self) -> None:
        """``child_port_range`` narrows the ports a child's name may select."""
        clock = Clock()
        clock.advance(CLOCK_START)
        agent = FakeAgent()
        plugin = PluginHttp.from_options(
            {
                "multi": True,
                "ildcp": {"clientAddress": "test.hub", "assetScale": 9, "assetCode": "XRP"},
                "outgoing": {
                    "url": "http://127.0.0.1:%/",
                    "staticToken": "t",
                    "childPortRange": [7700, 7799],
                },
            },
            reactor=clock,
            agent=agent,
        )
        self.successResultOf(plugin.connect())
        for port, sent in (("7790", True), ("22", False), ("8000", False)):
            made = make_prepare(clock.seconds(), destination=f"test.hub.{port}")
            reply = plugin.send_data(made.packet)
            if not sent:
                reject = expect_reject(self, self.successResultOf(reply), "F02")
                self.assertIn("a number from 7700 to 7799", reject.message)
        self.assertEqual([r[1] for r in agent.requests], [b"http://127.0.0.1:7790/"])
        for bad in ([1], [0, 10], [10, 5], "7700-7799"):
            with self.assertRaises(OptionError):
                PluginHttp.from_options(
                    {"outgoing": {"url": "http://h/", "staticToken": "t", "childPortRange": bad}}
                )

    @inlineCallbacks
    def test_ildcp_fetched_once_through_the_handler_for_sending(self) -> Any:
        plugin = yield self.sender({"url": self.capture.url("/%/")}, multi=True)
        fetches: list[bytes] = []
        answer_fetch: Deferred[bytes] = Deferred()

        def handler(data: bytes) -> Deferred[bytes]:
            fetches.append(data)
            return answer_fetch

        plugin.register_data_handler(handler)
        sends = [
            plugin.send_data(make_prepare(self.now(), destination=f"test.parent.me.{n}").packet)
            for n in ("a", "b", "c")
        ]
        self.assertEqual(len(fetches), 1)
        self.assertEqual(self.capture.requests, [])
        answer_fetch.callback(ildcp_reply("test.parent.me"))
        yield gatherResults(sends)
        self.assertEqual(sorted(r.path for r in self.capture.requests), [b"/a/", b"/b/", b"/c/"])
        self.assertEqual(plugin.address, "test.parent.me")
        self.assertEqual(len(fetches), 1)


# -- a fake IAgent on a Clock: deterministic expiry, cancellation and mapping -----------


class FakeAgentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.agent = FakeAgent()

    def client(self, auth: OutgoingAuth | None = None, **kw: Any) -> OutgoingClient:
        if auth is None:
            auth = OutgoingAuth("tok", None, 30.0, True, self.clock.seconds)
        return OutgoingClient(self.clock, self.agent, auth, kw.get("name"), kw.get("dest", False))

    def send(self, client: OutgoingClient, made: Made) -> Deferred[bytes]:
        d = client.send(b"http://peer.invalid/", made.packet, made.prepare, "test.me")
        return d.addCallback(self.wire_form)

    def wire_form(self, reply: Reply) -> bytes:
        """The reply's bytes, checked to be what its parsed packet says."""
        self.assertEqual(deserialize(reply.data), reply.packet)
        return reply.data

    def test_cancelled_at_the_prepares_expiry(self) -> None:
        made = make_prepare(self.clock.seconds(), expires_in=5)
        d = self.send(self.client(), made)
        self.clock.advance(4.999)
        self.assertNoResult(d)
        self.assertEqual(self.agent.cancelled, 0)
        self.clock.advance(0.002)
        reject = expect_reject(self, self.successResultOf(d), ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertEqual(reject.triggered_by, "test.me")
        self.assertEqual(self.agent.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timer_stopped_when_answered(self) -> None:
        made = make_prepare(self.clock.seconds(), expires_in=5)
        d = self.send(self.client(), made)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.agent.pending[0].callback(FakeResponse(200, made.fulfill()))
        expect_fulfill(self, self.successResultOf(d), made.fulfillment)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_body_never_finishing_is_r00_and_the_body_is_dropped(self) -> None:
        logs = LogCapture(self)
        made = make_prepare(self.clock.seconds(), expires_in=5)
        d = self.send(self.client(), made)
        response = FakeResponse(200, None, length=100)
        self.agent.pending[0].callback(response)
        self.assertNoResult(d)
        self.clock.advance(5.001)
        expect_reject(self, self.successResultOf(d), ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertTrue(response.transport.stopped, "the half-read response was not dropped")
        # The connection's end, arriving later, is not an error.
        response.protocol.connectionLost(Failure(_newclient.ResponseFailed([Failure(Exception())])))
        self.assertEqual(logs.errors(), [])

    def test_caller_cancelling_during_the_body(self) -> None:
        made = make_prepare(self.clock.seconds(), expires_in=5)
        d = self.send(self.client(), made)
        response = FakeResponse(200, None, length=100)
        self.agent.pending[0].callback(response)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(response.transport.stopped)
        response.protocol.connectionLost(Failure(_newclient.ResponseFailed([Failure(Exception())])))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_caller_cancelling_before_the_response(self) -> None:
        made = make_prepare(self.clock.seconds(), expires_in=5)
        d = self.send(self.client(), made)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.agent.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_status_mapping(self) -> None:
        client = self.client()
        for status, code in (
            (500, "T00"),
            (599, "T00"),
            (401, "T00"),
            (403, "T00"),
            (404, "F00"),
            (422, "F00"),
            (201, "T00"),
        ):
            made = make_prepare(self.clock.seconds())
            d = self.send(client, made)
            self.agent.pending[-1].callback(FakeResponse(status, b"whatever"))
            expect_reject(self, self.successResultOf(d), code)
            self.assertEqual(reject_for_status(status, "x").code, code)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_rejects_name_the_account_and_the_log_has_the_url(self) -> None:
        logs = LogCapture(self)
        auth = OutgoingAuth("tok", None, 30.0, True, self.clock.seconds)
        client = OutgoingClient(self.clock, self.agent, auth, None, False, account="bob")
        messages = []
        for step in (0.0, 0.5, 0.6):  # the second failure falls in the same second
            self.clock.advance(step)
            d = self.send(client, make_prepare(self.clock.seconds()))
            self.agent.pending[-1].errback(Failure(net_error.ConnectionRefusedError()))
            reject = expect_reject(self, self.successResultOf(d), ErrorCode.T01_PEER_UNREACHABLE)
            messages.append(reject.message)
        self.assertEqual(messages, ["account bob: peer unreachable: ConnectionRefusedError"] * 3)
        lines = [e for e in logs.at_least(LogLevel.info) if "url" in e]
        self.assertEqual([e["url"] for e in lines], ["http://peer.invalid/"] * 2)
        self.assertEqual([e["more"] for e in lines], ["", " (1 more since the last line)"])
        self.assertTrue(all(e["code"] == "T01" for e in lines))

    def test_the_log_shows_no_query_or_user_information(self) -> None:
        logs = LogCapture(self)
        client = self.client()
        url = b"http://user:pw@peer.invalid:8080/ilp?token=querysecret123#frag"
        d = client.send(url, *self._made()).addCallback(self.wire_form)
        self.agent.pending[-1].errback(Failure(net_error.ConnectionRefusedError()))
        expect_reject(self, self.successResultOf(d), ErrorCode.T01_PEER_UNREACHABLE)
        [line] = [e for e in logs.at_least(LogLevel.info) if "url" in e]
        self.assertEqual(line["url"], "http://peer.invalid:8080/ilp")
        self.assertNotIn("querysecret123", formatEvent(line))

    def _made(self) -> tuple[bytes, Any, str]:
        made = make_prepare(self.clock.seconds())
        return made.packet, made.prepare, "test.me"

    def test_transport_failures(self) -> None:
        client = self.client()
        for exc in (
            net_error.ConnectionRefusedError(),
            net_error.TCPTimedOutError(),
            net_error.DNSLookupError("peer.invalid"),
            net_error.ConnectionLost(),
            _newclient.ResponseNeverReceived([Failure(net_error.ConnectionDone())]),
            _newclient.RequestTransmissionFailed([Failure(net_error.ConnectionLost())]),
        ):
            d = self.send(client, make_prepare(self.clock.seconds()))
            self.agent.pending[-1].errback(Failure(exc))
            expect_reject(self, self.successResultOf(d), ErrorCode.T01_PEER_UNREACHABLE)

    def test_unexpected_failure_is_t00_and_logged(self) -> None:
        d = self.send(self.client(), make_prepare(self.clock.seconds()))
        self.agent.pending[-1].errback(Failure(ZeroDivisionError("bug")))
        reject = expect_reject(self, self.successResultOf(d), ErrorCode.T00_INTERNAL_ERROR)
        self.assertNotIn("bug", reject.message)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_oversized_reply(self) -> None:
        client = self.client()
        made = make_prepare(self.clock.seconds())
        d = self.send(client, made)
        announced = FakeResponse(200, None, length=MAX_REPLY_LENGTH + 1)
        self.agent.pending[-1].callback(announced)
        self.assertTrue(announced.transport.stopped)
        announced.protocol.connectionLost(Failure(_newclient.ResponseFailed([])))
        expect_reject(self, self.successResultOf(d), ErrorCode.T00_INTERNAL_ERROR)
        d = self.send(client, made)
        streamed = FakeResponse(200, b"\0" * (MAX_REPLY_LENGTH + 1), length=UNKNOWN_LENGTH)
        self.agent.pending[-1].callback(streamed)
        expect_reject(self, self.successResultOf(d), ErrorCode.T00_INTERNAL_ERROR)
        self.assertTrue(streamed.transport.stopped)

    def test_headers_and_jwt_resigned_after_half_life(self) -> None:
        auth = OutgoingAuth(None, SECRET, 30.0, True, self.clock.seconds)
        client = self.client(auth, name="me", dest=True)
        checker = IncomingAuth(None, SECRET, self.clock.seconds)
        seen = []
        for step in (0, 10, 14.9, 15.1, 20):
            self.clock.advance(step - (self.clock.seconds() - CLOCK_START))
            made = make_prepare(self.clock.seconds(), destination="test.x.y")
            d = self.send(client, made)
            self.agent.pending[-1].callback(FakeResponse(200, made.fulfill()))
            self.successResultOf(d)
            method, uri, headers, body = self.agent.requests[-1]
            self.assertEqual((method, uri, body), (b"POST", b"http://peer.invalid/", made.packet))
            self.assertEqual(headers.getRawHeaders(b"ilp-peer-name"), [b"me"])
            self.assertEqual(headers.getRawHeaders(b"ilp-destination"), [b"test.x.y"])
            self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/octet-stream"])
            self.assertEqual(headers.getRawHeaders(b"accept"), [b"application/octet-stream"])
            [authorization] = headers.getRawHeaders(b"authorization") or []
            self.assertTrue(checker.verify(authorization))
            seen.append(authorization)
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[1], seen[2])
        self.assertNotEqual(seen[2], seen[3])
        self.assertEqual(seen[3], seen[4])
        # ILP-Destination is per packet; the shared headers are not modified by it.
        made = make_prepare(self.clock.seconds(), destination="test.other")
        self.send(client, made)
        self.assertEqual(
            self.agent.requests[-1][2].getRawHeaders(b"ilp-destination"), [b"test.other"]
        )
        self.assertEqual(
            self.agent.requests[-2][2].getRawHeaders(b"ilp-destination"), [b"test.x.y"]
        )

    def test_reply_checked_against_the_condition(self) -> None:
        made = make_prepare(self.clock.seconds())
        d = self.send(self.client(), made)
        self.agent.pending[-1].callback(FakeResponse(200, serialize(Fulfill(b"\7" * 32))))
        expect_reject(self, self.successResultOf(d), ErrorCode.F05_WRONG_CONDITION)
        d = self.send(self.client(), made)
        self.agent.pending[-1].callback(FakeResponse(200, made.fulfill(b"ok")))
        self.assertEqual(deserialize(self.successResultOf(d)), Fulfill(made.fulfillment, b"ok"))

    def test_bytes_after_the_reply_are_ignored(self) -> None:
        """RFC 30: a peer's reply is read from its envelope; a valid Fulfill stays a
        Fulfill (never T00), and only the envelope is passed back."""
        logs = LogCapture(self)
        made = make_prepare(self.clock.seconds())
        fulfill = made.fulfill(b"ok")
        peer_reject = reject_bytes("F99", "test.peer", "their reasons")
        wrong = serialize(Fulfill(b"\7" * 32))
        cases = [
            # (reply body, the reply passed back, or the code of our own Reject)
            (fulfill + b"\0", fulfill),
            (fulfill + b"garbage", fulfill),
            (fulfill + fulfill, fulfill),
            (fulfill + peer_reject, fulfill),
            (peer_reject + b"\0\0", peer_reject),
            (wrong + b"\0", ErrorCode.F05_WRONG_CONDITION),
            (fulfill[:-2], ErrorCode.T00_INTERNAL_ERROR),  # a cut envelope stays bad
        ]
        for body, expected in cases:
            d = self.send(self.client(), made)
            self.agent.pending[-1].callback(FakeResponse(200, body))
            reply = self.successResultOf(d)
            if isinstance(expected, bytes):
                self.assertEqual(reply, expected, body.hex())
            else:
                expect_reject(self, reply, expected)
        # Trailing bytes are noted at debug only; info has just our two Rejects.
        louder = logs.at_least(LogLevel.info)
        self.assertEqual([e["code"] for e in louder], ["F05", "T00"])
        ignored = [e for e in logs.at_least(LogLevel.debug) if "ignored" in e["log_format"]]
        self.assertEqual([e["n"] for e in ignored], [1, 7, len(fulfill), len(peer_reject), 2, 1])
