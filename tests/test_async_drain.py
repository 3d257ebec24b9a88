"""RFC 35 asynchronous mode while a plugin stops: the replies to our Prepares still get in.

They come as new requests to our own listener, so a drain keeps it listening
for them (new Prepares refused, ``503``) until none is awaited or the grace
period ends.  Sans-IO with a Clock, and over loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from ilphttp.front import Answer
from ilphttp.packet import ErrorCode, Fulfill, serialize
from ilphttp.plugin import PluginHttp
from tests.support.async_pair import BOB_TOKEN, async_pair
from tests.support.clients import http_agent, request
from tests.support.fakes import FakeAgent, FakeResponse
from tests.support.packets import (
    CLOCK_START,
    data_prepare,
    expect_fulfill,
    expect_reject,
    make_prepare,
)
from tests.support.reactor import global_reactor, within

A_TO_B = "alice-to-bob-token"
B_TO_A = "bob-to-alice-token"
GRACE = 15.0


class _Port:
    """A listening port that records when it stops."""

    def __init__(self) -> None:
        self.listening = True

    def stopListening(self) -> Deferred[None]:
        self.listening = False
        return succeed(None)

    def getHost(self) -> Any:
        return None


@implementer(IStreamServerEndpoint)
class _Endpoint:
    def __init__(self) -> None:
        self.port = _Port()

    def listen(self, factory: Any) -> Deferred[_Port]:
        return succeed(self.port)


def _post(plugin: PluginHttp, body: bytes, **headers: bytes) -> Answer:
    fields = {k.replace("_", "-").encode(): v for k, v in headers.items()}
    fields.setdefault(b"authorization", b"Bearer " + B_TO_A.encode())
    fields.setdefault(b"content-type", b"application/octet-stream")
    assert plugin.resource is not None
    answer = plugin.resource.door.answer(b"POST", b"/ilp", fields.get, body, lambda: None)
    assert isinstance(answer, Answer)
    return answer


class ClockDrainTests(SynchronousTestCase):
    """Alice sends asynchronously; the FakeAgent is Bob; her port is a fake one."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.agent = FakeAgent()
        self.endpoint = _Endpoint()
        self.alice = PluginHttp(
            incoming={"static_token": B_TO_A, "grace_period": GRACE},
            outgoing={
                "url": "http://bob.example/ilp",
                "static_token": A_TO_B,
                "mode": "async",
                "callback_url": "http://alice.example/cb",
            },
            address="test.alice",
            reactor=self.clock,
            agent=self.agent,
            endpoint=self.endpoint,
        )
        self.alice.register_data_handler(lambda data: b"never called")
        self.successResultOf(self.alice.connect())
        self.made = make_prepare(self.clock.seconds(), expires_in=10)

    def send(self) -> tuple[Deferred[bytes], bytes]:
        d = self.alice.send_data(self.made.packet)
        [request_id] = self.agent.requests[-1][2].getRawHeaders(b"request-id")
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        return d, request_id

    def health(self) -> Answer:
        assert self.alice.resource is not None
        answer = self.alice.resource.door.answer(b"GET", b"/", {}.get, b"", lambda: None)
        assert isinstance(answer, Answer)
        return answer

    def test_a_reply_during_disconnect_is_taken(self) -> None:
        d, request_id = self.send()
        stopping = self.alice.disconnect()
        self.assertNoResult(stopping)
        self.assertTrue(self.endpoint.port.listening)
        self.assertEqual(self.health().status, 503)
        self.clock.advance(1)
        # a new Prepare meanwhile is refused
        fresh = make_prepare(self.clock.seconds(), expires_in=10)
        refused = _post(self.alice, fresh.packet)
        self.assertEqual((refused.status, refused.body), (503, b"draining"))
        # the peer's reply to ours is taken
        taken = _post(self.alice, self.made.fulfill(b"late"), request_id=request_id)
        self.assertEqual(taken.status, 200)
        expect_fulfill(self, self.successResultOf(d), self.made.fulfillment)
        self.assertFalse(self.endpoint.port.listening)  # then it closes as before
        self.successResultOf(stopping)

    def test_the_hold_ends_with_the_grace_period(self) -> None:
        d, _ = self.send()
        self.made = make_prepare(self.clock.seconds(), expires_in=60)
        d2, _ = self.send()
        stopping = self.alice.disconnect()
        self.clock.advance(GRACE - 0.5)
        self.assertTrue(self.endpoint.port.listening)
        self.clock.advance(1)
        self.assertFalse(self.endpoint.port.listening)
        self.clock.advance(60)
        for reply in (d, d2):
            expect_reject(self, self.successResultOf(reply), ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.successResultOf(stopping)

    def test_nothing_awaited_closes_at_once(self) -> None:
        stopping = self.alice.disconnect()
        self.assertFalse(self.endpoint.port.listening)
        self.successResultOf(stopping)


class LoopbackDrainTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_disconnect_takes_the_reply_that_comes_a_second_later(self) -> Any:
        """Alice sends async, begins to disconnect; Bob answers 1 s later: she gets his Fulfill."""
        held: list[Deferred[bytes]] = []

        def bob_handler(data: bytes) -> Deferred[bytes]:
            held.append(Deferred())
            return held[-1]

        pair = yield async_pair(self, bob_handler=bob_handler)
        _, raw, fulfillment = data_prepare("test.bob", seconds=20)
        sent = pair.alice.send_data(raw)
        while not held:
            yield _sleep(0.05)
        stopping = pair.alice.disconnect()
        yield _sleep(1.0)
        self.assertNoResult(sent)
        # a new Prepare to Alice meanwhile: refused
        _, other, _ = data_prepare("test.alice")
        headers = {
            b"authorization": b"Bearer " + BOB_TOKEN.encode(),
            b"content-type": b"application/octet-stream",
        }
        refused = yield within(request(http_agent(self), pair.alice_url, other, headers), 10)
        self.assertEqual(refused.code, 503)
        # Bob answers now; his reply POST reaches Alice's listener
        held[0].callback(serialize(Fulfill(fulfillment, b"late")))
        reply = yield within(sent, 10)
        expect_fulfill(self, reply, fulfillment)
        yield within(stopping, 20)


def _sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    global_reactor().callLater(seconds, d.callback, None)
    return d
