"""Fake endpoints for ilphttp.http1_client: each connection attempt is held
until the test lets it succeed (onto a StringTransport) or fail."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import URI
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer


class CountingTransport(StringTransport):
    """A StringTransport that counts its write calls."""

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class Attempt:
    """One connection attempt: ``uri``, and a Deferred the endpoint returned."""

    def __init__(
        self, uri: URI, factory: IProtocolFactory, cancel_error: Exception | None = None
    ) -> None:
        self.uri = uri
        self.factory = factory
        self.cancelled = False
        self._cancel_error = cancel_error
        self.deferred: Deferred[Any] = Deferred(self._cancel)
        self.protocol: Any = None
        self.transport = CountingTransport()

    def _cancel(self, _: object) -> None:
        self.cancelled = True
        if self._cancel_error is not None:  # as HostnameEndpoint does before resolving
            self.deferred.errback(Failure(self._cancel_error))

    def succeed(self) -> Attempt:
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.deferred.callback(self.protocol)
        return self

    def fail(self, exc: Exception) -> None:
        self.deferred.errback(Failure(exc))

    def respond(self, data: bytes) -> None:
        """The peer sends ``data``."""
        self.protocol.dataReceived(data)

    def sent(self) -> bytes:
        """What the client wrote since the last call."""
        value = self.transport.value()
        self.transport.clear()
        return value

    def close(self, clean: bool = True) -> None:
        """The connection closes (the peer closed it, or our close took effect)."""
        exc = ConnectionDone() if clean else ConnectionLost()
        self.protocol.connectionLost(Failure(exc))


@implementer(IAgentEndpointFactory)
class FakeEndpoints:
    """An ``IAgentEndpointFactory`` whose endpoints record their attempts."""

    def __init__(self, cancel_error: Exception | None = None) -> None:
        """``cancel_error``: what a cancelled attempt fails with (default: CancelledError)."""
        self.attempts: list[Attempt] = []
        self.cancel_error = cancel_error

    def endpointForURI(self, uri: URI) -> Any:
        endpoints = self

        class _Endpoint:
            def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
                attempt = Attempt(uri, factory, endpoints.cancel_error)
                endpoints.attempts.append(attempt)
                return attempt.deferred

        return _Endpoint()


def response(body: bytes = b"ok", status: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    """An HTTP/1.1 response with ``Content-Length``."""
    return b"HTTP/1.1 %b\r\nContent-Length: %d\r\n%b\r\n%b" % (status, len(body), headers, body)


def chunked(body: bytes, size: int = 3) -> bytes:
    """An HTTP/1.1 200 response with a chunked body."""
    parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), size):
        chunk = body[i : i + size]
        parts.append(b"%x\r\n%b\r\n" % (len(chunk), chunk))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)
