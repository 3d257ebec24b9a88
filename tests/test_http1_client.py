"""ilphttp.http1_client and its response readers: pooling, keep-alive, framing,
limits, cancellation, and the Rejects OutgoingClient makes of its failures."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionDone,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ilphttp._http1_response import BadResponse, ReplyTooLarge, reader_class, reader_kinds
from ilphttp.auth import OutgoingAuth
from ilphttp.client import OutgoingClient
from ilphttp.http1_client import Http1Client
from ilphttp.packet import ErrorCode, Reject, deserialize
from ilphttp.tls import server_endpoint_from_string
from ilphttp.tls_identity import ClientTLSPolicy
from tests.support.certs import CertificateAuthority
from tests.support.fakes import LogCapture
from tests.support.http1 import FakeEndpoints, chunked, response
from tests.support.packets import make_prepare
from tests.support.reactor import global_reactor, within

URL = b"http://peer.test:8080/ilp?x=1"
HEADERS = [(b"Content-Type", b"application/octet-stream"), (b"Authorization", b"Bearer t")]
PARSERS = ["httptools", "h11"]


def _skip(parser: str) -> str | None:
    return None if parser in reader_kinds() else f"{parser} is not installed here"


class ReaderTests:
    """The sans-IO readers, fed whole and byte by byte."""

    parser = ""

    def read(self, data: bytes, max_body: int = 100, split: bool = False) -> Any:
        reader = reader_class(self.parser)(max_body)
        reader.start()
        pieces = [data[i : i + 1] for i in range(len(data))] if split else [data]
        result = None
        for piece in pieces:
            result = reader.feed(piece)
            if result is not None:
                break
        return result

    def test_content_length_and_chunked(self) -> None:
        for split in (False, True):
            for data in (response(b"hello"), chunked(b"hello world")):
                got = self.read(data, split=split)
                self.assertEqual(got.status, 200)  # type: ignore[attr-defined]
                self.assertIn(got.body, (b"hello", b"hello world"))  # type: ignore[attr-defined]
                self.assertTrue(got.keep_alive)  # type: ignore[attr-defined]

    def test_not_kept_alive(self) -> None:
        for data in (
            response(headers=b"Connection: close\r\n"),
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            response() + b"HTTP/1.1 200 OK\r\n",  # a second response nobody asked for
        ):
            got = self.read(data)
            self.assertEqual((got.status, got.body, got.keep_alive), (200, b"ok", False))  # type: ignore[attr-defined]

    def test_interim_response_is_skipped(self) -> None:
        got = self.read(b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"x"))
        self.assertEqual((got.status, got.body), (200, b"x"))  # type: ignore[attr-defined]

    def test_over_the_limit(self) -> None:
        for data in (response(b"x" * 101), chunked(b"x" * 101, size=50)):
            self.assertRaises(ReplyTooLarge, self.read, data)  # type: ignore[attr-defined]
        # Another status: only the status matters, the connection is not reused.
        got = self.read(response(b"x" * 101, status=b"500 Oops"))
        self.assertEqual((got.status, got.body, got.keep_alive), (500, b"", False))  # type: ignore[attr-defined]

    def test_garbage(self) -> None:
        for data in (b"hello\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n", b"\x16\x03\x01\x00"):
            self.assertRaises(BadResponse, self.read, data)  # type: ignore[attr-defined]

    def test_body_to_the_close(self) -> None:
        reader = reader_class(self.parser)(100)
        reader.start()
        self.assertIsNone(reader.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab"))
        self.assertEqual(reader.eof(), (200, b"ab", False))  # type: ignore[attr-defined]

    def test_cut_response(self) -> None:
        for data in (response(b"hello")[:-2], chunked(b"hello")[:-5], b"HTTP/1.1 200"):
            reader = reader_class(self.parser)(100)
            reader.start()
            self.assertIsNone(reader.feed(data))  # type: ignore[attr-defined]
            self.assertIsNone(reader.eof())  # type: ignore[attr-defined]

    def test_second_response_on_the_connection(self) -> None:
        reader = reader_class(self.parser)(100)
        for body in (b"one", b"two"):
            reader.start()
            self.assertEqual(reader.feed(response(body)), (200, body, True))  # type: ignore[attr-defined]


for _parser in PARSERS:
    _name = f"ReaderTests_{_parser}"
    globals()[_name] = type(
        _name, (ReaderTests, SynchronousTestCase), {"parser": _parser, "skip": _skip(_parser)}
    )


class ClientTests:
    """Http1Client on fake endpoints and a Clock."""

    parser = ""

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoints = FakeEndpoints()
        self.client = self.make()

    def make(self, **kwargs: Any) -> Http1Client:
        return Http1Client(
            self.clock, parser=self.parser, endpoints=self.endpoints, max_body=100, **kwargs
        )

    def post(self, body: bytes = b"prepare", client: Http1Client | None = None) -> Deferred[Any]:
        return (client or self.client).post(URL, HEADERS, body)

    def test_one_write_with_the_headers(self) -> None:
        d = self.client.post(URL, HEADERS, b"body", extra=(b"ILP-Destination", b"g.x"))
        attempt = self.endpoints.attempts[0].succeed()
        self.assertEqual(
            attempt.sent(),
            b"POST /ilp?x=1 HTTP/1.1\r\nHost: peer.test:8080\r\n"
            b"Content-Type: application/octet-stream\r\nAuthorization: Bearer t\r\n"
            b"ILP-Destination: g.x\r\nContent-Length: 4\r\n\r\nbody",
        )
        self.assertEqual(attempt.transport.writes, 1)
        attempt.respond(response(b"reply"))
        self.assertEqual(self.successResultOf(d), (200, b"reply"))  # type: ignore[attr-defined]

    def test_keep_alive_reuse(self) -> None:
        for i in range(3):
            d = self.post()
            if i == 0:
                self.endpoints.attempts[0].succeed()
            attempt = self.endpoints.attempts[0]
            attempt.sent()
            attempt.respond(chunked(b"answer %d" % i))
            self.assertEqual(self.successResultOf(d), (200, b"answer %d" % i))  # type: ignore[attr-defined]
        self.assertEqual(len(self.endpoints.attempts), 1)
        self.assertFalse(self.endpoints.attempts[0].transport.disconnecting)

    def test_connection_close_is_honoured(self) -> None:
        for headers in (b"Connection: close\r\n", b""):
            d = self.post()
            attempt = self.endpoints.attempts[-1]
            if attempt.protocol is None:
                attempt.succeed()
            attempt.respond(response(headers=headers))
            self.successResultOf(d)  # type: ignore[attr-defined]
            if headers:
                self.assertTrue(attempt.transport.disconnecting)
                attempt.close()
        self.assertEqual(len(self.endpoints.attempts), 2)

    def test_peer_closes_mid_response_and_before_it(self) -> None:
        for cut, kind in ((response(b"hello")[:-2], ResponseFailed), (b"", ResponseNeverReceived)):
            d = self.post()
            attempt = self.endpoints.attempts[-1].succeed()
            if cut:
                attempt.respond(cut)
            attempt.close()
            failure = self.failureResultOf(d, kind)  # type: ignore[attr-defined]
            self.assertTrue(failure.value.reasons[0].check(ConnectionDone))

    def test_garbage_response(self) -> None:
        d = self.post()
        attempt = self.endpoints.attempts[0].succeed()
        attempt.respond(b"SSH-2.0-OpenSSH\r\n\r\n")
        failure = self.failureResultOf(d, ResponseFailed)  # type: ignore[attr-defined]
        self.assertTrue(failure.value.reasons[0].check(BadResponse))
        self.assertTrue(attempt.transport.disconnected)

    def test_body_over_the_limit(self) -> None:
        d = self.post()
        attempt = self.endpoints.attempts[0].succeed()
        attempt.respond(response(b"x" * 101))
        self.failureResultOf(d, ReplyTooLarge)  # type: ignore[attr-defined]
        self.assertTrue(attempt.transport.disconnected)

    def test_stale_connection_is_never_retried(self) -> None:
        d = self.post()
        first = self.endpoints.attempts[0].succeed()
        first.respond(response())
        self.successResultOf(d)  # type: ignore[attr-defined]
        # The peer closes the pooled connection as our next request goes out.
        d = self.post()
        self.assertEqual(len(self.endpoints.attempts), 1)
        first.close()
        self.failureResultOf(d, ResponseNeverReceived)  # type: ignore[attr-defined]
        self.assertEqual(len(self.endpoints.attempts), 1, "the POST was retried")
        # The next packet opens a new connection, and it works.
        d = self.post()
        second = self.endpoints.attempts[1].succeed()
        second.respond(response(b"fresh"))
        self.assertEqual(self.successResultOf(d), (200, b"fresh"))  # type: ignore[attr-defined]

    def test_idle_connection_closed_by_peer(self) -> None:
        d = self.post()
        first = self.endpoints.attempts[0].succeed()
        first.respond(response())
        self.successResultOf(d)  # type: ignore[attr-defined]
        first.close()
        d = self.post()
        self.assertEqual(len(self.endpoints.attempts), 2)
        self.endpoints.attempts[1].succeed().respond(response())
        self.successResultOf(d)  # type: ignore[attr-defined]

    def test_idle_timeout(self) -> None:
        client = self.make(idle_timeout=4.0)
        d = self.post(client=client)
        attempt = self.endpoints.attempts[0].succeed()
        attempt.respond(response())
        self.successResultOf(d)  # type: ignore[attr-defined]
        self.clock.advance(3.9)
        self.assertFalse(attempt.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(attempt.transport.disconnecting)
        attempt.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])  # type: ignore[attr-defined]

    def test_cancel_in_flight_aborts_the_connection(self) -> None:
        d = self.post()
        attempt = self.endpoints.attempts[0].succeed()
        d.cancel()
        self.failureResultOf(d, CancelledError)  # type: ignore[attr-defined]
        self.assertTrue(attempt.transport.disconnected)
        attempt.respond(response())  # too late: ignored
        attempt.close()
        d = self.post()
        self.assertEqual(len(self.endpoints.attempts), 2)

    def test_cancel_while_connecting_and_while_waiting(self) -> None:
        client = self.make(pool_size=1)
        connecting = self.post(client=client)
        waiting = self.post(client=client)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)  # type: ignore[attr-defined]
        connecting.cancel()
        self.assertTrue(self.endpoints.attempts[0].cancelled)
        self.failureResultOf(connecting, CancelledError)  # type: ignore[attr-defined]
        self.assertEqual(len(self.endpoints.attempts), 1)

    def test_cancel_while_resolving_is_cancelled_error(self) -> None:
        """HostnameEndpoint fails a connect cancelled before its name (even an IP
        literal) is resolved with DNSLookupError: the request's failure stays
        CancelledError, and the connection slot is freed."""
        self.endpoints.cancel_error = DNSLookupError("Couldn't find the hostname '127.0.0.1'")
        client = self.make(pool_size=1)
        d = self.post(client=client)
        d.cancel()
        self.failureResultOf(d, CancelledError)  # type: ignore[attr-defined]
        again = self.post(client=client)
        self.assertEqual(len(self.endpoints.attempts), 2)
        self.endpoints.attempts[1].fail(DNSLookupError("no such host"))
        self.failureResultOf(again, DNSLookupError)  # type: ignore[attr-defined]

    def test_pool_limit_queues_first_come_first_served(self) -> None:
        client = self.make(pool_size=2)
        sent = [self.post(b"p%d" % i, client=client) for i in range(4)]
        self.assertEqual(len(self.endpoints.attempts), 2)
        a, b = (attempt.succeed() for attempt in self.endpoints.attempts)
        self.assertIn(b"p0", a.sent())
        self.assertIn(b"p1", b.sent())
        b.respond(response(b"r1"))
        self.assertIn(b"p2", b.sent())  # the first waiting request, on the free connection
        a.respond(response(b"r0"))
        self.assertIn(b"p3", a.sent())
        a.respond(response(b"r3"))
        b.respond(response(b"r2"))
        got = [self.successResultOf(d)[1] for d in sent]  # type: ignore[attr-defined]
        self.assertEqual(got, [b"r0", b"r1", b"r2", b"r3"])
        self.assertEqual(len(self.endpoints.attempts), 2)

    def test_refused_then_the_waiting_request_tries(self) -> None:
        client = self.make(pool_size=1)
        first = self.post(client=client)
        second = self.post(client=client)
        self.endpoints.attempts[0].fail(ConnectionRefusedError())
        self.failureResultOf(first, ConnectionRefusedError)  # type: ignore[attr-defined]
        self.assertEqual(len(self.endpoints.attempts), 2)
        self.endpoints.attempts[1].succeed().respond(response())
        self.successResultOf(second)  # type: ignore[attr-defined]

    def test_unsolicited_bytes_close_an_idle_connection(self) -> None:
        d = self.post()
        attempt = self.endpoints.attempts[0].succeed()
        attempt.respond(response())
        self.successResultOf(d)  # type: ignore[attr-defined]
        attempt.respond(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        self.assertTrue(attempt.transport.disconnecting)
        self.post()
        self.assertEqual(len(self.endpoints.attempts), 2)

    def test_close_waits_for_the_connections(self) -> None:
        done, busy_d, connecting = self.post(), self.post(), self.post()
        idle, busy = (attempt.succeed() for attempt in self.endpoints.attempts[:2])
        idle.respond(response())
        self.successResultOf(done)  # type: ignore[attr-defined]
        closed = self.client.close()
        self.assertNoResult(closed)  # type: ignore[attr-defined]
        self.assertTrue(idle.transport.disconnecting)
        self.assertTrue(busy.transport.disconnected)
        self.assertTrue(self.endpoints.attempts[2].cancelled)
        self.failureResultOf(connecting, CancelledError, ConnectingCancelledError)  # type: ignore[attr-defined]
        idle.close()
        self.assertNoResult(closed)  # type: ignore[attr-defined]
        busy.close(clean=False)
        self.successResultOf(closed)  # type: ignore[attr-defined]
        self.failureResultOf(busy_d, ResponseNeverReceived)  # type: ignore[attr-defined]
        self.failureResultOf(self.post(), ResponseNeverReceived)  # type: ignore[attr-defined]
        self.assertEqual(self.clock.getDelayedCalls(), [])  # type: ignore[attr-defined]


for _parser in PARSERS:
    _name = f"ClientTests_{_parser}"
    globals()[_name] = type(
        _name, (ClientTests, SynchronousTestCase), {"parser": _parser, "skip": _skip(_parser)}
    )


class OutgoingRejectTests(SynchronousTestCase):
    """What OutgoingClient makes of the lean client's results."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.endpoints = FakeEndpoints()
        self.http = Http1Client(self.clock, endpoints=self.endpoints)
        auth = OutgoingAuth("t", None, 60, True, self.clock.seconds)
        self.client = OutgoingClient(self.clock, self.http, auth, "me", True, account="bob")

    def send(self, expires_in: float = 30) -> tuple[Deferred[Any], Any]:
        made = make_prepare(self.clock.seconds(), expires_in=expires_in)
        d = self.client.send(URL, made.packet, made.prepare, "g.us")
        attempt = self.endpoints.attempts[-1]
        if attempt.protocol is None:
            attempt.succeed()
        return d, made

    def reject(self, d: Deferred[Any]) -> Reject:
        packet = deserialize(self.successResultOf(d).data)
        assert isinstance(packet, Reject)
        return packet

    def test_a_url_it_cannot_use_is_t00_without_a_traceback(self) -> None:
        """User information, an unparsable URL, a host or port the endpoint
        refuses: one T00 each, the URL's secrets in no reject, no traceback
        logged (a line at error level: every packet to that URL fails)."""
        logs = LogCapture(self)
        for url in (
            b"http://user:hunter2pass@127.0.0.1:1/?token=querysecret123",
            b"http://[::1/?token=querysecret123",
        ):
            made = make_prepare(self.clock.seconds())
            d = self.client.send(url, made.packet, made.prepare, "g.us")
            reject = self.reject(d)
            self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)
            self.assertTrue(reject.message.startswith("account bob: peer's URL: "), reject.message)
        for error in (
            ValueError("invalid hostname: user:hunter2pass@x"),
            OverflowError("connect_ex(): port must be 0-65535."),  # http://127.0.0.1:-1/
        ):
            self.clock.advance(3600)  # past the failure lines' rate limit
            made = make_prepare(self.clock.seconds())
            d = self.client.send(URL, made.packet, made.prepare, "g.us")
            self.endpoints.attempts[-1].fail(error)
            reject = self.reject(d)
            self.assertEqual(reject.code, ErrorCode.T00_INTERNAL_ERROR)
            self.assertEqual(
                reject.message,
                "account bob: peer's URL: the URL's host or port cannot be connected to",
            )
        errors = logs.errors()
        # The first two URLs share a line (rate-limited), then one line each.
        self.assertEqual([e["log_level"] for e in errors], [LogLevel.error] * 3)
        self.assertFalse([e for e in logs.events if "log_failure" in e])
        said = " ".join(formatEvent(e) for e in logs.events)
        self.assertEqual([e["code"] for e in errors], [ErrorCode.T00_INTERNAL_ERROR] * 3)
        for secret in ("hunter2pass", "querysecret123"):
            self.assertNotIn(secret, said)
            self.assertNotIn(secret, reject.message)

    def test_fulfill_and_the_headers_sent(self) -> None:
        d, made = self.send()
        attempt = self.endpoints.attempts[0]
        sent = attempt.sent()
        for line in (
            b"Host: peer.test:8080",
            b"Content-Type: application/octet-stream",
            b"Accept: application/octet-stream",
            b"ILP-Peer-Name: me",
            b"Authorization: Bearer t",
            b"ILP-Destination: " + made.prepare.destination.encode(),
            b"Content-Length: %d" % len(made.packet),
        ):
            self.assertIn(b"\r\n" + line + b"\r\n", sent)
        attempt.respond(response(made.fulfill(b"hi")))
        self.assertEqual(self.successResultOf(d).data, made.fulfill(b"hi"))

    def test_failures(self) -> None:
        cases: list[tuple[bytes | None, str, str]] = [
            (None, ErrorCode.T01_PEER_UNREACHABLE, "peer unreachable: ConnectionDone"),
            (b"garbage\r\n\r\n", ErrorCode.T01_PEER_UNREACHABLE, "peer unreachable: BadResponse"),
            (response(b"x" * 70000), ErrorCode.T00_INTERNAL_ERROR, "peer's reply is too large"),
            (response(status=b"401 No"), ErrorCode.T00_INTERNAL_ERROR, "credentials"),
            (response(status=b"404 No"), ErrorCode.F00_BAD_REQUEST, "HTTP 404"),
            (response(b"junk"), ErrorCode.T00_INTERNAL_ERROR, "not a valid ILP"),
        ]
        for data, code, message in cases:
            d, _ = self.send()
            attempt = self.endpoints.attempts[-1]
            if data is None:
                attempt.close()
            else:
                attempt.respond(data)
            reject = self.reject(d)
            self.assertEqual(reject.code, code, message)
            self.assertIn(message, reject.message)
            self.assertTrue(reject.message.startswith("account bob: "))
            if attempt.transport.disconnecting and attempt.protocol.request is None:
                attempt.close()
        self.flushLoggedErrors()

    def test_refused(self) -> None:
        made = make_prepare(self.clock.seconds())
        d = self.client.send(URL, made.packet, made.prepare, "g.us")
        self.endpoints.attempts[0].fail(ConnectionRefusedError())
        reject = self.reject(d)
        self.assertEqual(reject.code, ErrorCode.T01_PEER_UNREACHABLE)
        self.assertIn("peer unreachable: ConnectionRefusedError", reject.message)

    def test_expiry_aborts_the_connection(self) -> None:
        d, _ = self.send(expires_in=2)
        attempt = self.endpoints.attempts[0]
        self.clock.advance(2)
        self.assertEqual(self.reject(d).code, ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertTrue(attempt.transport.disconnected)
        attempt.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Answer(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        return b"answer to " + request.content.read()


class LoopbackTlsTests(TestCase):
    """Over real sockets: https with the plugin's TLS policy, kept alive."""

    timeout = 20

    @defer.inlineCallbacks
    def test_https_keep_alive(self) -> Any:
        directory = self.mktemp()
        ca = CertificateAuthority()
        ca_path = ca.write_cert(directory)
        server = ca.issue("server", ip_addresses=["127.0.0.1"]).write(directory, "server")
        reactor = global_reactor()
        esc = lambda path: path.replace(":", r"\:")  # noqa: E731
        endpoint = server_endpoint_from_string(
            reactor,
            f"ssl:0:interface=127.0.0.1:privateKey={esc(server.key)}:certKey={esc(server.cert)}",
        )
        site = Site(_Answer())
        connections: list[object] = []
        build = site.buildProtocol
        site.buildProtocol = lambda addr: connections.append(addr) or build(addr)  # type: ignore[method-assign]
        port = yield endpoint.listen(site)
        self.addCleanup(port.stopListening)
        client = Http1Client(reactor, ClientTLSPolicy(ca_path))
        url = f"https://127.0.0.1:{port.getHost().port}/".encode()
        for body in (b"one", b"two"):
            status, answer = yield within(client.post(url, HEADERS, body), 10)
            self.assertEqual((status, answer), (200, b"answer to " + body))
        self.assertEqual(len(connections), 1)
        yield within(client.close(), 10)
        self.assertEqual(client.connections, set())
        # An untrusted server: the handshake fails, a transport failure (T01).
        other_ca = CertificateAuthority("someone else").write_cert(directory, "other")
        other = Http1Client(reactor, ClientTLSPolicy(other_ca))
        failure = yield self.assertFailure(other.post(url, HEADERS, b"x"), ResponseNeverReceived)
        self.assertNotIsInstance(failure.reasons[0].value, ConnectionDone)
        yield within(other.close(), 10)
