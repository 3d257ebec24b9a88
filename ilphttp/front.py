"""What every front door answers: one decision for each incoming HTTP request.

ilphttp takes Prepares through several front doors: the twisted.web resource
users mount in their own ``Site`` (:class:`~ilphttp.server.IlpResource`), the
lean HTTP/1.1 server and the HTTP/2 server of the plugin's own listeners.  All
of them hand a complete request (method, path, headers, body) to a
:class:`Door` and write back the :class:`Answer` it gives, so the rules live
here once:

- ``GET`` (any path) is the health check: ``200 OK``, or ``503`` with the
  reason while the door's :attr:`~AccountDoor.readiness` hook gives one
  (starting: IL-DCP not known yet; draining: the listener is stopping);
- a wrong credential is ``401``; a child speaking for another child is ``401``;
  a TLS client certificate that does not match ``clientIdentity`` is ``403``;
- a ``Content-Type`` other than ``application/octet-stream`` or
  ``application/ilp+octet-stream`` is ``415`` (none at all is accepted, as the
  JS plugin does);
- a Prepare over :data:`~ilphttp.packet.MAX_PREPARE_LENGTH` is ``413``, and
  so is any body over :func:`ilphttp.rfc35.request_body_limit` (a reply POST
  may be up to :data:`~ilphttp.packet.MAX_REJECT_LENGTH`);
- with RFC 35 asynchronous mode wired (:attr:`AccountDoor.rfc35`): a Prepare
  with ``Callback-Url`` and ``Request-Id`` is answered ``202`` (its reply is
  POSTed later) or ``400`` (a bad id, a URL not allowed); a POST with a
  ``Request-Id`` and a body that is not a Prepare is a reply (``200``/``400``),
  see :mod:`ilphttp.async_link`;
- a body that is not an ILP Prepare is ``400`` (bytes after the envelope are
  ignored and cut off, RFC 30's liberal reader);
- a receiver that is not ready is ``502``, one over capacity ``503`` with
  ``Retry-After: 1``;
- otherwise ``200`` with the serialized Fulfill or Reject, or ``500`` (no
  details) if the receiver broke its promise never to fail;
- with RFC 35 asynchronous mode (the :attr:`AccountDoor.rfc35` hook,
  :mod:`ilphttp.async_link`): ``202`` for a Prepare that carries
  ``Request-Id`` and an allowed ``Callback-Url``, ``400`` for a refused one,
  and the reply endpoint's ``200``/``400`` for a Fulfill or Reject POSTed back.

A front door only does HTTP: framing, the size limit before the body is read,
``Expect: 100-continue``, keep-alive.  It passes a header lookup
(``header(b"authorization") -> bytes | None``, names lower case) rather than a
header object so that each door keeps its own representation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Callable, NamedTuple, Protocol, Union

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ilphttp.auth import ChildrenAuth, IncomingAuth
from ilphttp.packet import (
    MAX_PREPARE_LENGTH,
    MAX_REJECT_LENGTH,
    TYPE_PREPARE,
    InvalidPacketError,
    Prepare,
    deserialize_prepare,
    envelope_length,
)
from ilphttp.rfc35 import request_body_limit

__all__ = [
    "FRAMING_FIELDS",
    "OCTET_STREAM",
    "TEXT_PLAIN",
    "AccountDoor",
    "Answer",
    "AnswerObserver",
    "AsyncHook",
    "Door",
    "HeaderLookup",
    "IdentityLookup",
    "NotReady",
    "OverCapacity",
    "PacketReceiver",
    "Readiness",
    "SharedDoor",
    "account_in_path",
    "answer_now",
    "body_limit",
    "combined_fields",
    "health",
    "not_ready",
    "show_refusal",
    "too_large",
]

_log = Logger()

OCTET_STREAM = b"application/octet-stream"
TEXT_PLAIN = b"text/plain; charset=utf-8"
_ACCEPTED_TYPES = (b"application/octet-stream", b"application/ilp+octet-stream")

#: ``header(name)``: the value of the request header ``name`` (lower case), or None.
HeaderLookup = Callable[[bytes], Union[bytes, None]]
#: ``identity()``: the verified TLS client's ``PeerIdentity``, or None (asked
#: only when the account has a ``clientIdentity``).
IdentityLookup = Callable[[], Any]

#: framing fields: a repeat is the HTTP parser's to refuse, never combined
FRAMING_FIELDS = frozenset((b"content-length", b"transfer-encoding"))


def combined_fields(fields: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Lower-case name -> value, a repeated field's values joined with ``", "``.

    RFC 9110 section 5.3: a field that occurs more than once is one
    comma-separated list -- so a repeated ``Request-Id`` or ``Callback-Url``
    is no valid value (``400``) instead of the last one winning.  Framing
    fields (:data:`FRAMING_FIELDS`) keep the last value: their repeats are
    the parser's to refuse.
    """
    combined: dict[bytes, bytes] = {}
    for name, value in fields:
        name = name.lower()
        previous = combined.get(name)
        if previous is None or name in FRAMING_FIELDS:
            combined[name] = value
        else:
            combined[name] = previous + b", " + value
    return combined


class NotReady(Exception):
    """The receiver cannot take packets now (answered with HTTP 502)."""


class OverCapacity(Exception):
    """The receiver has too many packets in flight (answered with HTTP 503)."""


class PacketReceiver(Protocol):
    """What a door hands valid, authorized Prepares to (the plugin)."""

    def receive_prepare(
        self, body: bytes, prepare: Prepare, peer_name: bytes | None
    ) -> bytes | Deferred[bytes]:
        """A serialized Fulfill or Reject: at once (bytes), or a Deferred that
        fires with it and never fails.

        ``body`` is ``prepare``'s envelope as received: any bytes the peer
        sent after it are already cut off.

        Raise NotReady (HTTP 502) or OverCapacity (HTTP 503) to refuse.
        """


class AsyncHook(Protocol):
    """RFC 35 asynchronous mode at the door (:class:`ilphttp.async_link.AsyncLink`)."""

    def classify(self, header: HeaderLookup, body: bytes, peer_name: bytes | None) -> Any:
        """None: a synchronous Prepare; an :class:`Answer`: give it now (a reply
        POST, a refused asynchronous Prepare); else a token for :meth:`accepted`."""

    def accepted(self, request: Any, prepare: Prepare, reply: Deferred[bytes]) -> Answer:
        """The answer (``202``) to an asynchronous Prepare whose handling began."""


class Answer(NamedTuple):
    """An HTTP answer: status, body and the headers that go with it.

    ``content_type`` is always sent; ``headers`` are any others, as
    ``(lower-case name, value)`` pairs.  Framing headers (``Content-Length``,
    ``Connection``) are the front door's business.
    """

    status: int
    body: bytes
    content_type: bytes = TEXT_PLAIN
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _text(status: int, message: str) -> Answer:
    return Answer(status, message.encode("utf-8"))


HEALTHY = Answer(200, b"OK")

#: ``readiness()``: None when ready, else why not (``"draining"``), for the health check
Readiness = Callable[[], Union[str, None]]


def not_ready(reason: str) -> Answer:
    """The health check's ``503``: ``reason`` as the body, ``Retry-After: 1``."""
    return Answer(503, reason.encode("utf-8"), headers=((b"retry-after", b"1"),))


def health(readiness: Readiness | None) -> Answer:
    """``200 OK``, or ``503`` with the reason ``readiness()`` gives."""
    reason = None if readiness is None else readiness()
    return HEALTHY if reason is None else not_ready(reason)


UNAUTHORIZED = _text(401, "invalid authorization")
_WRONG_CERTIFICATE = _text(403, "client certificate does not match")
_WRONG_TYPE = _text(
    415, "content-type must be application/octet-stream or application/ilp+octet-stream"
)


def too_large(limit: int) -> Answer:
    """The ``413`` for a body over ``limit`` bytes."""
    return _text(413, f"ILP packet too large: the limit is {limit} bytes")


TOO_LARGE = too_large(MAX_PREPARE_LENGTH)
_REPLY_TOO_LARGE = too_large(MAX_REJECT_LENGTH)


def body_limit(header: HeaderLookup) -> int:
    """The largest body worth reading for a request with these headers, in bytes.

    :func:`ilphttp.rfc35.request_body_limit` of its ``Request-Id`` and ``Callback-Url``.
    """
    return request_body_limit(
        header(b"request-id") is not None, header(b"callback-url") is not None
    )


_BROKEN = _text(500, "internal error")


#: ``observer(answer)`` -> the same answer, after counting it
AnswerObserver = Callable[[Union[Answer, Deferred[Answer]]], Union[Answer, Deferred[Answer]]]


def show_refusal(door: Door, answer: Answer) -> None:
    """Show ``answer``, one an HTTP server gave itself without calling ``door``
    (a head the parser refused: ``400``/``431``; ``408``; a ``413`` decided from
    ``Content-Length`` or a body past its limit), to the door's ``observer``
    when it has one (:attr:`AccountDoor.observer`, :attr:`SharedDoor.observer`),
    so that metrics count every answer given on the door's listener.

    Off the hot path: only refusals call it.
    """
    observer: AnswerObserver | None = getattr(door, "observer", None)
    if observer is not None:
        observer(answer)


class Door(Protocol):
    """A front door's one call: the answer to a complete request."""

    def answer(
        self,
        method: bytes,
        path: bytes,
        header: HeaderLookup,
        body: bytes,
        identity: IdentityLookup,
    ) -> Answer | Deferred[Answer]:
        """The answer now, or a Deferred that fires with it.

        The Deferred never fails, except with ``CancelledError`` once the front
        door cancelled it (the client went away), which cancels the packet's
        handling.  ``body`` is the request body; at most
        ``body_limit(header) + 1`` bytes is enough to decide.
        """


def answer_now(result: Answer | Deferred[Answer]) -> Answer | None:
    """``result`` if it is an answer already (the common, synchronous case), else None."""
    if isinstance(result, Answer):
        return result
    if result.called and isinstance(result.result, Answer):
        answer: Answer = result.result
        return answer
    return None


def _reply_answer(reply: bytes) -> Answer:
    return Answer(200, reply, OCTET_STREAM)


def _broken(failure: Failure) -> Answer | Failure:
    # The receiver promises never to fail; if it does anyway, answer 500
    # without a traceback and keep the details in our log.  A cancellation
    # (the client went away) is not a failure of the receiver.
    if failure.check(Exception) and not _is_cancel(failure):
        _log.failure("ILP receiver failed unexpectedly", failure)
        return _BROKEN
    return failure


def _is_cancel(failure: Failure) -> bool:
    return failure.check(CancelledError) is not None


class AccountDoor:
    """One account's incoming rules (see the module docstring).

    :param auth: the account's incoming credentials (or its children's).
    :param receiver: takes the Prepares (the plugin).
    :param client_identity: the name the TLS client certificate must carry, or None.
    """

    def __init__(
        self,
        auth: IncomingAuth | ChildrenAuth,
        receiver: PacketReceiver,
        client_identity: str | None = None,
    ) -> None:
        self._auth = auth
        self._receiver = receiver
        self._client_identity = client_identity
        #: sees every answer to a POST and returns it (``LinkOps.answered``: metrics)
        self.observer: AnswerObserver | None = None
        #: RFC 35 asynchronous mode (set by the plugin); None: every Prepare is synchronous
        self.rfc35: AsyncHook | None = None
        #: asked by the health check (set by the plugin); None: always ready
        self.readiness: Readiness | None = None

    def authorizes(self, authorization: bytes | None) -> bool:
        """True when the ``Authorization`` value is one of this account's credentials."""
        return self._auth.verify(authorization)

    def answer(
        self,
        method: bytes,
        path: bytes,
        header: HeaderLookup,
        body: bytes,
        identity: IdentityLookup,
    ) -> Answer | Deferred[Answer]:
        if method == b"GET":
            return health(self.readiness)
        if not self._auth.verify(header(b"authorization")):
            result: Answer | Deferred[Answer] = UNAUTHORIZED
        else:
            result = self._answer_authorized(header, body, identity)
        return result if self.observer is None else self.observer(result)

    def answer_authorized(
        self, header: HeaderLookup, body: bytes, identity: IdentityLookup
    ) -> Answer | Deferred[Answer]:
        """The answer to a POST whose credential was checked already (a shared door did)."""
        result = self._answer_authorized(header, body, identity)
        return result if self.observer is None else self.observer(result)

    def refused(self, answer: Answer) -> Answer | Deferred[Answer]:
        """``answer``, given for this account without asking it (a shared door's
        ``401`` for a credential that does not match the account its path names),
        shown to :attr:`observer` as any answer of this door is."""
        return answer if self.observer is None else self.observer(answer)

    def _answer_authorized(
        self, header: HeaderLookup, body: bytes, identity: IdentityLookup
    ) -> Answer | Deferred[Answer]:
        peer_name = header(b"ilp-peer-name")
        if isinstance(self._auth, ChildrenAuth) and not self._auth.verify_child(
            peer_name, header(b"authorization")
        ):
            # A child may only speak for itself: its name must go with its credential.
            return UNAUTHORIZED
        if self._client_identity is not None:
            names = identity()
            if names is None or self._client_identity not in names.names():
                return _WRONG_CERTIFICATE
        content_type = header(b"content-type")
        if content_type is not None and content_type not in _ACCEPTED_TYPES:
            media_type = content_type.split(b";", 1)[0].strip().lower()
            if media_type not in _ACCEPTED_TYPES:
                return _WRONG_TYPE
        if len(body) > MAX_PREPARE_LENGTH:
            limit = body_limit(header)
            if len(body) > limit:
                return TOO_LARGE if limit == MAX_PREPARE_LENGTH else _REPLY_TOO_LARGE
            if body[:1] == bytes((TYPE_PREPARE,)) or self.rfc35 is None:
                return TOO_LARGE  # a Prepare's limit is a Prepare's, whatever its headers
        rfc35, asynchronous = self.rfc35, None
        if rfc35 is not None:
            asynchronous = rfc35.classify(header, body, peer_name)
            if isinstance(asynchronous, Answer):
                return asynchronous  # a reply POST, or a Callback-Url refused
            if len(body) > MAX_PREPARE_LENGTH:
                return TOO_LARGE  # only a reply may be larger
        try:
            prepare = deserialize_prepare(body)  # the common case: exactly one envelope
            end = len(body)
        except InvalidPacketError:
            try:
                # Liberal reader (RFC 30): bytes after the envelope are ignored,
                # and cut off here, so nothing downstream ever forwards them.
                prepare = deserialize_prepare(body, strict=False)
                end = envelope_length(body)
            except InvalidPacketError as exc:
                return _text(400, f"invalid ILP Prepare: {exc}")
        if end != len(body):
            _log.debug("ignored {n} bytes after the envelope of a Prepare", n=len(body) - end)
            body = body[:end]
        try:
            reply = self._receiver.receive_prepare(body, prepare, peer_name)
        except NotReady as exc:
            return _text(502, str(exc))
        except OverCapacity as exc:
            return Answer(503, str(exc).encode("utf-8"), headers=((b"retry-after", b"1"),))
        if isinstance(reply, bytes):
            # The common fast path: a synchronous handler already answered.
            if asynchronous is None:
                return Answer(200, reply, OCTET_STREAM)
            reply = succeed(reply)
        if asynchronous is not None:
            assert rfc35 is not None
            return rfc35.accepted(asynchronous, prepare, reply)
        if reply.called and isinstance(reply.result, bytes):
            # The common fast path: a synchronous handler already answered.
            return _reply_answer(reply.result)
        return reply.addCallbacks(_reply_answer, _broken)


_PATH = re.compile(rb"/accounts/([^/]+)/ilp/?\Z")


def account_in_path(path: bytes) -> str | None:
    """The account named by ``/accounts/{account}/ilp``, or None for any other path."""
    match = _PATH.match(path)
    if match is None:
        return None
    try:
        return match.group(1).decode("utf-8")
    except UnicodeDecodeError:
        return None


class SharedDoor:
    """The door of a listener shared by many accounts (see :mod:`ilphttp.shared`).

    The account is the one named by the path ``/accounts/{account}/ilp``, whose
    credential must then match; on any other path, the one account whose
    credential matches (all are checked, so the time taken does not tell which
    matched).  Anything else is ``401``: shown to the named account's
    :attr:`AccountDoor.observer` when the path names a known account, else to
    this door's :attr:`observer` (no account can be told).

    :param accounts: account name -> that account's door.
    """

    def __init__(self, accounts: Mapping[str, AccountDoor]) -> None:
        self._accounts = dict(accounts)
        #: sees the 401s given before any account is known (metrics)
        self.observer: AnswerObserver | None = None
        #: asked by the health check (set by the shared listener); None: always ready
        self.readiness: Readiness | None = None

    def update(self, accounts: Mapping[str, AccountDoor]) -> None:
        """Answer for ``accounts`` from the next request on (a node's reload)."""
        self._accounts = dict(accounts)

    def answer(
        self,
        method: bytes,
        path: bytes,
        header: HeaderLookup,
        body: bytes,
        identity: IdentityLookup,
    ) -> Answer | Deferred[Answer]:
        if method == b"GET":
            return health(self.readiness)
        authorization = header(b"authorization")
        name = account_in_path(path)
        if name is not None:
            named = self._accounts.get(name)
            if named is not None:
                if named.authorizes(authorization):
                    return named.answer_authorized(header, body, identity)
                # The path names the account: its 401 is counted as that account's.
                return named.refused(UNAUTHORIZED)
            chosen = []
        else:
            chosen = [door for door in self._accounts.values() if door.authorizes(authorization)]
        if len(chosen) != 1:
            return UNAUTHORIZED if self.observer is None else self.observer(UNAUTHORIZED)
        return chosen[0].answer_authorized(header, body, identity)
