"""Per-account limits on incoming Prepares, as ilp-connector applies them (pure: no Twisted).

Three limits, each optional, with ilp-connector's option names and answers
(interledgerjs/ilp-connector, ``src/middlewares/rate-limit.ts``,
``max-packet-amount.ts``, ``throughput.ts`` and ``src/lib/token-bucket.ts``;
names and types from ``src/schemas/Config.json``):

- ``rateLimit: {refillPeriod, refillCount, capacity}``: a token bucket of
  packets; an empty bucket answers ``T05 Rate Limited``;
- ``maxPacketAmount``: a Prepare whose amount is above it answers
  ``F08 Amount Too Large``, the data holding the amount received and the
  maximum as two big-endian UInt64 (RFC 27, ``asn1/InterledgerErrorData.asn``);
- ``throughput: {incomingAmount, outgoingAmount, refillPeriod}``: token
  buckets of asset units; a Prepare that would overdraw one answers
  ``T04 Insufficient Liquidity`` (ilp-connector's ``InsufficientLiquidityError``).

Checks run in ilp-connector's order (``src/services/middleware-manager.ts``):
rate limit, then maximum amount, then throughput; a Prepare refused by one
later check has still taken its rate-limit token, as there.

Times are seconds (floats, any monotonic origin) passed in by the caller;
JS-shaped periods (``refillPeriod``) are milliseconds, Python-shaped ones
(``refill_period``) seconds, as everywhere in ilphttp's options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ilphttp import validate
from ilphttp.errors import OptionError
from ilphttp.packet import MAX_AMOUNT, ErrorCode, Reject

__all__ = [
    "LIMIT_KEYS",
    "AccountLimiter",
    "Limits",
    "RateLimit",
    "Throughput",
    "TokenBucket",
    "amount_too_large_data",
    "parse_limits",
]

#: The account keys :func:`parse_limits` reads, in both spellings.
LIMIT_KEYS = frozenset(
    {"rateLimit", "rate_limit", "maxPacketAmount", "max_packet_amount", "throughput"}
)

# ilp-connector's defaults (rate-limit.ts, throughput.ts), in seconds.
_RATE_REFILL_PERIOD = 60.0
_RATE_REFILL_COUNT = 10000
_THROUGHPUT_REFILL_PERIOD = 1.0

#: The Reject messages ilp-connector gives (its middlewares), so peers see the same text.
RATE_LIMITED_MESSAGE = "too many requests, throttling."
THROUGHPUT_MESSAGE = "exceeded money bandwidth, throttling."

_NS = 1_000_000_000


@dataclass(frozen=True)
class RateLimit:
    """``refill_count`` packets per ``refill_period`` seconds, at most ``capacity`` saved up."""

    refill_period: float
    refill_count: int
    capacity: int


@dataclass(frozen=True)
class Throughput:
    """Asset units per ``refill_period`` seconds, each direction on its own (None: no limit)."""

    refill_period: float
    incoming_amount: int | None = None
    outgoing_amount: int | None = None


@dataclass(frozen=True)
class Limits:
    """One account's limits; every field None means no limit."""

    rate_limit: RateLimit | None = None
    max_packet_amount: int | None = None
    throughput: Throughput | None = None

    @property
    def any(self) -> bool:
        """True when at least one limit is set."""
        return not (
            self.rate_limit is None and self.max_packet_amount is None and self.throughput is None
        )


# -- parsing ------------------------------------------------------------------


def _pick(where: str, options: Mapping[str, Any], js: str, py: str) -> tuple[str, Any, bool]:
    """(the name as written, its value, written JS-style?); both spellings is an error."""
    if js in options and py in options:
        raise OptionError(f"{where}{js} and {where}{py} are the same setting: give one")
    if js in options:
        return js, options[js], True
    return py, options.get(py), False


def _amount(where: str, value: Any, low: int) -> int:
    """An amount in asset units: an integer or, as ilp-connector writes them, a string of digits."""
    if isinstance(value, str):
        return validate.integer_text(where, value, low, MAX_AMOUNT)
    return validate.integer(where, value, low, MAX_AMOUNT)


def _period(where: str, value: Any, js: bool) -> float:
    """A refill period: milliseconds (JS) or seconds (Python), > 0, as seconds."""
    seconds = validate.milliseconds(where, value) if js else validate.positive_number(where, value)
    if seconds <= 0:
        raise OptionError(f"{where} must be more than zero, got {value!r}")
    return seconds


def _rate_limit(where: str, value: Any, js: bool) -> RateLimit:
    names = (
        ("refillPeriod", "refillCount", "capacity")
        if js
        else ("refill_period", "refill_count", "capacity")
    )
    given = validate.check_keys(where, value, set(names))
    period_name, count_name, capacity_name = names
    period = _RATE_REFILL_PERIOD
    if given.get(period_name) is not None:
        period = _period(f"{where}.{period_name}", given[period_name], js)
    count = _RATE_REFILL_COUNT
    if given.get(count_name) is not None:
        count = validate.integer(f"{where}.{count_name}", given[count_name], 1, 2**53)
    capacity = count
    if given.get(capacity_name) is not None:
        # ilp-connector: `rateLimit.capacity || refillCount`, so 0 means "refillCount".
        capacity = validate.integer(f"{where}.{capacity_name}", given[capacity_name], 0, 2**53)
        capacity = capacity or count
    return RateLimit(period, count, capacity)


def _throughput(where: str, value: Any, js: bool) -> Throughput:
    names = (
        ("refillPeriod", "incomingAmount", "outgoingAmount")
        if js
        else ("refill_period", "incoming_amount", "outgoing_amount")
    )
    given = validate.check_keys(where, value, set(names))
    period_name, incoming_name, outgoing_name = names
    period = _THROUGHPUT_REFILL_PERIOD
    if given.get(period_name) is not None:
        period = _period(f"{where}.{period_name}", given[period_name], js)
    incoming = outgoing = None
    if given.get(incoming_name) is not None:
        incoming = _amount(f"{where}.{incoming_name}", given[incoming_name], 1)
    if given.get(outgoing_name) is not None:
        outgoing = _amount(f"{where}.{outgoing_name}", given[outgoing_name], 1)
    return Throughput(period, incoming, outgoing)


def parse_limits(options: Mapping[str, Any], where: str = "") -> Limits:
    """The limits among an account's options (other keys are left to the caller).

    ``options`` is JS-shaped (``rateLimit``, ``maxPacketAmount``, ``throughput``
    with ``refillPeriod`` in milliseconds, as in an ilp-connector account) or
    Python-shaped (``rate_limit``, ``max_packet_amount``, ``throughput`` with
    ``refill_period`` in seconds); the inner keys follow the outer spelling
    (``throughput``, the same in both, takes either).  Amounts are integers
    or strings of ASCII digits, up to 2**64 - 1.  ``where`` prefixes the names
    in errors (``"accounts.bob."``).  Defaults are ilp-connector's: a rate
    limit refills 10,000 per minute, a throughput limit per second, and a
    bucket holds one refill.

    Raises :class:`~ilphttp.errors.OptionError` naming the option as written.
    """
    rate_name, rate_value, rate_js = _pick(where, options, "rateLimit", "rate_limit")
    max_name, max_value, _ = _pick(where, options, "maxPacketAmount", "max_packet_amount")
    rate = None if rate_value is None else _rate_limit(where + rate_name, rate_value, rate_js)
    maximum = None if max_value is None else _amount(where + max_name, max_value, 0)
    throughput = None
    if options.get("throughput") is not None:
        value = options["throughput"]
        js = isinstance(value, Mapping) and any(
            k in value for k in ("refillPeriod", "incomingAmount", "outgoingAmount")
        )
        throughput = _throughput(where + "throughput", value, js)
    return Limits(rate, maximum, throughput)


# -- buckets ------------------------------------------------------------------


class TokenBucket:
    """ilp-connector's token bucket (``src/lib/token-bucket.ts``), in exact integers.

    Starts full; refills ``refill_count`` tokens per ``refill_period`` seconds
    continuously, up to ``capacity``.  Levels are kept as tokens times the
    period in nanoseconds, so amounts up to 2**64 - 1 are counted exactly
    (JS rounds them to doubles).  A clock that steps back refills nothing.
    """

    __slots__ = ("_capacity", "_count", "_last", "_level", "_period")

    def __init__(self, refill_period: float, refill_count: int, capacity: int) -> None:
        self._period = max(1, round(refill_period * _NS))
        self._count = refill_count
        self._capacity = capacity * self._period
        self._level = self._capacity
        self._last: int | None = None

    def take(self, count: int, now: float) -> bool:
        """Refill up to ``now`` (seconds), then take ``count`` tokens if there are that many."""
        now_ns = round(now * _NS)
        if self._last is not None and now_ns > self._last:
            refill = (now_ns - self._last) * self._count
            self._level = min(self._capacity, self._level + refill)
        self._last = now_ns
        need = count * self._period
        if self._level < need:
            return False
        self._level -= need
        return True

    @property
    def tokens(self) -> float:
        """Tokens left at the last :meth:`take` (for tests and metrics)."""
        return self._level / self._period

    def carry_over(self, old: TokenBucket) -> None:
        """Start from ``old``'s level (as a share of its capacity) and clock: a reload keeps
        a drained bucket drained instead of handing a peer a fresh burst."""
        if old._capacity:
            self._level = self._capacity * old._level // old._capacity
        self._last = old._last


def amount_too_large_data(received: int, maximum: int) -> bytes:
    """F08's data (RFC 27, ``AmountTooLargeErrorData``): two big-endian UInt64."""
    return received.to_bytes(8, "big") + maximum.to_bytes(8, "big")


class AccountLimiter:
    """One account's limits with their buckets: ask it about each Prepare before the handler.

    ``check(amount, now)`` for an incoming Prepare and ``check_outgoing(amount,
    now)`` for one we are about to send return None to let it through, or a
    :class:`~ilphttp.packet.Reject` with an empty ``triggered_by`` for the
    caller to fill with its own address (``reject._replace(triggered_by=...)``).
    Not thread-safe: one reactor thread calls it.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        rate, throughput = limits.rate_limit, limits.throughput
        self._rate = (
            None
            if rate is None
            else TokenBucket(rate.refill_period, rate.refill_count, rate.capacity)
        )
        self._incoming: TokenBucket | None = None
        self._outgoing: TokenBucket | None = None
        if throughput is not None:
            if throughput.incoming_amount is not None:
                self._incoming = TokenBucket(
                    throughput.refill_period, throughput.incoming_amount, throughput.incoming_amount
                )
            if throughput.outgoing_amount is not None:
                self._outgoing = TokenBucket(
                    throughput.refill_period, throughput.outgoing_amount, throughput.outgoing_amount
                )

    def check(self, amount: int, now: float) -> Reject | None:
        """An incoming Prepare of ``amount`` at ``now`` (seconds): None, or the Reject to answer.

        T05 when the rate limit's bucket is empty, F08 (with RFC 27 data) when
        ``amount`` is above ``maxPacketAmount``, T04 when the incoming
        throughput bucket holds less than ``amount``.
        """
        if self._rate is not None and not self._rate.take(1, now):
            return Reject(ErrorCode.T05_RATE_LIMITED, "", RATE_LIMITED_MESSAGE)
        maximum = self.limits.max_packet_amount
        if maximum is not None and amount > maximum:
            return Reject(
                ErrorCode.F08_AMOUNT_TOO_LARGE,
                "",
                f"packet size too large. maxAmount={maximum} actualAmount={amount}",
                amount_too_large_data(amount, maximum),
            )
        if self._incoming is not None and not self._incoming.take(amount, now):
            return Reject(ErrorCode.T04_INSUFFICIENT_LIQUIDITY, "", THROUGHPUT_MESSAGE)
        return None

    def check_outgoing(self, amount: int, now: float) -> Reject | None:
        """A Prepare we are about to send: T04 when the outgoing throughput bucket is short."""
        if self._outgoing is not None and not self._outgoing.take(amount, now):
            return Reject(ErrorCode.T04_INSUFFICIENT_LIQUIDITY, "", THROUGHPUT_MESSAGE)
        return None

    def reconfigured(self, limits: Limits) -> AccountLimiter:
        """A limiter with ``limits`` whose buckets start where this one's are (config reload)."""
        new = AccountLimiter(limits)
        for name in ("_rate", "_incoming", "_outgoing"):
            mine, theirs = getattr(self, name), getattr(new, name)
            if mine is not None and theirs is not None:
                theirs.carry_over(mine)
        return new
