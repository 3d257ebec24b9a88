"""Helpers for testing code that uses ilphttp, without sockets.

Like ``treq.testing``: shipped with the package so that *your* data handlers
can be unit-tested under trial, deterministically.

.. code-block:: python

    from ilphttp.testing import Conditions, MemoryLink, expect_fulfill

    def test_my_handler(self):
        conditions = Conditions()
        link = MemoryLink(receiver_handler=conditions.handler)
        prepare = conditions.prepare(amount=10, destination="test.bob", now=link.now())
        reply = self.successResultOf(link.send(prepare))
        expect_fulfill(reply)

The link is two real :class:`~ilphttp.PluginHttp` instances (the whole HTTP
path: auth, headers, the resource, the client and its reject mapping) joined
by treq's in-memory ``RequestTraversalAgent`` and a
:class:`~twisted.internet.task.Clock`.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    Prepare,
    Reject,
    condition_from_fulfillment,
    deserialize,
    deserialize_prepare,
    serialize_fulfill,
    serialize_prepare,
    serialize_reject,
)
from ilphttp.plugin import DataHandler, PluginHttp

__all__ = [
    "Conditions",
    "MemoryLink",
    "expect_fulfill",
    "expect_reject",
    "make_prepare",
]


def make_prepare(
    amount: int = 1,
    destination: str = "test.peer",
    data: bytes = b"",
    expires_in: float = 30.0,
    now: float | None = None,
    fulfillment: bytes | None = None,
) -> tuple[bytes, bytes]:
    """A serialized Prepare and the fulfillment that fulfils it.

    ``now`` is the time the expiry counts from (a Clock's ``seconds()``;
    default: the wall clock).  The fulfillment is random unless given.
    """
    if fulfillment is None:
        fulfillment = os.urandom(32)
    start = time.time() if now is None else now
    expires_at = _dt.datetime.fromtimestamp(start + expires_in, _dt.timezone.utc)
    prepare = Prepare(
        amount, expires_at, condition_from_fulfillment(fulfillment), destination, data
    )
    return serialize_prepare(prepare), fulfillment


class Conditions:
    """Makes Prepares and fulfils exactly those it made (a receiver's test double).

    ``handler`` fulfils a Prepare whose condition it issued (echoing the data)
    and rejects any other with F06 Unexpected Payment.
    """

    def __init__(self, address: str = "") -> None:
        self._fulfillments: dict[bytes, bytes] = {}
        self.address = address
        #: every Prepare the handler received, decoded, in order
        self.received: list[Prepare] = []

    def prepare(
        self,
        amount: int = 1,
        destination: str = "test.peer",
        data: bytes = b"",
        expires_in: float = 30.0,
        now: float | None = None,
    ) -> bytes:
        """A serialized Prepare that :attr:`handler` will fulfil."""
        packet, fulfillment = make_prepare(amount, destination, data, expires_in, now)
        self._fulfillments[condition_from_fulfillment(fulfillment)] = fulfillment
        return packet

    def handler(self, data: bytes) -> bytes:
        """A data handler: Fulfill for our conditions, F06 Reject otherwise."""
        prepare = deserialize_prepare(data)
        self.received.append(prepare)
        fulfillment = self._fulfillments.get(prepare.execution_condition)
        if fulfillment is None:
            return serialize_reject(
                Reject(ErrorCode.F06_UNEXPECTED_PAYMENT, self.address, "unknown condition")
            )
        return serialize_fulfill(Fulfill(fulfillment, prepare.data))


def expect_fulfill(reply: bytes, fulfillment: bytes | None = None) -> Fulfill:
    """``reply`` decoded as a Fulfill (of ``fulfillment``, if given); else AssertionError."""
    packet = deserialize(reply)
    if not isinstance(packet, Fulfill):
        raise AssertionError(f"expected a Fulfill, got {packet!r}")
    if fulfillment is not None and packet.fulfillment != fulfillment:
        raise AssertionError("the Fulfill carries another fulfillment")
    return packet


def expect_reject(reply: bytes, code: str | None = None) -> Reject:
    """``reply`` decoded as a Reject (with ``code``, if given); else AssertionError."""
    packet = deserialize(reply)
    if not isinstance(packet, Reject):
        raise AssertionError(f"expected a Reject, got {packet!r}")
    if code is not None and packet.code != code:
        raise AssertionError(f"expected Reject {code}, got {packet.code}: {packet.message!r}")
    return packet


class MemoryLink:
    """A sender and a receiver PluginHttp joined in memory.

    :param receiver_handler: the receiver's data handler (the code under test).
    :param sender_handler: the sender's data handler, for packets sent back.
    :param clock: the Clock both plugins use; by default a new one set to the
        wall-clock time, so Prepares made with ``now=link.now()`` or with the
        wall clock both work.
    :param sender_options, receiver_options: extra Python options merged into
        each plugin's ``outgoing``/``incoming`` and top level (e.g.
        ``{"multi": True, "ildcp": {...}}``).

    Async handlers: after your handler's Deferred fires, call :meth:`flush`
    (or :meth:`advance`) so the response crosses the in-memory connection.
    """

    SENDER_TOKEN = "memory-link-sender"
    RECEIVER_TOKEN = "memory-link-receiver"

    def __init__(
        self,
        receiver_handler: DataHandler | None = None,
        sender_handler: DataHandler | None = None,
        clock: Clock | None = None,
        sender_options: dict[str, Any] | None = None,
        receiver_options: dict[str, Any] | None = None,
    ) -> None:
        if clock is None:
            clock = Clock()
            clock.advance(time.time())
        self.clock = clock
        self.receiver = self._plugin(
            "receiver",
            "http://sender.invalid/",
            self.RECEIVER_TOKEN,
            self.SENDER_TOKEN,
            receiver_options,
        )
        self.sender = self._plugin(
            "sender",
            "http://receiver.invalid/",
            self.SENDER_TOKEN,
            self.RECEIVER_TOKEN,
            sender_options,
        )
        assert self.receiver.resource is not None and self.sender.resource is not None
        self._to_receiver = RequestTraversalAgent(self.receiver.resource)
        self._to_sender = RequestTraversalAgent(self.sender.resource)
        self.sender._injected_agent = self._to_receiver
        self.receiver._injected_agent = self._to_sender
        if receiver_handler is not None:
            self.receiver.register_data_handler(receiver_handler)
        if sender_handler is not None:
            self.sender.register_data_handler(sender_handler)
        self.sender.connect()
        self.receiver.connect()

    def _plugin(
        self, name: str, url: str, own: str, peer: str, extra: dict[str, Any] | None
    ) -> PluginHttp:
        extra = dict(extra or {})
        incoming = {"static_token": own, **extra.pop("incoming", {})}
        outgoing = {"url": url, "static_token": peer, "name": name, **extra.pop("outgoing", {})}
        return PluginHttp(incoming=incoming, outgoing=outgoing, reactor=self.clock, **extra)

    def now(self) -> float:
        """The link's current time, for :func:`make_prepare`'s ``now``."""
        return self.clock.seconds()

    def send(self, prepare: bytes) -> Deferred[bytes]:
        """Send ``prepare`` from the sender to the receiver; flushed at once."""
        d = self.sender.send_data(prepare)
        self.flush()
        return d

    def send_back(self, prepare: bytes) -> Deferred[bytes]:
        """Send ``prepare`` from the receiver to the sender."""
        d = self.receiver.send_data(prepare)
        self.flush()
        return d

    def flush(self) -> None:
        """Move every pending byte across the in-memory connections."""
        self._to_receiver.flush()
        self._to_sender.flush()

    def advance(self, seconds: float) -> None:
        """Advance the clock (expiry timers fire), then flush."""
        self.clock.advance(seconds)
        self.flush()

    def close(self) -> Deferred[None]:
        """Disconnect both plugins."""
        d = self.sender.disconnect()
        self.receiver.disconnect()
        self.flush()
        return d
