"""RFC 35 asynchronous ILP-over-HTTP, pure: headers, Request-Id, the two legs' statuses, retries.

The wire, as RFC 35 defines it at interledger/rfcs HEAD (commit 5bf6a3c):

* **Prepare leg**: ``POST`` the Prepare with ``Request-Id: <UUIDv4>`` and
  ``Callback-Url: <where to send the reply>``; the receiver answers ``202``
  at once, before it knows the outcome.
* **Reply leg**: the receiver ``POST``\\ s the Fulfill or Reject to the
  callback URL with the same ``Request-Id``; answered ``200``, or ``400`` for
  an unknown or already answered id.  Retried on 5xx or no answer, never after
  a 2xx or 4xx, several times before the Prepare expires.  Prepares are never
  retried.

This module decides; the link layer does the I/O: :func:`classify_prepare` for
an incoming Prepare's headers, :func:`prepare_leg` for the status our Prepare
got, :func:`reply_leg`, :func:`retry_delay` and :func:`attempt_timeout` for
delivering a reply.  The sender's pending Prepares are
:class:`ilphttp.pending.PendingPrepares`; the allow-list of callback URLs is
:class:`ilphttp.callbacks.CallbackPolicy`.  Times are seconds on the caller's
clock (``reactor.seconds()``); nothing here reads a clock.  No Twisted here.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Sequence
from typing import NamedTuple, Union

from ilphttp.callbacks import CallbackPolicy
from ilphttp.config import PluginOptions
from ilphttp.multi import ChildUrlTemplate
from ilphttp.packet import MAX_PREPARE_LENGTH, MAX_REJECT_LENGTH

__all__ = [
    "ACCEPTED",
    "CALLBACK_URL",
    "FIRST_RETRY_DELAY",
    "MAX_ATTEMPT_TIMEOUT",
    "MAX_RETRY_DELAY",
    "MIN_ATTEMPT_TIMEOUT",
    "REPLY_GRACE",
    "REQUEST_ID",
    "RETRY_BACKOFF",
    "AsyncRequest",
    "PrepareLeg",
    "Refusal",
    "ReplyLeg",
    "attempt_timeout",
    "callback_policy",
    "classify_prepare",
    "new_request_id",
    "parse_request_id",
    "prepare_leg",
    "reply_leg",
    "request_body_limit",
    "retry_delay",
]

#: header names (HTTP header names are case-insensitive; this is RFC 35's spelling)
REQUEST_ID = "Request-Id"
CALLBACK_URL = "Callback-Url"
#: the Prepare leg's answer to a valid asynchronous Prepare
ACCEPTED = 202

#: seconds from the first failed attempt to the second
FIRST_RETRY_DELAY = 0.1
#: each further delay is this many times the one before ...
RETRY_BACKOFF = 2.0
#: ... up to this many seconds
MAX_RETRY_DELAY = 2.0
#: seconds after the Prepare's expiry during which a reply is still delivered
#: (the two clocks may differ a little); after it, delivery stops
REPLY_GRACE = 1.0
#: seconds to wait for an answer to one reply attempt, at most ...
MAX_ATTEMPT_TIMEOUT = 3.0
#: ... and at least (unless the deadline is nearer)
MIN_ATTEMPT_TIMEOUT = 0.25

# RFC 9562 (formerly RFC 4122) canonical form: 8-4-4-4-12 hex digits, the
# version 1 to 8, the variant bits 10 (8, 9, a or b).
_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z", re.IGNORECASE
)

HeaderValue = Union[str, bytes]


def new_request_id() -> str:
    """A fresh ``Request-Id``: a random UUIDv4, lower-case canonical form (36 characters)."""
    return str(uuid.uuid4())


def parse_request_id(value: HeaderValue) -> str:
    """An incoming ``Request-Id`` in lower-case canonical form.

    RFC 35 says UUIDv4; any RFC 9562/4122 UUID in canonical
    ``8-4-4-4-12`` hex form is accepted (any case, version 1 to 8, exactly 36
    characters), because an id only has to be unique among the peer's own
    Prepares and a peer that uses, say, UUIDv7 correlates just as well.  The
    nil and max UUIDs, other variants, braces, ``urn:uuid:`` and hex without
    hyphens are refused.

    :raises ValueError: saying why (the value is not repeated: it is the peer's).
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("Request-Id must be ASCII") from None
    if len(value) != 36 or not _UUID.match(value):
        raise ValueError("Request-Id must be a UUID (8-4-4-4-12 hex digits)")
    return value.lower()


def request_body_limit(has_request_id: bool, has_callback_url: bool) -> int:
    """The largest request body a listener reads, in bytes, from two headers' presence.

    A POST with a ``Request-Id`` and no ``Callback-Url`` may be a reply (the
    reply leg), and a legal Reject is larger than a legal Prepare:
    :data:`~ilphttp.packet.MAX_REJECT_LENGTH` (RFC 27's limits).  Anything
    else can only be a Prepare: :data:`~ilphttp.packet.MAX_PREPARE_LENGTH`.
    Front doors answer ``413`` past this before reading on; the door
    (:mod:`ilphttp.front`) still refuses a Prepare over its own limit once read.
    """
    if has_request_id and not has_callback_url:
        return MAX_REJECT_LENGTH
    return MAX_PREPARE_LENGTH


def callback_policy(options: PluginOptions) -> CallbackPolicy:
    """The allow-list of callback URLs for one account's peer, from its options.

    ``incoming.callback_urls``, plus the origin of ``outgoing.url`` (multi
    accounts: each child's URL from the template), as :mod:`ilphttp.callbacks`
    describes.  Options were validated, so this does not raise.
    """
    prefixes = options.incoming.callback_urls if options.incoming is not None else ()
    out = options.outgoing
    if out is None:
        return CallbackPolicy(prefixes)
    if options.multi:
        template = ChildUrlTemplate(out.url, options.multi_delimiter, out.child_port_range)
        return CallbackPolicy(prefixes, child_template=template)
    return CallbackPolicy(prefixes, peer_url=out.url)


class AsyncRequest(NamedTuple):
    """A Prepare to answer asynchronously: ``202`` now, the reply POSTed later."""

    #: lower-case canonical; sent back as is on the reply leg
    request_id: str
    #: the allowed callback URL in normal form (:mod:`ilphttp.callbacks`)
    callback_url: str


class Refusal(NamedTuple):
    """A request to refuse with HTTP ``400`` (the handler is not called); ``reason`` says why."""

    reason: str


def classify_prepare(
    request_ids: Sequence[HeaderValue],
    callback_urls: Sequence[HeaderValue],
    policy: CallbackPolicy,
    child: str | None = None,
) -> AsyncRequest | Refusal | None:
    """How to answer an incoming Prepare, from its header values (each a list, [] when absent).

    * no ``Callback-Url``: None, answer synchronously as every existing peer
      expects; a lone ``Request-Id`` is ignored (tracing tools, .NET among
      them, send one of their own);
    * a ``Callback-Url`` with exactly one valid ``Request-Id``, allowed by
      ``policy`` for this account (``child``: a multi account's child's
      name): :class:`AsyncRequest`;
    * anything else -- a repeated header, a ``Callback-Url`` without a
      ``Request-Id``, a malformed id, a URL not allowed: :class:`Refusal`.
    """
    if not callback_urls:
        return None
    if len(callback_urls) > 1:
        return Refusal("more than one Callback-Url")
    if not request_ids:
        return Refusal("Callback-Url without Request-Id")
    if len(request_ids) > 1:
        return Refusal("more than one Request-Id")
    try:
        request_id = parse_request_id(request_ids[0])
    except ValueError as exc:
        return Refusal(str(exc))
    url = callback_urls[0]
    if isinstance(url, bytes):
        try:
            url = url.decode("ascii")
        except UnicodeDecodeError:
            return Refusal("Callback-Url must be ASCII")
    decision = policy.check(url, child)
    if decision.url is None:
        return Refusal(decision.reason)
    return AsyncRequest(request_id, decision.url)


class PrepareLeg(enum.Enum):
    """What the HTTP status of an asynchronous Prepare means to its sender."""

    #: 202: the peer took it; wait for the reply on the callback URL
    ACCEPTED = "accepted"
    #: 200: the peer answered synchronously; the body is the reply, read it as
    #: in synchronous mode (a peer that ignores ``Callback-Url`` does this)
    REPLIED = "replied"
    #: anything else: no reply is coming; the Prepare's answer is
    #: :func:`ilphttp.replies.reject_for_status` of the status, as in
    #: synchronous mode
    FAILED = "failed"


def prepare_leg(status: int) -> PrepareLeg:
    """The meaning of ``status`` in answer to an asynchronous Prepare."""
    if status == ACCEPTED:
        return PrepareLeg.ACCEPTED
    if status == 200:
        return PrepareLeg.REPLIED
    return PrepareLeg.FAILED


class ReplyLeg(enum.Enum):
    """What the outcome of one attempt to deliver a reply means to the receiver of the Prepare."""

    #: 2xx: delivered; stop
    DELIVERED = "delivered"
    #: 4xx (and 1xx/3xx: redirects are not followed): refused; stop and log.
    #: RFC 35: the sender MUST stop after a 2xx or 4xx.
    REFUSED = "refused"
    #: 5xx, no answer within :func:`attempt_timeout`, or the connection
    #: failed: try again after :func:`retry_delay`
    RETRY = "retry"


def reply_leg(status: int | None) -> ReplyLeg:
    """The meaning of a reply attempt's HTTP ``status`` (None: no answer or no connection)."""
    if status is None or status >= 500:
        return ReplyLeg.RETRY
    if 200 <= status < 300:
        return ReplyLeg.DELIVERED
    return ReplyLeg.REFUSED


def retry_delay(
    attempts: int, now: float, expires_at: float, grace: float = REPLY_GRACE
) -> float | None:
    """Seconds to wait before the next attempt, after ``attempts`` (>= 1) failed; None: stop.

    0.1, 0.2, 0.4, 0.8, 1.6, then 2 s between attempts, until the next attempt
    would start after ``expires_at + grace`` (the Prepare's expiry in seconds
    on the caller's clock, plus :data:`REPLY_GRACE`): several attempts even
    for a Prepare of a few seconds, as RFC 35 asks.  No jitter: the retries of
    one reply go to one peer and are few.

    :raises ValueError: when ``attempts`` < 1.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    delay = min(FIRST_RETRY_DELAY * RETRY_BACKOFF ** min(attempts - 1, 32), MAX_RETRY_DELAY)
    if now + delay >= expires_at + grace:
        return None
    return delay


def attempt_timeout(now: float, expires_at: float, grace: float = REPLY_GRACE) -> float | None:
    """Seconds to wait for an answer to an attempt starting ``now``; None: too late to start one.

    A third of the time left until ``expires_at + grace`` -- so that a callback
    that never answers still gets several attempts before a short Prepare
    expires -- but at least :data:`MIN_ATTEMPT_TIMEOUT`, at most
    :data:`MAX_ATTEMPT_TIMEOUT`, and never past ``expires_at + grace``.
    """
    left = expires_at + grace - now
    if left <= 0:
        return None
    return min(left, MAX_ATTEMPT_TIMEOUT, max(MIN_ATTEMPT_TIMEOUT, left / 3))
