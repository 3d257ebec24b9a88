"""
Tests for HTTP2Agent's Twisted pieces (ilphttp.http2, ilphttp._h2_pool,
ilphttp._h2_protocol, ilphttp._h2_response) against an in-memory peer: each
connection is a StringTransport with an h2 server connection on the other end,
time is a MemoryReactorClock. No network, no sleeping.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import GoAwayFrame
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import (
    URI,
    RedirectAgent,
    RequestGenerationFailed,
    RequestNotSent,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from ilphttp._h2_pool import MAX_ATTEMPTS, OriginPool
from ilphttp._h2_protocol import H2ClientProtocol
from ilphttp._h2_response import PendingRequest
from ilphttp.http2 import (
    BytesProducer,
    ErrorCodes,
    H2ConnectionTerminated,
    H2ProtocolError,
    H2StreamReset,
    HTTP2Agent,
)
from ilphttp.http2_session import ClientSession

ORIGIN = "http://peer.test:8080"
URL = b"http://peer.test:8080/ilp"


@implementer(IStreamClientEndpoint)
class PendingEndpoint:
    """An endpoint whose connection attempts wait for the test to settle them."""

    def __init__(self, attempts: list[tuple[Factory, Deferred[Any]]]) -> None:
        self.attempts = attempts

    def connect(self, factory: Factory) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.attempts.append((factory, d))
        return d


class Peer:
    """
    The server end of one connection: an h2 server connection fed what the
    client wrote to its StringTransport.
    """

    def __init__(self, factory: Factory, connected: Deferred[Any]) -> None:
        self.transport = StringTransport()
        self.protocol: H2ClientProtocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        connected.callback(self.protocol)
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.server = h2.connection.H2Connection(config=config)
        self.events: list[h2.events.Event] = []

    def settings(self, **settings: int) -> None:
        """Send the server's SETTINGS (``max_concurrent_streams=...``)."""
        self.server.initiate_connection()
        if settings:
            codes = h2.settings.SettingCodes
            self.server.update_settings({getattr(codes, k.upper()): v for k, v in settings.items()})
        self.flush()

    def read(self) -> list[h2.events.Event]:
        """What the client sent since the last read."""
        data = self.transport.value()
        self.transport.clear()
        events = self.server.receive_data(data) if data else []
        self.events.extend(events)
        return events

    def flush(self, extra: bytes = b"") -> None:
        """
        Deliver what the server has queued (then ``extra`` bytes) to the
        client in one read, and read its answer.
        """
        self.read()
        data = self.server.data_to_send() + extra
        if data:
            self.protocol.dataReceived(data)
        self.read()

    def goaway(self, last_stream_id: int, code: int = ErrorCodes.NO_ERROR) -> bytes:
        """
        A GOAWAY frame (built by hand: h2's server would then refuse to send
        the responses a graceful GOAWAY still lets it send).
        """
        return GoAwayFrame(0, last_stream_id, code).serialize()

    def requests(self) -> list[h2.events.RequestReceived]:
        return [e for e in self.events if isinstance(e, h2.events.RequestReceived)]

    def resets(self) -> list[tuple[int, int]]:
        return [
            (e.stream_id, e.error_code) for e in self.events if isinstance(e, h2.events.StreamReset)
        ]

    def respond(
        self,
        stream_id: int,
        status: int = 200,
        body: bytes | None = b"ok",
        headers: list[tuple[bytes, bytes]] = [],  # noqa: B006
        flush: bool = True,
    ) -> None:
        self.read()
        fields = [(b":status", str(status).encode()), *headers]
        self.server.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self.server.send_data(stream_id, body, end_stream=True)
        if flush:
            self.flush()


class Body(Protocol):
    """Records what a response body protocol sees."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.lost: list[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


class _AgentCase(SynchronousTestCase):
    def make_agent(self, **kwargs: Any) -> HTTP2Agent:
        self.clock = MemoryReactorClock()
        self.attempts: list[tuple[Factory, Deferred[Any]]] = []
        agent = HTTP2Agent(
            self.clock,
            tcp_endpoint_factory=lambda host, port: PendingEndpoint(self.attempts),
            **kwargs,
        )
        self.agent = agent
        return agent

    def peer(self, index: int = -1, **settings: int) -> Peer:
        """Complete connection attempt ``index``; the server sends SETTINGS."""
        peer = Peer(*self.attempts[index])
        peer.settings(**settings)
        return peer

    def stats(self) -> dict[str, Any]:
        return self.agent.stats()[ORIGIN]

    def response(self, d: Deferred[IResponse]) -> IResponse:
        return self.successResultOf(d)

    def never_received(self, d: Deferred[Any]) -> BaseException:
        """The single reason inside the ResponseNeverReceived ``d`` failed with."""
        failure = self.failureResultOf(d, ResponseNeverReceived)
        self.assertEqual(len(failure.value.reasons), 1)
        return failure.value.reasons[0].value


class ConnectTests(_AgentCase):
    def test_connect_timeout(self) -> None:
        """
        connect_timeout covers the TCP connection and the peer's SETTINGS: the
        queued request fails with TimeoutError; a connection without SETTINGS
        is aborted.
        """
        for connects in (False, True):
            agent = self.make_agent(connect_timeout=5)
            d = agent.request(b"GET", URL)
            peer = Peer(*self.attempts[0]) if connects else None
            self.clock.advance(4.9)
            self.assertNoResult(d)
            self.assertTrue(self.stats()["connecting"])
            self.clock.advance(0.1)
            failure = self.failureResultOf(d, TimeoutError)
            self.assertIn("timed out", str(failure.value))
            self.assertEqual((self.stats()["connecting"], self.stats()["queued"]), (False, 0))
            if peer is not None:
                self.assertTrue(peer.transport.disconnected)
            self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connect_failure_fails_the_queue_only_without_a_session(self) -> None:
        agent = self.make_agent(max_sessions_per_origin=2)
        d = agent.request(b"GET", URL)
        self.attempts[0][1].errback(Failure(ConnectionRefusedError()))
        self.failureResultOf(d, ConnectionRefusedError)

        # With a session up (at its peer's limit of one stream), a failed
        # second connection leaves the waiting request queued for it.
        first = agent.request(b"GET", URL + b"?n=1")
        peer = self.peer(1, max_concurrent_streams=1)
        waiting = agent.request(b"GET", URL + b"?n=2")
        self.assertEqual(len(self.attempts), 3)
        self.attempts[2][1].errback(Failure(ConnectionRefusedError()))
        self.assertNoResult(waiting)
        self.assertEqual((self.stats()["queued"], self.stats()["active"]), (1, 1))
        peer.respond(1)
        self.assertEqual(self.response(first).code, 200)
        paths = [dict(r.headers)[b":path"] for r in peer.requests()]
        self.assertEqual(paths, [b"/ilp?n=1", b"/ilp?n=2"])
        peer.respond(3, status=201)
        self.assertEqual(self.response(waiting).code, 201)

    def test_goaway_instead_of_settings(self) -> None:
        """A peer that answers the preface with GOAWAY fails the queued request."""
        agent = self.make_agent()
        d = agent.request(b"GET", URL)
        peer = Peer(*self.attempts[0])
        peer.protocol.dataReceived(peer.goaway(0, ErrorCodes.ENHANCE_YOUR_CALM))
        reason = self.never_received(d)
        assert isinstance(reason, H2ConnectionTerminated)
        self.assertEqual(reason.error_code, ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertEqual(peer.requests(), [])

    def test_settings_with_goaway_moves_on_to_a_new_session(self) -> None:
        """SETTINGS and a graceful GOAWAY in one read: the request goes to a new session."""
        agent = self.make_agent()
        d = agent.request(b"GET", URL)
        first = Peer(*self.attempts[0])
        first.server.initiate_connection()
        first.flush(first.goaway(0))
        self.assertEqual(first.requests(), [])
        self.assertEqual(len(self.attempts), 2)
        self.assertTrue(first.transport.disconnecting)
        second = self.peer()
        self.assertEqual(len(second.requests()), 1)
        second.respond(1)
        self.assertEqual(self.response(d).code, 200)

    def test_alpn_fallback_to_http11(self) -> None:
        """
        TLS ALPN choosing http/1.1: the connection is closed, queued and later
        requests of the origin go to HTTP/1.1.
        """
        clock = MemoryReactorClock()
        attempts: list[tuple[Factory, Deferred[Any]]] = []
        sent: list[PendingRequest] = []
        pool = OriginPool(
            clock,
            (b"https", b"peer.test", 443),
            endpoint=lambda: PendingEndpoint(attempts),
            send_http1=sent.append,
            new_session=ClientSession,
            registry=set(),
            max_sessions=1,
            connect_timeout=5,
        )
        queued = [PendingRequest(b"GET", None, URL, Headers(), None) for _ in range(2)]  # type: ignore[arg-type]
        for request in queued:
            pool.submit(request)
        factory, connected = attempts[0]
        transport = StringTransport()
        proto = factory.buildProtocol(None)
        proto.makeConnection(transport)
        connected.callback(proto)
        self.assertEqual(transport.value(), b"")  # no preface before the handshake
        transport.negotiatedProtocol = b"http/1.1"  # type: ignore[attr-defined]
        proto.handshakeCompleted()
        self.assertEqual((sent, transport.value(), transport.disconnecting), (queued, b"", True))
        later = PendingRequest(b"GET", URI.fromBytes(URL), URL, Headers(), None)
        pool.submit(later)
        self.assertEqual(sent, [*queued, later])
        self.assertEqual((pool.stats()["http1"], len(attempts)), (True, 1))


class RetryTests(_AgentCase):
    def test_refused_stream_is_sent_at_most_max_attempts_times(self) -> None:
        agent = self.make_agent()
        d = agent.request(b"GET", URL)
        peer = self.peer()
        for i in range(MAX_ATTEMPTS):
            self.assertEqual(len(peer.requests()), i + 1)
            self.assertNoResult(d)
            peer.server.reset_stream(1 + 2 * i, ErrorCodes.REFUSED_STREAM)
            peer.flush()
        reason = self.never_received(d)
        assert isinstance(reason, H2StreamReset)
        self.assertEqual(reason.error_code, ErrorCodes.REFUSED_STREAM)
        self.assertEqual(len(peer.requests()), MAX_ATTEMPTS)

    def test_cancel_before_a_refused_stream_is_retried(self) -> None:
        """
        A refused request cancelled (here by another request's callback) before
        its retry goes out is not sent again.
        """
        agent = self.make_agent()
        refused = agent.request(b"GET", URL + b"?n=1")
        other = agent.request(b"GET", URL + b"?n=2")
        peer = self.peer()
        other.addCallback(lambda response: refused.cancel() or response)
        peer.server.reset_stream(1, ErrorCodes.REFUSED_STREAM)
        peer.respond(3)  # both frames in one read
        self.failureResultOf(refused, CancelledError)
        self.assertEqual(self.response(other).code, 200)
        self.assertEqual(len(peer.requests()), 2)
        self.assertEqual(self.stats()["queued"], 0)

    def test_refused_stream_after_close_is_not_retried(self) -> None:
        agent = self.make_agent()
        d = agent.request(b"GET", URL)
        peer = self.peer()
        agent.close(drain_timeout=5)
        peer.server.reset_stream(1, ErrorCodes.REFUSED_STREAM)
        peer.flush()
        reason = self.never_received(d)
        assert isinstance(reason, H2StreamReset)
        self.assertEqual((len(peer.requests()), len(self.attempts)), (1, 1))

    def test_max_requests_per_session_connects_as_soon_as_one_retires(self) -> None:
        """
        max_requests_per_session=1: the second queued request gets a new
        connection; the retired session still finishes its stream when its
        peer then says GOAWAY, and closes.
        """
        agent = self.make_agent(max_requests_per_session=1)
        ds = [agent.request(b"GET", URL + b"?n=%d" % i) for i in range(2)]
        first = self.peer()
        self.assertEqual((len(first.requests()), len(self.attempts)), (1, 2))
        self.assertEqual((self.stats()["retiring"], self.stats()["queued"]), (1, 1))
        second = self.peer()
        self.assertEqual(dict(second.requests()[0].headers)[b":path"], b"/ilp?n=1")
        first.flush(first.goaway(1))
        self.assertFalse(first.transport.disconnecting)
        first.respond(1, body=b"one")
        self.assertEqual(self.successResultOf(readBody(self.response(ds[0]))), b"one")
        self.assertTrue(first.transport.disconnecting)
        self.assertEqual(self.stats()["retiring"], 2)  # the second took its one request too
        first.protocol.connectionLost(Failure(ResponseDone()))
        self.assertEqual((self.stats()["retiring"], self.stats()["active"]), (1, 0))

    def test_session_out_of_stream_ids_hands_over_to_a_new_one(self) -> None:
        """RFC 9113 5.1.1: a client that runs out of stream ids opens a new connection."""
        agent = self.make_agent()
        first_d = agent.request(b"GET", URL)
        first = self.peer()
        # Fast-forward past 2**30 streams.
        first.protocol.session._conn.highest_outbound_stream_id = 2**31 - 1
        second_d = agent.request(b"GET", URL)
        self.assertEqual((len(first.requests()), len(self.attempts)), (1, 2))
        self.assertEqual(self.stats()["retiring"], 1)
        second = self.peer()
        second.respond(1, status=202)
        self.assertEqual(self.response(second_d).code, 202)
        first.respond(1)
        self.assertEqual(self.response(first_d).code, 200)
        self.assertTrue(first.transport.disconnecting)


class ResponseTests(_AgentCase):
    def test_response_length(self) -> None:
        """IResponse.length: 0 for HEAD, 204 and 304; else content-length or UNKNOWN_LENGTH."""
        cases = [
            (b"HEAD", 200, [(b"content-length", b"12")], 0),
            (b"GET", 204, [], 0),
            (b"GET", 304, [], 0),
            (b"GET", 200, [(b"content-length", b"2")], 2),
            (b"GET", 200, [], UNKNOWN_LENGTH),
        ]
        agent = self.make_agent()
        peer = None
        for i, (method, status, headers, length) in enumerate(cases):
            d = agent.request(method, URL)
            if peer is None:
                peer = self.peer()
            body = b"ok" if length not in (0,) else None
            peer.respond(1 + 2 * i, status=status, body=body, headers=headers)
            response = self.response(d)
            self.assertEqual((response.code, response.length), (status, length))
            self.assertEqual(response.request.method, method)

    def _open_body(self, size: int = 0, **kwargs: Any) -> tuple[Peer, IResponse]:
        d = self.make_agent(**kwargs).request(b"GET", URL)
        peer = self.peer()
        peer.server.send_headers(1, [(b":status", b"200")])
        if size:
            peer.server.send_data(1, b"x" * size)
        peer.flush()
        return peer, self.response(d)

    def test_stop_producing_resets_the_stream(self) -> None:
        """
        stopProducing / loseConnection on the body transport: RST_STREAM(CANCEL)
        at once, connectionLost(ResponseFailed) in a later reactor turn, and
        what arrives afterwards is dropped.
        """
        for stop in ("stopProducing", "loseConnection"):
            peer, response = self._open_body(size=5)
            body = Body()
            response.deliverBody(body)
            getattr(body.transport, stop)()
            peer.read()
            self.assertEqual(peer.resets(), [(1, ErrorCodes.CANCEL)])
            self.assertEqual((body.data, body.lost), ([b"xxxxx"], []))
            self.clock.advance(0)
            [reason] = body.lost
            self.assertIsInstance(reason.value, ResponseFailed)
            reset = reason.value.reasons[0].value
            self.assertEqual((reset.error_code, reset.remote), (ErrorCodes.CANCEL, False))
            self.assertEqual(self.stats()["open_streams"], 0)

    def test_stop_after_the_whole_body_arrived_sends_no_reset(self) -> None:
        """
        A paused body whose stream already ended: stopping it discards the
        buffer (crediting the flow-control window) but resets nothing.
        """
        peer, response = self._open_body(connection_window=65535)
        body = Body()
        response.deliverBody(body)
        body.transport.pauseProducing()
        for _ in range(3):
            peer.server.send_data(1, b"y" * 16000)
        peer.server.send_data(1, b"", end_stream=True)
        peer.flush()
        self.assertEqual(self.stats()["open_streams"], 0)
        self.assertEqual(peer.server.outbound_flow_control_window, 65535 - 48000)
        body.transport.stopProducing()
        peer.read()
        self.assertEqual(peer.server.outbound_flow_control_window, 65535)
        self.clock.advance(0)
        peer.read()
        self.assertEqual(peer.resets(), [])
        self.assertEqual(body.data, [])
        self.assertIsInstance(body.lost[0].value, ResponseFailed)

    def test_stopping_a_finished_body_does_nothing(self) -> None:
        peer, response = self._open_body()
        body = Body()
        response.deliverBody(body)
        peer.server.send_data(1, b"done", end_stream=True)
        peer.flush()
        self.assertEqual(body.data, [b"done"])
        body.lost[0].trap(ResponseDone)
        body.transport.stopProducing()
        body.transport.abortConnection()
        self.clock.advance(0)
        peer.read()
        self.assertEqual((len(body.lost), peer.resets()), (1, []))

    def test_deliver_body_twice(self) -> None:
        _, response = self._open_body()
        response.deliverBody(Body())
        self.assertRaises(RuntimeError, response.deliverBody, Body())

    def test_pause_and_resume_inside_data_received(self) -> None:
        """Pausing and resuming from dataReceived: every chunk once, in order."""
        peer, response = self._open_body()

        class Bouncing(Body):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                self.transport.pauseProducing()  # type: ignore[union-attr]
                self.transport.resumeProducing()  # type: ignore[union-attr]

        body = Bouncing()
        response.deliverBody(body)
        for chunk in (b"a", b"b"):
            peer.server.send_data(1, chunk)
        peer.server.send_data(1, b"c", end_stream=True)
        peer.flush()
        self.assertEqual(body.data, [b"a", b"b", b"c"])
        body.lost[0].trap(ResponseDone)

    def test_buffered_body_survives_connection_loss(self) -> None:
        """Data received before the connection dropped is delivered, then ResponseFailed."""
        peer, response = self._open_body(size=10)
        body = Body()
        body.makeConnection = lambda transport: (  # type: ignore[method-assign]
            Protocol.makeConnection(body, transport),
            transport.pauseProducing(),
        )
        response.deliverBody(body)
        peer.protocol.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual((body.data, body.lost), ([], []))
        body.transport.resumeProducing()
        self.assertEqual(body.data, [b"x" * 10])
        self.assertIsInstance(body.lost[0].value, ResponseFailed)
        self.assertEqual(peer.transport.value(), b"")  # nothing acknowledged after the loss

    def test_cancelled_while_its_response_is_in_the_same_read(self) -> None:
        """
        Request B cancelled by request A's callback while B's answer (headers,
        a whole response, or a reset) is in the same read: B fails with
        CancelledError only, A is unaffected.
        """

        def headers(peer: Peer) -> None:
            peer.server.send_headers(3, [(b":status", b"200")])

        def whole(peer: Peer) -> None:
            peer.respond(3, flush=False)

        def reset(peer: Peer) -> None:
            peer.server.reset_stream(3, ErrorCodes.INTERNAL_ERROR)

        for answer in (headers, whole, reset):
            agent = self.make_agent()
            a = agent.request(b"GET", URL)
            b = agent.request(b"GET", URL)
            peer = self.peer()
            a.addCallback(lambda response, b=b: b.cancel() or response)
            peer.respond(1, flush=False)
            answer(peer)
            peer.flush()
            self.assertEqual(self.response(a).code, 200)
            self.failureResultOf(b, CancelledError)
            self.assertEqual(self.stats()["open_streams"], 0)

    def test_redirect_keeps_the_previous_response(self) -> None:
        agent = RedirectAgent(self.make_agent())
        d = agent.request(b"GET", URL)
        peer = self.peer()
        peer.respond(1, status=302, headers=[(b"location", b"/moved")], body=None)
        self.assertEqual(dict(peer.requests()[1].headers)[b":path"], b"/moved")
        peer.respond(3, status=200)
        response = self.response(d)
        self.assertEqual((response.code, response.previousResponse.code), (200, 302))

    def test_protocol_after_connection_lost(self) -> None:
        """Once lost, a session takes no request and ignores late bytes."""
        d = self.make_agent().request(b"GET", URL)
        peer = self.peer()
        peer.protocol.connectionLost(Failure(ConnectionRefusedError()))
        self.assertIsInstance(self.never_received(d), ConnectionRefusedError)
        request = PendingRequest(b"GET", URI.fromBytes(URL), URL, Headers(), None)
        self.assertFalse(peer.protocol.submit(request))
        peer.server.send_headers(1, [(b":status", b"200")], end_stream=True)
        peer.flush()
        self.assertEqual((peer.transport.value(), request.done), (b"", False))


@implementer(IBodyProducer)
class SlowProducer:
    """Writes its body when the test says so; records stopProducing."""

    length = UNKNOWN_LENGTH

    def __init__(self) -> None:
        self.stopped = False
        self.consumer: IConsumer | None = None
        self.done: Deferred[None] = Deferred()

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self.consumer = consumer
        consumer.registerProducer(self, True)
        return self.done

    def finish(self, body: bytes) -> None:
        assert self.consumer is not None
        self.consumer.write(body)
        self.consumer.unregisterProducer()
        self.done.callback(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True


class RequestBodyTests(_AgentCase):
    def test_streaming_producer_body_is_sent_once_complete(self) -> None:
        agent = self.make_agent()
        producer = SlowProducer()
        d = agent.request(b"POST", URL, None, producer)
        self.assertEqual(self.attempts, [])
        producer.finish(b"packet")
        peer = self.peer()
        data = [e.data for e in peer.events if isinstance(e, h2.events.DataReceived)]
        self.assertEqual(data, [b"packet"])
        peer.respond(1)
        self.assertEqual(self.response(d).code, 200)

    def test_cancel_while_the_body_is_produced(self) -> None:
        agent = self.make_agent()
        producer = SlowProducer()
        d = agent.request(b"POST", URL, None, producer)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(producer.stopped)
        self.assertEqual(self.attempts, [])

    def test_producer_failures(self) -> None:
        """A producer that fails or raises: RequestGenerationFailed, nothing sent."""

        @implementer(IBodyProducer)
        class Failing(SlowProducer):
            def startProducing(self, consumer: IConsumer) -> Deferred[None]:
                return fail(ValueError("boom"))

        @implementer(IBodyProducer)
        class Raising(SlowProducer):
            def startProducing(self, consumer: IConsumer) -> Deferred[None]:
                raise ValueError("boom")

        for producer in (Failing(), Raising()):
            d = self.make_agent().request(b"POST", URL, None, producer)
            failure = self.failureResultOf(d, RequestGenerationFailed)
            failure.value.reasons[0].trap(ValueError)
            self.assertEqual(self.attempts, [])

    def test_bytes_producer_with_other_consumers(self) -> None:
        """BytesProducer writes its body in one go to any consumer; pausing is a no-op."""

        @implementer(IConsumer)
        class Consumer:
            def __init__(self) -> None:
                self.written: list[bytes] = []

            def write(self, data: bytes) -> None:
                self.written.append(data)

            def registerProducer(self, producer: Any, streaming: bool) -> None:
                raise AssertionError("not needed")

            def unregisterProducer(self) -> None:
                raise AssertionError("not needed")

        producer = BytesProducer(bytearray(b"abc"))
        consumer = Consumer()
        producer.pauseProducing()
        producer.resumeProducing()
        self.assertIsNone(self.successResultOf(producer.startProducing(consumer)))
        producer.stopProducing()
        self.assertEqual((consumer.written, producer.length), ([b"abc"], 3))

    def test_unparseable_url(self) -> None:
        d = self.make_agent().request(b"GET", b"http://[::1/")
        self.failureResultOf(d, ValueError)
        self.assertEqual(self.attempts, [])


class CloseTests(_AgentCase):
    def test_close_while_a_session_is_set_up(self) -> None:
        agent = self.make_agent()
        d = agent.request(b"GET", URL)
        peer = Peer(*self.attempts[0])
        closed = agent.close()
        self.failureResultOf(d, RequestNotSent)
        self.assertTrue(peer.transport.disconnected)
        peer.protocol.connectionLost(Failure(ConnectionRefusedError()))
        self.assertIsNone(self.successResultOf(closed))

    def test_protocol_error_from_the_peer(self) -> None:
        """Garbage from the peer fails the open stream and aborts the connection."""
        d = self.make_agent().request(b"GET", URL)
        peer = self.peer()
        peer.protocol.dataReceived(b"\x00\x00\x04\x08\x00\x00\x00\x00\x01\x00\x00\x00\x00")
        self.assertIsInstance(self.never_received(d), H2ProtocolError)
        self.assertTrue(peer.transport.disconnected)
