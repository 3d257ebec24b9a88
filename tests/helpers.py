"""Shared helpers for the plugin's tests: Prepares with known fulfillments,
loopback servers that record what they receive, raw TCP clients and log capture.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import socket
from typing import Any, Callable, NamedTuple

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import provider

from ilphttp.http2 import BytesProducer
from ilphttp.ildcp import IldcpResponse, serialize_response
from ilphttp.packet import (
    MAX_ADDRESS_LENGTH,
    MAX_DATA_LENGTH,
    MAX_PREPARE_LENGTH,
    Fulfill,
    Prepare,
    Reject,
    condition_from_fulfillment,
    deserialize,
    deserialize_prepare,
    serialize_fulfill,
    serialize_prepare,
    serialize_reject,
)

#: a fixed start time for Clocks, so expiries are deterministic
CLOCK_START = 1_700_000_000.0

_counter = itertools.count(1)


class Made(NamedTuple):
    """A serialized Prepare, the fulfillment that fulfils it and the decoded Prepare."""

    packet: bytes
    fulfillment: bytes
    prepare: Prepare

    def fulfill(self, data: bytes = b"") -> bytes:
        """The serialized Fulfill of this Prepare."""
        return serialize_fulfill(Fulfill(self.fulfillment, data))


def known_fulfillment(seed: int | None = None) -> bytes:
    """A deterministic 32-byte fulfillment (a new one per call unless ``seed``)."""
    n = next(_counter) if seed is None else seed
    return hashlib.sha256(b"ilphttp tests %d" % n).digest()


def make_prepare(
    now: float,
    expires_in: float = 30.0,
    destination: str = "test.peer.bob",
    amount: int = 1,
    data: bytes = b"",
    fulfillment: bytes | None = None,
) -> Made:
    """A Prepare expiring ``expires_in`` seconds after ``now`` (a clock's ``seconds()``).

    The wire keeps milliseconds, so the expiry is rounded down to one.
    """
    if fulfillment is None:
        fulfillment = known_fulfillment()
    millis = int((now + expires_in) * 1000)
    expires_at = _dt.datetime.fromtimestamp(millis // 1000, _dt.timezone.utc) + _dt.timedelta(
        milliseconds=millis % 1000
    )
    prepare = Prepare(
        amount, expires_at, condition_from_fulfillment(fulfillment), destination, data
    )
    return Made(serialize_prepare(prepare), fulfillment, prepare)


def largest_prepare(now: float, expires_in: float = 30.0) -> Made:
    """A Prepare of exactly MAX_PREPARE_LENGTH bytes (longest address, most data)."""
    destination = "test." + "a" * (MAX_ADDRESS_LENGTH - 5)
    made = make_prepare(now, expires_in, destination=destination, data=b"\xab" * MAX_DATA_LENGTH)
    assert len(made.packet) == MAX_PREPARE_LENGTH, len(made.packet)
    return made


def reject_bytes(code: str, triggered_by: str = "test.somebody", message: str = "") -> bytes:
    return serialize_reject(Reject(code, triggered_by, message))


def ildcp_reply(address: str, scale: int = 9, code: str = "XRP") -> bytes:
    return serialize_response(IldcpResponse(address, scale, code))


def expect_reject(case: SynchronousTestCase, reply: bytes, code: str) -> Reject:
    """``reply`` decoded; fails ``case`` unless it is a Reject with ``code``."""
    packet = deserialize(reply)
    case.assertIsInstance(packet, Reject, f"expected Reject {code}, got {packet!r}")
    assert isinstance(packet, Reject)
    case.assertEqual(packet.code, code, f"expected {code}, got {packet!r}")
    return packet


def expect_fulfill(case: SynchronousTestCase, reply: bytes, fulfillment: bytes) -> Fulfill:
    """``reply`` decoded; fails ``case`` unless it is a Fulfill of ``fulfillment``."""
    packet = deserialize(reply)
    case.assertIsInstance(packet, Fulfill, f"expected a Fulfill, got {packet!r}")
    assert isinstance(packet, Fulfill)
    case.assertEqual(packet.fulfillment, fulfillment)
    return packet


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def within(d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """``d``, failing with TimeoutError (and cancelled) after ``seconds`` of real time."""
    return d.addTimeout(seconds, global_reactor())


def sleep(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(global_reactor(), seconds, lambda: None)


# -- logs -------------------------------------------------------------------------------


class LogCapture:
    """Every event published to the global log while a test runs."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observer(event: dict[str, Any]) -> None:
            self.events.append(event)

        globalLogPublisher.addObserver(observer)
        case.addCleanup(globalLogPublisher.removeObserver, observer)

    def at_least(self, level: LogLevel) -> list[dict[str, Any]]:
        order = [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical]
        low = order.index(level)
        return [
            e
            for e in self.events
            if e.get("log_namespace", "").startswith("ilphttp")
            and order.index(e["log_level"]) >= low
        ]

    def errors(self) -> list[dict[str, Any]]:
        return self.at_least(LogLevel.error)


# -- a recording HTTP server ------------------------------------------------------------


class Captured(NamedTuple):
    method: bytes
    path: bytes
    headers: dict[bytes, list[bytes]]
    body: bytes
    request: Request

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name.lower())
        return None if values is None else values[0]


Responder = Callable[[Request, Captured], Any]


def answer(status: int = 200, body: bytes = b"", content_type: bytes | None = None) -> Responder:
    def respond(request: Request, captured: Captured) -> bytes:
        request.setResponseCode(status)
        if content_type is not None:
            request.setHeader(b"content-type", content_type)
        return body

    return respond


class CaptureResource(Resource):
    """Records every request; answers through ``responder`` (default: an F99 Reject)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Captured] = []
        self.responder: Responder = answer(200, reject_bytes("F99", message="capture"))
        self._arrivals: list[Deferred[Captured]] = []

    def render(self, request: Request) -> Any:
        assert request.content is not None
        headers = {
            name.lower(): list(values) for name, values in request.requestHeaders.getAllRawHeaders()
        }
        captured = Captured(request.method, request.uri, headers, request.content.read(), request)
        self.requests.append(captured)
        arrivals, self._arrivals = self._arrivals, []
        for d in arrivals:
            d.callback(captured)
        return self.responder(request, captured)

    def next_request(self) -> Deferred[Captured]:
        """Fires with the next request that arrives."""
        d: Deferred[Captured] = Deferred()
        self._arrivals.append(d)
        return d


def hang(request: Request, captured: Captured) -> Any:
    """A responder that never answers."""
    return NOT_DONE_YET


class _Counting(WrappingFactory):
    def __init__(self, factory: Site) -> None:
        super().__init__(factory)
        self.connections = 0
        self._gone: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            gone, self._gone = self._gone, []
            for d in gone:
                d.callback(None)

    def all_gone(self) -> Deferred[None]:
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._gone.append(d)
        return d


class CaptureServer:
    """A twisted.web server on 127.0.0.1 that records requests and counts connections."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.resource = CaptureResource()
        self.site = Site(self.resource)
        self.site.displayTracebacks = False
        self.factory = _Counting(self.site)
        self.port: Any = None
        self._case = case

    def start(self) -> Deferred[CaptureServer]:
        endpoint = endpoints.TCP4ServerEndpoint(global_reactor(), 0, interface="127.0.0.1")

        def listening(port: Any) -> CaptureServer:
            self.port = port
            self._case.addCleanup(self.stop)
            return self

        return endpoint.listen(self.factory).addCallback(listening)

    @property
    def requests(self) -> list[Captured]:
        return self.resource.requests

    @property
    def connections(self) -> int:
        return self.factory.connections

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}{path}"

    def stop(self) -> Deferred[Any]:
        steps = []
        if self.port is not None:
            steps.append(self.port.stopListening())
            self.port = None
        for p in list(self.factory.protocols):
            if p.transport is not None:
                p.transport.abortConnection()
        steps.append(self.factory.all_gone())
        return DeferredList(steps)


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


def listen_port(plugin: Any) -> int:
    port: int = plugin.port.getHost().port
    return port


LOOPBACK_ENDPOINT = "tcp:0:interface=127.0.0.1"


def plugin_url(plugin: Any, path: str = "/") -> str:
    return f"http://127.0.0.1:{listen_port(plugin)}{path}"


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


# -- data handlers ------------------------------------------------------------------------


class RecordingHandler:
    """A data handler that records every call and fulfils the Prepares it made.

    ``respond``, when set, answers instead (it may return anything a handler may).
    """

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.known: dict[bytes, bytes] = {}
        self.respond: Callable[[bytes], Any] | None = None
        self._waiting: list[Deferred[bytes]] = []

    def make(self, now: float, **kwargs: Any) -> Made:
        made = make_prepare(now, **kwargs)
        self.known[made.prepare.execution_condition] = made.fulfillment
        return made

    def __call__(self, data: bytes) -> Any:
        self.calls.append(data)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(data)
        if self.respond is not None:
            return self.respond(data)
        prepare = deserialize_prepare(data)
        fulfillment = self.known.get(prepare.execution_condition)
        if fulfillment is None:
            return reject_bytes("F06", message="unknown condition")
        return serialize_fulfill(Fulfill(fulfillment, prepare.data[:64]))

    def next_call(self) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self._waiting.append(d)
        return d


class Pending:
    """A Deferred a handler returns, remembering whether it was cancelled."""

    def __init__(self) -> None:
        self.cancelled: Deferred[None] = Deferred()
        self.deferred: Deferred[Any] = Deferred(lambda _: self.cancelled.callback(None))
