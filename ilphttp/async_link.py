"""RFC 35 asynchronous mode, the link: our Prepares' replies on the callback URL, and theirs.

One :class:`AsyncLink` per plugin (its account) does both roles:

* **sending** (``outgoing.mode = "async"``): :meth:`AsyncLink.send` registers
  the Prepare in a :class:`~ilphttp.pending.PendingPrepares` table *before*
  it is POSTed (a reply may beat the ``202``) and hands an :class:`AsyncLeg`
  to :meth:`ilphttp.client.OutgoingClient.send`, whose Deferred then fires
  with the reply that comes to our callback URL, R00 at the Prepare's expiry,
  or the synchronous reading of any answer but ``202``;
* **the reply endpoint**: a POST to our listener with a ``Request-Id``, no
  ``Callback-Url`` and a body that is not a Prepare is a reply
  (:meth:`AsyncLink.classify` answers it: ``200`` or ``400``,
  :mod:`ilphttp.pending`'s rules);
* **receiving**: a Prepare with ``Callback-Url`` and ``Request-Id`` that the
  account's allow-list accepts is answered ``202`` at once; its Fulfill or
  Reject is POSTed back by :class:`ilphttp.reply_delivery.ReplyDeliverer`.

The decisions are the pure core's (:mod:`ilphttp.rfc35`,
:mod:`ilphttp.callbacks`, :mod:`ilphttp.pending`); this module wires them to
the reactor's clock and to :mod:`ilphttp.front`'s door.  Pending state needs
one timer per account, not one per packet: answered ids are swept at most
every :data:`SWEEP_INTERVAL` seconds, and a pending id is dropped as soon as
its Prepare settles (the client's own expiry timer gives the R00).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ilphttp.callbacks import CallbackPolicy
from ilphttp.config import PluginOptions
from ilphttp.front import Answer, HeaderLookup
from ilphttp.packet import (
    TYPE_FULFILL,
    TYPE_PREPARE,
    ErrorCode,
    Fulfill,
    Prepare,
    Reject,
    Reply,
    serialize,
)
from ilphttp.pending import ALREADY_ANSWERED, PendingPrepares, Registration
from ilphttp.reply_delivery import Post, ReplyDeliverer
from ilphttp.rfc35 import (
    ACCEPTED,
    AsyncRequest,
    Refusal,
    callback_policy,
    classify_prepare,
    new_request_id,
    parse_request_id,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from ilphttp.client import OutgoingClient

__all__ = ["LOST_FULFILL_LOG_INTERVAL", "SWEEP_INTERVAL", "AsyncLeg", "AsyncLink", "async_link"]

_log = Logger()

#: seconds between two sweeps of answered ids past their Prepare's expiry, at least
SWEEP_INTERVAL = 1.0
#: seconds between two warnings about Fulfills refused for an unknown id, per account
LOST_FULFILL_LOG_INTERVAL = 1.0
_EMPTY = Answer(ACCEPTED, b"")


def _text(status: int, message: str) -> Answer:
    return Answer(status, message.encode("utf-8"))


class AsyncLeg:
    """One Prepare sent asynchronously: its headers, and the Deferred its reply fires.

    :attr:`reply` fires with the checked :class:`~ilphttp.packet.Reply` that
    came to the callback URL (or fails with ``CancelledError`` when cancelled
    at the expiry); :meth:`settle` ends the leg whatever happened.
    """

    __slots__ = ("_link", "callback_url", "received", "reply", "request_id", "request_id_header")

    def __init__(self, link: AsyncLink, request_id: str, callback_url: bytes) -> None:
        self._link = link
        self.request_id = request_id
        self.callback_url = callback_url
        self.request_id_header = (b"Request-Id", request_id.encode("ascii"))
        self.reply: Deferred[Reply] = Deferred()
        #: the reply that came to the callback URL, once one did
        self.received: Reply | None = None

    def settle(self, result: Reply | Failure) -> Reply | Failure:
        """The Prepare's outcome (``OutgoingClient.send``'s last callback); forgets the id.

        A reply that came to the callback URL wins over whatever the Prepare leg
        made of itself (a R00 because the ``202`` came late, a connection lost
        after the peer took the Prepare) -- unless that is a Fulfill: a
        hash-checked Fulfill is never replaced.
        """
        self._link.forget(self.request_id)
        received = self.received
        if received is None or result is received or not isinstance(result, Reply):
            return result
        if isinstance(result.packet, Fulfill):
            return result
        return received


class AsyncLink:
    """The asynchronous side of one account (module docstring).

    :param reactor: its clock (``seconds``, ``callLater``).
    :param policy: the account's allow-list of callback URLs.
    :param callback_url: ``outgoing.callback_url`` (async mode), else None.
    :param deliverer: POSTs our replies to callback URLs (None: no outgoing
        side, so no credential to send them with: asynchronous Prepares get 400).
    :param multi: a multi account: replies and Prepares are per child
        (``ILP-Peer-Name``).
    :param pending: the table of Prepares awaiting replies (default: a new one).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        policy: CallbackPolicy,
        callback_url: str | None,
        deliverer: ReplyDeliverer | None,
        multi: bool = False,
        pending: PendingPrepares | None = None,
    ) -> None:
        self._reactor = reactor
        self._policy = policy
        self._callback_url = None if callback_url is None else callback_url.encode("ascii")
        self.deliverer = deliverer
        self._multi = multi
        #: asynchronous Prepares taken whose reply is not delivered yet
        self._busy = 0
        self._drained: list[Deferred[None]] = []
        self.pending = pending if pending is not None else PendingPrepares()
        self._legs: dict[str, AsyncLeg] = {}
        self._sweep: IDelayedCall | None = None
        self._last_warning = float("-inf")
        self._not_warned = 0
        #: fired once none of our Prepares awaits a reply (:meth:`idle`)
        self._idle: list[Deferred[None]] = []
        #: the links this one replaced (a reload), while their Prepares await replies
        self._predecessors: list[AsyncLink] = []

    @property
    def sends_async(self) -> bool:
        """True when our Prepares go out asynchronously (``outgoing.mode = "async"``)."""
        return self._callback_url is not None

    # -- sending -------------------------------------------------------------------

    def send(
        self,
        client: OutgoingClient,
        url: bytes,
        data: bytes,
        prepare: Prepare,
        triggered_by: str,
        child: str | None = None,
    ) -> Deferred[Reply]:
        """Send ``prepare`` (asynchronously in async mode); fire with its reply."""
        if self._callback_url is None:
            return client.send(url, data, prepare, triggered_by)
        now = self._reactor.seconds()
        expires_at = prepare.expires_at.timestamp()
        for _ in range(3):  # a duplicate UUIDv4 is as good as impossible; do not loop on it
            request_id = new_request_id()
            registered = self.pending.register(
                request_id, child, prepare.execution_condition, expires_at, now, triggered_by
            )
            if registered is not Registration.DUPLICATE:
                break
        if registered is Registration.EXPIRED:
            return client.send(url, data, prepare, triggered_by)  # the client's own R00
        if registered is not Registration.REGISTERED:
            message = f"too many Prepares awaiting replies ({self.pending.max_pending})"
            reject = Reject(ErrorCode.T00_INTERNAL_ERROR, triggered_by, message)
            return succeed(Reply(reject, serialize(reject)))
        leg = self._legs[request_id] = AsyncLeg(self, request_id, self._callback_url)
        self._schedule_sweep()
        return client.send(url, data, prepare, triggered_by, leg)

    def forget(self, request_id: str) -> None:
        """Drop a settled Prepare's pending entry (a later reply is "unknown": 400)."""
        self.pending.cancel(request_id)
        self._legs.pop(request_id, None)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._legs and self._idle:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def take_over_from(self, predecessor: AsyncLink) -> None:
        """Take the replies to ``predecessor``'s Prepares from now on (a reload replaced it).

        A reply POST whose ``Request-Id`` is pending there, not here, is
        decided there: its sender gets it (docs/reload.rst, packets in flight
        finish with the settings they started with).  Predecessors are
        forgotten once none of their Prepares awaits a reply.
        """
        chain = [*predecessor._predecessors, predecessor]
        self._predecessors.extend(link for link in chain if link is not self and len(link))

    def idle(self) -> Deferred[None]:
        """Fire once none of our Prepares (nor a predecessor's) awaits a reply.

        A new Deferred at each call; it never fails.  What a drain waits for
        before it closes the listener the replies come to.
        """
        waiting: list[Deferred[Any]] = []
        for link in (self, *self._predecessors):
            if len(link):
                d: Deferred[None] = Deferred()
                link._idle.append(d)
                waiting.append(d)
        if not waiting:
            return succeed(None)
        return DeferredList(waiting).addCallback(lambda _: None)

    def __len__(self) -> int:
        """How many of our Prepares await a reply."""
        return len(self._legs)

    def _schedule_sweep(self) -> None:
        if self._sweep is not None:
            return
        due = self.pending.next_expiry()
        if due is None:
            return
        delay = max(due - self._reactor.seconds(), SWEEP_INTERVAL)
        self._sweep = self._reactor.callLater(delay, self._swept)

    def _swept(self) -> None:
        self._sweep = None
        for request_id in self.pending.expire(self._reactor.seconds()):
            # The client's expiry timer gives the R00 (it fires at the expiry,
            # this sweep at or after it); only the bookkeeping goes here.
            self._legs.pop(request_id, None)
        self._check_idle()
        self._schedule_sweep()

    def stop(self) -> Deferred[None]:
        """Stop the sweep timer; fire once every asynchronous Prepare taken was
        answered and its reply delivered or given up (at most its expiry plus the grace)."""
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        if not self._busy:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    # -- the door's hook (ilphttp.front.AccountDoor) ----------------------------------------

    def classify(
        self, header: HeaderLookup, body: bytes, peer_name: bytes | None
    ) -> Answer | AsyncRequest | None:
        """What an authorized POST is: None for a synchronous Prepare, an
        :class:`~ilphttp.rfc35.AsyncRequest` for an asynchronous one, or the
        :class:`~ilphttp.front.Answer` to give now (a reply POST's ``200``/``400``,
        a refused asynchronous Prepare's ``400``)."""
        request_id = header(b"request-id")
        callback_url = header(b"callback-url")
        if callback_url is None:
            if request_id is None or body[:1] == bytes((TYPE_PREPARE,)):
                return None  # synchronous (a lone Request-Id is a tracing tool's)
            return self._reply(request_id, body, peer_name)
        child = self._child(peer_name)
        decision = classify_prepare(
            [] if request_id is None else [request_id], [callback_url], self._policy, child
        )
        if isinstance(decision, Refusal):
            return _text(400, decision.reason)
        if decision is None:  # not reached: a Callback-Url was given
            return None
        if self.deliverer is None:
            return _text(400, "this account has no outgoing side to send replies with")
        return decision

    def accepted(self, request: AsyncRequest, prepare: Prepare, reply: Deferred[bytes]) -> Answer:
        """``202`` for an asynchronous Prepare handed to the receiver; its reply is delivered."""
        assert self.deliverer is not None
        deliverer = self.deliverer
        expires_at = prepare.expires_at.timestamp()

        def deliver(data: bytes) -> Deferred[Any]:
            return deliverer.deliver(request.callback_url, request.request_id, data, expires_at)

        self._busy += 1
        reply.addCallback(deliver).addErrback(_ignored).addBoth(self._one_done)
        return _EMPTY

    def _one_done(self, _: object) -> None:
        self._busy -= 1
        if not self._busy:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def _child(self, peer_name: bytes | None) -> str | None:
        if not self._multi or peer_name is None:
            return None
        return peer_name.decode("latin-1")

    def _owner(self, request_id: bytes) -> AsyncLink:
        """This link, or the predecessor whose Prepare ``request_id`` is (a reload)."""
        if not self._predecessors:
            return self
        self._predecessors = [link for link in self._predecessors if len(link)]
        try:
            key = parse_request_id(request_id)
        except ValueError:
            return self  # refused here, as it would be anywhere
        if key in self.pending:
            return self
        for link in self._predecessors:
            if key in link.pending:
                return link
        return self

    def _reply(self, request_id: bytes, body: bytes, peer_name: bytes | None) -> Answer:
        owner = self._owner(request_id)
        if owner is not self:
            return owner._reply(request_id, body, peer_name)
        decision = self.pending.reply(
            [request_id], self._child(peer_name), body, self._reactor.seconds()
        )
        if decision.request_id is not None and decision.reply is not None:
            leg = self._legs.get(decision.request_id)
            if leg is not None and not leg.reply.called:
                leg.received = decision.reply
                leg.reply.callback(decision.reply)
        if decision.status == 200:
            return Answer(200, b"")
        if (
            decision.reply is None
            and decision.reason != ALREADY_ANSWERED
            and body[:1] == bytes((TYPE_FULFILL,))
        ):
            self._warn_lost_fulfill(decision.reason)
        else:
            _log.debug("refused a reply POST: {reason}", reason=decision.reason)
        return _text(decision.status, decision.reason)

    def _warn_lost_fulfill(self, reason: str) -> None:
        # A Fulfill we cannot match may be money the peer moved for a Prepare
        # another process sent (several nodes sharing one callback URL): say so
        # loudly, at most one line a second.
        now = self._reactor.seconds()
        if now - self._last_warning < LOST_FULFILL_LOG_INTERVAL:
            self._not_warned += 1
            return
        more = f" ({self._not_warned} more since the last line)" if self._not_warned else ""
        self._last_warning, self._not_warned = now, 0
        _log.warn(
            "refused a Fulfill on the callback URL: {reason}{more}; if several processes or"
            " nodes share this callback URL, give each its own (docs/async.rst, cluster"
            " deployment)",
            reason=reason,
            more=more,
        )


def _ignored(failure: Failure) -> None:
    # The handler's Deferred only fails when cancelled (the plugin stopped);
    # delivery never fails.  Nothing to deliver then.
    _log.debug("no reply to deliver: {f}", f=failure.value)


def async_link(
    options: PluginOptions,
    reactor: IReactorTime,
    post: Post,
    account: Callable[[], str | None] | None = None,
) -> AsyncLink:
    """The :class:`AsyncLink` of a plugin with these options.

    :param post: its outgoing client's :meth:`~ilphttp.client.OutgoingClient.post`
        (looked up at each reply: the client exists only while connected).
    :param account: the account's name now, for the reply leg's log lines.
    """
    out = options.outgoing
    callback_url = out.callback_url if out is not None and out.mode == "async" else None
    deliverer = None if out is None else ReplyDeliverer(reactor, post, account)
    return AsyncLink(reactor, callback_policy(options), callback_url, deliverer, options.multi)
