"""ilphttp's PluginHttp against the real JavaScript peers.

Every test here puts a Python PluginHttp on one side of an HTTP link and a
real npm package on the other: ilp-plugin-http 1.6.1 (interop/peer.js),
ilp-connector 23 (interop/connector.js) or ilp-protocol-stream
(interop/stream.js).  These are the acceptance tests of the wire format.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from ilphttp import ErrorCode, PluginHttp, ildcp
from ilphttp.packet import (
    Fulfill,
    deserialize,
    deserialize_prepare,
    serialize,
)
from ilphttp.plugin import fetch_ildcp
from tests.support.jsinterop import (
    JsCommandError,
    http_account,
    plugin_options,
    require_node,
    start_connector,
    start_peer,
    start_stream_client,
    start_stream_server,
)
from tests.support.packets import data_prepare, fulfil_from_data, largest_data_prepare, reject_of
from tests.support.plugins import connected_plugin
from tests.support.ports import free_port

JWT_SECRET_PY = "python-side-jwt-secret-0123456789abcdef"
JWT_SECRET_JS = "js-side-jwt-secret-0123456789abcdefghij"


class InteropCase(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        require_node()

    def python_plugin(self, handler: Any = fulfil_from_data, **options: Any) -> Any:
        return connected_plugin(self, handler, **options)


class BilateralTests(InteropCase):
    """A Python plugin and a JS ilp-plugin-http peered with each other."""

    @defer.inlineCallbacks
    def _pair(
        self,
        py_incoming: dict[str, Any],
        py_outgoing: dict[str, Any],
        js_incoming: dict[str, Any],
        js_outgoing: dict[str, Any],
        js_handler: dict[str, Any] | None = None,
        py_handler: Any = fulfil_from_data,
    ) -> Any:
        py_port, js_port = free_port(), free_port()
        js = yield start_peer(
            self,
            {
                "incoming": dict(js_incoming, port=js_port),
                "outgoing": dict(js_outgoing, url=f"http://127.0.0.1:{py_port}/"),
            },
            handler=js_handler,
        )
        py = yield self.python_plugin(
            incoming=dict(py_incoming, port=py_port),
            outgoing=dict(py_outgoing, url=js.url),
            handler=py_handler,
        )
        return py, js, py_port

    @defer.inlineCallbacks
    def _both_directions(self, py: PluginHttp, js: Any) -> Any:
        # Python -> JS
        prepare, raw, fulfillment = data_prepare("test.js.x", payload=b"to js")
        reply = yield py.send_data(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data))
        received = yield js.received()
        self.assertEqual(received[-1], raw)
        # JS -> Python
        prepare, raw, fulfillment = data_prepare("test.py.x", payload=b"to python")
        reply = yield js.send(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"to python"))

    @defer.inlineCallbacks
    def test_static_tokens(self) -> Any:
        py, js, py_port = yield self._pair(
            {"static_token": "py-in"},
            {"static_token": "js-in"},
            {"staticToken": "js-in"},
            {"staticToken": "py-in"},
        )
        yield self._both_directions(py, js)
        [request] = yield js.requests()
        self.assertEqual(request["headers"]["authorization"], "Bearer js-in")
        self.assertEqual(request["headers"]["content-type"], "application/octet-stream")
        # The JS plugin's default ILP-Peer-Name: our incoming port.
        self.assertEqual(request["headers"]["ilp-peer-name"], str(py_port))
        self.assertNotIn("ilp-destination", request["headers"])
        self.assertEqual(request["method"], "POST")

    @defer.inlineCallbacks
    def test_jwt_both_directions(self) -> Any:
        py, js, _ = yield self._pair(
            {"jwt_secret": JWT_SECRET_PY},
            {"jwt_secret": JWT_SECRET_JS},
            {"jwtSecret": JWT_SECRET_JS},
            {"jwtSecret": JWT_SECRET_PY},
        )
        yield self._both_directions(py, js)
        # No race on our side: many concurrent first-ish sends all authorize.
        sends = [py.send_data(data_prepare("test.js.y")[1]) for _ in range(20)]
        replies = yield defer.gatherResults(sends)
        self.assertTrue(all(isinstance(deserialize(r), Fulfill) for r in replies))

    @defer.inlineCallbacks
    def test_legacy_options_send_raw_tokens(self) -> Any:
        py, js, _ = yield self._pair(
            {"secret_token": "py-in"},
            {"secret_token": "js-in"},
            {"secretToken": "js-in"},
            {"secretToken": "py-in"},
        )
        yield self._both_directions(py, js)
        [request] = yield js.requests()
        self.assertEqual(request["headers"]["authorization"], "js-in")

    @defer.inlineCallbacks
    def test_legacy_jwt_secret(self) -> Any:
        py, js, _ = yield self._pair(
            {"secret": JWT_SECRET_PY},
            {"secret": JWT_SECRET_JS, "token_expiry": 10},
            {"secret": JWT_SECRET_JS},
            {"secret": JWT_SECRET_PY},
        )
        yield self._both_directions(py, js)
        [request] = yield js.requests()
        self.assertFalse(request["headers"]["authorization"].startswith("Bearer "))

    @defer.inlineCallbacks
    def test_from_options_takes_js_shape(self) -> Any:
        py_port, js_port = free_port(), free_port()
        js = yield start_peer(self, plugin_options(js_port, py_port, "js-in", "py-in"))
        py = PluginHttp.from_options(
            {
                "incoming": {"port": py_port, "staticToken": "py-in"},
                "outgoing": {
                    "url": js.url,
                    "staticToken": "js-in",
                    "name": "pyname",
                    "sendIlpDestination": True,
                },
            }
        )
        py.register_data_handler(fulfil_from_data)
        yield py.connect()
        self.addCleanup(py.disconnect)
        yield self._both_directions(py, js)
        [request] = yield js.requests()
        self.assertEqual(request["headers"]["ilp-peer-name"], "pyname")
        self.assertEqual(request["headers"]["ilp-destination"], "test.js.x")


class PythonToJsErrorTests(InteropCase):
    """What the Python sender makes of a misbehaving JS receiver: always a Reject."""

    @defer.inlineCallbacks
    def _send_with_handler(self, spec: dict[str, Any], seconds: float = 10) -> Any:
        py_port, js_port = free_port(), free_port()
        js = yield start_peer(
            self, plugin_options(js_port, py_port, "js-in", "py-in"), handler=spec
        )
        py = yield self.python_plugin(
            incoming={"port": py_port, "static_token": "py-in"},
            outgoing={"url": js.url, "static_token": "js-in"},
            address="test.py",
        )
        _, raw, _ = data_prepare("test.js.x", seconds=seconds)
        reply = yield py.send_data(raw)
        return reject_of(reply)

    @defer.inlineCallbacks
    def test_js_handler_throws_is_t00(self) -> Any:
        reject = yield self._send_with_handler({"mode": "throw"})
        self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("500", reject.message)
        self.assertEqual(reject.triggered_by, "test.py")

    @defer.inlineCallbacks
    def test_js_without_handler_is_t00(self) -> Any:
        reject = yield self._send_with_handler({"mode": "none"})
        self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("502", reject.message)

    @defer.inlineCallbacks
    def test_js_garbage_is_t00(self) -> Any:
        reject = yield self._send_with_handler({"mode": "garbage"})
        self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("not a valid ILP", reject.message)

    @defer.inlineCallbacks
    def test_js_wrong_fulfillment_is_f05(self) -> Any:
        reject = yield self._send_with_handler(
            {"mode": "echo"}
        )  # echoing the Prepare is not a Fulfill
        self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)

    @defer.inlineCallbacks
    def test_js_reject_passes_through(self) -> Any:
        reject = yield self._send_with_handler(
            {"mode": "reject", "code": "F99", "message": "no thanks", "triggeredBy": "test.js"}
        )
        self.assertEqual(
            (reject.code, reject.message, reject.triggered_by), ("F99", "no thanks", "test.js")
        )

    @defer.inlineCallbacks
    def test_js_hangs_is_r00_at_expiry(self) -> Any:
        from twisted.internet import reactor

        start = reactor.seconds()  # type: ignore[attr-defined]
        reject = yield self._send_with_handler({"mode": "hang"}, seconds=1.5)
        elapsed = reactor.seconds() - start  # type: ignore[attr-defined]
        self.assertEqual(reject.code, ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertLess(elapsed, 5)

    @defer.inlineCallbacks
    def test_wrong_token_is_t00_and_logged(self) -> Any:
        py_port, js_port = free_port(), free_port()
        js = yield start_peer(self, plugin_options(js_port, py_port, "js-in", "py-in"))
        py = yield self.python_plugin(outgoing={"url": js.url, "static_token": "wrong"})
        reply = yield py.send_data(data_prepare("test.js.x")[1])
        reject = reject_of(reply)
        self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("credentials", reject.message)
        received = yield js.received()
        self.assertEqual(received, [])

    @defer.inlineCallbacks
    def test_js_peer_down_is_t01(self) -> Any:
        py = yield self.python_plugin(
            outgoing={"url": f"http://127.0.0.1:{free_port()}/", "static_token": "x"}
        )
        reject = reject_of((yield py.send_data(data_prepare("test.js.x")[1])))
        self.assertEqual(reject.code, ErrorCode.T01_PEER_UNREACHABLE)

    @defer.inlineCallbacks
    def test_largest_prepare_refused_by_js_is_f00(self) -> Any:
        # The JS server caps bodies at 32,767 bytes; a legal 33,857-byte
        # Prepare gets its 413, which we report as F00.
        py_port, js_port = free_port(), free_port()
        js = yield start_peer(self, plugin_options(js_port, py_port, "js-in", "py-in"))
        py = yield self.python_plugin(outgoing={"url": js.url, "static_token": "js-in"})
        raw, _ = largest_data_prepare()
        reject = reject_of((yield py.send_data(raw)))
        self.assertEqual(reject.code, ErrorCode.F00_BAD_REQUEST)
        self.assertIn("413", reject.message)


class JsToPythonErrorTests(InteropCase):
    """What the JS sender sees from a Python receiver."""

    @defer.inlineCallbacks
    def _js_to_python(self, handler: Any, js_token: str = "py-in", **py: Any) -> Any:
        py_port, js_port = free_port(), free_port()
        plugin = yield self.python_plugin(
            incoming={"port": py_port, "static_token": "py-in"}, handler=handler, **py
        )
        js = yield start_peer(self, plugin_options(js_port, py_port, "js-in", js_token))
        return plugin, js

    @defer.inlineCallbacks
    def test_wrong_token_is_401(self) -> Any:
        _, js = yield self._js_to_python(fulfil_from_data, js_token="nope")
        with self.assertRaises(JsCommandError) as caught:
            yield js.send(data_prepare("test.py.x")[1])
        self.assertEqual(caught.exception.message, "failed to fetch. code=401")

    @defer.inlineCallbacks
    def test_not_a_prepare_is_400(self) -> Any:
        _, js = yield self._js_to_python(fulfil_from_data)
        with self.assertRaises(JsCommandError) as caught:
            yield js.send(serialize(Fulfill(bytes(32))))
        self.assertEqual(caught.exception.message, "failed to fetch. code=400")

    @defer.inlineCallbacks
    def test_handler_error_is_a_reject_not_500(self) -> Any:
        def broken(data: bytes) -> bytes:
            raise RuntimeError("secret internals")

        _, js = yield self._js_to_python(broken, address="test.py")
        reject = reject_of((yield js.send(data_prepare("test.py.x")[1])))
        self.assertEqual((reject.code, reject.triggered_by), ("T00", "test.py"))
        self.assertNotIn("secret internals", reject.message)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_no_handler_is_502(self) -> Any:
        _, js = yield self._js_to_python(None)
        with self.assertRaises(JsCommandError) as caught:
            yield js.send(data_prepare("test.py.x")[1])
        self.assertEqual(caught.exception.message, "failed to fetch. code=502")

    @defer.inlineCallbacks
    def test_slow_handler_is_r00(self) -> Any:
        _, js = yield self._js_to_python(lambda data: defer.Deferred(), address="test.py")
        reject = reject_of((yield js.send(data_prepare("test.py.x", seconds=1)[1])))
        self.assertEqual((reject.code, reject.triggered_by), ("R00", "test.py"))

    @defer.inlineCallbacks
    def test_largest_legal_prepare_accepted(self) -> Any:
        # 33,857 bytes: over the JS plugin's own limit, under ours.
        _, js = yield self._js_to_python(fulfil_from_data)
        raw, fulfillment = largest_data_prepare()
        reply = yield js.send(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"x" * (32767 - 32)))

    @defer.inlineCallbacks
    def test_python_down_is_a_js_error(self) -> Any:
        plugin, js = yield self._js_to_python(fulfil_from_data)
        yield plugin.disconnect()
        with self.assertRaises(JsCommandError) as caught:
            yield js.send(data_prepare("test.py.x")[1])
        self.assertIn("ECONNREFUSED", caught.exception.message)


class MultiModeTests(InteropCase):
    """Python as a multilateral parent of JS children, and as a child of a JS parent."""

    @defer.inlineCallbacks
    def test_python_parent_serves_ildcp_and_routes_to_js_children(self) -> Any:
        hub_port = free_port()
        hub = yield self.python_plugin(
            incoming={"port": hub_port, "static_token": "hub-in"},
            # Each child's ILP-Peer-Name is its own port (the JS default), so
            # the address segment is the port the URL template needs.
            outgoing={"url": "http://127.0.0.1:%/", "static_token": "kid-in"},
            multi=True,
            ildcp={"client_address": "test.hub", "asset_scale": 9, "asset_code": "XRP"},
        )
        kids = []
        for _ in range(2):
            port = free_port()
            kids.append(
                (yield start_peer(self, plugin_options(port, hub_port, "kid-in", "hub-in")))
            )
        for kid in kids:
            info = ildcp.deserialize_response((yield kid.send(ildcp.serialize_request())))
            self.assertEqual(info, ildcp.IldcpResponse(f"test.hub.{kid.port}", 9, "XRP"))
        for kid in kids:
            prepare, raw, fulfillment = data_prepare(f"test.hub.{kid.port}.wallet")
            reply = yield hub.send_data(raw)
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data))
            received = yield kid.received()
            self.assertEqual(received, [raw])
        # Outside our prefix: F02 without any request.
        reject = reject_of((yield hub.send_data(data_prepare("test.other.x")[1])))
        self.assertEqual((reject.code, reject.triggered_by), ("F02", "test.hub"))

    @defer.inlineCallbacks
    def test_python_child_of_js_multi_parent(self) -> Any:
        parent_port, child_port = free_port(), free_port()
        parent = yield start_peer(
            self,
            {
                "multi": True,
                "ildcp": {"clientAddress": "test.jshub", "assetScale": 6, "assetCode": "EUR"},
                "incoming": {"port": parent_port, "staticToken": "parent-in"},
                "outgoing": {"url": "http://127.0.0.1:%/", "staticToken": "child-in"},
            },
        )
        child = yield self.python_plugin(
            incoming={"port": child_port, "static_token": "child-in"},
            outgoing={"url": parent.url, "static_token": "parent-in"},
        )
        info = yield fetch_ildcp(child.send_data)
        self.assertEqual(info, ildcp.IldcpResponse(f"test.jshub.{child_port}", 6, "EUR"))
        _, raw, fulfillment = data_prepare(f"test.jshub.{child_port}.x")
        reply = yield parent.send(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"hello"))

    @defer.inlineCallbacks
    def test_python_multi_parent_fetches_its_own_ildcp_from_handler(self) -> Any:
        hub_port, kid_port = free_port(), free_port()
        upstream = ildcp.IldcpResponse("test.up.hub", 3, "ABC")

        def handler(data: bytes) -> bytes:
            prepare = deserialize_prepare(data)
            if ildcp.is_ildcp_request(prepare):
                return ildcp.serve(prepare, upstream)
            return fulfil_from_data(data)

        yield self.python_plugin(
            incoming={"port": hub_port, "static_token": "hub-in"},
            outgoing={"url": "http://127.0.0.1:%/", "static_token": "kid-in"},
            multi=True,
            handler=handler,
        )
        kid = yield start_peer(self, plugin_options(kid_port, hub_port, "kid-in", "hub-in"))
        info = ildcp.deserialize_response((yield kid.send(ildcp.serialize_request())))
        self.assertEqual(info, ildcp.IldcpResponse(f"test.up.hub.{kid_port}", 3, "ABC"))


class ConnectorTests(InteropCase):
    """ilphttp links inside an ilp-connector topology."""

    @defer.inlineCallbacks
    def test_python_child_of_connector(self) -> Any:
        py_port, conn_port = free_port(), free_port()
        connector = yield start_connector(
            self, {"py": http_account(plugin_options(conn_port, py_port, "c-py", "py-in"))}
        )
        py = yield self.python_plugin(
            incoming={"port": py_port, "static_token": "py-in"},
            outgoing={"url": connector.url("py"), "static_token": "c-py"},
        )
        info = yield fetch_ildcp(py.send_data)
        self.assertEqual(info.client_address, "test.conn.py")
        # The connector routes test.conn.py.* to us.
        _, raw, fulfillment = data_prepare("test.conn.py.x")
        reply = yield py.send_data(raw)  # to the connector, which sends it back to us
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"hello"))

    @defer.inlineCallbacks
    def test_stream_payment_across_ilphttp_links(self) -> Any:
        """STREAM client (JS) -> connector -> [ilphttp edge -> ilphttp link] -> STREAM
        server (JS): several million units cross two Python links."""
        alice_port, conn_alice = free_port(), free_port()
        edge_port, conn_bob = free_port(), free_port()
        link_port, server_port = free_port(), free_port()
        connector = yield start_connector(
            self,
            {
                "alice": http_account(
                    plugin_options(conn_alice, alice_port, "c-alice", "alice-in")
                ),
                "bob": http_account(plugin_options(conn_bob, edge_port, "c-bob", "edge-in")),
            },
        )
        edge = PluginHttp(
            incoming={"port": edge_port, "static_token": "edge-in"},
            outgoing={"url": connector.url("bob"), "static_token": "c-bob"},
        )
        link = PluginHttp(
            incoming={"port": link_port, "static_token": "link-in"},
            outgoing={"url": f"http://127.0.0.1:{server_port}/", "static_token": "srv-in"},
        )
        bob = ildcp.IldcpResponse("test.conn.bob", 9, "USD")

        def from_server(data: bytes) -> Any:
            prepare = deserialize_prepare(data)
            if ildcp.is_ildcp_request(prepare):
                return ildcp.serve(prepare, bob)
            return edge.send_data(data)

        edge.register_data_handler(link.send_data)
        link.register_data_handler(from_server)
        for plugin in (edge, link):
            yield plugin.connect()
            self.addCleanup(plugin.disconnect)
        server = yield start_stream_server(
            self, plugin_options(server_port, link_port, "srv-in", "link-in")
        )
        self.assertTrue(server.destination_account.startswith("test.conn.bob."))
        client = yield start_stream_client(
            self, plugin_options(alice_port, conn_alice, "alice-in", "c-alice")
        )
        amount = 5_000_000
        result = yield client.pay(server.destination_account, server.shared_secret, amount)
        self.assertEqual((result["sent"], result["delivered"]), (amount, amount))
        total = yield server.total()
        self.assertEqual(total, amount)
