"""
Tests for ilphttp.http2.HTTP2Agent: against node's ``http2`` h2c server
(interop/h2server.js) and against Twisted's own HTTP/2 server over TLS.
Loopback only.
"""

from __future__ import annotations

import json
import os
from typing import Any

from treq import content as treq_content
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import (
    Agent,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import Site

from ilphttp.http2 import (
    BytesProducer,
    ErrorCodes,
    H2ConnectionTerminated,
    H2ProtocolError,
    H2StreamReset,
    HTTP2Agent,
)
from ilphttp.tls import server_endpoint
from ilphttp.tls_identity import ClientTLSPolicy
from tests.support.certs import CertificateAuthority
from tests.support.h2node import NodeH2Server
from tests.support.jsinterop import require_node


def header(response: IResponse, name: str) -> str:
    values = response.headers.getRawHeaders(name.encode())
    assert values, f"no {name} header"
    return values[0].decode()


@defer.inlineCallbacks
def wait_until(predicate: Any, timeout: float = 3.0, step: float = 0.02) -> Any:
    """Poll C{predicate} (may return a Deferred) until true or timeout."""
    waited = 0.0
    while True:
        value = predicate()
        if isinstance(value, defer.Deferred):
            value = yield value
        if value:
            return value
        if waited >= timeout:
            return value
        yield deferLater(reactor, step, lambda: None)
        waited += step


class _NodeTestBase(TestCase):
    timeout = 30
    server_options: dict[str, Any] = {}

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        require_node(packages=(), scripts=("h2server.js",))
        self.server = NodeH2Server(self.server_options)
        self.addCleanup(self.server.stop)
        self.port = yield self.server.start()
        self.base = f"http://127.0.0.1:{self.port}"

    def make_agent(self, **kwargs: Any) -> HTTP2Agent:
        agent = HTTP2Agent(reactor, **kwargs)
        self.addCleanup(agent.close)
        return agent

    def client(self, agent: HTTP2Agent) -> HTTPClient:
        return HTTPClient(agent, data_to_body_producer=BytesProducer)

    @defer.inlineCallbacks
    def server_stats(self) -> Any:
        """/stats through a separate, short-lived agent (one more session)."""
        agent = HTTP2Agent(reactor)
        try:
            response = yield agent.request(b"GET", (self.base + "/stats").encode())
            body = yield readBody(response)
        finally:
            yield agent.close()
        return json.loads(body)


class NodeH2CTests(_NodeTestBase):
    @defer.inlineCallbacks
    def test_concurrent_requests_share_one_session(self) -> Any:
        """Many concurrent requests multiplex over one session, query strings kept."""
        agent = self.make_agent()
        client = self.client(agent)
        bodies = [f"packet-{i}".encode() * (i + 1) for i in range(40)]
        responses = yield defer.gatherResults(
            [
                client.post(f"{self.base}/echo?delay=20&n={i}&x=a%20b", data=body)
                for i, body in enumerate(bodies)
            ]
        )
        streams = set()
        for i, (response, body) in enumerate(zip(responses, bodies)):
            self.assertEqual(response.code, 200)
            self.assertEqual(response.original.original.version, (b"HTTP", 2, 0))
            self.assertEqual(header(response, "x-path"), f"/echo?delay=20&n={i}&x=a%20b")
            self.assertEqual(header(response, "x-method"), "POST")
            self.assertEqual(header(response, "x-session"), "1")
            streams.add(header(response, "x-stream"))
            got = yield response.content()
            self.assertEqual(got, body)
        self.assertEqual(len(streams), 40)
        max_inflight = max(int(header(r, "x-max-inflight")) for r in responses)
        self.assertGreater(max_inflight, 1)
        stats = agent.stats()[f"http://127.0.0.1:{self.port}"]
        self.assertEqual((stats["active"], stats["queued"], stats["open_streams"]), (1, 0, 0))

    @defer.inlineCallbacks
    def test_get_without_body_and_default_producer(self) -> Any:
        """GET without a body, and treq's own body producer (FileBodyProducer)."""
        agent = self.make_agent()
        plain = HTTPClient(agent)
        response = yield plain.get(self.base + "/echo")
        self.assertEqual((yield response.content()), b"OK")
        self.assertEqual(header(response, "x-body-length"), "0")
        body = os.urandom(34_000)
        response = yield plain.post(self.base + "/echo", data=body)
        self.assertEqual((yield response.content()), body)
        self.assertEqual(response.headers.getRawHeaders(b"x-session"), [b"1"])

    @defer.inlineCallbacks
    def test_large_bodies_with_tiny_windows(self) -> Any:
        """
        34 KB each way with 1,000-byte stream windows on both sides: the
        agent must send within the peer's window and acknowledge what it
        receives, or this stalls.
        """
        yield self.server.stop()
        self.server = NodeH2Server({"settings": {"initialWindowSize": 1000}})
        self.addCleanup(self.server.stop)
        self.port = yield self.server.start()
        self.base = f"http://127.0.0.1:{self.port}"
        agent = self.make_agent(initial_window_size=1000, connection_window=65535)
        client = self.client(agent)
        body = os.urandom(34_000)
        for _ in range(3):  # 3 x 34 KB > the 64 KB connection window: needs acks
            response = yield client.post(self.base + "/echo", data=body)
            self.assertEqual((yield response.content()), body)
        response = yield client.get(self.base + "/big?size=34000")
        self.assertEqual((yield response.content()), b"b" * 34_000)
        results = yield defer.gatherResults(
            [client.post(self.base + f"/echo?i={i}", data=body) for i in range(4)]
        )
        for response in results:
            self.assertEqual((yield response.content()), body)

    @defer.inlineCallbacks
    def test_max_requests_per_session_sequential(self) -> Any:
        """max_requests_per_session=5: 12 requests use 3 sessions; retired ones close."""
        agent = self.make_agent(max_requests_per_session=5)
        client = self.client(agent)
        sessions = []
        for i in range(12):
            response = yield client.get(f"{self.base}/echo?i={i}")
            sessions.append(header(response, "x-session"))
            yield response.content()
        self.assertEqual(sessions, ["1"] * 5 + ["2"] * 5 + ["3"] * 2)
        stats = agent.stats()[f"http://127.0.0.1:{self.port}"]
        self.assertEqual((stats["active"], stats["retiring"]), (1, 0))

        # Server side: the agent opened 3 sessions, each /stats poll one more;
        # only the agent's last session and the poll's own are still open.
        polls = []

        def two_open() -> Any:
            polls.append(1)
            return self.server_stats().addCallback(lambda s: s["open"] == 2 and s)

        stats = yield wait_until(two_open)
        self.assertTrue(stats, "retired sessions were not closed")
        self.assertEqual(stats["sessions"], 3 + len(polls))

    @defer.inlineCallbacks
    def test_max_requests_per_session_concurrent(self) -> Any:
        """Concurrent requests beyond the per-session limit go to new sessions."""
        agent = self.make_agent(max_requests_per_session=5)
        client = self.client(agent)
        responses = yield defer.gatherResults(
            [client.get(f"{self.base}/echo?delay=30&i={i}") for i in range(12)]
        )
        counts: dict[str, int] = {}
        for response in responses:
            counts[header(response, "x-session")] = counts.get(header(response, "x-session"), 0) + 1
            yield response.content()
        self.assertEqual(sorted(counts.values(), reverse=True), [5, 5, 2])

    @defer.inlineCallbacks
    def test_peer_resets_stream(self) -> Any:
        """RST_STREAM from the peer fails that request only; the session lives on."""
        agent = self.make_agent()
        client = self.client(agent)
        warm = yield client.get(self.base + "/echo")
        yield warm.content()
        d = client.post(self.base + "/reset?code=2", data=b"x")
        failure = yield self.assertFailure(d, ResponseNeverReceived)
        reasons = [r.value for r in failure.reasons]
        self.assertIsInstance(reasons[0], H2StreamReset)
        self.assertEqual(reasons[0].error_code, ErrorCodes.INTERNAL_ERROR)
        self.assertTrue(reasons[0].remote)
        again = yield client.get(self.base + "/echo")
        self.assertEqual(header(again, "x-session"), "1")

    @defer.inlineCallbacks
    def test_refused_stream_is_retried(self) -> Any:
        """REFUSED_STREAM means unprocessed: the agent retries it."""
        agent = self.make_agent()
        client = self.client(agent)
        response = yield client.post(self.base + "/refuse-once?key=k1", data=b"hello")
        self.assertEqual(response.code, 200)
        self.assertEqual((yield response.content()), b"hello")

    @defer.inlineCallbacks
    def test_reset_while_body_arrives(self) -> Any:
        """A reset after the response headers fails the body, not the response."""
        agent = self.make_agent()
        client = self.client(agent)
        response = yield client.get(self.base + "/reset-after-headers")
        self.assertEqual(response.code, 200)
        failure = yield self.assertFailure(treq_content(response), ResponseFailed)
        self.assertIsInstance(failure.reasons[0].value, H2StreamReset)
        self.assertEqual(failure.reasons[0].value.error_code, ErrorCodes.INTERNAL_ERROR)

    @defer.inlineCallbacks
    def test_goaway_graceful_mid_stream(self) -> Any:
        """
        GOAWAY(NO_ERROR, last=N) while streams are open: streams <= N finish
        on the old session, streams > N are retried on a new one.
        """
        agent = self.make_agent()
        client = self.client(agent)
        warm = yield client.get(self.base + "/echo")
        yield warm.content()
        before = [client.get(f"{self.base}/echo?delay=300&b={i}") for i in range(3)]
        goaway = client.get(self.base + "/goaway?code=0&delay=100")
        after = [client.get(f"{self.base}/echo?delay=200&a={i}") for i in range(3)]
        results = yield defer.gatherResults([*before, goaway, *after])
        sessions = [header(r, "x-session") for r in results]
        self.assertEqual(sessions, ["1"] * 4 + ["2"] * 3)
        for i, response in enumerate(results[4:]):
            self.assertEqual(header(response, "x-path"), f"/echo?delay=200&a={i}")
            self.assertEqual((yield response.content()), b"OK")
        self.assertEqual((yield results[3].content()), b"goaway")

        # The old session is closed once its streams are done.
        def one_agent_session() -> bool:
            s = agent.stats()[f"http://127.0.0.1:{self.port}"]
            return bool(s["active"] == 1 and s["retiring"] == 0)

        self.assertTrue((yield wait_until(one_agent_session)))

    @defer.inlineCallbacks
    def test_goaway_with_error(self) -> Any:
        """GOAWAY with an error code: streams <= N fail, streams > N are retried."""
        agent = self.make_agent()
        client = self.client(agent)
        warm = yield client.get(self.base + "/echo")
        yield warm.content()
        before = client.get(self.base + "/echo?delay=300")
        goaway = client.get(self.base + "/goaway?code=2")
        after = [client.get(f"{self.base}/echo?delay=200&a={i}") for i in range(2)]
        for d in (before, goaway):
            failure = yield self.assertFailure(d, ResponseNeverReceived)
            exc = failure.reasons[0].value
            self.assertIsInstance(exc, H2ConnectionTerminated)
            self.assertEqual(exc.error_code, ErrorCodes.INTERNAL_ERROR)
        results = yield defer.gatherResults(after)
        self.assertEqual([header(r, "x-session") for r in results], ["2", "2"])

    @defer.inlineCallbacks
    def test_connection_dropped_mid_stream(self) -> Any:
        """A TCP drop without GOAWAY fails the open streams; the next request reconnects."""
        agent = self.make_agent()
        client = self.client(agent)
        warm = yield client.get(self.base + "/echo")
        yield warm.content()
        slow = client.get(self.base + "/echo?delay=300")
        kill = client.get(self.base + "/destroy-session")
        for d in (slow, kill):
            failure = yield self.assertFailure(d, ResponseNeverReceived)
            self.assertTrue(failure.reasons)
        response = yield client.get(self.base + "/echo")
        self.assertEqual(header(response, "x-session"), "2")

    @defer.inlineCallbacks
    def test_server_closes_idle_session(self) -> Any:
        """A graceful close by the server (GOAWAY) is invisible to later requests."""
        agent = self.make_agent()
        client = self.client(agent)
        response = yield client.get(self.base + "/close-session")
        self.assertEqual((yield response.content()), b"closing")
        origin = f"http://127.0.0.1:{self.port}"
        self.assertTrue((yield wait_until(lambda: agent.stats()[origin]["active"] == 0)))
        response = yield client.get(self.base + "/echo")
        self.assertEqual(header(response, "x-session"), "2")

    @defer.inlineCallbacks
    def test_body_read_later(self) -> Any:
        """A body not read at once is buffered; the stream is already finished."""
        agent = self.make_agent()
        response = yield agent.request(b"GET", (self.base + "/big?size=20000").encode())
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(agent.stats()[f"http://127.0.0.1:{self.port}"]["open_streams"], 0)
        self.assertEqual((yield readBody(response)), b"b" * 20000)

    @defer.inlineCallbacks
    def test_paused_body_applies_back_pressure(self) -> Any:
        """
        While the body protocol is paused nothing is acknowledged, so the
        peer stops at our 65,535-byte stream window; resuming gets the rest.
        """
        from twisted.internet.protocol import Protocol

        agent = self.make_agent()
        response = yield agent.request(b"GET", (self.base + "/big?size=300000").encode())
        done: defer.Deferred[None] = defer.Deferred()

        class Slow(Protocol):
            received = 0

            def dataReceived(self, data: bytes) -> None:
                if self.received == 0:
                    self.transport.pauseProducing()  # type: ignore[union-attr]
                self.received += len(data)

            def connectionLost(self, reason: Any) -> None:
                self.reason = reason
                done.callback(None)

        body = Slow()
        response.deliverBody(body)
        yield deferLater(reactor, 0.3, lambda: None)
        buffered = agent.stats()[f"http://127.0.0.1:{self.port}"]["buffered"]
        self.assertLessEqual(body.received + buffered, 65535)
        self.assertFalse(done.called)
        body.transport.resumeProducing()  # type: ignore[union-attr]
        yield done
        self.assertTrue(body.reason.check(ResponseDone))
        self.assertEqual(body.received, 300000)

    @defer.inlineCallbacks
    def test_cancel_resets_stream(self) -> Any:
        """Cancelling the request Deferred sends RST_STREAM(CANCEL)."""
        agent = self.make_agent()
        client = self.client(agent)
        d = client.get(self.base + "/echo?delay=5000")
        reactor.callLater(0.2, d.cancel)
        yield self.assertFailure(d, defer.CancelledError)

        def saw_cancel() -> Any:
            return self.server_stats().addCallback(lambda s: int(ErrorCodes.CANCEL) in s["resets"])

        self.assertTrue((yield wait_until(saw_cancel)))
        stats = agent.stats()[f"http://127.0.0.1:{self.port}"]
        self.assertEqual(stats["open_streams"], 0)
        response = yield client.get(self.base + "/echo")
        self.assertEqual(header(response, "x-session"), "1")

    @defer.inlineCallbacks
    def test_cancel_queued_request(self) -> Any:
        """A request cancelled while queued is never sent."""
        agent = self.make_agent()
        d1 = agent.request(b"GET", (self.base + "/echo?q=1").encode())
        d2 = agent.request(b"GET", (self.base + "/echo?q=2").encode())
        d2.cancel()  # the session is not even connected yet
        yield self.assertFailure(d2, defer.CancelledError)
        r1 = yield d1
        self.assertEqual(header(r1, "x-stream"), "1")
        r3 = yield agent.request(b"GET", (self.base + "/echo?q=3").encode())
        self.assertEqual(header(r3, "x-stream"), "3")

    @defer.inlineCallbacks
    def test_idle_session_closes(self) -> Any:
        agent = self.make_agent(idle_timeout=0.2)
        client = self.client(agent)
        response = yield client.get(self.base + "/echo")
        yield response.content()
        origin = f"http://127.0.0.1:{self.port}"
        self.assertEqual(agent.stats()[origin]["active"], 1)
        closed = yield wait_until(lambda: agent.stats()[origin]["active"] == 0, timeout=3)
        self.assertTrue(closed)
        stats = yield self.server_stats()
        self.assertEqual(stats["open"], 1)  # only the /stats session
        response = yield client.get(self.base + "/echo")
        self.assertEqual(header(response, "x-session"), "3")

    @defer.inlineCallbacks
    def test_close_fails_requests_in_flight(self) -> Any:
        agent = HTTP2Agent(reactor)
        d = agent.request(b"GET", (self.base + "/echo?delay=5000").encode())
        yield wait_until(lambda: any(s["open_streams"] for s in agent.stats().values()))
        yield agent.close()
        failure = yield self.assertFailure(d, ResponseNeverReceived)
        self.assertTrue(failure.reasons)
        self.assertEqual(agent.stats(), {})

    @defer.inlineCallbacks
    def test_close_while_connecting(self) -> Any:
        """close() before the session is up: queued requests are not sent."""
        from twisted.web.client import RequestNotSent

        agent = HTTP2Agent(reactor)
        d = agent.request(b"GET", (self.base + "/echo").encode())
        yield agent.close()
        yield self.assertFailure(d, RequestNotSent)
        stats = yield self.server_stats()
        self.assertEqual(stats["resets"], [])

    @defer.inlineCallbacks
    def test_close_with_drain(self) -> Any:
        agent = HTTP2Agent(reactor)
        d = agent.request(b"GET", (self.base + "/echo?delay=200").encode())
        yield wait_until(lambda: any(s["open_streams"] for s in agent.stats().values()))
        yield agent.close(drain_timeout=5)
        response = yield d
        self.assertEqual(response.code, 200)


class MaxConcurrentStreamsTests(_NodeTestBase):
    server_options = {"settings": {"maxConcurrentStreams": 2}}

    @defer.inlineCallbacks
    def test_never_more_streams_than_allowed(self) -> Any:
        agent = self.make_agent()
        client = self.client(agent)
        ds = [client.get(f"{self.base}/echo?delay=40&i={i}") for i in range(10)]
        origin = f"http://127.0.0.1:{self.port}"
        self.assertEqual(agent.stats()[origin]["queued"], 10)
        responses = yield defer.gatherResults(ds)
        inflight = [int(header(r, "x-inflight")) for r in responses]
        self.assertEqual(max(inflight), 2)
        self.assertEqual(max(int(header(r, "x-max-inflight")) for r in responses), 2)
        self.assertEqual({header(r, "x-session") for r in responses}, {"1"})
        self.assertEqual(
            [header(r, "x-path") for r in responses],
            [f"/echo?delay=40&i={i}" for i in range(10)],
        )

    @defer.inlineCallbacks
    def test_more_sessions_when_allowed(self) -> Any:
        """max_sessions_per_origin=3 spreads a burst over up to 3 sessions."""
        agent = self.make_agent(max_sessions_per_origin=3)
        client = self.client(agent)
        responses = yield defer.gatherResults(
            [client.get(f"{self.base}/echo?delay=100&i={i}") for i in range(6)]
        )
        sessions = {header(r, "x-session") for r in responses}
        self.assertTrue(1 < len(sessions) <= 3, sessions)
        self.assertEqual(max(int(header(r, "x-max-inflight")) for r in responses), 2)


class ErrorTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def test_connection_refused(self) -> Any:
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.protocol import Factory

        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
        number = port.getHost().port
        yield port.stopListening()
        agent = HTTP2Agent(reactor)
        self.addCleanup(agent.close)
        d = agent.request(b"GET", f"http://127.0.0.1:{number}/".encode())
        yield self.assertFailure(d, ConnectionRefusedError)

    @defer.inlineCallbacks
    def test_h2c_to_http1_only_server(self) -> Any:
        """Prior knowledge against an HTTP/1.1-only server fails clearly."""
        from twisted.internet.endpoints import TCP4ServerEndpoint

        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(Resource()))
        self.addCleanup(port.stopListening)
        agent = HTTP2Agent(reactor)
        self.addCleanup(agent.close)
        d = agent.request(b"GET", f"http://127.0.0.1:{port.getHost().port}/".encode())
        failure = yield self.assertFailure(d, ResponseNeverReceived)
        self.assertIsInstance(failure.reasons[0].value, H2ProtocolError)

    @defer.inlineCallbacks
    def test_cleartext_h2_false_uses_http11(self) -> Any:
        from twisted.internet.endpoints import TCP4ServerEndpoint

        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(_Recorder()))
        self.addCleanup(port.stopListening)
        agent = HTTP2Agent(reactor, cleartext_h2=False)
        self.addCleanup(agent.close)
        response = yield agent.request(
            b"GET", f"http://127.0.0.1:{port.getHost().port}/a?b=c".encode()
        )
        self.assertEqual(response.version, (b"HTTP", 1, 1))
        body = json.loads((yield readBody(response)))
        self.assertEqual((body["proto"], body["uri"]), ("HTTP/1.1", "/a?b=c"))

    def test_unsupported_scheme(self) -> Any:
        agent = HTTP2Agent(reactor)
        from twisted.web.error import SchemeNotSupported

        return self.assertFailure(agent.request(b"GET", b"ftp://127.0.0.1/"), SchemeNotSupported)

    def test_bad_arguments(self) -> None:
        self.assertRaises(ValueError, HTTP2Agent, reactor, max_requests_per_session=0)
        self.assertRaises(ValueError, HTTP2Agent, reactor, max_sessions_per_origin=0)
        self.assertRaises(ValueError, HTTP2Agent, reactor, max_streams_per_session=0)


class _Recorder(Resource):
    """Answers with JSON describing the request it got."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        info = {
            "proto": request.clientproto.decode(),
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "secure": request.isSecure(),
            "args": {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()},
            "length": len(body),
            "client_port": request.getClientAddress().port,
        }
        self.seen.append(info)
        if request.getHeader(b"x-echo"):
            request.setHeader(b"content-type", b"application/octet-stream")
            return body
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(info).encode()


class TwistedTLSServerTests(TestCase):
    """The agent against twisted.web's own HTTP/2 server (TLS + ALPN)."""

    timeout = 30

    @defer.inlineCallbacks
    def listen(self, offer_h2: bool = True, alpn: Any = None) -> Any:
        self.ca = CertificateAuthority()
        directory = self.mktemp()
        self.ca_path = self.ca.write_cert(directory)
        leaf = self.ca.issue("server", dns_names=["peer.test"], ip_addresses=["127.0.0.1"])
        paths = leaf.write(directory, "server")
        self.resource = _Recorder()
        site = Site(self.resource)
        site._parsePOSTFormSubmission = False  # what the plugin's Site does
        endpoint = server_endpoint(
            reactor, 0, paths.cert, paths.key, interface="127.0.0.1", alpn=alpn
        )
        # A Site offers h2 and http/1.1 by ALPN itself (IProtocolNegotiationFactory);
        # a plain wrapper around it hides that.
        self.port = yield endpoint.listen(site if offer_h2 else WrappingFactory(site))
        self.addCleanup(self.port.stopListening)
        self.base = f"https://127.0.0.1:{self.port.getHost().port}"
        self.agent = HTTP2Agent(reactor, tls_policy=ClientTLSPolicy(self.ca_path))
        self.addCleanup(self.agent.close)

    @defer.inlineCallbacks
    def test_h2_over_tls(self) -> Any:
        yield self.listen()
        client = HTTPClient(self.agent, data_to_body_producer=BytesProducer)
        body = os.urandom(34_000)
        response = yield client.post(
            self.base + "/x/y?z=1&w=2", data=body, headers=Headers({b"x-echo": [b"1"]})
        )
        self.assertEqual(response.original.original.version, (b"HTTP", 2, 0))
        self.assertEqual((yield response.content()), body)
        response = yield client.get(self.base + "/x/y?z=1&w=2")
        info = yield response.json()
        self.assertEqual(info["proto"], "HTTP/2")
        self.assertEqual(info["uri"], "/x/y?z=1&w=2")
        self.assertEqual(info["args"], {"z": ["1"], "w": ["2"]})
        self.assertTrue(info["secure"])

    @defer.inlineCallbacks
    def test_many_concurrent_requests_one_connection(self) -> Any:
        yield self.listen()
        client = HTTPClient(self.agent, data_to_body_producer=BytesProducer)
        responses = yield defer.gatherResults(
            [client.post(f"{self.base}/n{i}", data=b"p" * (100 + i)) for i in range(40)]
        )
        infos = []
        for response in responses:
            infos.append((yield response.json()))
        self.assertEqual([i["uri"] for i in infos], [f"/n{i}" for i in range(40)])
        self.assertEqual([i["length"] for i in infos], [100 + i for i in range(40)])
        self.assertEqual({i["proto"] for i in infos}, {"HTTP/2"})
        self.assertEqual(len({i["client_port"] for i in infos}), 1)

    @defer.inlineCallbacks
    def test_form_body_not_parsed_over_h2(self) -> Any:
        """
        Site(parsePOSTFormSubmission=False) keeps a form-encoded body raw over
        HTTP/2 as over HTTP/1.1: twisted.web's HTTP/2 streams build the same
        Request objects from the same Site.
        """
        yield self.listen()
        client = HTTPClient(self.agent, data_to_body_producer=BytesProducer)
        response = yield client.post(
            self.base + "/f?q=1",
            data=b"a=1&b=2",
            headers=Headers({b"content-type": [b"application/x-www-form-urlencoded"]}),
        )
        info = yield response.json()
        self.assertEqual(info["proto"], "HTTP/2")
        self.assertEqual(info["args"], {"q": ["1"]})
        self.assertEqual(info["length"], 7)

    @defer.inlineCallbacks
    def test_alpn_fallback_to_http11(self) -> Any:
        """A TLS server that does not offer h2 is used over HTTP/1.1."""
        yield self.listen(offer_h2=False, alpn=[b"http/1.1"])
        client = HTTPClient(self.agent, data_to_body_producer=BytesProducer)
        responses = yield defer.gatherResults(
            [client.post(f"{self.base}/old?i={i}", data=b"abc") for i in range(3)]
        )
        for i, response in enumerate(responses):
            self.assertEqual(response.original.original.version, (b"HTTP", 1, 1))
            info = yield response.json()
            self.assertEqual(
                (info["proto"], info["uri"], info["length"]), ("HTTP/1.1", f"/old?i={i}", 3)
            )
        origin = f"https://127.0.0.1:{self.port.getHost().port}"
        self.assertTrue(self.agent.stats()[origin]["http1"])
        # Known to be HTTP/1.1-only now: later requests go there directly.
        response = yield client.post(f"{self.base}/later", data=b"de")
        self.assertEqual(response.original.original.version, (b"HTTP", 1, 1))
        info = yield response.json()
        self.assertEqual((info["uri"], info["length"]), ("/later", 2))
        self.assertEqual(len(self.resource.seen), 4)

    @defer.inlineCallbacks
    def test_dns_name_via_tcp_endpoint_factory(self) -> Any:
        """Host names are verified against DNS SANs (peer.test pinned to 127.0.0.1)."""
        yield self.listen()
        from twisted.internet.endpoints import TCP4ClientEndpoint

        seen = []

        def pin(host: str, port: int) -> Any:
            seen.append(host)
            return TCP4ClientEndpoint(reactor, "127.0.0.1", port)

        agent = HTTP2Agent(
            reactor, tls_policy=ClientTLSPolicy(self.ca_path), tcp_endpoint_factory=pin
        )
        self.addCleanup(agent.close)
        port = self.port.getHost().port
        response = yield agent.request(b"GET", f"https://peer.test:{port}/dns".encode())
        self.assertEqual(response.version, (b"HTTP", 2, 0))
        info = json.loads((yield readBody(response)))
        self.assertEqual(info["uri"], "/dns")
        self.assertEqual(seen, ["peer.test"])

    @defer.inlineCallbacks
    def test_cancel_after_response_body_abort(self) -> Any:
        """Aborting a body transport after the headers resets the stream cleanly."""
        yield self.listen()
        response = yield self.agent.request(b"GET", (self.base + "/abort").encode())
        d = readBody(response)
        d.cancel()
        yield self.assertFailure(d, defer.CancelledError)
        again = yield self.agent.request(b"GET", (self.base + "/after").encode())
        self.assertEqual(json.loads((yield readBody(again)))["uri"], "/after")

    @defer.inlineCallbacks
    def test_plain_agent_with_policy(self) -> Any:
        """ClientTLSPolicy works with Twisted's own HTTP/1.1 Agent too."""
        yield self.listen()
        agent = Agent(reactor, contextFactory=ClientTLSPolicy(self.ca_path))
        response = yield agent.request(b"GET", (self.base + "/h1").encode(), Headers())
        info = json.loads((yield readBody(response)))
        self.assertEqual((info["proto"], info["uri"]), ("HTTP/1.1", "/h1"))
        # Twisted's Agent keeps no connection (non-persistent default pool).
        yield deferLater(reactor, 0.05, lambda: None)
