"""The incoming side: a twisted.web resource that takes ILP Prepares over HTTP.

The resource does only HTTP: the health check, authorization, the size
limit, the body's shape.  What happens to a valid Prepare is the
:class:`PacketReceiver`'s business (the plugin), which always answers with a
serialized Fulfill or Reject.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ilphttp._compat import request_disconnected
from ilphttp.auth import IncomingAuth
from ilphttp.h2c import H2CSiteFactory
from ilphttp.packet import MAX_PREPARE_LENGTH, InvalidPacketError, Prepare, deserialize_prepare
from ilphttp.tls import peer_identity

if TYPE_CHECKING:
    from twisted.web.resource import IResource

__all__ = [
    "ConnectionTracker",
    "IlpRequest",
    "IlpResource",
    "IlpSite",
    "NotReady",
    "OverCapacity",
    "PacketReceiver",
    "make_site",
]

_log = Logger()

OCTET_STREAM = b"application/octet-stream"
_ACCEPTED_TYPES = (b"application/octet-stream", b"application/ilp+octet-stream")


class NotReady(Exception):
    """The receiver cannot take packets now (answered with HTTP 502)."""


class OverCapacity(Exception):
    """The receiver has too many packets in flight (answered with HTTP 503)."""


class PacketReceiver(Protocol):
    """What the resource hands valid, authorized Prepares to."""

    def receive_prepare(
        self, body: bytes, prepare: Prepare, peer_name: bytes | None
    ) -> Deferred[bytes]:
        """Fire with a serialized Fulfill or Reject; never fail.

        Raise NotReady (HTTP 502) or OverCapacity (HTTP 503) to refuse.
        """


def _error(request: Request, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return message.encode("utf-8")


class IlpResource(Resource):
    """Answers ``GET`` with ``OK`` and every other method with an ILP reply.

    Mount it anywhere in a twisted.web tree: the path is ignored, as in the JS
    plugin.  Build the Site with :func:`make_site` (or at least
    ``parsePOSTFormSubmission=False`` and :class:`IlpRequest`) to have the size
    limit enforced before the body is read.
    """

    isLeaf = True

    def __init__(
        self, auth: IncomingAuth, receiver: PacketReceiver, client_identity: str | None = None
    ) -> None:
        super().__init__()
        self._auth = auth
        self._receiver = receiver
        self._client_identity = client_identity

    def render(self, request: Request) -> bytes | int:
        if request.method == b"GET":
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"OK"
        if not self._auth.verify(request.getHeader(b"authorization")):
            return _error(request, http.UNAUTHORIZED, "invalid authorization")
        if self._client_identity is not None and not self._identity_matches(request):
            return _error(request, http.FORBIDDEN, "client certificate does not match")
        content_type = request.getHeader(b"content-type")
        if content_type is not None:
            media_type = content_type.split(b";", 1)[0].strip().lower()
            if media_type not in _ACCEPTED_TYPES:
                return _error(
                    request,
                    http.UNSUPPORTED_MEDIA_TYPE,
                    "content-type must be application/octet-stream or application/ilp+octet-stream",
                )
        assert request.content is not None
        body = request.content.read(MAX_PREPARE_LENGTH + 1)
        if len(body) > MAX_PREPARE_LENGTH:
            # Only reached when mounted in a Site without IlpRequest.
            return _error(
                request,
                http.REQUEST_ENTITY_TOO_LARGE,
                f"ILP packet too large: the limit is {MAX_PREPARE_LENGTH} bytes",
            )
        try:
            prepare = deserialize_prepare(body)
        except InvalidPacketError as exc:
            return _error(request, http.BAD_REQUEST, f"invalid ILP Prepare: {exc}")
        try:
            reply = self._receiver.receive_prepare(
                body, prepare, request.getHeader(b"ilp-peer-name")
            )
        except NotReady as exc:
            return _error(request, http.BAD_GATEWAY, str(exc))
        except OverCapacity as exc:
            request.setHeader(b"retry-after", b"1")
            return _error(request, http.SERVICE_UNAVAILABLE, str(exc))
        if reply.called:
            # The common fast path: a synchronous handler already answered.
            result = reply.result
            if isinstance(result, bytes):
                request.setHeader(b"content-type", OCTET_STREAM)
                return result
        reply.addCallbacks(
            self._write_reply,
            self._write_failure,
            callbackArgs=(request,),
            errbackArgs=(request,),
        )
        request.notifyFinish().addErrback(lambda _: reply.cancel())
        return NOT_DONE_YET

    def _identity_matches(self, request: Request) -> bool:
        identity = peer_identity(request)
        return identity is not None and self._client_identity in identity.names()

    @staticmethod
    def _write_reply(result: bytes, request: Request) -> None:
        if request_disconnected(request):
            return
        request.setHeader(b"content-type", OCTET_STREAM)
        request.setHeader(b"content-length", b"%d" % len(result))
        request.write(result)
        request.finish()

    @staticmethod
    def _write_failure(failure: Failure, request: Request) -> None:
        # The receiver promises never to fail; if it does anyway, answer 500
        # without a traceback and keep the details in our log.
        _log.failure("ILP receiver failed unexpectedly", failure)
        if request_disconnected(request):
            return
        request.setResponseCode(http.INTERNAL_SERVER_ERROR)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(b"internal error")
        request.finish()


_TOO_LARGE = (
    b"HTTP/1.1 413 Request Entity Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)


class IlpRequest(Request):
    """A Request that refuses bodies over the largest legal Prepare early.

    With a ``Content-Length`` over the limit, HTTP/1.1 connections get a 413 at
    once and are closed, before any of the body is read.  Bodies without a
    length (chunked, HTTP/2) are counted as they arrive and dropped past it.
    """

    max_body = MAX_PREPARE_LENGTH
    _too_large = False
    _answered_early = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
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

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        self.connections_total += 1
        super().registerProtocol(p)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
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
