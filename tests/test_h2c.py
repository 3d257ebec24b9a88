"""
Tests for ilphttp.h2c: cleartext HTTP/2 (prior knowledge) and HTTP/1.1 on
one twisted.web listener. Loopback only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
from hyperframe.frame import WindowUpdateFrame
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web import http
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ilphttp import h2_guard, h2c
from ilphttp.http2 import BytesProducer, HTTP2Agent
from ilphttp.tls import server_endpoint
from ilphttp.tls_identity import ClientTLSPolicy
from tests.support.certs import CertificateAuthority
from tests.support.fakes import LogCapture
from tests.support.h2node import run_node_script
from tests.support.jsinterop import require_node


class _Echo(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes, bytes, int]] = []

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        self.seen.append((request.clientproto, request.method, request.uri, len(body)))
        request.setHeader(b"x-proto", request.clientproto)
        request.setHeader(b"x-uri", request.uri)
        request.setHeader(b"x-args", json.dumps(sorted(k.decode() for k in request.args)).encode())
        return body if request.method == b"POST" else b"hello " + request.clientproto


class TwistedPrivateAPITests(TestCase):
    """Fail loudly if Twisted changes what h2c relies on."""

    def test_check_twisted_support(self) -> None:
        h2c.check_twisted_support()  # raises RuntimeError with the reason

    def test_site_protocol_is_the_generic_channel(self) -> None:
        site = Site(Resource())
        proto = site.buildProtocol(None)
        self.assertIsInstance(proto, http._GenericHTTPChannelProtocol)
        from twisted.web._http2 import H2Connection

        self.assertIs(http.H2Connection, H2Connection)
        self.assertTrue(http.H2_ENABLED)

    def test_wrapper_forwards_site_attributes(self) -> None:
        resource = Resource()
        site = Site(resource)
        factory = h2c.wrap_site_for_h2c(site)
        self.assertIs(factory.resource, resource)
        self.assertIs(factory.wrappedFactory, site)
        self.assertEqual(factory.acceptableProtocols()[:1], [b"h2"])


class _RawClient(Protocol):
    """Writes given chunks with pauses in between; collects the reply."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)


class H2CListenerTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.resource = _Echo()
        site = Site(self.resource)
        site._parsePOSTFormSubmission = False
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = yield endpoint.listen(h2c.wrap_site_for_h2c(site))
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    @defer.inlineCallbacks
    def test_node_http2_client(self) -> Any:
        """node's http2.connect (prior knowledge) reaches the wrapped Site."""
        require_node(packages=(), scripts=("h2client.js",))
        body = bytes(range(256)) * 10
        requests = [
            {"method": "GET", "path": "/a?x=1"},
            {
                "method": "POST",
                "path": "/b?y=2",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
                "body": base64.b64encode(body).decode(),
            },
        ] + [{"method": "GET", "path": f"/c{i}"} for i in range(20)]
        out, err, code = yield run_node_script(
            "h2client.js", {"url": self.base, "requests": requests}
        )
        self.assertEqual(code, 0, err)
        results = json.loads(out)
        self.assertEqual([r.get("status") for r in results], [200] * 22, err)
        self.assertEqual(base64.b64decode(results[0]["body"]), b"hello HTTP/2")
        self.assertEqual(results[0]["headers"]["x-uri"], "/a?x=1")
        self.assertEqual(base64.b64decode(results[1]["body"]), body)
        self.assertEqual(results[1]["headers"]["x-proto"], "HTTP/2")
        # parsePOSTFormSubmission=False: only the query string became args.
        self.assertEqual(json.loads(results[1]["headers"]["x-args"]), ["y"])
        self.assertEqual(
            [r["headers"]["x-uri"] for r in results[2:]], [f"/c{i}" for i in range(20)]
        )
        self.assertEqual({s[0] for s in self.resource.seen}, {b"HTTP/2"})

    @defer.inlineCallbacks
    def test_http11_still_works(self) -> Any:
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)
        for i in range(3):  # keep-alive: same connection, several requests
            response = yield agent.request(
                b"POST", f"{self.base}/h1?i={i}".encode(), Headers(), BytesProducer(b"abc")
            )
            self.assertEqual(response.version, (b"HTTP", 1, 1))
            self.assertEqual((yield readBody(response)), b"abc")
            self.assertEqual(response.headers.getRawHeaders(b"x-proto"), [b"HTTP/1.1"])

    @defer.inlineCallbacks
    def test_http2_agent(self) -> Any:
        """ilphttp's own HTTP/2 agent against the h2c listener."""
        agent = HTTP2Agent(reactor)
        self.addCleanup(agent.close)
        body = b"z" * 34_000
        responses = yield defer.gatherResults(
            [
                agent.request(b"POST", f"{self.base}/p?i={i}".encode(), None, BytesProducer(body))
                for i in range(10)
            ]
        )
        for i, response in enumerate(responses):
            self.assertEqual(response.version, (b"HTTP", 2, 0))
            self.assertEqual(response.headers.getRawHeaders(b"x-uri"), [f"/p?i={i}".encode()])
            self.assertEqual((yield readBody(response)), body)
        self.assertEqual(len(self.resource.seen), 10)

    @defer.inlineCallbacks
    def _raw_exchange(self, chunks: list[bytes], wait_for: bytes) -> Any:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = _RawClient()
        yield connectProtocol(endpoint, client)
        for chunk in chunks:
            client.transport.write(chunk)  # type: ignore[union-attr]
            yield deferLater(reactor, 0.01, lambda: None)
        for _ in range(200):
            if wait_for in client.received:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        client.transport.loseConnection()  # type: ignore[union-attr]
        yield client.lost
        return client.received

    @defer.inlineCallbacks
    def test_preface_in_pieces(self) -> Any:
        """The preface split over many writes is still recognised."""
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        conn.send_headers(
            1,
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"127.0.0.1"),
                (b":path", b"/split"),
            ],
            end_stream=True,
        )
        data = conn.data_to_send()
        preface = h2c.H2C_PREFACE
        self.assertTrue(data.startswith(preface))
        chunks = [preface[i : i + 1] for i in range(len(preface))] + [data[len(preface) :]]
        received = yield self._raw_exchange(chunks, b"hello HTTP/2")
        events = conn.receive_data(received)
        responses = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
        self.assertEqual(len(responses), 1)
        self.assertIn((b":status", b"200"), responses[0].headers)
        body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        self.assertEqual(body, b"hello HTTP/2")

    @defer.inlineCallbacks
    def test_http11_in_pieces(self) -> Any:
        """An HTTP/1.1 request starting like nothing else, byte by byte."""
        request = b"GET /bytes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        received = yield self._raw_exchange(
            [request[i : i + 1] for i in range(len(request))], b"hello HTTP/1.1"
        )
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), received[:40])
        self.assertTrue(received.endswith(b"hello HTTP/1.1"))

    @defer.inlineCallbacks
    def test_short_http11_prefix_of_preface(self) -> Any:
        """'P' then 'O': starts like the preface, then diverges (a POST)."""
        request = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        received = yield self._raw_exchange([b"P", b"O", request[2:]], b"\r\n\r\nok")
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), received[:40])
        self.assertEqual(self.resource.seen, [(b"HTTP/1.1", b"POST", b"/p", 2)])


class H2COverTLSTests(TestCase):
    """The wrapper on a TLS listener keeps the Site's ALPN (h2) working."""

    timeout = 30

    @defer.inlineCallbacks
    def test_alpn_h2_through_wrapper(self) -> Any:
        ca = CertificateAuthority()
        directory = self.mktemp()
        ca_path = ca.write_cert(directory)
        paths = ca.issue("s", ip_addresses=["127.0.0.1"]).write(directory, "s")
        resource = _Echo()
        endpoint = server_endpoint(reactor, 0, paths.cert, paths.key, interface="127.0.0.1")
        port = yield endpoint.listen(h2c.wrap_site_for_h2c(Site(resource)))
        self.addCleanup(port.stopListening)
        agent = HTTP2Agent(reactor, tls_policy=ClientTLSPolicy(ca_path))
        self.addCleanup(agent.close)
        url = f"https://127.0.0.1:{port.getHost().port}/tls"
        response = yield agent.request(b"GET", url.encode())
        self.assertEqual(response.version, (b"HTTP", 2, 0))
        self.assertEqual((yield readBody(response)), b"hello HTTP/2")


class _Recording(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.negotiated: list[Any] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.negotiated.append(self.transport.negotiatedProtocol)  # type: ignore[union-attr]
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:
        self.lost = True


class PeekingTests(TestCase):
    """The wrapper's buffering, byte by byte, on an in-memory transport."""

    def connect(self) -> tuple[Any, _Recording]:
        from twisted.internet.protocol import Factory
        from twisted.internet.testing import StringTransport

        factory = h2c.H2CSiteFactory(Factory.forProtocol(_Recording))
        wrapper = factory.buildProtocol(None)
        wrapper.makeConnection(StringTransport())
        return wrapper, wrapper.wrappedProtocol

    def test_preface_byte_by_byte(self) -> None:
        wrapper, inner = self.connect()
        preface = h2c.H2C_PREFACE
        for i in range(len(preface) - 1):
            wrapper.dataReceived(preface[i : i + 1])
        self.assertEqual(inner.chunks, [])
        self.assertIsNone(wrapper.negotiatedProtocol)
        wrapper.dataReceived(preface[-1:] + b"FRAMES")
        self.assertEqual(inner.chunks, [preface + b"FRAMES"])
        self.assertEqual(inner.negotiated, [b"h2"])
        wrapper.dataReceived(b"more")
        self.assertEqual(inner.chunks[-1], b"more")

    def test_http11_decided_on_first_differing_byte(self) -> None:
        wrapper, inner = self.connect()
        wrapper.dataReceived(b"P")
        wrapper.dataReceived(b"R")
        self.assertEqual(inner.chunks, [])
        wrapper.dataReceived(b"O")  # "PRO..." is not the preface
        self.assertEqual(inner.chunks, [b"PRO"])
        self.assertEqual(inner.negotiated, [None])
        wrapper2, inner2 = self.connect()
        wrapper2.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertEqual(inner2.chunks, [b"GET / HTTP/1.1\r\n"])

    def test_alpn_protocols_never_empty(self) -> None:
        """
        A factory without ALPN opinions still offers h2 and http/1.1 (Twisted
        fails TLS handshakes with ALPN clients when the factory offers none).
        """
        from twisted.internet.protocol import Factory

        factory = h2c.H2CSiteFactory(Factory.forProtocol(_Recording))
        self.assertEqual(factory.acceptableProtocols(), [b"h2", b"http/1.1"])

    def test_buffer_flushed_on_close(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        wrapper, inner = self.connect()
        wrapper.dataReceived(b"PRI")
        wrapper.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(inner.chunks, [b"PRI"])
        self.assertTrue(inner.lost)


# -- the HTTP/2 guard, end to end ------------------------------------------------------


def _h2_client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


def _get(path: bytes) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", path)]


class _Answers(Resource):
    """Answers at once, or (``/later``) when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[bytes] = []
        self.waiting: list[Any] = []

    def render(self, request: Any) -> Any:
        self.rendered.append(request.uri)
        if request.uri.startswith(b"/later"):
            self.waiting.append(request)
            return NOT_DONE_YET
        return b"ok " + request.uri

    def answer_all(self) -> None:
        waiting, self.waiting = self.waiting, []
        for request in waiting:
            if not request._disconnected:
                request.write(b"ok " + request.uri)
                request.finish()


class GuardedConnectionTests(TestCase):
    """
    The guard on a wrapped Site, one connection on an in-memory transport.
    Twisted's H2Connection sends response bodies from the global reactor, so
    these tests let it turn a few times.
    """

    timeout = 30

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = _Answers()
        site = Site(self.resource, reactor=self.clock)
        self.factory = h2c.wrap_site_for_h2c(site, clock=self.clock)
        self.wrapper = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1234))
        self.wrapper.makeConnection(self.transport)
        self.client = _h2_client()
        self.logged = LogCapture(self)
        self.addCleanup(self._close)

    def _close(self) -> Any:
        if not self.transport.disconnected:
            self.wrapper.connectionLost(Failure(ConnectionDone()))
        return deferLater(reactor, 0, lambda: None)

    def send(self, data: bytes) -> None:
        """One read on the server side."""
        self.wrapper.dataReceived(data)

    @defer.inlineCallbacks
    def events(self) -> Any:
        """Let the server send its queued data; what the client makes of all of it."""
        quiet, size = 0, -1
        while quiet < 3:  # one DATA frame per turn of the reactor
            yield deferLater(reactor, 0, lambda: None)
            quiet, size = (
                (quiet + 1, size)
                if len(self.transport.value()) == size
                else (0, len(self.transport.value()))
            )
        data = self.transport.value()
        self.transport.clear()
        return self.client.receive_data(data)

    def answered(self, events: list[Any]) -> dict[int, bytes]:
        bodies: dict[int, bytes] = {}
        ended = set()
        for e in events:
            if isinstance(e, h2.events.DataReceived):
                bodies[e.stream_id] = bodies.get(e.stream_id, b"") + e.data
            elif isinstance(e, h2.events.StreamEnded):
                ended.add(e.stream_id)
        return {sid: body for sid, body in bodies.items() if sid in ended}

    def goaway(self, events: list[Any]) -> Any:
        [terminated] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        return terminated

    def warnings(self) -> list[dict[str, Any]]:
        return self.logged.at_least(LogLevel.warn)

    @defer.inlineCallbacks
    def test_reset_between_requests_in_one_read(self) -> Any:
        """
        HEADERS(1, END_STREAM) RST_STREAM(1) HEADERS(3, END_STREAM) in one
        read: stream 3 is answered, the connection stays, nothing is logged.
        Without the guard, Twisted (26.10 and older) raises
        StreamIDTooLowError, never answers 3 and logs a traceback.
        """
        c = self.client
        c.send_headers(1, _get(b"/1"), end_stream=True)
        c.reset_stream(1)
        c.send_headers(3, _get(b"/3"), end_stream=True)
        self.send(c.data_to_send())
        events = yield self.events()
        self.assertEqual(self.answered(events), {3: b"ok /3"})
        self.assertEqual(self.resource.rendered, [b"/1", b"/3"])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.warnings(), [])
        self.assertFalse(self.transport.disconnecting)
        # and the connection goes on
        c.send_headers(5, _get(b"/5"), end_stream=True)
        self.send(c.data_to_send())
        self.assertEqual(self.answered((yield self.events())), {5: b"ok /5"})

    @defer.inlineCallbacks
    def test_many_resets_between_requests_in_one_read(self) -> Any:
        """The same, 50 times over, with bodies and late answers mixed in."""
        c = self.client
        for i in range(50):
            sid = 4 * i + 1
            c.send_headers(sid, _get(b"/x%d" % sid), end_stream=False)
            c.send_data(sid, b"body", end_stream=True)
            c.reset_stream(sid)
            c.send_headers(sid + 2, _get(b"/later%d" % (sid + 2)), end_stream=True)
        self.send(c.data_to_send())
        self.resource.answer_all()
        answered = self.answered((yield self.events()))
        self.assertEqual(answered, {4 * i + 3: b"ok /later%d" % (4 * i + 3) for i in range(50)})
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_stream_closed_by_the_server_behind_a_request(self) -> Any:
        """
        A WINDOW_UPDATE overflowing stream 1's window makes hyper-h2 reset it
        itself, in the same read as the request and the next one.
        """
        c = self.client
        c.send_headers(1, _get(b"/1"), end_stream=True)
        c.send_headers(3, _get(b"/3"), end_stream=True)
        data = c.data_to_send()
        overflow = WindowUpdateFrame(1, window_increment=2**31 - 1).serialize()
        split = data.index(b"\x01\x05\x00\x00\x00\x03") - 3  # HEADERS(3)'s frame header
        self.send(data[:split] + overflow + data[split:])
        events = yield self.events()
        self.assertEqual(self.answered(events)[3], b"ok /3")
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_rapid_reset(self) -> Any:
        """3,000 streams opened and reset: GOAWAY ENHANCE_YOUR_CALM long before."""
        c = self.client
        self.send(c.data_to_send())
        for i in range(3_000):
            sid = 2 * i + 1
            c.send_headers(sid, _get(b"/later"), end_stream=True)
            c.reset_stream(sid)
            self.send(c.data_to_send())
            if self.transport.disconnecting:
                break
        self.assertTrue(self.transport.disconnecting)
        self.assertLessEqual(len(self.resource.rendered), h2_guard.CLIENT_RESET_BURST + 1)
        self.assertGreaterEqual(len(self.resource.rendered), h2_guard.CLIENT_RESET_BURST)
        goaway = self.goaway((yield self.events()))
        self.assertEqual(goaway.error_code, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertEqual(goaway.last_stream_id, sid)
        self.assertEqual(goaway.additional_data, b"RST_STREAM rate")
        [warning] = self.warnings()
        self.assertEqual(warning["reason"], "RST_STREAM rate")
        self.assertEqual(self.flushLoggedErrors(), [])
        # a client that does not read is cut off
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(h2c.ABORT_TIMEOUT)
        self.assertTrue(self.transport.disconnected)

    @defer.inlineCallbacks
    def test_honest_client_with_cancels(self) -> Any:
        """
        300 requests in flight, 100 of them cancelled together (as HTTP2Agent
        does when their Prepares expire): the rest are answered, no GOAWAY.
        """
        c = self.client
        self.send(c.data_to_send())
        events = yield self.events()
        answered: dict[int, bytes] = {}
        cancelled: list[int] = []
        for wave in range(3):  # Twisted allows 100 concurrent streams
            sids = [2 * (100 * wave + i) + 1 for i in range(100)]
            for sid in sids:
                c.send_headers(sid, _get(b"/later%d" % sid), end_stream=True)
            self.send(c.data_to_send())
            self.clock.advance(30)
            gone = sids[:34] if wave < 2 else sids[:32]
            for sid in gone:
                c.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
            cancelled += gone
            self.send(c.data_to_send())
            self.resource.answer_all()
            events = yield self.events()
            answered.update(self.answered(events))
            self.assertEqual(
                [e for e in events if isinstance(e, h2.events.ConnectionTerminated)], []
            )
        self.assertEqual(len(cancelled), 100)
        self.assertEqual(sorted(answered), sorted(set(range(1, 600, 2)) - set(cancelled)))
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.warnings(), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_ping_flood(self) -> Any:
        c = self.client
        self.send(c.data_to_send())
        for i in range(1_000):
            c.ping(b"%08d" % i)
        self.send(c.data_to_send())
        self.assertTrue(self.transport.disconnecting)
        events = yield self.events()
        acks = [e for e in events if isinstance(e, h2.events.PingAckReceived)]
        self.assertEqual(len(acks), h2_guard.PING_BURST)
        self.assertEqual(self.goaway(events).error_code, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertEqual(len(self.warnings()), 1)

    @defer.inlineCallbacks
    def test_provoked_server_resets(self) -> Any:
        """MadeYouReset: WINDOW_UPDATEs that make the server reset streams."""
        c = self.client
        self.send(c.data_to_send())
        for i in range(500):
            sid = 2 * i + 1
            c.send_headers(sid, _get(b"/later"), end_stream=True)
            data = c.data_to_send() + WindowUpdateFrame(sid, window_increment=2**31 - 1).serialize()
            self.send(data)
            if self.transport.disconnecting:
                break
        self.assertTrue(self.transport.disconnecting)
        self.assertLessEqual(len(self.resource.rendered), h2_guard.SERVER_RESET_BURST + 1)
        self.assertEqual(self.warnings()[0]["reason"], "server RST_STREAM rate")
        events = yield self.events()
        self.assertEqual(self.goaway(events).error_code, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

    def test_http11_is_not_guarded(self) -> None:
        self.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNone(self.wrapper._guard)
        self.assertIn(b"ok /1", self.transport.value())


class GuardOverTLSTests(TestCase):
    """HTTP/2 chosen by ALPN passes through the wrapper, guard included."""

    timeout = 30

    @defer.inlineCallbacks
    def test_ping_flood_over_alpn_h2(self) -> Any:
        ca = CertificateAuthority()
        directory = self.mktemp()
        ca.write_cert(directory)
        paths = ca.issue("s", ip_addresses=["127.0.0.1"]).write(directory, "s")
        endpoint = server_endpoint(reactor, 0, paths.cert, paths.key, interface="127.0.0.1")
        port = yield endpoint.listen(h2c.wrap_site_for_h2c(Site(_Answers())))
        self.addCleanup(port.stopListening)
        logged = LogCapture(self)
        client = _RawClient()
        options = optionsForClientTLS(
            "127.0.0.1",
            trustRoot=Certificate.loadPEM(FilePath(ca.write_cert(directory)).getContent()),
            acceptableProtocols=[b"h2"],
        )
        yield connectProtocol(
            SSL4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port, options), client
        )
        conn = _h2_client()
        conn.send_headers(1, _get(b"/tls"), end_stream=True)
        for i in range(200):
            conn.ping(b"%08d" % i)
        client.transport.write(conn.data_to_send())  # type: ignore[union-attr]
        yield client.lost
        self.assertEqual(client.transport.negotiatedProtocol, b"h2")  # type: ignore[union-attr]
        events = conn.receive_data(client.received)
        [goaway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        self.assertEqual(goaway.error_code, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertEqual(goaway.last_stream_id, 1)
        self.assertEqual([w["reason"] for w in logged.at_least(LogLevel.warn)], ["PING rate"])


# -- edge cases of the wrapper, on in-memory transports -------------------------------


class _TLSStringTransport(StringTransport):
    """A StringTransport standing in for a TLS connection whose ALPN chose ``negotiated``."""

    def __init__(self, negotiated: bytes | None) -> None:
        super().__init__()
        self.negotiatedProtocol = negotiated


class WrapperEdgeTests(TestCase):
    def connect(
        self, transport: StringTransport | None = None, **options: Any
    ) -> tuple[Any, _Recording, StringTransport]:
        from twisted.internet.protocol import Factory

        factory = h2c.H2CSiteFactory(Factory.forProtocol(_Recording), **options)
        wrapper = factory.buildProtocol(None)
        transport = transport if transport is not None else StringTransport()
        wrapper.makeConnection(transport)
        return wrapper, wrapper.wrappedProtocol, transport

    def test_alpn_http11_is_passed_on_unguarded(self) -> None:
        """ALPN chose HTTP/1.1: even a preface-looking start is not taken for h2."""
        wrapper, inner, _ = self.connect(_TLSStringTransport(b"http/1.1"))
        wrapper.dataReceived(b"PRI")
        self.assertEqual(inner.chunks, [b"PRI"])
        self.assertEqual(inner.negotiated, [b"http/1.1"])
        self.assertIsNone(wrapper._guard)

    def test_tls_without_alpn_still_detects_the_preface(self) -> None:
        """A TLS client that offered no ALPN may speak HTTP/2 with prior knowledge."""
        wrapper, inner, _ = self.connect(_TLSStringTransport(None))
        wrapper.dataReceived(h2c.H2C_PREFACE[:10])
        self.assertEqual(inner.chunks, [])
        wrapper.dataReceived(h2c.H2C_PREFACE[10:])
        self.assertEqual(inner.negotiated, [b"h2"])
        self.assertEqual(b"".join(inner.chunks), h2c.H2C_PREFACE)

    def test_preface_diverging_after_many_bytes(self) -> None:
        """'PRI * HTTP/1.1' shares 11 bytes with the preface; it is HTTP/1.x, delivered whole."""
        wrapper, inner, _ = self.connect()
        wrapper.dataReceived(b"PRI * HTTP/")
        self.assertEqual(inner.chunks, [])
        wrapper.dataReceived(b"1.1\r\n\r\n")
        self.assertEqual(inner.chunks, [b"PRI * HTTP/1.1\r\n\r\n"])
        self.assertEqual(inner.negotiated, [None])

    def test_writes_on_http11_pass_straight_through(self) -> None:
        wrapper, inner, transport = self.connect()
        wrapper.dataReceived(b"GET / HTTP/1.1\r\n")
        inner.transport.writeSequence([b"HTTP/1.1 200 OK\r\n", b"\r\n"])  # type: ignore[union-attr]
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\n\r\n")

    def test_abort_from_the_channel_aborts_the_connection(self) -> None:
        """twisted.web aborts timed-out connections; the wrapper must pass that on."""
        wrapper, inner, transport = self.connect()
        wrapper.dataReceived(h2c.H2C_PREFACE)
        inner.transport.abortConnection()  # type: ignore[union-attr]
        self.assertTrue(transport.disconnecting)
        # bytes still arriving are not handed to a channel that closed
        wrapper.dataReceived(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        self.assertEqual(inner.chunks, [h2c.H2C_PREFACE])

    def test_no_goaway_in_the_middle_of_a_frame(self) -> None:
        """
        When the guard trips while the server's last frame is only half written,
        the connection is closed without a GOAWAY (it would corrupt that frame).
        """
        import dataclasses

        limits = dataclasses.replace(
            h2_guard.GuardLimits.from_constants(), pings=h2_guard.Rate(2, 0.001)
        )
        logged = LogCapture(self)
        clock = Clock()
        wrapper, inner, transport = self.connect(limits=limits, clock=clock)
        client = _h2_client()
        wrapper.dataReceived(client.data_to_send())
        partial = b"\x00\x00\x10\x00\x01\x00\x00\x00\x01" + b"half"  # 16-byte DATA, 4 sent
        inner.transport.writeSequence([partial[:9], partial[9:]])  # type: ignore[union-attr]
        for i in range(10):
            client.ping(b"%08d" % i)
        wrapper.dataReceived(client.data_to_send())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), partial, "nothing after the half frame")
        self.assertEqual([w["reason"] for w in logged.at_least(LogLevel.warn)], ["PING rate"])
        # the channel writes no more, and a client that does not read is cut off
        inner.transport.write(b"more")  # type: ignore[union-attr]
        self.assertEqual(transport.value(), partial)
        clock.advance(h2c.ABORT_TIMEOUT)
        self.assertTrue(transport.disconnected)

    def test_factory_with_empty_alpn_offers_h2_and_http11(self) -> None:
        from twisted.internet.interfaces import IProtocolNegotiationFactory
        from twisted.internet.protocol import Factory
        from zope.interface import implementer

        @implementer(IProtocolNegotiationFactory)
        class NoOpinion(Factory):
            protocol = _Recording

            def acceptableProtocols(self) -> list[bytes]:
                return []

        factory = h2c.H2CSiteFactory(NoOpinion())
        self.assertEqual(factory.acceptableProtocols(), [b"h2", b"http/1.1"])

    def test_unset_factory_has_no_attributes_rather_than_recursing(self) -> None:
        """Before __init__ (as while unpickling) lookups fail plainly, no RecursionError."""
        bare = h2c.H2CSiteFactory.__new__(h2c.H2CSiteFactory)
        self.assertFalse(hasattr(bare, "resource"))
        self.assertRaises(AttributeError, getattr, bare, "wrappedFactory")


class TwistedSupportCheckTests(TestCase):
    """check_twisted_support names what changed when Twisted's private API moves."""

    def test_each_change_is_named(self) -> None:
        from twisted.web import _http2

        class NoSwitch:
            def dataReceived(self, data: bytes) -> None:
                pass

        class NoEventLoop:
            def dataReceived(self, data: bytes) -> None:
                pass

        cases: list[tuple[Any, str, Any, str]] = [
            (http, "H2_ENABLED", False, "H2_ENABLED is false"),
            (http, "_GenericHTTPChannelProtocol", None, "_GenericHTTPChannelProtocol is gone"),
            (http, "H2Connection", object, "no longer uses twisted.web._http2.H2Connection"),
            (http, "_GenericHTTPChannelProtocol", NoSwitch, "no longer switches to H2Connection"),
            (_http2.H2Connection, "dataReceived", NoEventLoop.dataReceived, "events of one read"),
        ]
        for target, name, value, message in cases:
            original = getattr(target, name)
            setattr(target, name, value)
            try:
                error = self.assertRaises(RuntimeError, h2c.check_twisted_support)
            finally:
                setattr(target, name, original)
            self.assertIn(message, str(error), name)
        h2c.check_twisted_support()  # all restored
