"""The incoming side over real loopback sockets: health check, auth, size limits,
content types, handler failures, expiry and IL-DCP serving in multi mode."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from ilphttp import ildcp
from ilphttp.packet import (
    MAX_PREPARE_LENGTH,
    MAX_REJECT_LENGTH,
    ErrorCode,
    Fulfill,
    Reject,
    deserialize_prepare,
    serialize,
)
from ilphttp.plugin import PluginHttp
from ilphttp.server import make_site
from tests.support.clients import chunked, http_agent, raw_connect, raw_request, request
from tests.support.fakes import LogCapture, Pending, RecordingHandler
from tests.support.fronts import OverSite
from tests.support.packets import (
    CLOCK_START,
    expect_fulfill,
    expect_reject,
    ildcp_reply,
    largest_prepare,
    make_prepare,
    reject_bytes,
)
from tests.support.ports import LOOPBACK_ENDPOINT, listen_port, plugin_url
from tests.support.reactor import global_reactor, within

TOKEN = "incoming-token"
AUTH = {b"authorization": b"Bearer " + TOKEN.encode()}
ILP_TYPE = {b"content-type": b"application/octet-stream"}
HEADERS = {**AUTH, **ILP_TYPE}


class _Base(TestCase):
    timeout = 10

    def setUp(self) -> None:
        self.handler = RecordingHandler()
        self.agent = http_agent(self)

    def start(self, handler: Any = None, **top: Any) -> Deferred[PluginHttp]:
        incoming = {"endpoint": LOOPBACK_ENDPOINT, "static_token": TOKEN}
        incoming.update(top.pop("incoming", {}))
        plugin = PluginHttp(incoming=incoming, **top)
        plugin.register_data_handler(self.handler if handler is None else handler)

        def started(_: object) -> PluginHttp:
            self.addCleanup(plugin.disconnect)
            self.plugin = plugin
            return plugin

        return plugin.connect().addCallback(started)

    def post(self, body: bytes, headers: dict[bytes, bytes] | None = None, path: str = "/") -> Any:
        return request(
            self.agent, plugin_url(self.plugin, path), body, HEADERS if headers is None else headers
        )

    def now(self) -> float:
        return time.time()


class HealthAndAuthTests(_Base):
    @inlineCallbacks
    def test_get_any_path_is_ok_without_auth(self) -> Any:
        yield self.start()
        for path in ("/", "/health", "/a/b/c?x=1"):
            result = yield request(self.agent, plugin_url(self.plugin, path), method=b"GET")
            self.assertEqual((result.code, result.body), (200, b"OK"), path)
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_bad_or_missing_token_is_401(self) -> Any:
        yield self.start()
        made = self.handler.make(self.now())
        for auth in (None, b"Bearer wrong", b"wrong", b"Bearer ", b"Basic aW5jb21pbmc="):
            headers = dict(ILP_TYPE)
            if auth is not None:
                headers[b"authorization"] = auth
            result = yield self.post(made.packet, headers)
            self.assertEqual(result.code, 401, auth)
            self.assertEqual(result.body, b"invalid authorization")
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_bearer_and_raw_tokens_accepted_on_any_path(self) -> Any:
        yield self.start()
        token = TOKEN.encode()
        cases = [
            (b"Bearer " + token, "/"),
            (token, "/any/path"),
            # RFC 9110 section 5.5: surrounding whitespace is not the field value's
            (b"Bearer " + token + b" \t ", "/"),
            (b"  BEARER  " + token, "/"),
            (token + b"  ", "/"),
        ]
        for auth, path in cases:
            made = self.handler.make(self.now())
            result = yield self.post(made.packet, {**ILP_TYPE, b"authorization": auth}, path)
            self.assertEqual(result.code, 200, auth)
            self.assertEqual(result.header(b"content-type"), b"application/octet-stream")
            expect_fulfill(self, result.body, made.fulfillment)
        self.assertEqual(len(self.handler.calls), len(cases))

    @inlineCallbacks
    def test_jwt_incoming(self) -> Any:
        from ilphttp.auth import OutgoingAuth

        secret = "x" * 32
        yield self.start(incoming={"static_token": None, "jwt_secret": secret})
        made = self.handler.make(self.now())
        header = OutgoingAuth(None, secret, 30.0, True, time.time).header()
        result = yield self.post(made.packet, {**ILP_TYPE, b"authorization": header})
        expect_fulfill(self, result.body, made.fulfillment)
        result = yield self.post(made.packet, {**ILP_TYPE, b"authorization": b"Bearer " + b"x"})
        self.assertEqual(result.code, 401)


class BodyTests(_Base):
    @inlineCallbacks
    def test_not_a_prepare_is_400_without_traceback(self) -> Any:
        yield self.start()
        good = make_prepare(self.now()).packet
        bodies = [
            b"",
            b"garbage",
            serialize(Fulfill(b"\0" * 32)),
            reject_bytes("F02"),
            good[:-1],
            b"\x0c\x85\xff\xff\xff\xff\xff",
        ]
        for body in bodies:
            result = yield self.post(body)
            self.assertEqual(result.code, 400, body[:20])
            self.assertTrue(result.body.startswith(b"invalid ILP Prepare"), result.body)
            for marker in (b"Traceback", b'File "', b"Error:", b"<html"):
                self.assertNotIn(marker, result.body)
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_bytes_after_the_envelope_are_ignored(self) -> Any:
        """RFC 30: a Prepare followed by extra bytes is read from its envelope;
        the handler gets the envelope only; one debug line, nothing louder."""
        yield self.start()
        logs = LogCapture(self)
        extras = [b"\0", b"\x0c", b"garbage", make_prepare(self.now()).packet]
        for extra in extras:
            made = self.handler.make(self.now())
            result = yield self.post(made.packet + extra)
            self.assertEqual(result.code, 200, extra[:10])
            expect_fulfill(self, result.body, made.fulfillment)
            self.assertEqual(self.handler.calls[-1], made.packet)
        self.assertEqual(len(self.handler.calls), len(extras))
        self.assertEqual(logs.at_least(LogLevel.info), [])
        ignored = [e for e in logs.at_least(LogLevel.debug) if "ignored" in e["log_format"]]
        self.assertEqual([e["n"] for e in ignored], [len(extra) for extra in extras])

    @inlineCallbacks
    def test_content_length_over_limit_is_413_before_the_body(self) -> Any:
        yield self.start()
        for length in (MAX_PREPARE_LENGTH + 1, 10**9):
            client = yield raw_connect(self, listen_port(self.plugin))
            assert client.transport is not None
            client.transport.write(
                raw_request(
                    headers=[
                        (b"Authorization", b"Bearer " + TOKEN.encode()),
                        (b"Content-Type", b"application/octet-stream"),
                        (b"Content-Length", b"%d" % length),
                    ]
                )
            )
            # Only the headers were sent: the answer and the close come anyway.
            data = yield within(client.closed, 5)
            self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data)
            self.assertIn(b"too large", data)
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_content_length_over_limit_with_expect_continue(self) -> Any:
        # A client that waits for "100 Continue" gets the 413 instead, and nothing after it.
        yield self.start()
        client = yield raw_connect(self, listen_port(self.plugin))
        assert client.transport is not None
        client.transport.write(
            raw_request(
                headers=[
                    (b"Authorization", b"Bearer " + TOKEN.encode()),
                    (b"Content-Length", b"%d" % (MAX_PREPARE_LENGTH + 1)),
                    (b"Expect", b"100-continue"),
                ]
            )
        )
        data = yield within(client.closed, 5)
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data)
        self.assertNotIn(b"100 Continue", data)

    @inlineCallbacks
    def test_chunked_body_over_limit_is_413(self) -> Any:
        yield self.start()
        client = yield raw_connect(self, listen_port(self.plugin))
        assert client.transport is not None
        body = largest_prepare(self.now()).packet + b"x"
        client.transport.write(
            raw_request(
                headers=[
                    (b"Authorization", b"Bearer " + TOKEN.encode()),
                    (b"Transfer-Encoding", b"chunked"),
                ],
                body=chunked(body),
            )
        )
        data = yield within(client.closed, 5)
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data[:100])
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_upgrade_is_ignored(self) -> Any:
        """Upgrade: h2c (curl --http2 on http://) or websocket is served as plain
        HTTP/1.1: body read, answered, the connection still usable; never 101."""
        yield self.start()
        client = yield raw_connect(self, listen_port(self.plugin))
        assert client.transport is not None
        upgrades = [
            [(b"Connection", b"Upgrade, HTTP2-Settings"), (b"Upgrade", b"h2c")],
            [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")],
            [(b"Connection", b"close")],
        ]
        made = []
        for headers in upgrades:
            one = self.handler.make(self.now())
            made.append(one)
            auth = (b"Authorization", b"Bearer " + TOKEN.encode())
            length = (b"Content-Length", b"%d" % len(one.packet))
            request = raw_request(headers=[auth, length, *headers], body=one.packet)
            client.transport.write(request)
            if headers == upgrades[0]:
                yield within(client.wait_for(b"\r\n\r\n"), 5)  # one alone, then pipelined
        data = yield within(client.closed, 5)
        self.assertEqual(re.findall(rb"HTTP/1\.1 \d+", data), [b"HTTP/1.1 200"] * 3, data[:300])
        for one in made:
            self.assertIn(one.fulfillment, data)
        self.assertEqual(self.handler.calls, [one.packet for one in made])

    @inlineCallbacks
    def test_a_reply_post_may_be_larger_than_a_prepare(self) -> Any:
        """RFC 35's reply leg (Request-Id, no Callback-Url) is read up to the largest Reject."""
        yield self.start()
        reply_headers = {**HEADERS, b"request-id": b"42ee09c8-a6de-4ae3-8a47-4732b0cbb07b"}
        largest = reject_bytes("F99").ljust(MAX_REJECT_LENGTH, b"\0")  # bytes after the envelope
        result = yield self.post(largest, reply_headers)
        self.assertEqual(result.code, 400)  # read, and refused for what it is: no such id
        self.assertIn(b"Request-Id", result.body)
        result = yield self.post(largest + b"\0", reply_headers)
        self.assertEqual(result.code, 413)
        self.assertIn(b"the limit is %d" % MAX_REJECT_LENGTH, result.body)
        # a Prepare-sized limit for anything else, whatever it is
        for headers in (HEADERS, {**reply_headers, b"callback-url": b"http://x.example/"}):
            result = yield self.post(largest, headers)
            self.assertEqual(result.code, 413)
            self.assertIn(b"the limit is %d" % MAX_PREPARE_LENGTH, result.body)
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_largest_legal_prepare_accepted(self) -> Any:
        yield self.start()
        made = largest_prepare(self.now())
        self.handler.known[made.prepare.execution_condition] = made.fulfillment
        self.assertEqual(len(made.packet), MAX_PREPARE_LENGTH)
        result = yield self.post(made.packet)
        self.assertEqual(result.code, 200)
        expect_fulfill(self, result.body, made.fulfillment)
        self.assertEqual(self.handler.calls, [made.packet])

    @inlineCallbacks
    def test_largest_legal_prepare_accepted_chunked(self) -> Any:
        yield self.start()
        made = largest_prepare(self.now())
        self.handler.known[made.prepare.execution_condition] = made.fulfillment
        client = yield raw_connect(self, listen_port(self.plugin))
        assert client.transport is not None
        client.transport.write(
            raw_request(
                headers=[
                    (b"Authorization", b"Bearer " + TOKEN.encode()),
                    (b"Transfer-Encoding", b"chunked"),
                    (b"Connection", b"close"),
                ],
                body=chunked(made.packet, 1000),
            )
        )
        data = yield within(client.closed, 5)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:100])
        expect_fulfill(self, data.split(b"\r\n\r\n", 1)[1], made.fulfillment)
        self.assertEqual(self.handler.calls, [made.packet])

    @inlineCallbacks
    def test_content_types(self) -> Any:
        yield self.start()
        accepted = [
            b"application/octet-stream",
            b"application/ilp+octet-stream",
            b"application/ilp+octet-stream; charset=binary",
            b"Application/Octet-Stream",
        ]
        for content_type in accepted:
            made = self.handler.make(self.now())
            result = yield self.post(made.packet, {**AUTH, b"content-type": content_type})
            self.assertEqual(result.code, 200, content_type)
            expect_fulfill(self, result.body, made.fulfillment)
        # No Content-Type at all is accepted too (curl --data-binary sends a form type though).
        made = self.handler.make(self.now())
        result = yield self.post(made.packet, AUTH)
        self.assertEqual(result.code, 200)
        calls = len(self.handler.calls)
        for content_type in (
            b"text/plain",
            b"application/json",
            b"application/x-www-form-urlencoded",
        ):
            result = yield self.post(made.packet, {**AUTH, b"content-type": content_type})
            self.assertEqual(result.code, 415, content_type)
        self.assertEqual(len(self.handler.calls), calls)


class ReadinessTests(_Base):
    @inlineCallbacks
    def mount_unconnected(self, plugin: PluginHttp, site_factory: Any) -> Any:
        assert plugin.resource is not None
        endpoint = endpoints.TCP4ServerEndpoint(global_reactor(), 0, interface="127.0.0.1")
        port = yield endpoint.listen(site_factory(plugin.resource))
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/"

    @inlineCallbacks
    def test_not_connected_is_502_server_is_closed(self) -> Any:
        plugin = PluginHttp(incoming={"static_token": TOKEN})
        plugin.register_data_handler(self.handler)
        for site_factory in (make_site, Site):
            url = yield self.mount_unconnected(plugin, site_factory)
            made = self.handler.make(self.now())
            result = yield request(self.agent, url, made.packet, HEADERS)
            self.assertEqual((result.code, result.body), (502, b"server is closed"))
            # Authorization comes first, as in the JS plugin.
            result = yield request(self.agent, url, made.packet, ILP_TYPE)
            self.assertEqual(result.code, 401)
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_no_handler_is_502(self) -> Any:
        yield self.start()
        self.plugin.deregister_data_handler()
        made = self.handler.make(self.now())
        result = yield self.post(made.packet)
        self.assertEqual((result.code, result.body), (502, b"no handler registered."))
        self.plugin.register_data_handler(self.handler)
        result = yield self.post(made.packet)
        expect_fulfill(self, result.body, made.fulfillment)


class HandlerTests(_Base):
    @inlineCallbacks
    def test_handler_raising_is_t00_and_logged_once(self) -> Any:
        yield self.start(address="test.server")

        def broken(data: bytes) -> bytes:
            raise ZeroDivisionError("secret internals")

        self.handler.respond = broken
        result = yield self.post(make_prepare(self.now()).packet)
        self.assertEqual(result.code, 200)
        reject = expect_reject(self, result.body, ErrorCode.T00_INTERNAL_ERROR)
        self.assertEqual(reject.triggered_by, "test.server")
        self.assertNotIn("secret internals", reject.message)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @inlineCallbacks
    def test_async_handler_failing_is_t00_and_logged_once(self) -> Any:
        yield self.start(address="test.server")
        pending = Pending()
        self.handler.respond = lambda data: pending.deferred
        called = self.handler.next_call()
        d = self.post(make_prepare(self.now()).packet)
        yield within(called, 5)
        global_reactor().callLater(0.01, pending.deferred.errback, KeyError("gone"))
        result = yield d
        reject = expect_reject(self, result.body, ErrorCode.T00_INTERNAL_ERROR)
        self.assertEqual(reject.triggered_by, "test.server")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    @inlineCallbacks
    def test_triggered_by_empty_without_address(self) -> Any:
        yield self.start()

        def broken(data: bytes) -> bytes:
            raise RuntimeError("x")

        self.handler.respond = broken
        result = yield self.post(make_prepare(self.now()).packet)
        self.assertEqual(expect_reject(self, result.body, "T00").triggered_by, "")
        self.flushLoggedErrors(RuntimeError)

    @inlineCallbacks
    def test_handler_returning_garbage_is_t00(self) -> Any:
        yield self.start(address="test.server")
        logs = LogCapture(self)
        garbage: list[Any] = [
            b"garbage",
            b"",
            make_prepare(self.now()).packet,
            b"\x0d\x05\x00",
            "a string",
            None,
            42,
            make_prepare(self.now()).prepare,
            succeed(b"\x0e"),
        ]
        for value in garbage:
            self.handler.respond = lambda data, value=value: value
            result = yield self.post(make_prepare(self.now()).packet)
            self.assertEqual(result.code, 200, value)
            reject = expect_reject(self, result.body, "T00")
            self.assertEqual(reject.triggered_by, "test.server")
        self.assertEqual(len(logs.errors()), len(garbage))

    @inlineCallbacks
    def test_handler_returning_packet_objects_is_serialized(self) -> Any:
        yield self.start()
        made = make_prepare(self.now())
        replies: list[Any] = [
            Fulfill(made.fulfillment, b"hi"),
            Reject("F99", "test.app", "app says no", b"d"),
            succeed(Fulfill(made.fulfillment, b"later")),
            bytearray(made.fulfill(b"ba")),
        ]
        expected: list[Fulfill | Reject] = [
            Fulfill(made.fulfillment, b"hi"),
            Reject("F99", "test.app", "app says no", b"d"),
            Fulfill(made.fulfillment, b"later"),
            Fulfill(made.fulfillment, b"ba"),
        ]
        for reply, packet in zip(replies, expected):
            self.handler.respond = lambda data, reply=reply: reply
            result = yield self.post(made.packet)
            self.assertEqual(result.code, 200)
            self.assertEqual(result.header(b"content-type"), b"application/octet-stream")
            self.assertEqual(result.body, serialize(packet))

    @inlineCallbacks
    def test_async_handler_fulfils(self) -> Any:
        yield self.start()
        made = self.handler.make(self.now())
        pending = Pending()
        self.handler.respond = lambda data: pending.deferred
        called = self.handler.next_call()
        d = self.post(made.packet)
        yield within(called, 5)
        pending.deferred.callback(made.fulfill(b"async"))
        result = yield d
        self.assertEqual(result.header(b"content-type"), b"application/octet-stream")
        self.assertEqual(expect_fulfill(self, result.body, made.fulfillment).data, b"async")

    @inlineCallbacks
    def test_slow_handler_past_expiry_is_r00_and_cancelled(self) -> Any:
        yield self.start(address="test.server")
        pending = Pending()
        self.handler.respond = lambda data: pending.deferred
        made = make_prepare(self.now(), expires_in=0.25)
        started = time.monotonic()
        result = yield self.post(made.packet)
        elapsed = time.monotonic() - started
        reject = expect_reject(self, result.body, ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertEqual(reject.triggered_by, "test.server")
        self.assertTrue(pending.cancelled.called, "the handler's Deferred was not cancelled")
        self.assertGreater(elapsed, 0.1)
        self.assertLess(elapsed, 3)

    @inlineCallbacks
    def test_already_expired_is_r00_without_the_handler(self) -> Any:
        yield self.start()
        made = make_prepare(self.now(), expires_in=-1)
        result = yield self.post(made.packet)
        expect_reject(self, result.body, ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_client_disconnecting_cancels_the_handler(self) -> Any:
        yield self.start()
        logs = LogCapture(self)
        pending = Pending()
        self.handler.respond = lambda data: pending.deferred
        made = make_prepare(self.now(), expires_in=30)
        client = yield raw_connect(self, listen_port(self.plugin))
        assert client.transport is not None
        called = self.handler.next_call()
        client.transport.write(
            raw_request(
                headers=[
                    (b"Authorization", b"Bearer " + TOKEN.encode()),
                    (b"Content-Length", b"%d" % len(made.packet)),
                ],
                body=made.packet,
            )
        )
        yield within(called, 5)
        self.assertFalse(pending.cancelled.called)
        client.transport.abortConnection()
        yield within(pending.cancelled, 5)
        yield client.closed
        self.assertEqual(client.data, b"")
        self.assertEqual(logs.errors(), [])


class MultiIldcpTests(_Base):
    HUB = {"client_address": "test.hub", "asset_scale": 6, "asset_code": "USD"}

    def ildcp_post(self, name: bytes | None) -> Any:
        headers = dict(HEADERS)
        if name is not None:
            headers[b"ilp-peer-name"] = name
        return self.post(ildcp.serialize_request(), headers)

    @inlineCallbacks
    def test_peer_config_answered_with_child_address(self) -> Any:
        yield self.start(multi=True, ildcp=self.HUB)
        for name in (b"alice", b"bob_2", b"c-3", b"8000"):
            result = yield self.ildcp_post(name)
            self.assertEqual(result.code, 200)
            info = ildcp.deserialize_response(result.body)
            self.assertEqual(info, ildcp.IldcpResponse("test.hub." + name.decode(), 6, "USD"))
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_invalid_peer_name_is_f00(self) -> Any:
        yield self.start(multi=True, ildcp=self.HUB, address="test.hub")
        for name in (None, b"", b"a.b", b"with space", b"caf\xc3\xa9", b"x" * 2000):
            result = yield self.ildcp_post(name)
            self.assertEqual(result.code, 200)
            reject = expect_reject(self, result.body, ErrorCode.F00_BAD_REQUEST)
            self.assertEqual(reject.triggered_by, "test.hub")
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_name_that_cannot_be_reached_gets_no_address(self) -> Any:
        """With the template ``http://127.0.0.1:%/`` a child's name is its port."""
        yield self.start(
            multi=True,
            ildcp=self.HUB,
            address="test.hub",
            outgoing={"url": "http://127.0.0.1:%/", "static_token": "t"},
        )
        result = yield self.ildcp_post(b"alice")
        reject = expect_reject(self, result.body, ErrorCode.F00_BAD_REQUEST)
        self.assertIn("fills the port", reject.message)
        result = yield self.ildcp_post(b"7790")
        self.assertEqual(ildcp.deserialize_response(result.body).client_address, "test.hub.7790")
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_child_address_too_long_is_f00(self) -> Any:
        long_hub = "test." + "h" * 1000
        yield self.start(multi=True, ildcp={**self.HUB, "client_address": long_hub})
        result = yield self.ildcp_post(b"a" * 17)
        self.assertEqual(
            ildcp.deserialize_response(result.body).client_address, long_hub + "." + "a" * 17
        )
        result = yield self.ildcp_post(b"a" * 18)
        expect_reject(self, result.body, ErrorCode.F00_BAD_REQUEST)

    @inlineCallbacks
    def test_expired_request_is_r00_in_every_mode(self) -> Any:
        """One expiry rule: an expired IL-DCP request gets R00, whether this
        plugin answers it (multi mode) or its handler would."""
        expired = ildcp.serialize_request(
            dt.datetime.fromtimestamp(self.now() - 1, dt.timezone.utc)
        )
        self.handler.respond = lambda data: ildcp_reply("test.other.x")
        for mode in ({"multi": True}, {"multi": False}):
            yield self.start(ildcp=self.HUB, address="test.hub", **mode)
            result = yield self.post(expired, {**HEADERS, b"ilp-peer-name": b"alice"})
            reject = expect_reject(self, result.body, ErrorCode.R00_TRANSFER_TIMED_OUT)
            self.assertEqual(reject.triggered_by, "test.hub", mode)
            yield self.plugin.disconnect()
        self.assertEqual(self.handler.calls, [])

    @inlineCallbacks
    def test_peer_config_goes_to_the_handler_outside_multi_mode(self) -> Any:
        yield self.start(ildcp=self.HUB)
        self.handler.respond = lambda data: ildcp_reply("test.other.x")
        result = yield self.ildcp_post(b"alice")
        self.assertEqual(ildcp.deserialize_response(result.body).client_address, "test.other.x")
        self.assertEqual(len(self.handler.calls), 1)


class MultiIldcpInMemoryTests(SynchronousTestCase):
    """IL-DCP fetched through the data handler, over treq's in-memory agent."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.plugin = PluginHttp(incoming={"static_token": TOKEN}, multi=True, reactor=self.clock)
        self.pending = Pending()
        self.fetches: list[bytes] = []

        def handler(data: bytes) -> Any:
            self.fetches.append(data)
            return self.pending.deferred

        self.plugin.register_data_handler(handler)
        self.successResultOf(self.plugin.connect())
        assert self.plugin.resource is not None
        self.agent = RequestTraversalAgent(self.plugin.resource)

    def ildcp_post(self, name: bytes) -> Deferred[Any]:
        return request(
            self.agent,
            "http://hub.invalid/",
            ildcp.serialize_request(),
            {**HEADERS, b"ilp-peer-name": name},
        )

    def test_fetched_once_for_concurrent_requests(self) -> None:
        first = self.ildcp_post(b"alice")
        second = self.ildcp_post(b"bob")
        self.agent.flush()
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual(len(self.fetches), 1)
        self.assertTrue(ildcp.is_ildcp_request(deserialize_prepare(self.fetches[0])))
        self.pending.deferred.callback(ildcp_reply("test.parent.hub", 3, "EUR"))
        self.agent.flush()
        for d, name in ((first, "alice"), (second, "bob")):
            result = self.successResultOf(d)
            info = ildcp.deserialize_response(result.body)
            self.assertEqual(info, ildcp.IldcpResponse("test.parent.hub." + name, 3, "EUR"))
        self.assertEqual(self.plugin.address, "test.parent.hub")
        # Known now: a later request does not ask again.
        third = self.ildcp_post(b"carol")
        self.agent.flush()
        info = ildcp.deserialize_response(self.successResultOf(third).body)
        self.assertEqual(info.client_address, "test.parent.hub.carol")
        self.assertEqual(len(self.fetches), 1)

    def test_request_expires_while_our_address_is_fetched(self) -> None:
        """The child's request waits for our own IL-DCP at most until it expires (R00)."""
        expires = dt.datetime.fromtimestamp(self.clock.seconds() + 5, dt.timezone.utc)
        d = request(
            self.agent,
            "http://hub.invalid/",
            ildcp.serialize_request(expires),
            {**HEADERS, b"ilp-peer-name": b"alice"},
        )
        self.agent.flush()
        self.clock.advance(4.9)
        self.agent.flush()
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.agent.flush()
        expect_reject(self, self.successResultOf(d).body, ErrorCode.R00_TRANSFER_TIMED_OUT)
        # the fetch itself goes on: a later request gets the address
        self.pending.deferred.callback(ildcp_reply("test.p"))
        info = ildcp.deserialize_response(self.successResultOf(self.ildcp_post(b"bob")).body)
        self.assertEqual(info.client_address, "test.p.bob")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_parents_f00_is_passed_on_as_f00(self) -> None:
        """Our own IL-DCP refused with F00 (a router that cannot give us an
        address it stands behind): the child gets F00 and the reason."""
        d = self.ildcp_post(b"alice")
        self.agent.flush()
        self.pending.deferred.callback(reject_bytes("F00", "", "the address is too long"))
        self.agent.flush()
        reject = expect_reject(self, self.successResultOf(d).body, ErrorCode.F00_BAD_REQUEST)
        self.assertIn("the address is too long", reject.message)

    def test_failed_fetch_is_t00_and_retried(self) -> None:
        logs = LogCapture(self)
        d = self.ildcp_post(b"alice")
        self.agent.flush()
        self.pending.deferred.callback(reject_bytes("F02", "test.parent", "no"))
        self.agent.flush()
        expect_reject(self, self.successResultOf(d).body, ErrorCode.T00_INTERNAL_ERROR)
        self.assertEqual(len(logs.errors()), 1)
        self.pending = Pending()
        again = self.ildcp_post(b"alice")
        self.agent.flush()
        self.assertEqual(len(self.fetches), 2)
        self.pending.deferred.callback(ildcp_reply("test.p"))
        self.agent.flush()
        info = ildcp.deserialize_response(self.successResultOf(again).body)
        self.assertEqual(info.client_address, "test.p.alice")


# -- the resource and request class on in-memory connections ----------------------------


class _Receiver:
    """A PacketReceiver whose answer the test chooses; counts the Prepares it gets."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.received: list[bytes] = []

    def receive_prepare(self, body: bytes, prepare: Any, peer_name: bytes | None) -> Any:
        self.received.append(body)
        return self.answer()


def _post_bytes(body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    extra = [(b"Content-Length", b"%d" % len(body))] if headers is None else headers
    return raw_request(headers=[(b"Authorization", b"Bearer " + TOKEN.encode()), *extra], body=body)


class InMemoryServerTests(SynchronousTestCase):
    """The resource in a Site on in-memory connections; :class:`InMemoryLeanServerTests`
    runs the same over the lean listener."""

    #: connect() builds the lean listener's protocol instead of a Site's (site_factory unset)
    lean = False

    def connect(self, answer: Any, site_factory: Any = None) -> tuple[Any, Any, _Receiver]:
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from ilphttp.auth import IncomingAuth
        from ilphttp.listener import make_listener
        from ilphttp.server import IlpResource

        receiver = _Receiver(answer)
        resource = IlpResource(IncomingAuth(TOKEN, None, time.time), receiver)
        address = IPv4Address("TCP", "127.0.0.1", 5000)
        if self.lean and site_factory is None:
            channel = make_listener(resource.door, Clock()).buildProtocol(address)
        else:
            site = (site_factory or make_site)(resource)
            site.reactor = Clock()
            channel = site.buildProtocol(address)
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, None)
        return channel, transport, receiver

    def responses(self, transport: Any) -> list[bytes]:
        """The status lines written so far."""
        return [line for line in transport.value().split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]

    def test_refusals_of_the_receiver(self) -> None:
        from ilphttp.server import NotReady, OverCapacity

        def refuse(error: Exception) -> Any:
            def answer() -> Any:
                raise error

            return answer

        cases = [
            (NotReady("server is closed"), b"HTTP/1.1 502 ", None),
            (OverCapacity("too many packets in flight"), b"HTTP/1.1 503 ", b"Retry-After: 1"),
        ]
        for error, status, header in cases:
            channel, transport, receiver = self.connect(refuse(error))
            channel.dataReceived(_post_bytes(make_prepare(time.time()).packet))
            data = transport.value()
            self.assertTrue(data.startswith(status), data)
            self.assertTrue(data.endswith(str(error).encode()), data)
            if header is not None:
                self.assertIn(header, data)
            self.assertEqual(len(receiver.received), 1)

    def test_receiver_failing_is_500_without_details(self) -> None:
        pending = Pending()
        channel, transport, _ = self.connect(lambda: pending.deferred)
        channel.dataReceived(_post_bytes(make_prepare(time.time()).packet))
        self.assertEqual(transport.value(), b"")
        pending.deferred.errback(RuntimeError("secret internals"))
        data = transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 500 "), data)
        self.assertIn(b"internal error", data)
        self.assertNotIn(b"secret", data)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_client_gone_before_the_answer(self) -> None:
        """
        The client leaves: its pending answer is cancelled, and whatever the
        receiver answers then (a reply, or a failure, which is logged) is not
        written to the closed connection.
        """
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        def on_cancel(d: Deferred[Any]) -> None:
            d.callback(reject_bytes("F99"))

        def fail_on_cancel(d: Deferred[Any]) -> None:
            d.errback(RuntimeError("failed while cancelled"))

        def ignore_cancel(d: Deferred[Any]) -> None:
            pass  # Deferred.cancel then fails it with CancelledError

        for canceller, errors in ((on_cancel, 0), (fail_on_cancel, 1), (ignore_cancel, 0)):
            pending: Deferred[Any] = Deferred(canceller)
            channel, transport, _ = self.connect(lambda pending=pending: pending)
            channel.dataReceived(_post_bytes(make_prepare(time.time()).packet))
            self.assertEqual(transport.value(), b"")
            channel.connectionLost(Failure(ConnectionDone()))
            self.assertTrue(pending.called, "the answer was not cancelled")
            self.assertEqual(transport.value(), b"", canceller)
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), errors)
            # The end of the answer's chain: nothing left unhandled (a
            # CancelledError there would be logged when it is collected).
            self.assertIsNone(pending.result, canceller)

    def test_oversized_body_gets_one_413(self) -> None:
        """
        Headers announcing a too large body: one 413, nothing parsed, whether
        the body comes in the same read or later (a TLS connection may still
        deliver bytes it decrypted before the close).
        """
        body = largest_prepare(time.time()).packet + b"x"
        request_bytes = _post_bytes(body)
        head = len(request_bytes) - len(body)
        for reads in ([request_bytes], [request_bytes[:head], request_bytes[head:]]):
            channel, transport, receiver = self.connect(lambda: succeed(b""))
            for data in reads:
                channel.dataReceived(data)
            self.assertEqual(
                self.responses(transport), [b"HTTP/1.1 413 Request Entity Too Large"], len(reads)
            )
            self.assertTrue(transport.disconnecting)
            self.assertEqual(receiver.received, [])

    def test_chunked_body_far_over_the_limit(self) -> None:
        """Chunks keep coming after the limit: dropped, and one 413 at the end."""
        body = largest_prepare(time.time()).packet * 3
        channel, transport, receiver = self.connect(lambda: succeed(b""))
        channel.dataReceived(_post_bytes(b"", [(b"Transfer-Encoding", b"chunked")]))
        rest = chunked(body, 1000)
        for i in range(0, len(rest), 1500):
            channel.dataReceived(rest[i : i + 1500])
        self.assertEqual(
            self.responses(transport), [b"HTTP/1.1 413 Request Entity Too Large"], transport.value()
        )
        self.assertIn(b"Connection: close", transport.value())
        self.assertEqual(receiver.received, [])

    def test_oversized_body_in_a_plain_site(self) -> None:
        """Mounted in a twisted.web Site without IlpRequest, the limit still holds."""
        body = largest_prepare(time.time()).packet + b"x"
        channel, transport, receiver = self.connect(lambda: succeed(b""), Site)
        channel.dataReceived(_post_bytes(body))
        data = transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data[:100])
        self.assertIn(b"the limit is %d bytes" % MAX_PREPARE_LENGTH, data)
        self.assertEqual(receiver.received, [])

    def test_access_log_only_when_asked(self) -> None:
        import io

        for access_log, logged in ((False, b""), (True, b'"POST / HTTP/1.1" 200')):
            channel, transport, _ = self.connect(
                lambda: succeed(reject_bytes("F99")),
                lambda resource, access_log=access_log: make_site(resource, access_log),
            )
            log = io.BytesIO()
            channel.site.logFile = log
            channel.dataReceived(_post_bytes(make_prepare(time.time()).packet))
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
            self.assertIn(logged, log.getvalue())
            if not access_log:
                self.assertEqual(log.getvalue(), b"")


class Http2LimitTests(TestCase):
    """The size limit on HTTP/2, where no 413 can be written before the body."""

    timeout = 10

    @inlineCallbacks
    def test_content_length_over_the_limit_is_413(self) -> Any:
        import h2.config
        import h2.connection
        import h2.events
        from twisted.internet.address import IPv4Address
        from twisted.internet.task import deferLater
        from twisted.internet.testing import StringTransport

        from ilphttp.auth import IncomingAuth
        from ilphttp.h2c import wrap_site_for_h2c
        from ilphttp.server import IlpResource

        receiver = _Receiver(lambda: succeed(b""))
        site = make_site(IlpResource(IncomingAuth(TOKEN, None, time.time), receiver))
        wrapper = wrap_site_for_h2c(site).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        wrapper.makeConnection(transport)
        client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        client.initiate_connection()
        body = largest_prepare(self.now()).packet + b"x"
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", b"/"),
            (b"authorization", b"Bearer " + TOKEN.encode()),
            (b"content-length", b"%d" % len(body)),
        ]
        client.send_headers(1, headers)
        client.increment_flow_control_window(2**20)
        wrapper.dataReceived(client.data_to_send())
        sent = 0
        while sent < len(body):  # as much as the server's window allows
            size = min(client.local_flow_control_window(1), client.max_outbound_frame_size)
            if size == 0:
                break
            chunk = body[sent : sent + size]
            sent += len(chunk)
            client.send_data(1, chunk, end_stream=sent == len(body))
            wrapper.dataReceived(client.data_to_send())
        events = []
        for _ in range(20):  # twisted.web's HTTP/2 writes from the reactor
            yield deferLater(global_reactor(), 0, lambda: None)
            events += client.receive_data(transport.value())
            transport.clear()
            if any(isinstance(e, h2.events.StreamEnded) for e in events):
                break
        [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
        self.assertEqual(dict(response.headers)[b":status"], b"413")
        data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        self.assertEqual(data, b"ILP packet too large: the limit is %d bytes" % MAX_PREPARE_LENGTH)
        self.assertEqual(receiver.received, [])
        wrapper.connectionLost(None)

    def now(self) -> float:
        return time.time()


class InMemoryLeanServerTests(InMemoryServerTests):
    lean = True


# -- the same tests over twisted.web's Site (the classes above run the lean listener) -----


class HealthAndAuthOverSiteTests(OverSite, HealthAndAuthTests):
    pass


class BodyOverSiteTests(OverSite, BodyTests):
    pass


class ReadinessOverSiteTests(OverSite, ReadinessTests):
    pass


class HandlerOverSiteTests(OverSite, HandlerTests):
    pass


class MultiIldcpOverSiteTests(OverSite, MultiIldcpTests):
    pass
