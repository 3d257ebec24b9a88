"""Guards for ilphttp._compat: each private Twisted API it relies on, checked by behaviour.

A Twisted release that renames or changes one of these fails here, naming it,
instead of in a running node.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, fail, inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.protocol import ClientCreator, Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import client as web_client
from twisted.web.http import HTTPChannel, Request

from ilphttp import _compat


class _FailingEndpoint:
    def listen(self, factory: Any) -> Any:
        return fail(net_error.CannotListenError("127.0.0.1", 1, OSError("in use")))


class CompatTests(SynchronousTestCase):
    def test_wrapped_reasons(self) -> None:
        inner = Failure(CancelledError())
        for cls in (
            web_client.ResponseFailed,
            web_client.ResponseNeverReceived,
            web_client.RequestTransmissionFailed,
        ):
            reasons = _compat.wrapped_reasons(cls([inner]))
            self.assertEqual(reasons, [inner], cls.__name__)
        self.assertIsNone(_compat.wrapped_reasons(ValueError("x")))
        self.assertIsNone(_compat.wrapped_reasons(None))

    def test_request_disconnected(self) -> None:
        channel = HTTPChannel()
        channel.makeConnection(StringTransport())
        request = Request(channel)
        self.assertFalse(_compat.request_disconnected(request))
        request.connectionLost(Failure(net_error.ConnectionDone()))
        self.assertTrue(_compat.request_disconnected(request))

    def test_raise_listen_errors_synchronously(self) -> None:
        service = _compat.raise_listen_errors_synchronously(
            StreamServerEndpointService(_FailingEndpoint(), Factory())
        )
        self.assertRaises(net_error.CannotListenError, service.startService)
        quiet = StreamServerEndpointService(_FailingEndpoint(), Factory())
        quiet.startService()  # without it the failure is only logged
        self.flushLoggedErrors(net_error.CannotListenError)

    def test_ssl_context_factory(self) -> None:
        context_factory = object()
        endpoint = SSL4ServerEndpoint(MemoryReactorClock(), 0, context_factory)  # type: ignore[arg-type]
        self.assertIs(_compat.ssl_context_factory(endpoint), context_factory)

    def test_h2_stream_connection(self) -> None:
        import inspect

        from twisted.web._http2 import H2Connection, H2Stream

        connection = H2Connection(MemoryReactorClock())
        connection.transport = StringTransport()
        # H2Stream's constructor differs between Twisted releases; give what it asks for.
        offered = {
            "streamID": 1,
            "connection": connection,
            "headers": [],
            "requestFactory": Request,
            "site": None,
            "factory": None,
        }
        wanted = inspect.signature(H2Stream.__init__).parameters
        stream = H2Stream(**{k: v for k, v in offered.items() if k in wanted})
        self.assertIs(_compat.h2_stream_connection(stream), connection)
        self.assertIsNone(_compat.h2_stream_connection(HTTPChannel()))


class _Receiver(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.got: Deferred[bytes] = Deferred()
        self.expected = 0

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.expected and not self.got.called:
            self.got.callback(self.data)


class WriteNowTests(TestCase):
    """``write_now`` relies on ``tcp.Connection``'s buffer attributes and ``writeSomeData``."""

    @inlineCallbacks
    def connected(self) -> Any:
        from twisted.internet import reactor

        accepted: Deferred[Any] = Deferred()

        class Server(Protocol):
            def connectionMade(self) -> None:
                accepted.callback(self.transport)

        port = reactor.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        receiver = _Receiver()
        client = yield ClientCreator(reactor, lambda: receiver).connectTCP(
            "127.0.0.1", port.getHost().port
        )
        self.addCleanup(client.transport.loseConnection)
        transport = yield accepted
        self.addCleanup(transport.loseConnection)
        return transport, receiver

    @inlineCallbacks
    def test_sent_at_once_on_an_idle_socket(self) -> Any:
        transport, receiver = yield self.connected()
        for name in ("dataBuffer", "offset", "_tempDataLen", "_writeDisconnected", "socket"):
            self.assertTrue(hasattr(transport, name), f"tcp.Connection.{name} is gone")
        receiver.expected = 5
        _compat.write_now(transport, b"hello")
        # Nothing was queued: the socket took it.
        self.assertEqual((transport.dataBuffer, transport._tempDataLen), (b"", 0))
        self.assertEqual((yield receiver.got), b"hello")

    @inlineCallbacks
    def test_queued_behind_what_is_queued(self) -> Any:
        transport, receiver = yield self.connected()
        receiver.expected = 6
        transport.write(b"first ")
        _compat.write_now(transport, b"second")
        self.assertEqual(transport._tempDataLen, len(b"first second"))
        receiver.expected = 12
        self.assertEqual((yield receiver.got), b"first second")

    def test_other_transports_get_write(self) -> None:
        transport = StringTransport()
        _compat.write_now(transport, b"data")
        self.assertEqual(transport.value(), b"data")
