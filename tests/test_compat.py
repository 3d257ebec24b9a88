"""Guards for ilphttp._compat: each private Twisted API it relies on, checked by behaviour.

A Twisted release that renames or changes one of these fails here, naming it,
instead of in a running node.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, fail
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import client as web_client
from twisted.web.http import HTTPChannel, Request
from twisted.web.iweb import IAgentEndpointFactory

from ilphttp import _compat


class _FailingEndpoint:
    def listen(self, factory: Any) -> Any:
        return fail(net_error.CannotListenError("127.0.0.1", 1, OSError("in use")))


class CompatTests(SynchronousTestCase):
    def test_quiet_pool_opens_quiet_http11_connections(self) -> None:
        pool = _compat.quiet_pool(web_client.HTTPConnectionPool(MemoryReactorClock()))
        self.assertTrue(hasattr(pool, "_factory"), "HTTPConnectionPool._factory is gone")
        factory = pool._factory
        self.assertTrue(issubclass(factory, web_client._HTTP11ClientFactory))
        self.assertFalse(factory.noisy)
        # The pool still builds its per-connection factories from it.
        built = factory(lambda: None, "repr")
        self.assertIsInstance(built, web_client._HTTP11ClientFactory)

    def test_standard_endpoint_factory(self) -> None:
        endpoints = _compat.standard_endpoint_factory(
            MemoryReactorClock(), web_client.BrowserLikePolicyForHTTPS(), None
        )
        self.assertTrue(IAgentEndpointFactory.providedBy(endpoints))
        uri = web_client.URI.fromBytes(b"http://127.0.0.1:8000/")
        self.assertIsNotNone(endpoints.endpointForURI(uri))

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
