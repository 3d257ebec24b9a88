"""Clients for tests: raw TCP connections and HTTP/1.1 requests through an Agent."""

from __future__ import annotations

from typing import Any, NamedTuple

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from ilphttp.http2 import BytesProducer
from tests.support.reactor import global_reactor

# -- raw TCP clients and servers ----------------------------------------------------------


class RawClient(Protocol):
    """Writes what it is told and collects every byte until the connection closes."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for item in list(self._waiting):
            marker, d = item
            if marker in self.data:
                self._waiting.remove(item)
                d.callback(self.data)

    def wait_for(self, marker: bytes) -> Deferred[bytes]:
        """Fires with everything received once ``marker`` has been received."""
        if marker in self.data:
            return succeed(self.data)
        d: Deferred[bytes] = Deferred()
        self._waiting.append((marker, d))
        return d

    def connectionLost(self, reason: Failure = Failure(Exception("lost"))) -> None:  # noqa: B008
        self.closed.callback(self.data)


def raw_connect(case: SynchronousTestCase, port: int) -> Deferred[RawClient]:
    """A RawClient connected to 127.0.0.1:``port``, aborted at cleanup if still open."""
    endpoint = endpoints.TCP4ClientEndpoint(global_reactor(), "127.0.0.1", port)

    def connected(proto: RawClient) -> RawClient:
        def close() -> Deferred[bytes]:
            if proto.transport is not None and not proto.closed.called:
                proto.transport.abortConnection()  # type: ignore[attr-defined]
            return proto.closed

        case.addCleanup(close)
        return proto

    return endpoints.connectProtocol(endpoint, RawClient()).addCallback(connected)


def http_agent(case: SynchronousTestCase) -> Agent:
    """An Agent with its own keep-alive pool, closed at cleanup."""
    reactor = global_reactor()
    pool = HTTPConnectionPool(reactor, persistent=True)
    case.addCleanup(pool.closeCachedConnections)
    return Agent(reactor, pool=pool)


# -- HTTP requests from tests -------------------------------------------------------------


class HttpResult(NamedTuple):
    code: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.getRawHeaders(name)
        return None if not values else values[0]


def request(
    agent: Any,
    url: str,
    body: bytes | None = None,
    headers: dict[bytes, bytes] | None = None,
    method: bytes = b"POST",
) -> Deferred[HttpResult]:
    """Send one request through ``agent``; fire with the status, headers and body."""
    h = Headers()
    for name, value in (headers or {}).items():
        h.addRawHeader(name, value)
    producer = None if body is None else BytesProducer(body)
    d = agent.request(method, url.encode("ascii"), h, producer)

    def read(response: Any) -> Deferred[HttpResult]:
        return readBody(response).addCallback(
            lambda content: HttpResult(response.code, response.headers, content)
        )

    return d.addCallback(read)


def raw_request(
    path: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    method: bytes = b"POST",
) -> bytes:
    """The bytes of an HTTP/1.1 request (no Content-Length added)."""
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers or []]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 4096) -> bytes:
    """``body`` in the chunked transfer coding, terminating chunk included."""
    out = []
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    out.append(b"0\r\n\r\n")
    return b"".join(out)
