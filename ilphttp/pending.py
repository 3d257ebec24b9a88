"""The sender's Prepares awaiting a reply on the callback URL (RFC 35), pure.

One table per plugin (a node's accounts may share one): :meth:`register`
before the Prepare is POSTed (a reply may arrive before the ``202`` does),
:meth:`reply` when a reply POST arrives, :meth:`cancel` when the Prepare leg
failed or the caller gave up, :meth:`expire` from a timer.  Every answer is a
value; the caller fires its Deferreds and writes the HTTP status.

Rules (RFC 35, "Idempotence": only the first reply counts):

* a reply is accepted (``200``) only for a pending id, from the account the
  Prepare went to, before the Prepare's expiry;
* the first reply wins; a later one for the same id gets ``400`` ("already
  answered") until the Prepare's expiry, ``400`` ("unknown") after it;
* the body is checked as in synchronous mode
  (:func:`ilphttp.replies.check_reply_body`): a Fulfill whose fulfillment does
  not hash to the condition is accepted with ``200`` -- it is the peer's
  answer, and a 4xx would only make it retry -- and resolves the Prepare as
  the same F05 Reject the synchronous path gives; a body that is not a
  Fulfill or Reject gets ``400`` (the peer stops: RFC 35 4xx) and resolves
  the Prepare as the synchronous path's T00 Reject, so the sender does not
  wait for the expiry;
* nothing outlives the Prepare's expiry: :meth:`expire` forgets pending and
  answered ids alike;
* the table is bounded: past ``max_pending`` Prepares awaiting replies,
  :meth:`register` answers :attr:`Registration.FULL` and the caller answers
  that Prepare with a T00 Reject (retryable; a synchronous fallback is not
  safe, RFC 35 peers may be asynchronous only).  Answered ids kept for the
  "already answered" reason are bounded too, by ``max_answered``; past it the
  oldest are forgotten (a late duplicate then gets "unknown": also ``400``).

Times are seconds on the caller's clock.  No Twisted here.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import NamedTuple

from ilphttp.packet import ErrorCode, Reply, serialize
from ilphttp.replies import check_reply_body
from ilphttp.rfc35 import HeaderValue, parse_request_id

__all__ = [
    "ALREADY_ANSWERED",
    "DEFAULT_MAX_PENDING",
    "PendingPrepares",
    "Registration",
    "ReplyDecision",
]

#: Prepares awaiting a reply, at most, by default
DEFAULT_MAX_PENDING = 16384
#: the reason of a ``400`` for a second reply to one id (the first one counted)
ALREADY_ANSWERED = "Request-Id already answered (the first reply counts)"


class Registration(enum.Enum):
    """The answer of :meth:`PendingPrepares.register`."""

    #: recorded: send the Prepare
    REGISTERED = "registered"
    #: ``max_pending`` reached: do not send; answer with a T00 Reject
    FULL = "full"
    #: the id is pending or answered already: make a new one
    DUPLICATE = "duplicate"
    #: ``expires_at`` is not after ``now``: the Prepare has expired (R00)
    EXPIRED = "expired"


class ReplyDecision(NamedTuple):
    """The answer of :meth:`PendingPrepares.reply`."""

    #: the HTTP status to answer the reply POST with: 200 or 400
    status: int
    #: what the pending Prepare resolves with (None: nothing resolved)
    reply: Reply | None
    #: the Prepare's id (lower-case) when one was resolved, else None
    request_id: str | None = None
    #: why, for the log and the 400's body; empty when all went well
    reason: str = ""


class _Entry:
    __slots__ = ("account", "condition", "expires_at", "triggered_by")

    def __init__(
        self, account: Hashable, condition: bytes, expires_at: float, triggered_by: str
    ) -> None:
        self.account = account
        self.condition = condition
        self.expires_at = expires_at
        self.triggered_by = triggered_by


def _refused(reason: str) -> ReplyDecision:
    return ReplyDecision(400, None, None, reason)


class PendingPrepares:
    """Prepares sent asynchronously whose reply has not come yet (rules: module docstring).

    :param max_pending: Prepares awaiting a reply, at most (>= 1).
    :param max_answered: answered ids remembered until their expiry, at most
        (default: ``max_pending``).
    """

    def __init__(
        self, max_pending: int = DEFAULT_MAX_PENDING, max_answered: int | None = None
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self.max_answered = max_pending if max_answered is None else max_answered
        self._pending: dict[str, _Entry] = {}
        #: id -> its Prepare's expiry, oldest answer first
        self._answered: OrderedDict[str, float] = OrderedDict()
        #: (expires_at, id) of every entry, and of some forgotten ones (skipped)
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        """How many Prepares await a reply."""
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        """True while ``request_id`` (lower-case) awaits a reply."""
        return request_id in self._pending

    @property
    def answered(self) -> int:
        """How many answered ids are remembered (until their Prepare's expiry)."""
        return len(self._answered)

    def register(
        self,
        request_id: str,
        account: Hashable,
        condition: bytes,
        expires_at: float,
        now: float,
        triggered_by: str,
    ) -> Registration:
        """Record a Prepare about to be sent with a fresh ``request_id`` (``new_request_id()``).

        :param account: who may answer it (the account's name; for a multi
            account, whatever names the child too); compared with ``==``.
        :param condition: the Prepare's execution condition (32 bytes).
        :param expires_at: the Prepare's expiry, seconds on the caller's clock.
        :param triggered_by: our ILP address, for the Rejects made of a bad reply.

        When full, expired entries are dropped first (as :meth:`expire` would).
        """
        request_id = request_id.lower()
        if expires_at <= now:
            return Registration.EXPIRED
        if request_id in self._pending or request_id in self._answered:
            return Registration.DUPLICATE
        if len(self._pending) >= self.max_pending:
            self.expire(now)
            if len(self._pending) >= self.max_pending:
                return Registration.FULL
        self._pending[request_id] = _Entry(account, condition, expires_at, triggered_by)
        self._remember_expiry(expires_at, request_id)
        return Registration.REGISTERED

    def cancel(self, request_id: str) -> bool:
        """Forget a pending Prepare (its leg failed, or the caller gave up); True if it was pending.

        A reply for it afterwards is "unknown" (``400``).
        """
        return self._pending.pop(request_id.lower(), None) is not None

    def reply(
        self, request_ids: Sequence[HeaderValue], account: Hashable, body: bytes, now: float
    ) -> ReplyDecision:
        """Decide on a reply POST: its ``Request-Id`` header values, who sent it, its body.

        ``account`` is who authenticated the POST, as given to :meth:`register`.
        """
        if len(request_ids) != 1:
            return _refused("no Request-Id" if not request_ids else "more than one Request-Id")
        try:
            request_id = parse_request_id(request_ids[0])
        except ValueError as exc:
            return _refused(str(exc))
        entry = self._pending.get(request_id)
        if entry is None:
            expiry = self._answered.get(request_id)
            if expiry is not None and now < expiry:
                return _refused(ALREADY_ANSWERED)
            return _refused("unknown Request-Id (never sent, expired or given up)")
        if entry.account != account:
            return _refused("Request-Id is not pending for this account")
        if now >= entry.expires_at:
            del self._pending[request_id]
            return _refused("Request-Id's Prepare has expired")
        del self._pending[request_id]
        self._answered[request_id] = entry.expires_at
        while len(self._answered) > self.max_answered:
            self._answered.popitem(last=False)
        checked = check_reply_body(body, entry.condition, entry.triggered_by)
        if isinstance(checked, Reply):
            return ReplyDecision(200, checked, request_id)
        reply = Reply(checked, serialize(checked))
        if checked.code == ErrorCode.F05_WRONG_CONDITION:
            return ReplyDecision(200, reply, request_id, checked.message)
        return ReplyDecision(400, reply, request_id, checked.message)

    def expire(self, now: float) -> list[str]:
        """Forget every Prepare whose expiry is not after ``now``; the ids that were still pending.

        The caller answers those with R00 (usually its own timer already did).
        """
        expired: list[str] = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, request_id = heapq.heappop(heap)
            entry = self._pending.get(request_id)
            if entry is not None and entry.expires_at == expires_at:
                del self._pending[request_id]
                expired.append(request_id)
            elif self._answered.get(request_id) == expires_at:
                del self._answered[request_id]
        return expired

    def next_expiry(self) -> float | None:
        """When :meth:`expire` next has something to do (seconds, caller's clock), or None."""
        return self._expiries[0][0] if self._expiries else None

    def _remember_expiry(self, expires_at: float, request_id: str) -> None:
        heap = self._expiries
        heapq.heappush(heap, (expires_at, request_id))
        # Cancelled and evicted ids leave their entry behind until it is due;
        # rebuild when those outnumber the live ones, so the heap stays bounded.
        if len(heap) > 2 * (len(self._pending) + len(self._answered)) + 64:
            live = [
                (at, rid)
                for at, rid in heap
                if (rid in self._pending and self._pending[rid].expires_at == at)
                or self._answered.get(rid) == at
            ]
            heapq.heapify(live)
            self._expiries = live
