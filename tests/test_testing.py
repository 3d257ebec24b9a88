"""ilphttp.testing: the helpers users get for testing their own handlers."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.packet import ErrorCode, Fulfill, Reject, deserialize_prepare, serialize
from ilphttp.testing import Conditions, MemoryLink, expect_fulfill, expect_reject, make_prepare


class MakePrepareTests(SynchronousTestCase):
    def test_fulfillment_matches_condition(self) -> None:
        packet, fulfillment = make_prepare(amount=5, destination="test.bob", now=1000.0)
        prepare = deserialize_prepare(packet)
        self.assertEqual(prepare.amount, 5)
        self.assertEqual(prepare.destination, "test.bob")
        self.assertEqual(prepare.expires_at.timestamp(), 1030.0)
        from hashlib import sha256

        self.assertEqual(sha256(fulfillment).digest(), prepare.execution_condition)


class ExpectTests(SynchronousTestCase):
    def test_expect_fulfill_refuses_reject(self) -> None:
        reject = serialize(Reject("F02", "test.a", "no route"))
        self.assertRaises(AssertionError, expect_fulfill, reject)
        self.assertEqual(expect_reject(reject, "F02").message, "no route")
        self.assertRaises(AssertionError, expect_reject, reject, "T00")

    def test_expect_fulfill_checks_fulfillment(self) -> None:
        fulfill = serialize(Fulfill(b"\1" * 32, b"x"))
        self.assertEqual(expect_fulfill(fulfill, b"\1" * 32).data, b"x")
        self.assertRaises(AssertionError, expect_fulfill, fulfill, b"\2" * 32)
        self.assertRaises(AssertionError, expect_reject, fulfill)


class MemoryLinkTests(SynchronousTestCase):
    def test_round_trip_through_the_whole_http_path(self) -> None:
        conditions = Conditions("test.receiver")
        link = MemoryLink(receiver_handler=conditions.handler)
        prepare = conditions.prepare(amount=10, destination="test.bob", data=b"hello")
        reply = expect_fulfill(self.successResultOf(link.send(prepare)))
        self.assertEqual(reply.data, b"hello")
        self.assertEqual([p.amount for p in conditions.received], [10])
        self.successResultOf(link.close())

    def test_unknown_condition_is_f06(self) -> None:
        link = MemoryLink(receiver_handler=Conditions("test.r").handler)
        packet, _ = make_prepare(now=link.now())
        reject = expect_reject(self.successResultOf(link.send(packet)), "F06")
        self.assertEqual(reject.triggered_by, "test.r")

    def test_async_handler_needs_flush(self) -> None:
        pending: list[Deferred[bytes]] = []

        def handler(data: bytes) -> Deferred[bytes]:
            pending.append(Deferred())
            return pending[-1]

        link = MemoryLink(receiver_handler=handler)
        packet, fulfillment = make_prepare(now=link.now())
        d = link.send(packet)
        self.assertNoResult(d)
        pending[0].callback(serialize(Fulfill(fulfillment)))
        link.flush()
        expect_fulfill(self.successResultOf(d), fulfillment)

    def test_expiry_on_the_clock(self) -> None:
        link = MemoryLink(receiver_handler=lambda data: Deferred())
        packet, _ = make_prepare(expires_in=5, now=link.now())
        d = link.send(packet)
        link.advance(4.9)
        self.assertNoResult(d)
        link.advance(0.2)
        expect_reject(self.successResultOf(d), ErrorCode.R00_TRANSFER_TIMED_OUT)

    def test_send_back_and_options(self) -> None:
        conditions = Conditions()
        link = MemoryLink(
            sender_handler=conditions.handler,
            receiver_options={"address": "test.receiver"},
        )
        self.assertEqual(link.receiver.address, "test.receiver")
        prepare = conditions.prepare(destination="test.sender", now=link.now())
        expect_fulfill(self.successResultOf(link.send_back(prepare)))

    def test_handler_error_is_t00(self) -> None:
        def broken(data: bytes) -> bytes:
            raise RuntimeError("boom")

        link = MemoryLink(receiver_handler=broken, receiver_options={"address": "test.r"})
        packet, _ = make_prepare(now=link.now())
        reject = expect_reject(self.successResultOf(link.send(packet)), "T00")
        self.assertEqual(reject.triggered_by, "test.r")
        self.assertNotIn("boom", reject.message)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_sync_handler_returning_deferred_result(self) -> None:
        link = MemoryLink(receiver_handler=lambda data: succeed(Reject("F99", "", "app")))
        packet, _ = make_prepare(now=link.now())
        self.assertEqual(
            expect_reject(self.successResultOf(link.send(packet)), "F99").message, "app"
        )
