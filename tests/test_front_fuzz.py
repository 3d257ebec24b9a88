"""Random and mutated request bytes into both front doors: twisted.web's Site and the lean listener.

Neither may raise, hang (each connection is answered, closed, or closed by its
idle timer), or hand the receiver anything but a well-formed authorized
request carrying a valid Prepare.  The method is not checked: the door treats
every method but GET as a POST, as the JS plugin does, and which method tokens
reach it depends on the parser (twisted.web and h11, the lean listener's parser
on PyPy, take any token such as ``*OST``; llhttp only the registered methods).
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.auth import IncomingAuth
from ilphttp.listener import make_listener
from ilphttp.packet import deserialize_prepare
from ilphttp.server import IlpResource, make_site
from tests.support.clients import chunked
from tests.support.packets import make_prepare, reject_bytes

TOKEN = b"fuzz-token"
PREPARE = make_prepare(time.time() + 3600).packet


def _requests() -> list[bytes]:
    auth = b"Authorization: Bearer " + TOKEN + b"\r\n"
    head = b"POST / HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Type: application/octet-stream\r\n"
    return [
        head + b"Content-Length: %d\r\n\r\n" % len(PREPARE) + PREPARE,
        head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(PREPARE, 37),
        head + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(PREPARE) + PREPARE,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.0\r\n" + auth + b"Content-Length: %d\r\n\r\n" % len(PREPARE) + PREPARE,
    ]


VALID = _requests()
HEADER_LINES = [
    b"Content-Length: 3\r\n",
    b"Content-Length: 999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"Authorization: Bearer " + TOKEN + b"\r\n",
    b"X: \x00\r\n",
    b" folded\r\n",
    b"Host: y\n",
]


@st.composite
def request_bytes(draw: Any) -> bytes:
    """One or more requests, some of them mutated."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        data = bytearray(draw(st.sampled_from(VALID)))
        kind = draw(st.sampled_from(["keep", "flip", "truncate", "insert", "duplicate", "random"]))
        if kind == "flip" and data:
            for _ in range(draw(st.integers(1, 4))):
                i = draw(st.integers(0, len(data) - 1))
                data[i] = draw(st.integers(0, 255))
        elif kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind in ("insert", "duplicate"):
            line_end = data.find(b"\r\n") + 2
            line = draw(st.sampled_from(HEADER_LINES))
            if kind == "duplicate":
                end = data.find(b"\r\n", line_end) + 2
                line = bytes(data[line_end:end])
            data[line_end:line_end] = line
        elif kind == "random":
            data = bytearray(draw(st.binary(max_size=300)))
        parts.append(bytes(data))
    return b"".join(parts)


class _Receiver:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def receive_prepare(self, body: bytes, prepare: Any, peer_name: Any) -> Any:
        self.received.append(body)
        return succeed(reject_bytes("F99"))


def _site_connection(resource: IlpResource, clock: Clock) -> Any:
    site = make_site(resource)
    site.reactor = clock
    return site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))


def _lean_connection(resource: IlpResource, clock: Clock) -> Any:
    return make_listener(resource.door, clock).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))


class FuzzTests(SynchronousTestCase):
    def check(self, build: Any, data: bytes, cuts: list[int]) -> None:
        receiver = _Receiver()
        clock = Clock()
        resource = IlpResource(IncomingAuth(TOKEN.decode(), None, time.time), receiver)
        protocol = build(resource, clock)
        transport = StringTransport()
        protocol.makeConnection(transport)
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            if transport.disconnecting:
                break
            protocol.dataReceived(data[start:cut])
            start = cut
        for body in receiver.received:
            deserialize_prepare(body)  # a valid Prepare, whole
            self.assertIn(b"Bearer " + TOKEN, data)
        # Waiting for more bytes is fine, but not forever.
        if not transport.disconnecting:
            clock.advance(61)
        self.assertTrue(transport.disconnecting or transport.value(), data)
        protocol.connectionLost(None)
        self.assertEqual(self.flushLoggedErrors(), [])

    @settings(max_examples=200, deadline=None)
    @given(request_bytes(), st.lists(st.integers(0, 2000), max_size=4))
    def test_both_front_doors(self, data: bytes, cuts: list[int]) -> None:
        cuts = [c for c in cuts if c <= len(data)]
        self.check(_site_connection, data, cuts)
        self.check(_lean_connection, data, cuts)
