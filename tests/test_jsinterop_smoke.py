"""The JS interop machinery works: real npm peers talk to each other under trial.

These tests prove tests/support/jsinterop.py and interop/*.js, not ilphttp: every peer
here is the real JavaScript ilp-plugin-http 1.6.1, ilp-connector 23 or
ilp-protocol-stream.  Packets are built and read with ilphttp.packet.
"""

from __future__ import annotations

from typing import Any

import jwt
from twisted.internet import defer
from twisted.trial import unittest

from ilphttp import ildcp
from ilphttp.packet import (
    Fulfill,
    Reject,
    deserialize,
    deserialize_prepare,
    serialize_prepare,
)
from tests.support.jsinterop import (
    JsCommandError,
    http_account,
    plugin_options,
    require_node,
    start_capture_server,
    start_connector,
    start_peer,
    start_stream_client,
    start_stream_server,
)
from tests.support.packets import data_prepare
from tests.support.ports import free_port


class JsPeerPairTests(unittest.TestCase):
    """Two JS ilp-plugin-http peers (peer.js) talking to each other."""

    timeout = 60

    def setUp(self) -> None:
        require_node()

    @defer.inlineCallbacks
    def _pair(self, a_auth: dict[str, Any], b_auth: dict[str, Any]) -> Any:
        a_port, b_port = free_port(), free_port()
        a = yield start_peer(self, plugin_options(a_port, b_port, **a_auth))
        b = yield start_peer(self, plugin_options(b_port, a_port, **b_auth))
        self.assertEqual((a.port, b.port), (a_port, b_port))
        return a, b

    @defer.inlineCallbacks
    def _round_trip(self, sender: Any, receiver: Any) -> Any:
        prepare, raw, fulfillment = data_prepare("test.receiver.x", payload=b"ping")
        reply = yield sender.send(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data))
        received = yield receiver.received()
        self.assertEqual(received, [raw])
        requests = yield receiver.requests()
        self.assertEqual(len(requests), 1)
        headers = requests[0]["headers"]
        self.assertEqual(requests[0]["method"], "POST")
        self.assertEqual(headers["content-type"], "application/ilp+octet-stream")
        self.assertEqual(headers["ilp-peer-name"], str(sender.port))
        return headers["authorization"]

    @defer.inlineCallbacks
    def test_static_token_both_directions(self) -> Any:
        a, b = yield self._pair(
            {"incoming_token": "a-in", "outgoing_token": "b-in"},
            {"incoming_token": "b-in", "outgoing_token": "a-in"},
        )
        auth = yield self._round_trip(a, b)
        self.assertEqual(auth, "Bearer b-in")
        auth = yield self._round_trip(b, a)
        self.assertEqual(auth, "Bearer a-in")

    @defer.inlineCallbacks
    def test_jwt_both_directions(self) -> Any:
        a_secret, b_secret = "a-jwt-secret-" + "a" * 32, "b-jwt-secret-" + "b" * 32
        a, b = yield self._pair(
            {"incoming_jwt": a_secret, "outgoing_jwt": b_secret},
            {"incoming_jwt": b_secret, "outgoing_jwt": a_secret},
        )
        for sender, receiver, secret in ((a, b, b_secret), (b, a, a_secret)):
            auth = yield self._round_trip(sender, receiver)
            self.assertTrue(auth.startswith("Bearer "), auth)
            token = auth[len("Bearer ") :]
            self.assertEqual(jwt.get_unverified_header(token)["alg"], "HS256")
            claims = jwt.decode(token, secret, algorithms=["HS256"])
            self.assertEqual(claims["exp"] - claims["iat"], 30)

    @defer.inlineCallbacks
    def test_throwing_handler_is_500(self) -> Any:
        a, b = yield self._pair(
            {"incoming_token": "a-in", "outgoing_token": "b-in"},
            {"incoming_token": "b-in", "outgoing_token": "a-in"},
        )
        yield b.set_handler("throw", message="boom")
        _, raw, _ = data_prepare("test.b")
        err = yield self.assertFailure(a.send(raw), JsCommandError)
        self.assertEqual(err.message, "failed to fetch. code=500")
        received = yield b.received()
        self.assertEqual(received, [raw])

    @defer.inlineCallbacks
    def test_wrong_token_is_401(self) -> Any:
        a, b = yield self._pair(
            {"incoming_token": "a-in", "outgoing_token": "not-b-in"},
            {"incoming_token": "b-in", "outgoing_token": "a-in"},
        )
        _, raw, _ = data_prepare("test.b")
        err = yield self.assertFailure(a.send(raw), JsCommandError)
        self.assertEqual(err.message, "failed to fetch. code=401")
        received = yield b.received()
        self.assertEqual(received, [])
        requests = yield b.requests()
        self.assertEqual([r["headers"]["authorization"] for r in requests], ["Bearer not-b-in"])

    @defer.inlineCallbacks
    def test_handler_modes(self) -> Any:
        a, b = yield self._pair(
            {"incoming_token": "a-in", "outgoing_token": "b-in"},
            {"incoming_token": "b-in", "outgoing_token": "a-in"},
        )
        _, raw, _ = data_prepare("test.b")
        yield b.set_handler("reject", code="F02", message="no route", triggeredBy="test.b")
        reply = yield a.send(raw)
        self.assertEqual(deserialize(reply), Reject("F02", "test.b", "no route", b""))
        yield b.set_handler("echo")
        reply = yield a.send(raw)
        self.assertEqual(reply, raw)
        yield b.set_handler("garbage", body=b"\x00\xffjunk".hex())
        reply = yield a.send(raw)
        self.assertEqual(reply, b"\x00\xffjunk")
        # A Prepare whose data does not hold the fulfillment: F05 from "fulfill".
        wrong = data_prepare("test.b")[0]._replace(data=b"x" * 40)
        yield b.set_handler("fulfill")
        reply = yield a.send(serialize_prepare(wrong))
        self.assertEqual(deserialize(reply).code, "F05")  # type: ignore[union-attr]
        yield b.set_handler(
            "ildcp", ildcp={"clientAddress": "test.b.a", "assetScale": 6, "assetCode": "XRP"}
        )
        reply = yield a.send(ildcp.serialize_request())
        self.assertEqual(
            ildcp.deserialize_response(reply), ildcp.IldcpResponse("test.b.a", 6, "XRP")
        )
        yield b.set_handler("none")
        err = yield self.assertFailure(a.send(raw), JsCommandError)
        self.assertEqual(err.message, "failed to fetch. code=502")

    @defer.inlineCallbacks
    def test_hang_then_timeout(self) -> Any:
        a, b = yield self._pair(
            {"incoming_token": "a-in", "outgoing_token": "b-in"},
            {"incoming_token": "b-in", "outgoing_token": "a-in"},
        )
        yield b.set_handler("hang")
        _, raw, _ = data_prepare("test.b")
        err = yield self.assertFailure(a.send(raw, js_timeout_ms=300), JsCommandError)
        self.assertEqual(err.message, "timeout: sendData took over 300 ms")
        received = yield b.received()
        self.assertEqual(received, [raw])

    @defer.inlineCallbacks
    def test_capture_server_records_js_request(self) -> Any:
        capture = yield start_capture_server(self, body=b"whatever")
        a = yield start_peer(
            self,
            {
                "incoming": {"port": free_port(), "staticToken": "a-in"},
                "outgoing": {
                    "url": capture.url,
                    "secretToken": "legacy",
                    "name": "alice",
                    "sendIlpDestination": True,
                },
            },
        )
        self.assertEqual(a.name, "alice")
        _, raw, _ = data_prepare("test.cap.x")
        reply = yield a.send(raw)
        self.assertEqual(reply, b"whatever")
        [request] = yield capture.requests()
        self.assertEqual(request["body"], raw)
        self.assertEqual(request["headers"]["authorization"], "legacy")
        self.assertEqual(request["headers"]["ilp-peer-name"], "alice")
        self.assertEqual(request["headers"]["ilp-destination"], "test.cap.x")
        yield capture.respond(status=503)
        err = yield self.assertFailure(a.send(raw), JsCommandError)
        self.assertEqual(err.message, "failed to fetch. code=503")


class JsConnectorTests(unittest.TestCase):
    """A real ilp-connector with two ilp-plugin-http child accounts."""

    timeout = 60

    def setUp(self) -> None:
        require_node()

    @defer.inlineCallbacks
    def _network(self) -> Any:
        alice_port, bob_port = free_port(), free_port()
        conn_alice, conn_bob = free_port(), free_port()
        connector = yield start_connector(
            self,
            {
                "alice": http_account(
                    plugin_options(conn_alice, alice_port, "c-alice", "alice-in")
                ),
                "bob": http_account(plugin_options(conn_bob, bob_port, "c-bob", "bob-in")),
            },
        )
        self.assertEqual(connector.address, "test.conn")
        self.assertEqual((connector.port("alice"), connector.port("bob")), (conn_alice, conn_bob))
        return connector, alice_port, bob_port, conn_alice, conn_bob

    @defer.inlineCallbacks
    def test_connector_routes_prepare(self) -> Any:
        _, alice_port, bob_port, conn_alice, conn_bob = yield self._network()
        alice = yield start_peer(
            self, plugin_options(alice_port, conn_alice, "alice-in", "c-alice")
        )
        bob = yield start_peer(self, plugin_options(bob_port, conn_bob, "bob-in", "c-bob"))

        reply = yield alice.send(ildcp.serialize_request())
        self.assertEqual(
            ildcp.deserialize_response(reply), ildcp.IldcpResponse("test.conn.alice", 9, "USD")
        )

        prepare, raw, fulfillment = data_prepare("test.conn.bob.x", amount=1234, payload=b"hi")
        reply = yield alice.send(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data))
        [forwarded] = yield bob.received()
        got = deserialize_prepare(forwarded)
        self.assertEqual(got.destination, "test.conn.bob.x")
        self.assertEqual(got.amount, 1234)  # one-to-one, spread 0
        self.assertEqual(got.execution_condition, prepare.execution_condition)
        self.assertEqual(got.data, prepare.data)
        self.assertLess(got.expires_at, prepare.expires_at)  # the connector's hold window

        # No route: the connector answers F02 itself.
        _, raw, _ = data_prepare("test.elsewhere.x")
        reply = yield alice.send(raw)
        rejected = deserialize(reply)
        assert isinstance(rejected, Reject)
        self.assertEqual((rejected.code, rejected.triggered_by), ("F02", "test.conn"))

    @defer.inlineCallbacks
    def test_stream_payment_through_connector(self) -> Any:
        _, alice_port, bob_port, conn_alice, conn_bob = yield self._network()
        server = yield start_stream_server(
            self, plugin_options(bob_port, conn_bob, "bob-in", "c-bob")
        )
        self.assertTrue(server.destination_account.startswith("test.conn.bob."))
        self.assertEqual(len(server.shared_secret), 32)
        client = yield start_stream_client(
            self, plugin_options(alice_port, conn_alice, "alice-in", "c-alice")
        )
        amount = 3_000_000
        result = yield client.pay(server.destination_account, server.shared_secret, amount)
        self.assertEqual(result["sourceAccount"], "test.conn.alice")
        self.assertEqual(result["sent"], amount)
        self.assertEqual(result["delivered"], amount)
        total = yield server.total()
        self.assertEqual(total, amount)


class JsStreamDirectTests(unittest.TestCase):
    """STREAM between two JS plugins wired to each other, no connector:
    stream.js answers the other side's IL-DCP itself (``serve_ildcp``)."""

    timeout = 60

    def setUp(self) -> None:
        require_node()

    @defer.inlineCallbacks
    def test_stream_payment_direct(self) -> Any:
        server_port, client_port = free_port(), free_port()
        # Each side tells the other its address, as a parent would.
        client = yield start_stream_client(
            self,
            plugin_options(client_port, server_port, "client-in", "server-in"),
            serve_ildcp={"clientAddress": "test.server", "assetScale": 9, "assetCode": "USD"},
        )
        server = yield start_stream_server(
            self,
            plugin_options(server_port, client_port, "server-in", "client-in"),
            serve_ildcp={"clientAddress": "test.client", "assetScale": 9, "assetCode": "USD"},
        )
        self.assertTrue(server.destination_account.startswith("test.server."))
        amount = 2_500_000
        result = yield client.pay(server.destination_account, server.shared_secret, amount)
        self.assertEqual(result["sourceAccount"], "test.client")
        self.assertEqual((result["sent"], result["delivered"]), (amount, amount))
        # A second payment over the same client plugin, to a fresh STREAM address
        # (a closed connection's address is not reusable).
        destination, secret = yield server.generate()
        self.assertNotEqual(destination, server.destination_account)
        result = yield client.pay(destination, secret, 1000)
        self.assertEqual(result["delivered"], 1000)
        total = yield server.total()
        self.assertEqual(total, amount + 1000)
