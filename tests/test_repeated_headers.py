"""A repeated ``Request-Id`` or ``Callback-Url`` is ``400`` on every front door (RFC 9110 §5.3).

A field sent twice is one comma-separated value, so neither header is valid
then: the last value must not win (``Callback-Url: http://evil.example/``
and then an allowed one).  The lean HTTP/1.1 server, the HTTP/2 server and
the twisted.web door, each in-process on a StringTransport with a Clock.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import h2.events
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.front import combined_fields
from ilphttp.listener import make_listener
from ilphttp.plugin import PluginHttp
from ilphttp.server import make_site
from tests.support.fakes import FakeAgent
from tests.support.h2server import h2_client, request
from tests.support.packets import CLOCK_START, make_prepare

TOKEN = b"alice-to-bob-token"
ALLOWED = b"http://alice.example/cb"
EVIL = b"http://evil.example/"
_PEER = IPv4Address("TCP", "127.0.0.1", 1)

Fields = list[tuple[bytes, bytes]]


class _Doors:
    """Bob receives Alice's asynchronous Prepares; ``exchange`` is one front door's round trip."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.bob = PluginHttp(
            incoming={"static_token": TOKEN.decode()},
            outgoing={"url": "http://alice.example/ilp", "static_token": "bob-to-alice-token"},
            address="test.bob",
            reactor=self.clock,
            agent=FakeAgent(),
        )
        self.calls: list[bytes] = []
        self.made = make_prepare(self.clock.seconds(), expires_in=10)

        def handler(data: bytes) -> bytes:
            self.calls.append(data)
            return self.made.fulfill()

        self.bob.register_data_handler(handler)
        case: Any = self
        case.successResultOf(self.bob.connect())

    def exchange(self, fields: Fields) -> tuple[int, bytes]:
        raise NotImplementedError

    def post(self, *more: tuple[bytes, bytes]) -> tuple[int, bytes]:
        fields = [
            (b"authorization", b"Bearer " + TOKEN),
            (b"content-type", b"application/octet-stream"),
            *more,
        ]
        return self.exchange(fields)

    def test_one_of_each_is_202(self) -> None:
        case: Any = self
        status, _ = self.post((b"request-id", _rid()), (b"callback-url", ALLOWED))
        case.assertEqual(status, 202)
        case.assertEqual(self.calls, [self.made.packet])

    def test_a_repeated_callback_url_is_400(self) -> None:
        case: Any = self
        status, body = self.post(
            (b"request-id", _rid()), (b"callback-url", EVIL), (b"callback-url", ALLOWED)
        )
        case.assertEqual(status, 400, body)
        case.assertEqual(self.calls, [])

    def test_a_repeated_request_id_is_400(self) -> None:
        case: Any = self
        status, body = self.post(
            (b"request-id", _rid()), (b"request-id", _rid()), (b"callback-url", ALLOWED)
        )
        case.assertEqual(status, 400, body)
        case.assertEqual(self.calls, [])


def _rid() -> bytes:
    return str(uuid.uuid4()).encode()


def _http1(build: Callable[[], Any], fields: Fields, body: bytes) -> tuple[int, bytes]:
    protocol = build()
    transport = StringTransport()
    protocol.makeConnection(transport)
    head = [b"POST /ilp HTTP/1.1", b"Host: bob", b"Content-Length: %d" % len(body)]
    head += [name + b": " + value for name, value in fields]
    protocol.dataReceived(b"\r\n".join(head) + b"\r\n\r\n" + body)
    status_line, _, rest = transport.value().partition(b"\r\n")
    answer = rest.partition(b"\r\n\r\n")[2]
    protocol.connectionLost(None)
    return int(status_line.split()[1]), answer


class LeanHttp1Tests(_Doors, SynchronousTestCase):
    def exchange(self, fields: Fields) -> tuple[int, bytes]:
        assert self.bob.resource is not None
        door = self.bob.resource.door
        return _http1(
            lambda: make_listener(door, self.clock).buildProtocol(_PEER), fields, self.made.packet
        )


class TwistedWebTests(_Doors, SynchronousTestCase):
    def exchange(self, fields: Fields) -> tuple[int, bytes]:
        assert self.bob.resource is not None
        site = make_site(self.bob.resource)
        site.reactor = self.clock
        return _http1(lambda: site.buildProtocol(_PEER), fields, self.made.packet)


class Http2Tests(_Doors, SynchronousTestCase):
    def exchange(self, fields: Fields) -> tuple[int, bytes]:
        assert self.bob.resource is not None
        protocol = make_listener(self.bob.resource.door, self.clock).buildProtocol(_PEER)
        transport = StringTransport()
        protocol.makeConnection(transport)
        client = h2_client()
        client.send_headers(1, request(b"POST", b"/ilp", *fields))
        client.send_data(1, self.made.packet, end_stream=True)
        protocol.dataReceived(client.data_to_send())
        events = client.receive_data(transport.value())
        protocol.connectionLost(None)
        status, body = 0, b""
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
        return status, body


class CombinedFieldsTests(SynchronousTestCase):
    def test_repeats_are_joined_framing_is_not(self) -> None:
        fields = combined_fields(
            [
                (b"Request-Id", b"a"),
                (b"request-id", b"b"),
                (b"content-length", b"1"),
                (b"content-length", b"2"),
                (b"accept", b"x"),
            ]
        )
        self.assertEqual(fields, {b"request-id": b"a, b", b"content-length": b"2", b"accept": b"x"})
