"""The outgoing side: POST a Prepare to the peer, turn every failure into a Reject.

The caller always gets a serialized Fulfill or Reject.  The mapping from
HTTP and transport failures to ILP error codes is pure (:func:`reject_for_status`,
:func:`reject_for_failure`) and documented in ``docs/errors.rst``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)

from ilphttp._compat import wrapped_reasons
from ilphttp._http1_response import ReplyTooLarge
from ilphttp.agent_sender import AgentSender, make_http11_agent
from ilphttp.auth import OutgoingAuth
from ilphttp.config import CONTENT_TYPES, OCTET_STREAM
from ilphttp.http1_client import Http1Client, UnusableUrl
from ilphttp.logtext import loggable_url
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    InvalidPacketError,
    Prepare,
    Reject,
    Reply,
    envelope_length,
    serialize,
)
from ilphttp.replies import check_reply_body
from ilphttp.replies import reject_for_status as reject_for_status
from ilphttp.rfc35 import ACCEPTED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.iweb import IAgent

    from ilphttp.async_link import AsyncLeg

__all__ = [
    "FAILURE_LOG_INTERVAL",
    "MAX_REPLY_LENGTH",
    "POOL_IDLE_TIMEOUT",
    "POOL_SIZE",
    "AgentSender",
    "OutgoingClient",
    "ReplyTooLarge",
    "check_reply",
    "make_agent",
    "make_http11_agent",
    "reject_for_failure",
    "reject_for_status",
    "reply_of",
]

_log = Logger()
_OCTET_STREAM = OCTET_STREAM.encode("ascii")

#: seconds between two log lines about failing requests to one peer
FAILURE_LOG_INTERVAL = 1.0
#: the largest reply body read from a peer; a Reject can be at most ~42 KB
MAX_REPLY_LENGTH = 65536
_NETWORK_ERRORS = (
    net_error.ConnectError,
    net_error.ConnectionLost,
    net_error.ConnectionDone,
    net_error.DNSLookupError,
    ResponseNeverReceived,
    RequestTransmissionFailed,
    ResponseFailed,
    RequestNotSent,
)


def reject_for_failure(failure: Failure, triggered_by: str) -> Reject | None:
    """The Reject for a transport failure, or None when it is not one we know."""
    exc = failure.value
    if isinstance(exc, ReplyTooLarge):
        return Reject(ErrorCode.T00_INTERNAL_ERROR, triggered_by, "peer's reply is too large")
    if isinstance(exc, UnusableUrl):  # a configuration fault: one line, no traceback
        return Reject(ErrorCode.T00_INTERNAL_ERROR, triggered_by, f"peer's URL: {exc}")
    if isinstance(exc, _NETWORK_ERRORS):
        reason = exc.__class__.__name__
        reasons = wrapped_reasons(exc)
        if reasons:
            reason = ", ".join(r.value.__class__.__name__ for r in reasons)
        return Reject(ErrorCode.T01_PEER_UNREACHABLE, triggered_by, f"peer unreachable: {reason}")
    return None


def check_reply(body: bytes, prepare: Prepare, triggered_by: str) -> Reply:
    """``body`` if it is a valid Fulfill of ``prepare`` or a Reject; else a Reject of ours.

    :func:`ilphttp.replies.check_reply_body` (the one rule, shared with RFC 35
    replies): a Fulfill whose fulfillment does not hash to the Prepare's
    condition becomes F05 (nothing was paid); a valid one is always passed on,
    whatever else the peer did.  Bytes after the reply's envelope are ignored
    (RFC 30) and left out of the :class:`~ilphttp.packet.Reply`'s ``data``.
    """
    checked = check_reply_body(body, prepare.execution_condition, triggered_by)
    return reply_of(checked) if isinstance(checked, Reject) else checked


def _note_trailing(body: bytes) -> None:
    """Log at debug how many bytes after a reply's envelope were ignored (RFC 30)."""
    try:
        end = envelope_length(body)
    except InvalidPacketError:
        return
    if end < len(body):
        _log.debug("ignored {n} bytes after the envelope of the peer's reply", n=len(body) - end)


def reply_of(packet: Fulfill | Reject) -> Reply:
    """A :class:`~ilphttp.packet.Reply` for a packet we made."""
    return Reply(packet, serialize(packet))


def _is_cancellation(failure: Failure) -> bool:
    """True when ``failure`` comes from cancelling the request (at any stage)."""
    if failure.check(CancelledError, net_error.ConnectingCancelledError):
        return True
    reasons = wrapped_reasons(failure.value) or ()
    return any(reason.check(CancelledError) for reason in reasons)


#: what :class:`OutgoingClient` sends through
Sender = Union[AgentSender, Http1Client]


class _Expiry:
    """A request's timer: cancels it at its Prepare's expiry (then R00, not T01)."""

    __slots__ = ("_deferred", "_timer", "timed_out")

    def __init__(self, reactor: IReactorTime, delay: float, d: Deferred[Any]) -> None:
        self._deferred = d
        self.timed_out = False
        self._timer: IDelayedCall = reactor.callLater(delay, self._expire)

    def _expire(self) -> None:
        self.timed_out = True
        self._deferred.cancel()

    def stop(self, result: Any) -> Any:
        """The request is over (a callback and errback): no timer left behind."""
        if self._timer.active():
            self._timer.cancel()
        return result


class OutgoingClient:
    """Sends serialized Prepares to one peer over an ``IAgent`` or an
    :class:`~ilphttp.http1_client.Http1Client`.

    Every request carries ``Content-Type: <content_type>`` (one of
    :data:`CONTENT_TYPES`; default :data:`OCTET_STREAM`), ``Accept:
    application/octet-stream`` (both RFC 35 MUSTs), ``Authorization`` from
    ``auth``, ``ILP-Peer-Name`` when ``peer_name`` is given and
    ``ILP-Destination`` when ``send_ilp_destination`` is true.  The agent or
    client adds ``Host`` and ``Content-Length`` (interledger-rs answers 411
    without one).

    The Rejects it makes for a failing peer name ``account`` (the node's name
    for this link) but never the peer's URL; the URL and the reason go to the
    local log at info, at most one line a second (:data:`FAILURE_LOG_INTERVAL`)
    with a count of the lines left out.

    :raises ValueError: ``content_type`` is not in :data:`CONTENT_TYPES`.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        agent: IAgent | Http1Client,
        auth: OutgoingAuth,
        peer_name: str | None,
        send_ilp_destination: bool,
        content_type: str = OCTET_STREAM,
        account: str | None = None,
    ) -> None:
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {', '.join(CONTENT_TYPES)}")
        self._reactor = reactor
        self._sender: Sender = (
            agent if isinstance(agent, Http1Client) else AgentSender(agent, MAX_REPLY_LENGTH)
        )
        self._auth = auth
        self._send_destination = send_ilp_destination
        self._base: list[tuple[bytes, bytes]] = [
            (b"Content-Type", content_type.encode("ascii")),
            (b"Accept", OCTET_STREAM.encode("ascii")),
        ]
        #: ``ILP-Peer-Name`` (a multi account's children tell who they are by it)
        self._name: list[tuple[bytes, bytes]] = []
        if peer_name is not None:
            self._name.append((b"ILP-Peer-Name", peer_name.encode("utf-8")))
        self._base += self._name
        self._auth_value = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._last_auth_log = float("-inf")
        self._account = account
        self._last_failure_log = float("-inf")
        self._failures_not_logged = 0
        #: called with the HTTP status of each answer the peer gives (metrics)
        self.on_status: Callable[[int], object] | None = None
        self._callback_headers: tuple[Any, bytes, list[tuple[bytes, bytes]]] | None = None

    def _headers_for(self) -> list[tuple[bytes, bytes]]:
        auth = self._auth.header()
        if auth is not self._auth_value:
            # A new list only when the token changes: the sender keeps what it made of it.
            self._headers = [*self._base, (b"Authorization", auth)]
            self._auth_value = auth
        return self._headers

    def send(
        self,
        url: bytes,
        body: bytes,
        prepare: Prepare,
        triggered_by: str,
        leg: AsyncLeg | None = None,
    ) -> Deferred[Reply]:
        """POST ``body`` (``prepare``, serialized) to ``url``; fire with the checked :class:`Reply`.

        The request is cancelled when ``prepare`` expires (R00).  Cancelling the
        returned Deferred cancels the request.  With ``leg`` (RFC 35
        asynchronous mode, :mod:`ilphttp.async_link`) the Prepare carries its
        ``Callback-Url`` and ``Request-Id``; a ``202`` waits for the reply on
        the callback URL until the same expiry, any other answer is read as in
        synchronous mode.
        """
        reactor = self._reactor
        delay = prepare.expires_at.timestamp() - reactor.seconds()
        if delay <= 0:
            return succeed(
                self._ours(
                    url,
                    Reject(
                        ErrorCode.R00_TRANSFER_TIMED_OUT,
                        triggered_by,
                        "prepare expired before it was sent",
                    ),
                )
            )
        extra = None
        if self._send_destination:
            extra = (b"ILP-Destination", prepare.destination.encode("ascii"))
        headers = self._headers_for()
        if leg is not None:
            headers, extra = self._async_headers(headers, leg, extra)
        d: Deferred[Any] = self._sender.post(url, headers, body, extra)
        expiry = _Expiry(reactor, delay, d)
        if leg is None:
            # The answer read is final: one pair of callbacks, which stop the timer.
            return d.addCallbacks(
                self._answer_final,
                self._failed_final,
                callbackArgs=(url, prepare, triggered_by, expiry),
                errbackArgs=(url, expiry, triggered_by),
            )
        d.addCallback(self._answer, url, prepare, triggered_by, leg)
        d.addErrback(self._failed, url, expiry, triggered_by)
        d.addBoth(leg.settle)
        return d.addBoth(expiry.stop)

    def _answer_final(
        self,
        answer: tuple[int, bytes],
        url: bytes,
        prepare: Prepare,
        triggered_by: str,
        expiry: _Expiry,
    ) -> Reply:
        expiry.stop(None)
        try:
            reply = self._answer(answer, url, prepare, triggered_by)
        except BaseException:  # as the errback after it would have had it
            return self._failed(Failure(), url, expiry, triggered_by)
        assert isinstance(reply, Reply)  # only an asynchronous leg's answer waits
        return reply

    def _failed_final(
        self, failure: Failure, url: bytes, expiry: _Expiry, triggered_by: str
    ) -> Reply:
        expiry.stop(None)
        return self._failed(failure, url, expiry, triggered_by)

    def _answer(
        self,
        answer: tuple[int, bytes],
        url: bytes,
        prepare: Prepare,
        triggered_by: str,
        leg: AsyncLeg | None = None,
    ) -> Reply | Deferred[Reply]:
        status, body = answer
        if self.on_status is not None:
            self.on_status(status)
        if leg is not None and status == ACCEPTED:
            return leg.reply  # the callback's reply, or cancelled at the expiry (R00)
        if status != 200:
            if status in (401, 403):
                self._log_auth_failure(status)
            return self._ours(url, reject_for_status(status, triggered_by))
        checked = check_reply_body(body, prepare.execution_condition, triggered_by)
        if isinstance(checked, Reject):
            _note_trailing(body)
            return self._ours(url, checked)  # garbage or a wrong fulfillment
        if len(checked.data) != len(body):  # the Reply holds the envelope only
            _log.debug(
                "ignored {n} bytes after the envelope of the peer's reply",
                n=len(body) - len(checked.data),
            )
        return checked

    def _async_headers(
        self,
        headers: list[tuple[bytes, bytes]],
        leg: AsyncLeg,
        extra: tuple[bytes, bytes] | None,
    ) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes] | None]:
        """The headers of an asynchronous Prepare: ``Callback-Url`` in a list
        kept while it and the credential are unchanged (the sender keeps what
        it made of it), ``Request-Id`` as the one extra header when free."""
        cached = self._callback_headers
        if cached is None or cached[0] is not headers or cached[1] != leg.callback_url:
            with_callback = [*headers, (b"Callback-Url", leg.callback_url)]
            cached = self._callback_headers = (headers, leg.callback_url, with_callback)
        if extra is None:
            return cached[2], leg.request_id_header
        return [*cached[2], leg.request_id_header], extra

    def post(
        self, url: bytes, body: bytes, more: Sequence[tuple[bytes, bytes]] = ()
    ) -> Deferred[tuple[int, bytes]]:
        """POST ``body`` to ``url`` with this peer's headers and credential, plus ``more``.

        The raw ``(status, body)`` of the answer; failures are the sender's.
        What an RFC 35 reply leg goes through (the same connections and
        credential as our Prepares to that peer).
        """
        headers = [(b"Content-Type", _OCTET_STREAM), *self._name, *more]
        headers.append((b"Authorization", self._auth.header()))
        return self._sender.post(url, headers, body)

    def _ours(self, url: bytes, reject: Reject, *, fault: bool = False) -> Reply:
        """A Reject we make for this peer: it names the account; the log has the URL
        (at error level when it is a ``fault`` of our configuration)."""
        if self._account is not None:
            reject = reject._replace(message=f"account {self._account}: {reject.message}")
        now = self._reactor.seconds()
        if now - self._last_failure_log < FAILURE_LOG_INTERVAL:
            self._failures_not_logged += 1
        else:
            self._last_failure_log = now
            n = self._failures_not_logged
            more = f" ({n} more since the last line)" if n else ""
            shown, code, message = loggable_url(url), reject.code, reject.message
            if fault:  # every packet to this URL fails until the configuration changes
                _log.error(
                    "{url}: {code} {message}{more}",
                    url=shown,
                    code=code,
                    message=message,
                    more=more,
                )
            else:
                _log.info(
                    "{url}: {code} {message}{more}",
                    url=shown,
                    code=code,
                    message=message,
                    more=more,
                )
            self._failures_not_logged = 0
        return reply_of(reject)

    def _failed(self, failure: Failure, url: bytes, expiry: _Expiry, triggered_by: str) -> Reply:
        if expiry.timed_out:
            # Whatever the cancelled request failed with, the cause is the expiry.
            return self._ours(
                url,
                Reject(
                    ErrorCode.R00_TRANSFER_TIMED_OUT,
                    triggered_by,
                    "no reply from the peer before the prepare expired",
                ),
            )
        if _is_cancellation(failure):
            # Cancelled by the caller; the agent may wrap the CancelledError.
            if not failure.check(CancelledError):
                failure = Failure(CancelledError())
            return failure  # type: ignore[return-value]
        reject = reject_for_failure(failure, triggered_by)
        if reject is None:
            _log.failure("unexpected error sending an ILP packet", failure)
            reject = Reject(
                ErrorCode.T00_INTERNAL_ERROR,
                triggered_by,
                f"error sending the packet: {failure.value.__class__.__name__}",
            )
        return self._ours(url, reject, fault=failure.check(UnusableUrl) is not None)

    def _log_auth_failure(self, status: int) -> None:
        now = self._reactor.seconds()
        if now - self._last_auth_log >= 60:
            self._last_auth_log = now
            _log.error(
                "peer refused our credentials (HTTP {status}): check the outgoing token"
                " or JWT secret",
                status=status,
            )


#: Idle keep-alive connections are dropped before the JS plugin's server
#: (node, ``keepAliveTimeout`` 5 s) would close them under us: a POST is never
#: retried, so a connection closed by the peer mid-send would cost a packet.
POOL_IDLE_TIMEOUT = 4
#: persistent connections per peer; one is used per request in flight
POOL_SIZE = 256


def make_agent(reactor: Any, out: Any, tls_policy: Any) -> IAgent | Http1Client:
    """What sends a plugin's outgoing Prepares, for its options ``out``.

    HTTP/2 (``out.http2``) gets an :class:`ilphttp.http2.HTTP2Agent`; HTTP/1.1
    an :class:`~ilphttp.http1_client.Http1Client`: keep-alive connections, at
    most :data:`POOL_SIZE` per peer, idle ones closed after
    :data:`POOL_IDLE_TIMEOUT` seconds, never retried (a POST is not
    idempotent).  Both have ``close()``.
    """
    if out.http2:
        from ilphttp.http2 import HTTP2Agent

        agent: IAgent = HTTP2Agent(
            reactor,
            max_requests_per_session=out.http2_max_requests_per_session,
            tls_policy=tls_policy,
        )
        return agent
    return Http1Client(
        reactor,
        tls_policy,
        pool_size=POOL_SIZE,
        idle_timeout=POOL_IDLE_TIMEOUT,
        max_body=MAX_REPLY_LENGTH,
    )
