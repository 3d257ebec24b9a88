"""RFC 35 reply leg: POST a Fulfill or Reject to the peer's callback URL, retried until expiry.

What the receiver of an asynchronous Prepare does once its handler answered
(RFC 35, "ILP Fulfill/Reject Reply" and "Retry Behavior"): ``POST`` the reply
to the ``Callback-Url`` with the same ``Request-Id`` and ``Content-Type:
application/octet-stream``, through the account's outgoing sender and with its
outgoing credential (what we use for our Prepares to that peer).

* a ``2xx`` ends delivery; a ``4xx`` (or any other non-5xx) ends it too, and is
  logged at info, at most one line a second per account;
* a ``5xx``, a connection failure or no answer within
  :func:`ilphttp.rfc35.attempt_timeout` is retried after
  :func:`ilphttp.rfc35.retry_delay` (0.1 s, doubling, at most 2 s);
* delivery stops once the next attempt would start after the Prepare's expiry
  plus :data:`ilphttp.rfc35.REPLY_GRACE`; the attempt count is logged once, at info.

Times are on the reactor's clock; one timer per delivery at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, NamedTuple

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ilphttp.logtext import loggable_url
from ilphttp.rfc35 import REQUEST_ID, ReplyLeg, attempt_timeout, reply_leg, retry_delay

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["LOG_INTERVAL", "Delivery", "Post", "ReplyDeliverer"]

_log = Logger()

#: seconds between two log lines about refused replies, per account
LOG_INTERVAL = 1.0

#: ``post(url, body, extra_headers) -> Deferred[(status, body)]``
#: (:meth:`ilphttp.client.OutgoingClient.post`)
Post = Callable[[bytes, bytes, Sequence[tuple[bytes, bytes]]], "Deferred[tuple[int, bytes]]"]


class Delivery(NamedTuple):
    """How delivering one reply ended."""

    #: DELIVERED or REFUSED; RETRY when it gave up (the deadline passed)
    outcome: ReplyLeg
    #: attempts made (>= 0: none when the deadline had passed already)
    attempts: int
    #: the last HTTP status, None when the last attempt got no answer
    status: int | None


class _Job:
    __slots__ = ("attempts", "done", "expires_at", "headers", "reply", "url")

    def __init__(self, url: bytes, request_id: str, reply: bytes, expires_at: float) -> None:
        self.url = url
        self.headers = ((REQUEST_ID.encode("ascii"), request_id.encode("ascii")),)
        self.reply = reply
        self.expires_at = expires_at
        self.attempts = 0
        self.done: Deferred[Delivery] = Deferred()


class ReplyDeliverer:
    """Delivers one account's replies to its peer's callback URLs (module docstring).

    :param reactor: the clock (``seconds``, ``callLater``).
    :param post: how to POST (:data:`Post`): the account's outgoing client;
        may raise or fail when there is none (counted as a failed attempt).
    :param account: the account's name, for the log: a string, or a callable
        giving it at each line (a plugin is named after it is made).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        post: Post,
        account: str | Callable[[], str | None] | None = None,
    ) -> None:
        self._reactor = reactor
        self._post = post
        self._name = account
        self._last_log = float("-inf")
        self._not_logged = 0
        #: deliveries under way
        self.active = 0

    @property
    def _account(self) -> str:
        name = self._name() if callable(self._name) else self._name
        return name or "-"

    def deliver(
        self, url: str, request_id: str, reply: bytes, expires_at: float
    ) -> Deferred[Delivery]:
        """POST ``reply`` (a serialized Fulfill or Reject) to ``url`` until it is taken or too late.

        :param url: the allowed callback URL (normalized by :mod:`ilphttp.callbacks`).
        :param request_id: the Prepare's ``Request-Id``, sent back as is.
        :param expires_at: the Prepare's expiry, seconds on the reactor's clock.
        :returns: a Deferred that fires with the :class:`Delivery`; it never fails.
        """
        job = _Job(url.encode("ascii"), request_id, reply, expires_at)
        self.active += 1
        self._attempt(job)
        return job.done

    def _attempt(self, job: _Job) -> None:
        timeout = attempt_timeout(self._reactor.seconds(), job.expires_at)
        if timeout is None:
            self._end(job, ReplyLeg.RETRY, None)
            return
        job.attempts += 1
        try:
            d = self._post(job.url, job.reply, job.headers)
        except Exception:  # no outgoing client (stopping): a failed attempt
            d = fail()
        timer: IDelayedCall = self._reactor.callLater(timeout, d.cancel)

        def answered(answer: tuple[int, bytes]) -> int | None:
            return answer[0]

        def failed(failure: Failure) -> None:
            _log.debug(
                "reply attempt {n} to {url} failed: {f}",
                n=job.attempts,
                url=loggable_url(job.url),
                f=failure.value.__class__.__name__,
            )
            return None

        def next_step(status: int | None) -> None:
            if timer.active():
                timer.cancel()
            outcome = reply_leg(status)
            if outcome is not ReplyLeg.RETRY:
                self._end(job, outcome, status)
                return
            now = self._reactor.seconds()
            delay = retry_delay(job.attempts, now, job.expires_at)
            if delay is None:
                self._end(job, ReplyLeg.RETRY, status)
                return
            self._reactor.callLater(delay, self._attempt, job)

        d.addCallbacks(answered, failed).addCallback(next_step)

    def _end(self, job: _Job, outcome: ReplyLeg, status: int | None) -> None:
        self.active -= 1
        url = loggable_url(job.url)
        if outcome is ReplyLeg.RETRY:
            _log.info(
                "account {account}: gave up delivering a reply to {url} after {n} attempt(s)"
                " (last: {last}); its Prepare has expired",
                account=self._account,
                url=url,
                n=job.attempts,
                last="no answer" if status is None else f"HTTP {status}",
            )
        elif outcome is ReplyLeg.REFUSED:
            self._log_refused(url, status)
        job.done.callback(Delivery(outcome, job.attempts, status))

    def _log_refused(self, url: str, status: int | None) -> None:
        now = self._reactor.seconds()
        if now - self._last_log < LOG_INTERVAL:
            self._not_logged += 1
            return
        more = f" ({self._not_logged} more since the last line)" if self._not_logged else ""
        self._last_log, self._not_logged = now, 0
        _log.info(
            "account {account}: peer refused a reply at {url} (HTTP {status}); not retried{more}",
            account=self._account,
            url=url,
            status=status,
            more=more,
        )
