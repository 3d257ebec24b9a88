"""Fault injection on the client side (issue 13): a misbehaving peer on loopback.

Each fault gives its documented Reject (docs/errors.rst, "The client") within
the Prepare's expiry, and the next packet to the same peer, once it behaves,
is fulfilled.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from ilphttp.packet import ErrorCode, Fulfill, deserialize_prepare, serialize
from ilphttp.plugin import PluginHttp
from tests.support.packets import expect_fulfill, expect_reject, make_prepare
from tests.support.reactor import global_reactor, within

EXPIRY = 2.0  # seconds: each faulty exchange must end by then (plus slack for a loaded CI)


class _Peer(Protocol):
    """Reads one request (head and Content-Length body), then does what ``factory.mode`` says."""

    factory: FaultyPeer

    def __init__(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return
        self.buffer = rest[length:]
        self.factory.requests += 1
        self.respond(rest[:length])

    def respond(self, body: bytes) -> None:
        mode = self.factory.mode
        transport: Any = self.transport
        if mode == "silent":
            return
        if mode == "half":
            transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
        elif mode == "reset":
            transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
            transport.abortConnection()
        elif mode == "garbage":
            transport.write(b"\x00\xffnot http at all\r\n\r\n")
        elif mode == "huge":
            transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
            transport.write(b"y" * 200_000)
        else:  # "good" or "close": a Fulfill of the Prepare (its data holds the fulfillment)
            prepare = deserialize_prepare(body)
            reply = serialize(Fulfill(prepare.data[:32], b""))
            transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
            )
            if mode == "close":
                transport.loseConnection()  # without saying Connection: close


class FaultyPeer(Factory):
    protocol = _Peer

    def __init__(self) -> None:
        self.mode = "good"
        self.requests = 0


class FaultInjectionTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.peer = FaultyPeer()
        endpoint = endpoints.TCP4ServerEndpoint(global_reactor(), 0, interface="127.0.0.1")
        self.port = yield endpoint.listen(self.peer)
        self.addCleanup(self.port.stopListening)
        url = f"http://127.0.0.1:{self.port.getHost().port}/"
        self.sender = PluginHttp(outgoing={"url": url, "static_token": "t"}, address="test.us")
        yield self.sender.connect()
        self.addCleanup(self.sender.disconnect)

    def send(self) -> tuple[Any, Deferred[bytes]]:
        fulfillment = b"\x07" * 32
        made = make_prepare(time.time(), EXPIRY, data=fulfillment, fulfillment=fulfillment)
        return made, self.sender.send_data(made.packet)

    @inlineCallbacks
    def fault(self, mode: str, code: str) -> Any:
        self.peer.mode = mode
        started = time.monotonic()
        _, d = self.send()
        reply = yield within(d, EXPIRY + 3)
        reject = expect_reject(self, reply, code)
        self.assertLess(time.monotonic() - started, EXPIRY + 3)
        # The peer behaves again: the next packet goes through.
        self.peer.mode = "good"
        made, d = self.send()
        expect_fulfill(self, (yield within(d, EXPIRY + 3)), made.fulfillment)
        return reject

    def test_never_answers_is_r00_at_expiry(self) -> Any:
        return self.fault("silent", ErrorCode.R00_TRANSFER_TIMED_OUT)

    def test_half_a_body_then_nothing_is_r00_at_expiry(self) -> Any:
        return self.fault("half", ErrorCode.R00_TRANSFER_TIMED_OUT)

    def test_reset_mid_body_is_t01(self) -> Any:
        return self.fault("reset", ErrorCode.T01_PEER_UNREACHABLE)

    def test_garbage_is_t01(self) -> Any:
        return self.fault("garbage", ErrorCode.T01_PEER_UNREACHABLE)

    @inlineCallbacks
    def test_huge_body_is_t00(self) -> Any:
        reject = yield self.fault("huge", ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("too large", reject.message)

    @inlineCallbacks
    def test_peer_closing_every_connection_after_one_request(self) -> Any:
        self.peer.mode = "close"
        for _ in range(5):
            made, d = self.send()
            expect_fulfill(self, (yield within(d, EXPIRY + 3)), made.fulfillment)
            yield _sleep(0.1)  # the close reaches us before the next packet
        self.assertEqual(self.peer.requests, 5)

    @inlineCallbacks
    def test_peer_down_is_t01_then_up_again(self) -> Any:
        port_number = self.port.getHost().port
        yield self.port.stopListening()
        _, d = self.send()
        expect_reject(self, (yield within(d, EXPIRY + 3)), ErrorCode.T01_PEER_UNREACHABLE)
        endpoint = endpoints.TCP4ServerEndpoint(
            global_reactor(), port_number, interface="127.0.0.1"
        )
        self.port = yield endpoint.listen(self.peer)
        self.addCleanup(self.port.stopListening)
        made, d = self.send()
        expect_fulfill(self, (yield within(d, EXPIRY + 3)), made.fulfillment)


def _sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    global_reactor().callLater(seconds, d.callback, None)
    return d
