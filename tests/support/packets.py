"""ILP packets for tests: Prepares with known fulfillments, and reading replies.

Two kinds of Prepare:

- :func:`make_prepare` / :func:`largest_prepare` (a :class:`Made`): the expiry is
  relative to a clock's ``now`` and the fulfillment is kept aside, for the
  in-process tests of the client, server and plugin;
- :func:`data_prepare` / :func:`largest_data_prepare`: the data starts with the
  fulfillment and the expiry is on the wall clock, for real peers (peer.js's
  "fulfill" handler and :func:`fulfil_from_data` fulfil from the data).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import os
from typing import NamedTuple

from twisted.trial.unittest import SynchronousTestCase

from ilphttp.ildcp import IldcpResponse, serialize_response
from ilphttp.packet import (
    MAX_ADDRESS_LENGTH,
    MAX_DATA_LENGTH,
    MAX_PREPARE_LENGTH,
    Fulfill,
    Prepare,
    Reject,
    condition_from_fulfillment,
    deserialize,
    deserialize_prepare,
    serialize,
    serialize_fulfill,
    serialize_prepare,
    serialize_reject,
)

#: a fixed start time for Clocks, so expiries are deterministic
CLOCK_START = 1_700_000_000.0

_counter = itertools.count(1)


class Made(NamedTuple):
    """A serialized Prepare, the fulfillment that fulfils it and the decoded Prepare."""

    packet: bytes
    fulfillment: bytes
    prepare: Prepare

    def fulfill(self, data: bytes = b"") -> bytes:
        """The serialized Fulfill of this Prepare."""
        return serialize_fulfill(Fulfill(self.fulfillment, data))


def known_fulfillment(seed: int | None = None) -> bytes:
    """A deterministic 32-byte fulfillment (a new one per call unless ``seed``)."""
    n = next(_counter) if seed is None else seed
    return hashlib.sha256(b"ilphttp tests %d" % n).digest()


def make_prepare(
    now: float,
    expires_in: float = 30.0,
    destination: str = "test.peer.bob",
    amount: int = 1,
    data: bytes = b"",
    fulfillment: bytes | None = None,
) -> Made:
    """A Prepare expiring ``expires_in`` seconds after ``now`` (a clock's ``seconds()``).

    The wire keeps milliseconds, so the expiry is rounded down to one.
    """
    if fulfillment is None:
        fulfillment = known_fulfillment()
    millis = int((now + expires_in) * 1000)
    expires_at = _dt.datetime.fromtimestamp(millis // 1000, _dt.timezone.utc) + _dt.timedelta(
        milliseconds=millis % 1000
    )
    prepare = Prepare(
        amount, expires_at, condition_from_fulfillment(fulfillment), destination, data
    )
    return Made(serialize_prepare(prepare), fulfillment, prepare)


def largest_prepare(now: float, expires_in: float = 30.0) -> Made:
    """A Prepare of exactly MAX_PREPARE_LENGTH bytes (longest address, most data)."""
    destination = "test." + "a" * (MAX_ADDRESS_LENGTH - 5)
    made = make_prepare(now, expires_in, destination=destination, data=b"\xab" * MAX_DATA_LENGTH)
    assert len(made.packet) == MAX_PREPARE_LENGTH, len(made.packet)
    return made


def reject_bytes(code: str, triggered_by: str = "test.somebody", message: str = "") -> bytes:
    return serialize_reject(Reject(code, triggered_by, message))


def ildcp_reply(address: str, scale: int = 9, code: str = "XRP") -> bytes:
    return serialize_response(IldcpResponse(address, scale, code))


def expect_reject(case: SynchronousTestCase, reply: bytes, code: str) -> Reject:
    """``reply`` decoded; fails ``case`` unless it is a Reject with ``code``."""
    packet = deserialize(reply)
    case.assertIsInstance(packet, Reject, f"expected Reject {code}, got {packet!r}")
    assert isinstance(packet, Reject)
    case.assertEqual(packet.code, code, f"expected {code}, got {packet!r}")
    return packet


def expect_fulfill(case: SynchronousTestCase, reply: bytes, fulfillment: bytes) -> Fulfill:
    """``reply`` decoded; fails ``case`` unless it is a Fulfill of ``fulfillment``."""
    packet = deserialize(reply)
    case.assertIsInstance(packet, Fulfill, f"expected a Fulfill, got {packet!r}")
    assert isinstance(packet, Fulfill)
    case.assertEqual(packet.fulfillment, fulfillment)
    return packet


# -- an OER writer of the tests' own ---------------------------------------------------


def var_octets(raw: bytes) -> bytes:
    """``raw`` with its canonical OER length determinant in front."""
    n = len(raw)
    if n < 128:
        return bytes([n]) + raw
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 + len(body)]) + body + raw


# -- Prepares that carry their fulfillment, for real peers --------------------------------


def data_prepare(
    destination: str, amount: int = 10, payload: bytes = b"hello", seconds: float = 30.0
) -> tuple[Prepare, bytes, bytes]:
    """A Prepare whose data starts with its own fulfillment, expiring ``seconds``
    from now (wall clock).  Returns (prepare, serialized, fulfillment)."""
    fulfillment = os.urandom(32)
    prepare = Prepare(
        amount,
        _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=seconds),
        hashlib.sha256(fulfillment).digest(),
        destination,
        fulfillment + payload,
    )
    return prepare, serialize_prepare(prepare), fulfillment


def largest_data_prepare() -> tuple[bytes, bytes]:
    """The largest legal Prepare, 33,857 bytes (1,023-byte address, 32,767 bytes
    of data starting with its fulfillment), and that fulfillment."""
    _, raw, fulfillment = data_prepare(
        "test." + "d" * 1018, amount=1, payload=b"x" * (32767 - 32), seconds=10
    )
    assert len(raw) == MAX_PREPARE_LENGTH
    return raw, fulfillment


def fulfil_from_data(data: bytes) -> bytes:
    """A Python data handler: fulfil with the first 32 bytes of the data."""
    prepare = deserialize_prepare(data)
    return serialize(Fulfill(prepare.data[:32], prepare.data[32:]))


def reject_of(reply: bytes) -> Reject:
    packet = deserialize(reply)
    assert isinstance(packet, Reject), packet
    return packet
