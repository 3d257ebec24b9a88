"""Sending through a twisted.web ``IAgent``: the plugin's ``agent=`` option.

:class:`AgentSender` gives any ``IAgent`` (treq's testing agent, the HTTP/2
agent, a user's own) the ``post()`` of :class:`~ilphttp.http1_client.Http1Client`,
so :class:`~ilphttp.client.OutgoingClient` sends through either the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import error as net_error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    PotentialDataLoss,
    ResponseDone,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory
from zope.interface import implementer

from ilphttp._http1_response import ReplyTooLarge

# One body producer for both agents: HTTP2Agent takes its bytes without copying.
from ilphttp.http2 import BytesProducer
from ilphttp.peer_endpoints import PeerEndpoints

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint
    from twisted.web.iweb import IAgent, IResponse

__all__ = ["AgentSender", "make_http11_agent"]

_DONE = Failure(net_error.ConnectionDone())


class _BodyReader(Protocol):
    """Base of the body protocols: cancelling :attr:`finished` drops the
    connection (a peer that stops mid-body must not keep it) and ignores
    whatever the connection does afterwards."""

    _gave_up = False

    def __init__(self) -> None:
        self.finished: Deferred[bytes] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[bytes]) -> None:
        self._gave_up = True
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


class _BodyCollector(_BodyReader):
    """Reads a response body up to ``limit`` bytes."""

    def __init__(self, expected: int, limit: int) -> None:
        super().__init__()
        self._finished = self.finished
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._too_large = expected != UNKNOWN_LENGTH and expected > limit

    def connectionMade(self) -> None:
        if self._too_large:
            self.transport.stopProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self._too_large:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._too_large = True
            self._chunks = []
            self.transport.stopProducing()  # type: ignore[union-attr]
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if self._gave_up:
            return
        if self._too_large:
            self._finished.errback(ReplyTooLarge())
        elif reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._chunks))
        else:
            self._finished.errback(reason)


@implementer(IAgentEndpointFactory)
class _CachedEndpoints:
    """:class:`~ilphttp.peer_endpoints.PeerEndpoints`, remembered per scheme, host and port.

    Agent asks for an endpoint on every request, even when a pooled
    connection will serve it; building one costs an IDNA encoding of the host.
    """

    def __init__(self, reactor: Any, tls_policy: Any, connect_timeout: float | None) -> None:
        self._factory = PeerEndpoints(reactor, tls_policy, connect_timeout)
        self._cache: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._cache.get(key)
        if endpoint is None:
            if len(self._cache) > 1024:
                self._cache.clear()
            endpoint = self._cache[key] = self._factory.endpointForURI(uri)
        return endpoint


def make_http11_agent(
    reactor: Any,
    pool: HTTPConnectionPool,
    tls_policy: Any = None,
    connect_timeout: float | None = None,
) -> IAgent:
    """A twisted.web Agent over ``pool`` that caches its endpoints."""
    if tls_policy is None:
        tls_policy = BrowserLikePolicyForHTTPS()
    agent: IAgent = Agent.usingEndpointFactory(
        reactor, _CachedEndpoints(reactor, tls_policy, connect_timeout), pool=pool
    )
    return agent


class AgentSender:
    """POSTs through any ``IAgent``, with :class:`~ilphttp.http1_client.Http1Client`'s
    ``post()``: ``(url, headers, body, extra)`` in, ``(status, body)`` out.

    A 200's body is read up to ``max_body`` bytes (over it,
    :class:`~ilphttp._http1_response.ReplyTooLarge`); any other status's body
    is read and dropped, so the connection is back in the agent's pool before
    the caller sees it.  Failures are the agent's.
    """

    def __init__(self, agent: IAgent, max_body: int = 65536) -> None:
        self.agent = agent
        self._max_body = max_body
        self._pairs: Sequence[tuple[bytes, bytes]] | None = None
        self._headers = Headers()

    def post(
        self,
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        extra: tuple[bytes, bytes] | None = None,
    ) -> Deferred[tuple[int, bytes]]:
        if headers is not self._pairs:
            # Rebuilt only when the headers change; the agent copies them per request.
            self._headers = Headers()
            for name, value in headers:
                self._headers.addRawHeader(name, value)
            self._pairs = headers
        sent = self._headers
        if extra is not None:
            sent = sent.copy()
            sent.addRawHeader(*extra)
        d: Deferred[Any] = self.agent.request(b"POST", url, sent, BytesProducer(body))
        return d.addCallback(self._read)

    def _read(self, response: IResponse) -> Deferred[tuple[int, bytes]]:
        status = response.code
        if status != 200:
            discard = _Discard()
            response.deliverBody(discard)
            return discard.finished.addCallback(lambda _: (status, b""))
        collector = _BodyCollector(response.length, self._max_body)
        response.deliverBody(collector)
        return collector.finished.addCallback(lambda body: (status, body))


class _Discard(_BodyReader):
    """Reads and drops a body; :attr:`finished` fires when it has ended, however."""

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if not self._gave_up:
            self.finished.callback(b"")
