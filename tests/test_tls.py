"""
Tests for ilphttp.tls and ilphttp.tls_identity: host name verification, mutual TLS, peer identity,
endpoint strings. Certificates are made at run time (tests/certs.py).
Loopback only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from ilphttp import tls, tls_identity
from ilphttp.http2 import HTTP2Agent
from tests.support.certs import CertificateAuthority


class _Identity(Resource):
    """Answers with the verified client certificate's identity (or null)."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        identity = tls_identity.peer_identity(request)
        info: dict[str, Any] = {"proto": request.clientproto.decode()}
        if identity is None:
            info["identity"] = None
        else:
            info["identity"] = {
                "cn": identity.common_name,
                "dns": list(identity.dns_names),
                "uris": list(identity.uris),
                "ips": list(identity.ip_addresses),
                "fingerprint": identity.fingerprint_sha256,
                "names": list(identity.names()),
            }
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(info).encode()


def _failure_reasons(value: BaseException) -> list[BaseException]:
    """The exceptions inside a ResponseNeverReceived (or the exception itself)."""
    if isinstance(value, ResponseNeverReceived):
        return [r.value for r in value.reasons]
    return [value]


class _TLSBase(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.ca = CertificateAuthority("server CA")
        self.ca_path = self.ca.write_cert(self.dir, "server-ca")
        self.client_ca = CertificateAuthority("client CA")
        self.client_ca_path = self.client_ca.write_cert(self.dir, "client-ca")

    @defer.inlineCallbacks
    def serve(self, server_names: Any = None, **options: Any) -> Any:
        names = server_names or {"dns_names": ["peer.test"], "ip_addresses": ["127.0.0.1"]}
        paths = self.ca.issue("server", **names).write(self.dir, "server")
        endpoint = tls.server_endpoint(
            reactor, 0, paths.cert, paths.key, interface="127.0.0.1", **options
        )
        port = yield endpoint.listen(Site(_Identity()))
        self.addCleanup(port.stopListening)
        return f"https://127.0.0.1:{port.getHost().port}"

    def client_cert(self, ca: CertificateAuthority | None = None, name: str = "alice") -> Any:
        issued = (ca or self.client_ca).issue(
            name, dns_names=[f"{name}.peer.test"], uris=[f"ilp://{name}"], client=True, server=False
        )
        return issued, issued.write(self.dir, f"client-{name}")

    def h2_agent(self, policy: tls_identity.ClientTLSPolicy) -> HTTP2Agent:
        agent = HTTP2Agent(reactor, tls_policy=policy)
        self.addCleanup(agent.close)
        return agent

    def h1_agent(self, policy: tls_identity.ClientTLSPolicy) -> Agent:
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        return Agent(reactor, contextFactory=policy, pool=pool)

    @defer.inlineCallbacks
    def get_json(self, agent: Any, url: str) -> Any:
        response = yield agent.request(b"GET", url.encode(), Headers())
        body = yield readBody(response)
        return response, json.loads(body)


class HostnameVerificationTests(_TLSBase):
    @defer.inlineCallbacks
    def test_ip_address_matches(self) -> Any:
        url = yield self.serve()
        policy = tls_identity.ClientTLSPolicy(self.ca_path)
        response, info = yield self.get_json(self.h2_agent(policy), url)
        self.assertEqual(response.version, (b"HTTP", 2, 0))
        self.assertIsNone(info["identity"])
        response, info = yield self.get_json(self.h1_agent(policy), url)
        self.assertEqual(info["proto"], "HTTP/1.1")

    @defer.inlineCallbacks
    def test_hostname_mismatch_rejected(self) -> Any:
        """A valid certificate for another name is refused (h2 and HTTP/1.1 agents)."""
        url = yield self.serve({"dns_names": ["other.test"]})
        policy = tls_identity.ClientTLSPolicy(self.ca_path)
        for agent in (self.h2_agent(policy), self.h1_agent(policy)):
            d = agent.request(b"GET", url.encode(), Headers())
            failure = yield self.assertFailure(d, ResponseNeverReceived)
            reasons = _failure_reasons(failure)
            self.assertTrue(
                any(isinstance(r, (VerificationError, SSL.Error)) for r in reasons), reasons
            )

    @defer.inlineCallbacks
    def test_dns_name_mismatch_with_pinned_address(self) -> Any:
        """https://wrong.test pinned to 127.0.0.1 fails; https://peer.test succeeds."""
        url = yield self.serve({"dns_names": ["peer.test"]})
        port = int(url.rsplit(":", 1)[1])

        def pin(host: str, port: int) -> Any:
            return TCP4ClientEndpoint(reactor, "127.0.0.1", port)

        agent = HTTP2Agent(
            reactor, tls_policy=tls_identity.ClientTLSPolicy(self.ca_path), tcp_endpoint_factory=pin
        )
        self.addCleanup(agent.close)
        d = agent.request(b"GET", f"https://wrong.test:{port}/".encode())
        failure = yield self.assertFailure(d, ResponseNeverReceived)
        self.assertTrue(
            any(isinstance(r, (VerificationError, SSL.Error)) for r in _failure_reasons(failure))
        )
        response = yield agent.request(b"GET", f"https://peer.test:{port}/".encode())
        self.assertEqual(response.code, 200)

    @defer.inlineCallbacks
    def test_untrusted_ca_rejected(self) -> Any:
        url = yield self.serve()
        other = CertificateAuthority("someone else")
        policy = tls_identity.ClientTLSPolicy(other.write_cert(self.dir, "other-ca"))
        d = self.h2_agent(policy).request(b"GET", url.encode())
        failure = yield self.assertFailure(d, ResponseNeverReceived)
        self.assertTrue(any(isinstance(r, SSL.Error) for r in _failure_reasons(failure)))


class MutualTLSTests(_TLSBase):
    @defer.inlineCallbacks
    def test_client_certificate_identity_h2_and_http11(self) -> Any:
        url = yield self.serve(client_ca=self.client_ca_path)
        issued, paths = self.client_cert()
        policy = tls_identity.ClientTLSPolicy(
            self.ca_path, client_cert=paths.cert, client_key=paths.key
        )
        for agent, proto in (
            (self.h2_agent(policy), "HTTP/2"),
            (self.h1_agent(policy), "HTTP/1.1"),
        ):
            _, info = yield self.get_json(agent, url + "/who")
            self.assertEqual(info["proto"], proto)
            identity = info["identity"]
            self.assertEqual(identity["cn"], "alice")
            self.assertEqual(identity["dns"], ["alice.peer.test"])
            self.assertEqual(identity["uris"], ["ilp://alice"])
            self.assertEqual(identity["names"], ["alice.peer.test"])
            from cryptography.hazmat.primitives import hashes

            self.assertEqual(
                identity["fingerprint"], issued.cert.fingerprint(hashes.SHA256()).hex()
            )

    @defer.inlineCallbacks
    def test_no_client_certificate_rejected(self) -> Any:
        url = yield self.serve(client_ca=self.client_ca_path)
        policy = tls_identity.ClientTLSPolicy(self.ca_path)
        for agent in (self.h2_agent(policy), self.h1_agent(policy)):
            d = agent.request(b"GET", url.encode(), Headers())
            yield self.assertFailure(d, ResponseNeverReceived)

    @defer.inlineCallbacks
    def test_certificate_from_other_ca_rejected(self) -> Any:
        url = yield self.serve(client_ca=self.client_ca_path)
        _, paths = self.client_cert(ca=CertificateAuthority("rogue CA"), name="mallory")
        policy = tls_identity.ClientTLSPolicy(
            self.ca_path, client_cert=paths.cert, client_key=paths.key
        )
        d = self.h2_agent(policy).request(b"GET", url.encode())
        yield self.assertFailure(d, ResponseNeverReceived)

    @defer.inlineCallbacks
    def test_optional_client_certificate(self) -> Any:
        url = yield self.serve(client_ca=self.client_ca_path, require_client_cert=False)
        _, info = yield self.get_json(
            self.h2_agent(tls_identity.ClientTLSPolicy(self.ca_path)), url
        )
        self.assertIsNone(info["identity"])
        _, paths = self.client_cert(name="bob")
        policy = tls_identity.ClientTLSPolicy(
            self.ca_path, client_cert=paths.cert, client_key=paths.key
        )
        _, info = yield self.get_json(self.h2_agent(policy), url)
        self.assertEqual(info["identity"]["cn"], "bob")

    @defer.inlineCallbacks
    def test_server_without_client_ca_sees_no_identity(self) -> Any:
        url = yield self.serve()
        _, paths = self.client_cert()
        policy = tls_identity.ClientTLSPolicy(
            self.ca_path, client_cert=paths.cert, client_key=paths.key
        )
        _, info = yield self.get_json(self.h2_agent(policy), url)
        self.assertIsNone(info["identity"])

    @defer.inlineCallbacks
    def test_plain_tcp_has_no_identity(self) -> Any:
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(_Identity()))
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, pool=pool)
        _, info = yield self.get_json(agent, f"http://127.0.0.1:{port.getHost().port}/")
        self.assertIsNone(info["identity"])


class EndpointStringTests(_TLSBase):
    @defer.inlineCallbacks
    def test_ssl_string_with_mutual_tls(self) -> Any:
        server = self.ca.issue("server", ip_addresses=["127.0.0.1"]).write(self.dir, "srv")

        def esc(path: str) -> str:
            return path.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")

        description = (
            f"ssl:0:interface=127.0.0.1:privateKey={esc(server.key)}:certKey={esc(server.cert)}"
            f":caCerts={esc(self.client_ca_path)}:requireClientCert=yes"
        )
        endpoint = tls.server_endpoint_from_string(reactor, description)
        port = yield endpoint.listen(Site(_Identity()))
        self.addCleanup(port.stopListening)
        url = f"https://127.0.0.1:{port.getHost().port}/"
        _, paths = self.client_cert(name="carol")
        policy = tls_identity.ClientTLSPolicy(
            self.ca_path, client_cert=paths.cert, client_key=paths.key
        )
        response, info = yield self.get_json(self.h2_agent(policy), url)
        self.assertEqual(response.version, (b"HTTP", 2, 0))  # the Site's own ALPN
        self.assertEqual(info["identity"]["cn"], "carol")
        d = self.h2_agent(tls_identity.ClientTLSPolicy(self.ca_path)).request(b"GET", url.encode())
        yield self.assertFailure(d, ResponseNeverReceived)

    def test_other_types_delegate(self) -> None:
        endpoint = tls.server_endpoint_from_string(reactor, "tcp:0:interface=127.0.0.1")
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)

    def test_bad_options(self) -> None:
        server = self.ca.issue("server").write(self.dir, "srv")
        base = f"ssl:0:privateKey={server.key}:certKey={server.cert}"
        self.assertRaises(ValueError, tls.server_endpoint_from_string, reactor, base + ":nope=1")
        self.assertRaises(
            ValueError, tls.server_endpoint_from_string, reactor, base + ":requireClientCert=maybe"
        )
        self.assertRaises(
            ValueError, tls.server_endpoint_from_string, reactor, base + ":sslmethod=TLS_METHOD"
        )
        self.assertRaises(ValueError, tls.server_endpoint_from_string, reactor, "ssl:privateKey=x")


class PureTests(SynchronousTestCase):
    def test_split_endpoint(self) -> None:
        args, kwargs = tls.split_endpoint(r"ssl:8443:privateKey=C\:\\k.pem:a\=b=c\:d:alpn=h2")
        self.assertEqual(args, ["ssl", "8443"])
        self.assertEqual(kwargs, {"privateKey": "C:\\k.pem", "a=b": "c:d", "alpn": "h2"})

    def test_identity_names_fall_back_to_cn(self) -> None:
        ca = CertificateAuthority()
        bare = ca.issue("just-a-cn")
        identity = tls_identity.identity_from_certificate(bare.cert)
        self.assertEqual(identity.names(), ("just-a-cn",))
        self.assertEqual((identity.dns_names, identity.uris, identity.ip_addresses), ((), (), ()))
        full = tls_identity.identity_from_certificate(
            ca.issue("x", dns_names=["a.test", "b.test"], ip_addresses=["127.0.0.1"]).cert
        )
        self.assertEqual(full.names(), ("a.test", "b.test"))
        self.assertEqual(full.ip_addresses, ("127.0.0.1",))

    def test_load_certificates(self) -> None:
        directory = self.mktemp()
        a, b = CertificateAuthority("a"), CertificateAuthority("b")
        path = a.write_cert(directory, "bundle")
        with open(path, "ab") as f:
            f.write(b.cert_pem)
        certs = tls_identity.load_certificates(path)
        self.assertEqual([c.getSubject().commonName for c in certs], [b"a", b"b"])
        empty = directory + "/empty.pem"
        with open(empty, "wb") as f:
            f.write(b"nothing here")
        self.assertRaises(ValueError, tls_identity.load_certificates, empty)

    def test_with_alpn_copies(self) -> None:
        directory = self.mktemp()
        ca = CertificateAuthority()
        policy = tls_identity.ClientTLSPolicy(ca.write_cert(directory))
        h2 = policy.with_alpn(tls_identity.DEFAULT_ALPN)
        self.assertIsNone(policy.alpn)
        self.assertEqual(h2.alpn, (b"h2", b"http/1.1"))
        self.assertIsNotNone(h2.creatorForNetloc(b"127.0.0.1", 443))


class _ReportPeer(Protocol):
    """Server side of a raw TLS connection: answers any bytes with its peer's identity."""

    def dataReceived(self, data: bytes) -> None:
        identity = tls_identity.peer_identity(self.transport)
        answer = {
            "alpn": (self.transport.negotiatedProtocol or b"").decode(),  # type: ignore[union-attr]
            "cn": None if identity is None else identity.common_name,
        }
        self.transport.write(json.dumps(answer).encode())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class _Ask(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"?")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)


def _ffdhe2048_pem() -> bytes:
    """The RFC 7919 ffdhe2048 group as PKCS#3 PEM, computed from its definition
    (p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1, g = 2)."""
    bits = 1918 + 64
    e_fixed, term, k = 0, 1 << bits, 0  # e * 2^bits as the sum of 2^bits / k!
    while term:
        e_fixed += term
        k += 1
        term //= k
    p = 2**2048 - 2**1984 + ((e_fixed >> 64) + 560316) * 2**64 - 1

    def der(tag: int, body: bytes) -> bytes:
        n = len(body)
        length = bytes([n]) if n < 128 else bytes([0x80 | 2]) + n.to_bytes(2, "big")
        return bytes([tag]) + length + body

    def integer(value: int) -> bytes:
        return der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))

    body = base64.encodebytes(der(0x30, integer(p) + integer(2)))
    return b"-----BEGIN DH PARAMETERS-----\n" + body + b"-----END DH PARAMETERS-----\n"


class RawTLSTests(_TLSBase):
    """The helpers below HTTP: connection creators, options, endpoint strings."""

    @defer.inlineCallbacks
    def ask(self, port: int, creator: Any, host: str = "127.0.0.1") -> Any:
        client = _Ask()
        yield connectProtocol(SSL4ClientEndpoint(reactor, host, port, creator), client)
        yield client.lost
        return json.loads(client.received) if client.received else None

    @defer.inlineCallbacks
    def listen(self, endpoint: Any, factory: Any = None) -> Any:
        port = yield endpoint.listen(factory or Factory.forProtocol(_ReportPeer))
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def test_client_tls_options_with_certificate_and_alpn(self) -> Any:
        """client_tls_options presents the client certificate and offers ALPN."""
        server = self.ca.issue("server", ip_addresses=["127.0.0.1"]).write(self.dir, "srv")
        endpoint = tls.server_endpoint(
            reactor,
            0,
            server.cert,
            server.key,
            interface="127.0.0.1",
            client_ca=self.client_ca_path,
            alpn=[b"x-ilp"],
        )
        port = yield self.listen(endpoint)
        _, paths = self.client_cert(name="dave")
        creator = tls_identity.client_tls_options(
            "127.0.0.1",
            self.ca_path,
            client_cert=paths.cert,
            client_key=paths.key,
            alpn=[b"x-ilp", b"h2"],
        )
        answer = yield self.ask(port, creator)
        self.assertEqual(answer, {"alpn": "x-ilp", "cn": "dave"})
        # without a client certificate the server refuses the handshake
        answer = yield self.ask(port, tls_identity.client_tls_options("127.0.0.1", self.ca_path))
        self.assertIsNone(answer)

    @defer.inlineCallbacks
    def test_endpoint_string_alpn_and_optional_client_certificate(self) -> Any:
        """``alpn=`` adds protocols for a factory without its own; ``requireClientCert=no``."""
        server = self.ca.issue("server", ip_addresses=["127.0.0.1"]).write(self.dir, "srv")
        description = (
            f"ssl:port=0:interface=127.0.0.1:privateKey={server.key}:certKey={server.cert}"
            f":caCerts={self.client_ca_path}:requireClientCert=no:alpn= x-ilp , h2 "
        )
        port = yield self.listen(tls.server_endpoint_from_string(reactor, description))
        anonymous = tls_identity.client_tls_options("127.0.0.1", self.ca_path, alpn=[b"h2"])
        answer = yield self.ask(port, anonymous)
        self.assertEqual(answer, {"alpn": "h2", "cn": None})
        _, paths = self.client_cert(name="erin")
        known = tls_identity.client_tls_options(
            "127.0.0.1", self.ca_path, client_cert=paths.cert, client_key=paths.key
        )
        answer = yield self.ask(port, known)
        self.assertEqual(answer, {"alpn": "", "cn": "erin"})

    @defer.inlineCallbacks
    def test_chain_is_sent_to_the_client(self) -> Any:
        server = self.ca.issue("server", ip_addresses=["127.0.0.1"]).write(self.dir, "srv")
        extra = CertificateAuthority("intermediate stand-in").write_cert(self.dir, "extra")
        endpoint = tls.server_endpoint(
            reactor, 0, server.cert, server.key, interface="127.0.0.1", chain=extra
        )
        port = yield self.listen(endpoint)
        client = _Ask()
        creator = tls_identity.client_tls_options("127.0.0.1", self.ca_path)
        yield connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", port, creator), client)
        yield client.lost
        chain = client.transport.getHandle().get_peer_cert_chain()  # type: ignore[union-attr]
        names = [c.get_subject().CN for c in chain]
        self.assertEqual(names, ["server", "intermediate stand-in"])

    @defer.inlineCallbacks
    def test_dh_parameters_from_any_path_type(self) -> Any:
        server = self.ca.issue("server", ip_addresses=["127.0.0.1"]).write(self.dir, "srv")
        pem = _ffdhe2048_pem()
        dh_path = FilePath(self.dir).child("dh.pem")
        dh_path.setContent(pem)
        for path in (dh_path.path, dh_path.path.encode(), dh_path):
            endpoint = tls.server_endpoint(
                reactor, 0, server.cert, server.key, interface="127.0.0.1", dh_parameters=path
            )
            port = yield self.listen(endpoint)
            answer = yield self.ask(
                port, tls_identity.client_tls_options("127.0.0.1", self.ca_path)
            )
            self.assertEqual(answer, {"alpn": "", "cn": None}, path)

    @defer.inlineCallbacks
    def test_bracketed_ipv6_netloc(self) -> Any:
        """``https://[::1]:port`` is checked against the certificate's IP address ::1."""
        server = self.ca.issue("server", ip_addresses=["::1"]).write(self.dir, "srv6")
        try:
            endpoint = tls.server_endpoint(reactor, 0, server.cert, server.key, interface="::1")
            port = yield self.listen(endpoint)
        except CannotListenError:
            raise SkipTest("no IPv6 loopback here") from None
        policy = tls_identity.ClientTLSPolicy(self.ca_path)
        answer = yield self.ask(port, policy.creatorForNetloc(b"[::1]", port), host="::1")
        self.assertEqual(answer, {"alpn": "", "cn": None})


class IdentityVariantsTests(_TLSBase):
    """peer_identity over HTTP/1.1 and HTTP/2 for certificates of every shape."""

    @defer.inlineCallbacks
    def test_ip_and_cn_only_certificates(self) -> Any:
        url = yield self.serve(client_ca=self.client_ca_path)
        cases = [
            ("by-ip", {"ip_addresses": ["10.0.0.7", "::1"]}, [], ["10.0.0.7", "::1"], ["by-ip"]),
            ("cn-only", {}, [], [], ["cn-only"]),
        ]
        for name, sans, dns, ips, names in cases:
            issued = self.client_ca.issue(name, client=True, server=False, **sans)
            paths = issued.write(self.dir, name)
            policy = tls_identity.ClientTLSPolicy(
                self.ca_path, client_cert=paths.cert, client_key=paths.key
            )
            for agent in (self.h2_agent(policy), self.h1_agent(policy)):
                _, info = yield self.get_json(agent, url)
                identity = info["identity"]
                self.assertEqual(identity["cn"], name)
                self.assertEqual((identity["dns"], identity["ips"]), (dns, ips))
                self.assertEqual(identity["names"], names, info["proto"])


class PolicyErrorTests(SynchronousTestCase):
    """Bad files fail when the policy or options are made, not at the first connection."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.ca = CertificateAuthority()
        self.ca_path = self.ca.write_cert(self.dir)
        self.leaf = self.ca.issue("me", client=True).write(self.dir, "me")
        self.garbage = FilePath(self.dir).child("garbage.pem")
        self.garbage.setContent(b"-----BEGIN CERTIFICATE-----\nnot base64\n")

    def test_table(self) -> None:
        cases: list[tuple[str, Any]] = [
            (
                "CA bundle without a certificate",
                lambda: tls_identity.ClientTLSPolicy(self.garbage.path),
            ),
            ("missing CA bundle", lambda: tls_identity.ClientTLSPolicy(self.dir + "/nope.pem")),
            (
                "client certificate without its key",
                lambda: tls_identity.ClientTLSPolicy(self.ca_path, client_cert=self.leaf.cert),
            ),
            (
                "key file holding no certificate",
                lambda: tls_identity.ClientTLSPolicy(
                    client_cert=self.leaf.key, client_key=self.leaf.key
                ),
            ),
            (
                "server chain without a certificate",
                lambda: tls.server_tls_options(
                    self.leaf.cert, self.leaf.key, chain=self.garbage.path
                ),
            ),
            (
                "client CA without a certificate",
                lambda: tls.server_tls_options(
                    self.leaf.cert, self.leaf.key, client_ca=self.garbage
                ),
            ),
            (
                "two ports",
                lambda: tls.server_endpoint_from_string(
                    reactor, f"ssl:0:1:privateKey={self.leaf.key}:certKey={self.leaf.cert}"
                ),
            ),
        ]
        for what, make in cases:
            with self.assertRaises(Exception, msg=what) as raised:
                make()
            self.assertFalse(isinstance(raised.exception, (AttributeError, TypeError)), what)

    def test_paths_as_str_bytes_or_filepath(self) -> None:
        for path in (self.ca_path, self.ca_path.encode(), FilePath(self.ca_path)):
            [cert] = tls_identity.load_certificates(path)
            self.assertEqual(cert.getSubject().commonName, b"ilphttp test CA")
