"""RFC 35 asynchronous mode between two PluginHttp peers over loopback (HTTP/1.1 and h2c)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from ilphttp.packet import (
    MAX_ADDRESS_LENGTH,
    MAX_DATA_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_PREPARE_LENGTH,
    MAX_REJECT_LENGTH,
    ErrorCode,
    Reject,
    serialize,
)
from tests.support.async_pair import async_pair
from tests.support.clients import http_agent, request
from tests.support.packets import data_prepare, expect_fulfill, expect_reject, reject_bytes
from tests.support.reactor import within


class _Pairs:
    http2 = False

    @inlineCallbacks
    def exchange(self, alice_mode: str, bob_mode: str, count: int = 20) -> Any:
        """Both send ``count`` Prepares to the other, all in flight at once; all fulfilled."""
        pair = yield async_pair(self, alice_mode, bob_mode, http2=self.http2)  # type: ignore[arg-type]
        for sender, destination in ((pair.alice, "test.bob"), (pair.bob, "test.alice")):
            made = [data_prepare(destination, seconds=5) for _ in range(count)]
            replies = yield within(gatherResults([sender.send_data(raw) for _, raw, _ in made]), 10)
            for reply, (_, _, fulfillment) in zip(replies, made):
                expect_fulfill(self, reply, fulfillment)  # type: ignore[arg-type]
        return pair

    @inlineCallbacks
    def test_async_to_a_sync_sender(self) -> Any:
        pair = yield self.exchange("async", "sync")
        # Alice's Prepares went asynchronously: their ids were answered on her callback URL
        self.assertEqual(pair.alice._async.pending.answered, 20)  # type: ignore[attr-defined]
        self.assertEqual(pair.bob._async.pending.answered, 0)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_both_async(self) -> Any:
        pair = yield self.exchange("async", "async")
        for plugin in (pair.alice, pair.bob):
            self.assertEqual(plugin._async.pending.answered, 20)  # type: ignore[attr-defined]
            self.assertEqual(len(plugin._async), 0)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_a_handler_reject_and_an_expiry(self) -> Any:
        never: Deferred[bytes] = Deferred()
        pair = yield async_pair(
            self,  # type: ignore[arg-type]
            http2=self.http2,
            bob_handler=lambda data: never if b"hang" in data else _reject(data),
        )
        _, raw, _ = data_prepare("test.bob", payload=b"no")
        expect_reject(self, (yield pair.alice.send_data(raw)), "F99")  # type: ignore[arg-type]
        _, raw, _ = data_prepare("test.bob", payload=b"hang", seconds=0.5)
        reply = yield within(pair.alice.send_data(raw), 5)
        expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)  # type: ignore[arg-type]
        self.assertEqual(len(pair.alice._async.pending), 0)
        never.callback(_reject(raw))  # Bob answers late: his delivery gets 400 and stops

    @inlineCallbacks
    def test_the_largest_legal_reject_comes_back_on_the_callback(self) -> Any:
        """A reply POST may be larger than any Prepare (RFC 27: 41,997 bytes), and gets in."""
        largest = serialize(
            Reject(
                "F99",
                "test." + "b" * (MAX_ADDRESS_LENGTH - 5),
                "m" * MAX_MESSAGE_LENGTH,
                b"d" * MAX_DATA_LENGTH,
            )
        )
        self.assertEqual(len(largest), MAX_REJECT_LENGTH)
        pair = yield async_pair(
            self,  # type: ignore[arg-type]
            http2=self.http2,
            bob_handler=lambda data: largest,
        )
        _, raw, _ = data_prepare("test.bob")
        reply = yield within(pair.alice.send_data(raw), 10)
        self.assertEqual(reply, largest)  # type: ignore[attr-defined]
        self.assertEqual(pair.alice._async.pending.answered, 1)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_a_prepare_keeps_the_prepare_limit_whatever_its_headers(self) -> Any:
        pair = yield async_pair(self)  # type: ignore[arg-type]
        headers = {
            b"authorization": b"Bearer alice-to-bob-token",
            b"content-type": b"application/octet-stream",
            b"request-id": b"42ee09c8-a6de-4ae3-8a47-4732b0cbb07b",
        }
        _, raw, _ = data_prepare("test.bob", payload=b"p" * 30000)
        oversized = raw + b"\0" * (MAX_PREPARE_LENGTH + 1 - len(raw))  # bytes after the envelope
        result = yield request(http_agent(self), pair.bob_url, oversized, headers)  # type: ignore[arg-type]
        self.assertEqual(result.code, 413)
        self.assertIn(b"the limit is %d bytes" % MAX_PREPARE_LENGTH, result.body)
        self.assertEqual(pair.bob._async.pending.answered, 0)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_a_refused_callback_url_is_400_over_the_wire(self) -> Any:
        pair = yield async_pair(self)  # type: ignore[arg-type]
        _, raw, _ = data_prepare("test.bob")
        result = yield request(
            http_agent(self),  # type: ignore[arg-type]
            pair.bob_url,
            raw,
            {
                b"authorization": b"Bearer alice-to-bob-token",
                b"content-type": b"application/octet-stream",
                b"callback-url": b"http://evil.example/cb",
                b"request-id": b"42ee09c8-a6de-4ae3-8a47-4732b0cbb07b",
            },
        )
        self.assertEqual(result.code, 400)
        self.assertIn(b"allow-list", result.body)


def _reject(data: bytes) -> bytes:
    return reject_bytes("F99", "test.bob", "no")


class Http1Tests(_Pairs, TestCase):
    pass


class H2cTests(_Pairs, TestCase):
    http2 = True
