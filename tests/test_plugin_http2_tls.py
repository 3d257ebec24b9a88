"""PluginHttp over HTTP/2 and TLS: ilphttp to ilphttp, and with the JS plugin's http2 client.

The agent and server pieces are tested on their own in test_http2, test_h2c
and test_tls; here the whole link runs over them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from ilphttp import ErrorCode, OptionError, PluginHttp
from ilphttp.packet import Fulfill, Reject, deserialize
from tests.support.certs import CertificateAuthority
from tests.support.h2node import NodeH2Server
from tests.support.jsinterop import plugin_options, require_node, start_peer
from tests.support.packets import data_prepare, fulfil_from_data, largest_data_prepare
from tests.support.plugins import connected_plugin
from tests.support.ports import free_port


def _esc(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


class _Case(unittest.TestCase):
    timeout = 60

    def plugin(self, handler: Any = fulfil_from_data, **options: Any) -> Any:
        return connected_plugin(self, handler, **options)

    @defer.inlineCallbacks
    def pair(self, url_scheme: str = "http", **outgoing: Any) -> Any:
        receiver = yield self.plugin(
            incoming={"endpoint": "tcp:0:interface=127.0.0.1", "static_token": "r-in"},
        )
        port = receiver.port.getHost().port
        sender = yield self.plugin(
            handler=None,
            outgoing=dict(
                outgoing, url=f"{url_scheme}://127.0.0.1:{port}/ilp?x=1", static_token="r-in"
            ),
        )
        return sender, receiver


class Http2LinkTests(_Case):
    @defer.inlineCallbacks
    def test_h2c_between_two_ilphttp_plugins(self) -> Any:
        sender, receiver = yield self.pair(http2=True)
        prepares = [data_prepare("test.r.x", payload=b"%d" % i) for i in range(50)]
        replies = yield defer.gatherResults([sender.send_data(raw) for _, raw, _ in prepares])
        for (prepare, _, fulfillment), reply in zip(prepares, replies):
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data[32:]))
        # All of them multiplexed over one HTTP/2 session: one TCP connection.
        self.assertEqual(receiver._tracker.connections_total, 1)

    @defer.inlineCallbacks
    def test_max_requests_per_session_recycles_sessions(self) -> Any:
        sender, receiver = yield self.pair(http2=True, http2_max_requests_per_session=5)
        for _ in range(12):
            _, raw, fulfillment = data_prepare("test.r.x")
            reply = yield sender.send_data(raw)
            self.assertEqual(deserialize(reply).fulfillment, fulfillment)  # type: ignore[union-attr]
        self.assertEqual(receiver._tracker.connections_total, 3)

    @defer.inlineCallbacks
    def test_h2c_peer_down_is_t01(self) -> Any:
        sender = yield self.plugin(
            handler=None,
            outgoing={
                "url": f"http://127.0.0.1:{free_port()}/",
                "static_token": "x",
                "http2": True,
            },
        )
        reject = deserialize((yield sender.send_data(data_prepare("test.r.x")[1])))
        assert isinstance(reject, Reject)
        self.assertEqual(reject.code, ErrorCode.T01_PEER_UNREACHABLE)

    @defer.inlineCallbacks
    def test_h2c_hanging_handler_is_r00(self) -> Any:
        receiver = yield self.plugin(
            handler=lambda data: defer.Deferred(),
            incoming={"endpoint": "tcp:0:interface=127.0.0.1", "static_token": "r-in"},
        )
        sender = yield self.plugin(
            handler=None,
            outgoing={
                "url": f"http://127.0.0.1:{receiver.port.getHost().port}/",
                "static_token": "r-in",
                "http2": True,
            },
        )
        reject = deserialize((yield sender.send_data(data_prepare("test.r.x", seconds=1)[1])))
        assert isinstance(reject, Reject)
        self.assertEqual(reject.code, ErrorCode.R00_TRANSFER_TIMED_OUT)


class JsHttp2Tests(_Case):
    def setUp(self) -> None:
        require_node()

    @defer.inlineCallbacks
    def test_js_plugin_http2_client_to_ilphttp_h2c(self) -> Any:
        """The JS plugin's `http2: true` speaks h2c with prior knowledge to a
        plain tcp: listener of ours."""
        py_port, js_port = free_port(), free_port()
        yield self.plugin(incoming={"port": py_port, "static_token": "py-in"})
        options = plugin_options(js_port, py_port, "js-in", "py-in")
        options["outgoing"]["http2"] = True
        options["outgoing"]["http2MaxRequestsPerSession"] = 3
        js = yield start_peer(self, options)
        for _ in range(7):
            _, raw, fulfillment = data_prepare("test.py.x", payload=b"over h2")
            reply = yield js.send(raw)
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"over h2"))

    @defer.inlineCallbacks
    def test_from_options_http2_to_js_h2c_server(self) -> Any:
        """ilphttp's outgoing.http2 against node's own http2 server."""
        server = NodeH2Server()
        port = yield server.start()
        self.addCleanup(server.stop)
        sender = PluginHttp.from_options(
            {
                "outgoing": {
                    "url": f"http://127.0.0.1:{port}/echo",
                    "staticToken": "t",
                    "http2": True,
                }
            }
        )
        yield sender.connect()
        self.addCleanup(sender.disconnect)
        # node's echo server returns the body: a Prepare is not a valid reply.
        reject = deserialize((yield sender.send_data(data_prepare("test.x.y")[1])))
        assert isinstance(reject, Reject)
        self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)


class TlsLinkTests(_Case):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.ca = CertificateAuthority("server CA")
        self.ca_path = self.ca.write_cert(self.dir, "server-ca")
        self.client_ca = CertificateAuthority("client CA")
        self.client_ca_path = self.client_ca.write_cert(self.dir, "client-ca")
        server = self.ca.issue("server", dns_names=["peer.test"], ip_addresses=["127.0.0.1"])
        self.server_paths = server.write(self.dir, "server")

    def endpoint(self, client_ca: bool) -> str:
        description = (
            f"ssl:0:interface=127.0.0.1:privateKey={_esc(self.server_paths.key)}"
            f":certKey={_esc(self.server_paths.cert)}"
        )
        if client_ca:
            description += f":caCerts={_esc(self.client_ca_path)}"
        return description

    def client(self, name: str) -> Any:
        issued = self.client_ca.issue(
            name, dns_names=[f"{name}.peer.test"], client=True, server=False
        )
        return issued.write(self.dir, f"client-{name}")

    @defer.inlineCallbacks
    def _send(self, receiver: PluginHttp, **outgoing: Any) -> Any:
        port = receiver.port.getHost().port  # type: ignore[union-attr]
        sender = yield self.plugin(
            handler=None,
            outgoing=dict(
                {"url": f"https://127.0.0.1:{port}/", "static_token": "r-in"}, **outgoing
            ),
        )
        _, raw, fulfillment = data_prepare("test.r.x")
        reply = deserialize((yield sender.send_data(raw)))
        return reply, fulfillment

    @defer.inlineCallbacks
    def test_verified_https_http11_and_h2(self) -> Any:
        receiver = yield self.plugin(
            incoming={"endpoint": self.endpoint(False), "static_token": "r-in"}
        )
        for http2 in (False, True):
            reply, fulfillment = yield self._send(receiver, ca_file=self.ca_path, http2=http2)
            self.assertEqual(reply, Fulfill(fulfillment, b"hello"))

    @defer.inlineCallbacks
    def test_untrusted_server_is_t01(self) -> Any:
        receiver = yield self.plugin(
            incoming={"endpoint": self.endpoint(False), "static_token": "r-in"}
        )
        other_ca = CertificateAuthority("someone else").write_cert(self.dir, "other")
        reply, _ = yield self._send(receiver, ca_file=other_ca)
        assert isinstance(reply, Reject)
        self.assertEqual(reply.code, ErrorCode.T01_PEER_UNREACHABLE)

    @defer.inlineCallbacks
    def test_mutual_tls_with_identity_binding(self) -> Any:
        receiver = yield self.plugin(
            incoming={
                "endpoint": self.endpoint(True),
                "static_token": "r-in",
                "client_identity": "alice.peer.test",
            }
        )
        alice = self.client("alice")
        reply, fulfillment = yield self._send(
            receiver, ca_file=self.ca_path, client_cert_file=alice.cert, client_key_file=alice.key
        )
        self.assertEqual(reply, Fulfill(fulfillment, b"hello"))
        # A certificate from the right CA but for another identity: 403 -> T00.
        bob = self.client("bob")
        reply, _ = yield self._send(
            receiver, ca_file=self.ca_path, client_cert_file=bob.cert, client_key_file=bob.key
        )
        assert isinstance(reply, Reject)
        self.assertEqual(reply.code, ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("403", reply.message)
        # No client certificate at all: the handshake fails -> T01.
        reply, _ = yield self._send(receiver, ca_file=self.ca_path)
        assert isinstance(reply, Reject)
        self.assertEqual(reply.code, ErrorCode.T01_PEER_UNREACHABLE)

    def test_missing_ca_file_is_an_option_error(self) -> None:
        exc = self.assertRaises(
            OptionError,
            PluginHttp,
            outgoing={"url": "https://x.test/", "static_token": "t", "ca_file": "/nonexistent"},
        )
        self.assertIn("ca_file", str(exc))


class LargestPrepareOverH2Tests(_Case):
    @defer.inlineCallbacks
    def test_largest_prepare_crosses_flow_control(self) -> Any:
        sender, _ = yield self.pair(http2=True)
        raw, fulfillment = largest_data_prepare()
        for _ in range(3):
            reply = yield sender.send_data(raw)
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"x" * (32767 - 32)))
