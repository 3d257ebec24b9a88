"""ilphttp.peer_endpoints: IP literals connect at once (no Happy Eyeballs delay)."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory

from ilphttp.http1_client import Http1Client
from ilphttp.packet import ErrorCode
from ilphttp.peer_endpoints import CONNECT_TIMEOUT, PeerEndpoints, tcp_endpoint
from ilphttp.plugin import PluginHttp
from tests.support.packets import expect_reject, make_prepare
from tests.support.ports import free_port
from tests.support.reactor import within


class EndpointChoiceTests(SynchronousTestCase):
    def test_ip_literals_directly_names_through_hostname_endpoint(self) -> None:
        reactor = MemoryReactorClock()
        cases: list[tuple[str, type]] = [
            ("127.0.0.1", TCP4ClientEndpoint),
            ("::1", TCP6ClientEndpoint),
            ("fe80::1%eth0", HostnameEndpoint),  # a zone: getaddrinfo's job
            ("localhost", HostnameEndpoint),
            ("peer.example", HostnameEndpoint),
            ("1.2.3", HostnameEndpoint),  # not a dotted quad: a name to resolve
        ]
        for host, kind in cases:
            self.assertIsInstance(tcp_endpoint(reactor, host, 80), kind, host)

    def test_connects_with_the_timeout(self) -> None:
        for timeout, expected in ((None, CONNECT_TIMEOUT), (2.5, 2.5)):
            reactor = MemoryReactorClock()
            tcp_endpoint(reactor, "127.0.0.1", 8000, timeout).connect(_Factory())
            [(host, port, _, connect_timeout, _)] = reactor.tcpClients
            self.assertEqual((host, port, connect_timeout), ("127.0.0.1", 8000, expected))

    def test_uri_endpoints(self) -> None:
        endpoints = PeerEndpoints(MemoryReactorClock(), BrowserLikePolicyForHTTPS(), None)
        self.assertTrue(IAgentEndpointFactory.providedBy(endpoints))
        plain = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8000/"))
        self.assertIsInstance(plain, TCP4ClientEndpoint)
        tls = endpoints.endpointForURI(URI.fromBytes(b"https://[::1]:8443/"))
        self.assertNotIsInstance(tls, TCP6ClientEndpoint)  # wrapped in TLS
        self.assertIsInstance(tls._wrappedEndpoint, TCP6ClientEndpoint)  # type: ignore[attr-defined]
        with self.assertRaises(SchemeNotSupported):
            endpoints.endpointForURI(URI.fromBytes(b"ftp://127.0.0.1/"))
        with self.assertRaises(ValueError):
            endpoints.endpointForURI(URI.fromBytes("http://pé.example/".encode()))

    def test_refused_connection_fails_without_waiting(self) -> None:
        """A refusal fails the send at once: no clock tick (HostnameEndpoint's
        0.3 s attempt delay) is needed before the failure is reported."""
        reactor = MemoryReactorClock()
        client = Http1Client(reactor)
        d = client.post(b"http://127.0.0.1:8000/", [], b"prepare")
        self.assertEqual(len(reactor.tcpClients), 1)  # connected at once, nothing resolved
        connector = reactor.connectors[0]
        factory = reactor.tcpClients[0][2]
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
        self.failureResultOf(d, ConnectionRefusedError)  # type: ignore[attr-defined]
        self.assertEqual(reactor.getDelayedCalls(), [])


class _Factory:
    """The least a client factory needs to be handed to an endpoint."""

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass

    def buildProtocol(self, addr: Any) -> None:
        return None


class LoopbackTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_dead_peer_is_t01_soon(self) -> Any:
        """A dead peer on loopback (ECONNREFUSED) is T01 over HTTP/1.1 and h2c,
        well before the 0.3 s HostnameEndpoint waited (deadline generous for CI)."""
        url = f"http://127.0.0.1:{free_port()}/"
        for http2 in (False, True):
            plugin = PluginHttp(outgoing={"url": url, "static_token": "t", "http2": http2})
            yield plugin.connect()
            self.addCleanup(plugin.disconnect)
            best = float("inf")
            for _ in range(3):  # the fastest of three: load on the machine only slows
                began = time.monotonic()
                reply = yield within(plugin.send_data(make_prepare(time.time()).packet), 10)
                best = min(best, time.monotonic() - began)
                expect_reject(self, reply, ErrorCode.T01_PEER_UNREACHABLE)
            self.assertLess(best, 0.25, f"http2={http2}")
