"""Per-account limits: option parsing in both spellings, and the T05/F08/T04 answers."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ilphttp.errors import OptionError
from ilphttp.limits import (
    AccountLimiter,
    Limits,
    RateLimit,
    Throughput,
    TokenBucket,
    amount_too_large_data,
    parse_limits,
)
from ilphttp.packet import MAX_AMOUNT, Reject, deserialize_reject, serialize_reject

T0 = 1_700_000_000.25  # a wall-clock-sized time: the buckets must be exact there too


class ParseTests(SynchronousTestCase):
    def test_valid(self) -> None:
        table: list[tuple[dict[str, Any], Limits]] = [
            ({}, Limits()),
            ({"other": 1}, Limits()),  # not ours: left to the caller
            (
                {"rateLimit": {"refillPeriod": 1000, "refillCount": 5, "capacity": 7}},
                Limits(rate_limit=RateLimit(1.0, 5, 7)),
            ),
            # ilp-connector's defaults: 10,000 a minute; capacity = refillCount
            ({"rateLimit": {}}, Limits(rate_limit=RateLimit(60.0, 10000, 10000))),
            ({"rateLimit": {"refillCount": 3}}, Limits(rate_limit=RateLimit(60.0, 3, 3))),
            # `capacity || refillCount`: 0 is the default, as in JS
            (
                {"rateLimit": {"refillCount": 3, "capacity": 0}},
                Limits(rate_limit=RateLimit(60.0, 3, 3)),
            ),
            (
                {"rate_limit": {"refill_period": 2.5, "refill_count": 4}},
                Limits(rate_limit=RateLimit(2.5, 4, 4)),
            ),
            ({"maxPacketAmount": "1000"}, Limits(max_packet_amount=1000)),
            ({"maxPacketAmount": 1000}, Limits(max_packet_amount=1000)),
            ({"max_packet_amount": str(MAX_AMOUNT)}, Limits(max_packet_amount=MAX_AMOUNT)),
            (
                {"throughput": {"incomingAmount": "500"}},
                Limits(throughput=Throughput(1.0, incoming_amount=500)),
            ),
            (
                {"throughput": {"refillPeriod": 250, "outgoingAmount": 9}},
                Limits(throughput=Throughput(0.25, outgoing_amount=9)),
            ),
            (
                {"throughput": {"refill_period": 3, "incoming_amount": 7}},
                Limits(throughput=Throughput(3.0, incoming_amount=7)),
            ),
            ({"rateLimit": None, "maxPacketAmount": None}, Limits()),
        ]
        for options, expected in table:
            with self.subTest(options=options):
                self.assertEqual(parse_limits(options), expected)

    def test_invalid_names_the_option(self) -> None:
        table: list[tuple[dict[str, Any], str]] = [
            ({"rateLimit": 5}, "accounts.bob.rateLimit must be an object"),
            ({"rateLimit": {"refillCount": 0}}, "accounts.bob.rateLimit.refillCount"),
            ({"rateLimit": {"refillCount": "5"}}, "accounts.bob.rateLimit.refillCount"),
            ({"rateLimit": {"refillPeriod": 0}}, "accounts.bob.rateLimit.refillPeriod"),
            ({"rateLimit": {"refillPeriod": -1}}, "accounts.bob.rateLimit.refillPeriod"),
            ({"rateLimit": {"capacity": -1}}, "accounts.bob.rateLimit.capacity"),
            ({"rateLimit": {"capacity": True}}, "accounts.bob.rateLimit.capacity"),
            ({"rateLimit": {"refill_count": 3}}, "accounts.bob.rateLimit.refill_count"),
            ({"rate_limit": {"refillCount": 3}}, "accounts.bob.rate_limit.refillCount"),
            ({"rateLimit": {}, "rate_limit": {}}, "accounts.bob.rateLimit and"),
            ({"maxPacketAmount": "-1"}, "accounts.bob.maxPacketAmount"),
            ({"maxPacketAmount": "1e3"}, "accounts.bob.maxPacketAmount"),
            ({"maxPacketAmount": "1_000"}, "accounts.bob.maxPacketAmount"),
            ({"maxPacketAmount": "\uff11"}, "accounts.bob.maxPacketAmount"),  # fullwidth 1
            ({"maxPacketAmount": 1.5}, "accounts.bob.maxPacketAmount"),
            ({"maxPacketAmount": str(MAX_AMOUNT + 1)}, "accounts.bob.maxPacketAmount"),
            ({"max_packet_amount": False}, "accounts.bob.max_packet_amount"),
            ({"throughput": {"incomingAmount": "0"}}, "accounts.bob.throughput.incomingAmount"),
            ({"throughput": {"incomingAmount": "x"}}, "accounts.bob.throughput.incomingAmount"),
            ({"throughput": {"refillPeriod": "1"}}, "accounts.bob.throughput.refillPeriod"),
            ({"throughput": {"incomingAmount": 1, "junk": 1}}, "accounts.bob.throughput.junk"),
            ({"throughput": []}, "accounts.bob.throughput must be an object"),
        ]
        for options, named in table:
            with self.subTest(options=options):
                with self.assertRaises(OptionError) as caught:
                    parse_limits(options, "accounts.bob.")
                self.assertIn(named, str(caught.exception))

    def test_any(self) -> None:
        self.assertFalse(Limits().any)
        self.assertTrue(Limits(max_packet_amount=0).any)


class TokenBucketTests(SynchronousTestCase):
    def test_starts_full_and_refills_continuously(self) -> None:
        bucket = TokenBucket(refill_period=1.0, refill_count=4, capacity=4)
        self.assertEqual([bucket.take(1, T0) for _ in range(5)], [True] * 4 + [False])
        self.assertFalse(bucket.take(1, T0 + 0.24))  # a quarter second is one token, nearly
        self.assertTrue(bucket.take(1, T0 + 0.25))
        self.assertFalse(bucket.take(1, T0 + 0.25))

    def test_never_above_capacity(self) -> None:
        bucket = TokenBucket(refill_period=1.0, refill_count=10, capacity=2)
        self.assertTrue(bucket.take(2, T0))
        self.assertFalse(bucket.take(3, T0 + 100))
        self.assertTrue(bucket.take(2, T0 + 100))

    def test_clock_stepping_back_refills_nothing(self) -> None:
        bucket = TokenBucket(refill_period=1.0, refill_count=1, capacity=1)
        self.assertTrue(bucket.take(1, T0))
        self.assertFalse(bucket.take(1, T0 - 5))
        self.assertFalse(bucket.take(1, T0 - 4.5))  # measured from T0 - 5: half a token
        self.assertTrue(bucket.take(1, T0 - 4))

    def test_large_amounts_are_exact(self) -> None:
        bucket = TokenBucket(refill_period=1.0, refill_count=MAX_AMOUNT, capacity=MAX_AMOUNT)
        self.assertTrue(bucket.take(MAX_AMOUNT - 1, T0))
        self.assertFalse(bucket.take(2, T0))  # a double would round 2**64-2 and 2**64 alike
        self.assertTrue(bucket.take(1, T0))

    def test_many_small_steps_do_not_starve(self) -> None:
        bucket = TokenBucket(refill_period=1.0, refill_count=1, capacity=1)
        self.assertTrue(bucket.take(1, T0))
        taken = [bucket.take(1, T0 + i / 10_000) for i in range(1, 10_001)]
        self.assertEqual(taken.count(True), 1)


def _reject(reply: Reject | None) -> Reject:
    assert reply is not None
    return reply


class AccountLimiterTests(SynchronousTestCase):
    def test_no_limits_pass_everything(self) -> None:
        limiter = AccountLimiter(Limits())
        self.assertIsNone(limiter.check(MAX_AMOUNT, T0))
        self.assertIsNone(limiter.check_outgoing(MAX_AMOUNT, T0))

    def test_rate_limit_answers_t05(self) -> None:
        limiter = AccountLimiter(parse_limits({"rateLimit": {"refillCount": 2}}))
        replies = [limiter.check(1, T0) for _ in range(3)]
        self.assertEqual(replies[:2], [None, None])
        reject = _reject(replies[2])
        self.assertEqual(
            (reject.code, reject.message, reject.data, reject.triggered_by),
            ("T05", "too many requests, throttling.", b"", ""),
        )
        self.assertIsNone(limiter.check(1, T0 + 30))  # 2 a minute: one back after 30 s

    def test_max_packet_amount_answers_f08_with_rfc27_data(self) -> None:
        limiter = AccountLimiter(parse_limits({"maxPacketAmount": "1000"}))
        self.assertIsNone(limiter.check(1000, T0))
        self.assertIsNone(limiter.check(0, T0))
        reject = _reject(limiter.check(1001, T0))
        self.assertEqual(reject.code, "F08")
        self.assertEqual(reject.message, "packet size too large. maxAmount=1000 actualAmount=1001")
        # AmountTooLargeErrorData: receivedAmount UInt64, maximumAmount UInt64 (big-endian)
        self.assertEqual(reject.data, bytes.fromhex("00000000000003e900000000000003e8"))
        # and it survives the wire
        wire = serialize_reject(reject._replace(triggered_by="test.alice"))
        self.assertEqual(deserialize_reject(wire).data, reject.data)

    def test_amount_too_large_data_extremes(self) -> None:
        self.assertEqual(amount_too_large_data(MAX_AMOUNT, 0), b"\xff" * 8 + b"\x00" * 8)

    def test_throughput_answers_t04(self) -> None:
        limiter = AccountLimiter(parse_limits({"throughput": {"incomingAmount": "100"}}))
        self.assertIsNone(limiter.check(60, T0))
        reject = _reject(limiter.check(60, T0))
        self.assertEqual(
            (reject.code, reject.message), ("T04", "exceeded money bandwidth, throttling.")
        )
        self.assertIsNone(limiter.check(40, T0))
        self.assertIsNone(limiter.check(0, T0))  # a zero-amount Prepare never overdraws
        self.assertIsNone(limiter.check(50, T0 + 0.5))  # 100 a second: 50 back after 0.5 s
        # more than one refill never passes, as in ilp-connector
        self.assertEqual(_reject(limiter.check(101, T0 + 60)).code, "T04")

    def test_outgoing_throughput(self) -> None:
        limiter = AccountLimiter(parse_limits({"throughput": {"outgoingAmount": 10}}))
        self.assertIsNone(limiter.check(1000, T0))  # incoming is not limited
        self.assertIsNone(limiter.check_outgoing(10, T0))
        self.assertEqual(_reject(limiter.check_outgoing(1, T0)).code, "T04")

    def test_order_follows_ilp_connector(self) -> None:
        limits = parse_limits(
            {
                "rateLimit": {"refillCount": 2},
                "maxPacketAmount": 10,
                "throughput": {"incomingAmount": 15},
            }
        )
        limiter = AccountLimiter(limits)
        # F08 first: the throughput bucket is not touched, the rate token is taken
        self.assertEqual(_reject(limiter.check(11, T0)).code, "F08")
        self.assertIsNone(limiter.check(10, T0))
        # the rate bucket (2) is now empty: T05 before looking at the amount
        self.assertEqual(_reject(limiter.check(11, T0)).code, "T05")
        limiter = AccountLimiter(limits)
        self.assertIsNone(limiter.check(10, T0))
        self.assertEqual(_reject(limiter.check(10, T0)).code, "T04")

    def test_reconfigured_keeps_drained_buckets(self) -> None:
        limiter = AccountLimiter(parse_limits({"rateLimit": {"refillCount": 2}}))
        self.assertIsNone(limiter.check(1, T0))
        self.assertIsNone(limiter.check(1, T0))
        bigger = limiter.reconfigured(parse_limits({"rateLimit": {"refillCount": 4}}))
        self.assertEqual(_reject(bigger.check(1, T0)).code, "T05")
        fresh = limiter.reconfigured(parse_limits({"maxPacketAmount": 5}))
        self.assertIsNone(fresh.check(1, T0))
