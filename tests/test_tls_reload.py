"""TLS files rewritten under the same name and a reload (issue 14): a listener's new
connections get the new certificate, open ones keep working, a file that cannot be used
refuses the reload, and new outgoing connections use the rewritten CA file."""

from __future__ import annotations

import http.client
import json
import os
import ssl
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.internet import defer, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp.errors import ConfigError
from ilphttp.node import NodeService, make_node
from ilphttp.nodediff import diff_nodes
from ilphttp.packet import Fulfill, deserialize
from ilphttp.reload import ConfigFile
from ilphttp.tls import server_endpoint
from tests.support.certs import CertificateAuthority, CertPaths, IssuedCertificate
from tests.support.clients import http_agent, request
from tests.support.fakes import CaptureServer, LogCapture
from tests.support.reactor import global_reactor, within
from tests.support.reload import TOKENS, Holding, account, node_data, prepare
from tests.support.twistd import start_twistd


def _esc(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:")


def rewrite(paths: CertPaths, issued: IssuedCertificate) -> None:
    """``issued`` written over ``paths``, in place (the same names)."""
    for path, data in ((paths.cert, issued.cert_pem), (paths.key, issued.key_pem)):
        with open(path, "wb") as f:
            f.write(data)


class _Connection:
    """One kept-alive HTTPS/1.1 connection from a thread (stdlib), trusting any certificate."""

    def __init__(self, port: int) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self._http = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=context)

    def post(self, body: bytes, token: str) -> defer.Deferred[tuple[int, bytes, bytes]]:
        """Status, body, and the DER certificate the server presented on this connection."""

        def run() -> tuple[int, bytes, bytes]:
            self._http.request(
                "POST", "/", body, {"Authorization": "Bearer " + token, "Connection": "keep-alive"}
            )
            response = self._http.getresponse()
            data = response.read()
            sock: Any = self._http.sock
            return response.status, data, sock.getpeercert(binary_form=True)

        return threads.deferToThread(run)

    def close(self) -> None:
        self._http.close()


class ListenerRotationTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.ca = CertificateAuthority()
        self.first = self.ca.issue("first", ip_addresses=["127.0.0.1"])
        self.paths = self.first.write(self.directory, "server")
        self.path = os.path.join(self.directory, "node.json")
        self.logs = LogCapture(self)

    def write(self) -> None:
        endpoint = (
            f"ssl:0:interface=127.0.0.1:privateKey={_esc(self.paths.key)}"
            f":certKey={_esc(self.paths.cert)}"
        )
        data = node_data({"alice": account("peer", endpoint=endpoint, token=TOKENS["a1"])})
        with open(self.path, "w") as f:
            json.dump(data, f)

    def start(self) -> NodeService:
        self.write()
        config_file = ConfigFile(self.path, {})
        service = make_node(config_file.read())
        service.config_file = config_file
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def connect(self, service: NodeService) -> _Connection:
        port = service.plugins["alice"].port
        assert port is not None
        connection = _Connection(port.getHost().port)
        self.addCleanup(connection.close)
        return connection

    @defer.inlineCallbacks
    def check(self, connection: _Connection, issued: IssuedCertificate) -> Any:
        status, body, der = yield connection.post(prepare("test.nowhere.x").packet, TOKENS["a1"])
        self.assertEqual(status, 200, body)
        self.assertEqual(der, issued.cert.public_bytes(Encoding.DER))

    @defer.inlineCallbacks
    def test_new_connections_get_the_new_certificate(self) -> Any:
        service = self.start()
        kept = self.connect(service)
        yield self.check(kept, self.first)
        second = self.ca.issue("second", ip_addresses=["127.0.0.1"])
        rewrite(self.paths, second)
        summary = yield service.reload()
        self.assertEqual(str(summary), "changed alice")
        yield self.check(kept, self.first)  # the open connection goes on, as it began
        yield self.check(self.connect(service), second)

        # a file that cannot be used refuses the reload; the listener keeps its certificate
        with open(self.paths.cert, "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        yield self.assertFailure(service.reload(), ConfigError)
        third = self.ca.issue("third", ip_addresses=["127.0.0.1"])
        with open(self.paths.cert, "wb") as f:
            f.write(third.cert_pem)  # not the key's certificate
        failure = yield self.assertFailure(service.reload(), ConfigError)
        self.assertIn("account alice: the TLS files of its listener cannot be used", str(failure))
        refusals = [e for e in self.logs.events if "reload refused" in str(e.get("log_format"))]
        self.assertEqual(len(refusals), 2)
        yield self.check(self.connect(service), second)
        yield self.check(kept, self.first)


class OutgoingRotationTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_rewritten_ca_file_reaches_new_connections(self) -> Any:
        directory = os.path.abspath(self.mktemp())
        right, wrong = CertificateAuthority("right CA"), CertificateAuthority("wrong CA")
        paths = right.issue("peer", ip_addresses=["127.0.0.1"]).write(directory, "peer")
        ca_file = os.path.join(directory, "peers-ca.pem")
        with open(ca_file, "wb") as f:
            f.write(wrong.cert_pem)
        peer = CaptureServer(self)
        peer.resource.responder = Holding()
        peer.resource.responder.hold = False
        peer.port = yield server_endpoint(
            global_reactor(), 0, paths.cert, paths.key, interface="127.0.0.1"
        ).listen(peer.factory)
        self.addCleanup(peer.stop)
        bob = account(
            token=TOKENS["b1"],
            url=f"https://127.0.0.1:{peer.port.getHost().port}/",
            out_token=TOKENS["b2"],
        )
        bob["options"]["outgoing"]["caFile"] = ca_file
        config = os.path.join(directory, "node.json")
        with open(config, "w") as f:
            json.dump(node_data({"alice": account("peer", token=TOKENS["a1"]), "bob": bob}), f)
        config_file = ConfigFile(config, {})
        service = make_node(config_file.read())
        service.config_file = config_file
        service.startService()
        self.addCleanup(service.stopService)
        alice_port = service.plugins["alice"].port
        assert alice_port is not None
        url = f"http://127.0.0.1:{alice_port.getHost().port}/"
        agent = http_agent(self)
        auth = {b"authorization": b"Bearer " + TOKENS["a1"].encode()}

        @defer.inlineCallbacks
        def send() -> Any:
            result = yield within(request(agent, url, prepare("test.hub.bob.x").packet, auth), 20)
            return deserialize(result.body)

        self.assertNotIsInstance((yield send()), Fulfill)  # the peer's CA is not trusted
        with open(ca_file, "wb") as f:
            f.write(right.cert_pem)
        summary = yield service.reload()
        self.assertEqual(str(summary), "changed bob")
        self.assertIsInstance((yield send()), Fulfill)


class DigestTests(SynchronousTestCase):
    def test_each_file_an_account_names_is_noticed(self) -> None:
        directory = os.path.abspath(self.mktemp())
        ca = CertificateAuthority()
        server = ca.issue("server").write(directory, "server")
        client = ca.issue("client", client=True).write(directory, "client")
        ca_path = ca.write_cert(directory)
        alice = account(
            "peer",
            endpoint=(
                f"ssl:0:privateKey={_esc(server.key)}:certKey={_esc(server.cert)}"
                f":caCerts={_esc(ca_path)}"
            ),
            token=TOKENS["a1"],
            url="https://127.0.0.1:1/",
        )
        jwt_key = os.path.join(directory, "jwt.pub.pem")
        with open(jwt_key, "wb") as f:
            f.write(
                ca.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            )
        alice["options"]["incoming"]["jwtPublicKeyFile"] = jwt_key
        alice["options"]["outgoing"].update(
            caFile=ca_path, clientCertFile=client.cert, clientKeyFile=client.key
        )
        config = os.path.join(directory, "node.json")
        with open(config, "w") as f:
            json.dump(node_data({"alice": alice}), f)
        reading = ConfigFile(config, {})
        before = reading.read()
        [spec] = before.accounts
        self.assertEqual(
            [path for path, _ in spec.file_digests],
            [server.key, server.cert, ca_path, jwt_key, client.cert, client.key],
        )
        self.assertEqual(diff_nodes(before, reading.read()).summary(), "nothing changed")
        for path in (server.key, server.cert, ca_path, jwt_key, client.cert, client.key):
            with open(path, "ab") as f:
                f.write(b"\n")
            after = reading.read()
            self.assertEqual(diff_nodes(before, after).changed, ("alice",), path)
            before = after


class WorkersRotationTests(TestCase):
    """``--workers 2``: each worker swaps its adopted listener's certificate."""

    timeout = 180

    @defer.inlineCallbacks
    def test_each_worker_hands_out_the_new_certificate(self) -> Any:
        directory = os.path.abspath(self.mktemp())
        ca = CertificateAuthority()
        first = ca.issue("first", ip_addresses=["127.0.0.1"])
        paths = first.write(directory, "server")
        endpoint = (
            f"ssl:0:interface=127.0.0.1:privateKey={_esc(paths.key)}:certKey={_esc(paths.cert)}"
        )
        config = os.path.join(directory, "node.json")
        with open(config, "w") as f:
            data = node_data({"alice": account("peer", endpoint=endpoint, token=TOKENS["a1"])})
            json.dump(data, f)
        node = start_twistd(
            self,
            directory,
            "--config",
            config,
            "--workers",
            "2",
            "--handler",
            "tests.support.twistd:make_pid_handler",
        )
        yield node.wait_for(r"all 2 workers are ready")
        port = int((yield node.wait_for(r"account alice: \S+ on port (\d+)")).group(1))

        @defer.inlineCallbacks
        def certificates(count: int) -> Any:
            seen = set()
            for _ in range(count):
                connection = _Connection(port)
                try:
                    status, body, der = yield connection.post(
                        prepare("test.hub.x").packet, TOKENS["a1"]
                    )
                finally:
                    connection.close()
                self.assertEqual(status, 200, body)
                seen.add(der)
            return seen

        self.assertEqual((yield certificates(2)), {first.cert.public_bytes(Encoding.DER)})
        second = ca.issue("second", ip_addresses=["127.0.0.1"])
        rewrite(paths, second)
        node.transport.signalProcess("HUP")  # type: ignore[union-attr]
        yield node.wait_for(r"reloaded: changed alice; applied by workers 1, 2")
        self.assertEqual((yield certificates(6)), {second.cert.public_bytes(Encoding.DER)})
        with open(paths.cert, "wb") as f:
            f.write(b"not a certificate\n")
        node.transport.signalProcess("HUP")  # type: ignore[union-attr]
        yield node.wait_for(
            r"reload refused, the running configuration stays: account alice: the TLS files"
        )
        self.assertEqual((yield certificates(4)), {second.cert.public_bytes(Encoding.DER)})
        yield node.stop()
