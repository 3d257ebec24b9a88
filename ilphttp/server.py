"""The incoming side: a twisted.web resource that takes ILP Prepares over HTTP.

The resource does only twisted.web's part; what it answers is decided by
:class:`ilphttp.front.AccountDoor` (health check, authorization, content
type, the Prepare's shape), the same rules as the plugin's own listeners.
What happens to a valid Prepare is the :class:`PacketReceiver`'s business
(the plugin), which always answers with a serialized Fulfill or Reject.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ilphttp._compat import request_disconnected
from ilphttp.auth import SHORT_SECRET, ChildrenAuth, IncomingAuth
from ilphttp.config import IncomingOptions
from ilphttp.front import (
    FRAMING_FIELDS,
    TEXT_PLAIN,
    AccountDoor,
    Answer,
    Door,
    HeaderLookup,
    NotReady,
    OverCapacity,
    PacketReceiver,
    answer_now,
    body_limit,
)
from ilphttp.h2c import H2CSiteFactory
from ilphttp.packet import MAX_PREPARE_LENGTH
from ilphttp.tls_identity import peer_identity

if TYPE_CHECKING:
    from twisted.web.resource import IResource

__all__ = [
    "ConnectionTracker",
    "DoorResource",
    "IlpRequest",
    "IlpResource",
    "IlpSite",
    "NotReady",
    "OverCapacity",
    "PacketReceiver",
    "error_body",
    "incoming_auth",
    "make_site",
    "warn_short_secret",
]

_log = Logger()


def error_body(request: Request, code: int, message: str) -> bytes:
    """Set ``code`` and a plain-text ``message`` on ``request``; the body to return."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", TEXT_PLAIN)
    return message.encode("utf-8")


def header_lookup(request: Request) -> HeaderLookup:
    """``request``'s header lookup for a door: a repeated field's values joined
    with ``", "`` (RFC 9110 section 5.3; ``getHeader`` gives the last one), so
    a repeated ``Request-Id`` or ``Callback-Url`` is invalid (``400``).
    Framing fields keep ``getHeader``'s value (twisted.web framed the body)."""
    headers = request.requestHeaders

    def header(name: bytes) -> bytes | None:
        if name.lower() in FRAMING_FIELDS:
            return request.getHeader(name)
        values = headers.getRawHeaders(name)
        return None if not values else b", ".join(values)

    return header


class DoorResource(Resource):
    """A twisted.web resource that answers every request as ``door`` decides.

    The path is passed on (a shared door reads the account from it);
    ``GET`` is the health check.  See :mod:`ilphttp.front` for the rules.
    """

    isLeaf = True

    def __init__(self, door: Door) -> None:
        super().__init__()
        self.door = door

    def render(self, request: Request) -> bytes | int:
        assert request.method is not None and request.path is not None
        body = b""
        if request.method != b"GET":
            assert request.content is not None
            # One byte over the limit is enough to refuse (only reached when
            # mounted in a Site without IlpRequest).
            body = request.content.read(body_limit(header_lookup(request)) + 1)
        result = self.door.answer(
            request.method,
            request.path,
            header_lookup(request),
            body,
            lambda: peer_identity(request),
        )
        answer = answer_now(result)
        if answer is not None:
            return _set_answer(request, answer)
        assert isinstance(result, Deferred)
        result.addCallback(_write_answer, request).addErrback(_ignore_cancel)
        request.notifyFinish().addErrback(lambda _: result.cancel())
        return NOT_DONE_YET


class IlpResource(DoorResource):
    """Answers ``GET`` with ``OK`` and every other method with an ILP reply.

    Mount it anywhere in a twisted.web tree: the path is ignored, as in the JS
    plugin.  Build the Site with :func:`make_site` (or at least
    ``parsePOSTFormSubmission=False`` and :class:`IlpRequest`) to have the size
    limit enforced before the body is read.  What it answers is
    :class:`ilphttp.front.AccountDoor`'s decision, the same as on the plugin's
    own listeners.
    """

    door: AccountDoor

    def __init__(
        self,
        auth: IncomingAuth | ChildrenAuth,
        receiver: PacketReceiver,
        client_identity: str | None = None,
    ) -> None:
        super().__init__(AccountDoor(auth, receiver, client_identity))

    def authorizes(self, header: bytes | None) -> bool:
        """True when the Authorization value ``header`` is one of this account's credentials."""
        return self.door.authorizes(header)


def _ignore_cancel(failure: Failure) -> None:
    # The client went away and the answer was cancelled: nothing to write.
    failure.trap(CancelledError)


def _set_answer(request: Request, answer: Answer) -> bytes:
    request.setResponseCode(answer.status)
    request.setHeader(b"content-type", answer.content_type)
    for name, value in answer.headers:
        request.setHeader(name, value)
    return answer.body


def _write_answer(answer: Answer, request: Request) -> None:
    if request_disconnected(request):
        return
    body = _set_answer(request, answer)
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


_TOO_LARGE = (
    b"HTTP/1.1 413 Request Entity Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)


class IlpRequest(Request):
    """A Request that refuses bodies over the largest legal Prepare early.

    (Over the largest legal Reject when the request may be an RFC 35 reply:
    :func:`ilphttp.front.body_limit`.)

    With a ``Content-Length`` over the limit, HTTP/1.1 connections get a 413 at
    once and are closed, before any of the body is read.  Bodies without a
    length (chunked, HTTP/2) are counted as they arrive and dropped past it.
    """

    max_body = MAX_PREPARE_LENGTH
    _too_large = False
    _answered_early = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        # The headers are in by now (twisted.web calls this from allHeadersReceived).
        if self.max_body == MAX_PREPARE_LENGTH:
            self.max_body = body_limit(header_lookup(self))
        if length is not None and length > self.max_body:
            self._too_large = True
            transport = getattr(self.channel, "transport", None)
            if isinstance(self.channel, http.HTTPChannel) and transport is not None:
                message = b"ILP packet too large: %d bytes, the limit is %d" % (
                    length,
                    self.max_body,
                )
                transport.write(_TOO_LARGE % (len(message), message))
                transport.loseConnection()
                self._answered_early = True
                # Answered already: no "100 Continue" after the 413.
                self.requestHeaders.removeHeader(b"expect")
            super().gotLength(0)
            return
        # Without a length (chunked, HTTP/2) twisted.web would buffer the body
        # in a temporary file; ours is capped, so memory is the right place.
        super().gotLength(self.max_body if length is None else length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._too_large:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._too_large = True
            assert self.content is not None
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if self._answered_early:
            return
        if self._too_large:
            self.setResponseCode(http.REQUEST_ENTITY_TOO_LARGE)
            self.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.setHeader(b"connection", b"close")
            if isinstance(self.channel, http.HTTPChannel):
                # Do close, as announced (twisted.web keeps it open otherwise).
                self.channel.persistent = False
            self.write(b"ILP packet too large: the limit is %d bytes" % self.max_body)
            self.finish()
            return
        super().process()


class IlpSite(Site):
    """A Site that writes no access log line per packet (twisted.web's
    default sends one to the global log for every request)."""

    access_log = False

    def log(self, request: Request) -> None:  # type: ignore[override]
        if self.access_log:
            super().log(request)


def make_site(resource: IResource, access_log: bool = False) -> Site:
    """A Site for ``resource`` with the ILP request class and no form parsing."""
    # Without parsePOSTFormSubmission=False, twisted.web inspects every POST as
    # a possible form (through the email package): half the server's time per packet.
    site = IlpSite(resource, requestFactory=IlpRequest, parsePOSTFormSubmission=False)
    site.access_log = access_log
    site.displayTracebacks = False
    return site


class ConnectionTracker(H2CSiteFactory):
    """What the plugin listens with: the Site behind one wrapper that both
    serves cleartext HTTP/2 (h2c prior knowledge, as node's http2 clients
    speak it) beside HTTP/1.1 and knows the open connections, so that a
    disconnect can close them all and wait until they are gone (trial's
    reactor must be left clean, and a stopping node must not leak sockets).
    On TLS listeners the Site's ALPN protocols (h2, http/1.1) are offered."""

    def __init__(self, factory: Site) -> None:
        super().__init__(factory)
        self._waiting: list[Deferred[None]] = []
        #: connections accepted since listening began
        self.connections_total = 0
        #: called with +1 and -1 as connections open and close (metrics)
        self.on_change: Callable[[int], object] | None = None

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        self.connections_total += 1
        super().registerProtocol(p)
        if self.on_change is not None:
            self.on_change(1)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        if p in self.protocols and self.on_change is not None:
            self.on_change(-1)
        super().unregisterProtocol(p)
        if not self.protocols and self._waiting:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def close_all(self) -> Deferred[None]:
        """Close every connection (after what is queued is written); fire when all are."""
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        for p in list(self.protocols):
            if p.transport is not None:
                p.transport.loseConnection()
        return d


def incoming_auth(inc: IncomingOptions, now: Callable[[], float]) -> IncomingAuth | ChildrenAuth:
    """The incoming credentials of an account (or of each of its children)."""
    keys = () if inc.jwt_public_key is None else (inc.jwt_public_key,)
    claims: dict[str, Any] = {
        "public_keys": keys,
        "audience": inc.audience,
        "issuer": inc.issuer,
        "leeway": inc.jwt_leeway,
    }
    if inc.children is None:
        return IncomingAuth(
            inc.static_token,
            inc.jwt_secret,
            now,
            static_tokens=inc.static_tokens,
            jwt_secrets=inc.jwt_secrets,
            subject=inc.subject,
            **claims,
        )
    children = {}
    for name, child in inc.children.items():
        with_jwt = child.subject is not None
        children[name] = IncomingAuth(
            None,
            inc.jwt_secret if with_jwt else None,
            now,
            static_tokens=child.static_tokens,
            jwt_secrets=inc.jwt_secrets if with_jwt else (),
            subject=child.subject,
            **{**claims, "public_keys": keys if with_jwt else ()},
        )
    return ChildrenAuth(children)


def warn_short_secret(side: str, secret: str | None) -> None:
    """Log once, at configuration, that an HS256 ``secret`` is under 32 bytes (RFC 7518 §3.2)."""
    if secret is not None and len(secret.encode("utf-8")) < SHORT_SECRET:
        _log.warn(
            "{side} JWT secret is shorter than {n} bytes; HS256 wants at least that",
            side=side,
            n=SHORT_SECRET,
        )
