"""Fakes on the other side of the code under test: a recording HTTP server,
data handlers that record or never answer, a fake IAgent and a capture of the log.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import _newclient
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer, provider

from ilphttp.packet import Fulfill, deserialize_prepare, serialize_fulfill
from tests.support.packets import Made, make_prepare, reject_bytes
from tests.support.reactor import global_reactor

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


# -- a fake IAgent: deterministic expiry, cancellation and mapping -----------------------


class _BodyTransport:
    def __init__(self) -> None:
        self.stopped = False

    def stopProducing(self) -> None:
        self.stopped = True

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


@implementer(IResponse)
class FakeResponse:
    version = (b"HTTP", 1, 1)
    phrase = b"X"
    request = None
    previousResponse = None

    def __init__(self, code: int, body: bytes | None, length: Any = None) -> None:
        self.code = code
        self.body = body
        self.length = len(body) if length is None and body is not None else length
        if self.length is None:
            self.length = UNKNOWN_LENGTH
        self.headers = Headers()
        self.transport = _BodyTransport()
        self.protocol: Any = None

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        if self.body is not None and not self.transport.stopped:
            protocol.dataReceived(self.body)
            protocol.connectionLost(Failure(_newclient.ResponseDone()))

    def setPreviousResponse(self, response: IResponse) -> None:
        pass


@implementer(IAgent)
class FakeAgent:
    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, Headers, bytes]] = []
        self.pending: list[Deferred[Any]] = []
        self.cancelled = 0

    def request(
        self, method: bytes, uri: bytes, headers: Headers | None = None, bodyProducer: Any = None
    ) -> Deferred[Any]:
        assert headers is not None
        self.requests.append((method, uri, headers, bodyProducer.body))

        def cancel(d: Deferred[Any]) -> None:
            self.cancelled += 1

        d: Deferred[Any] = Deferred(cancel)
        self.pending.append(d)
        return d
