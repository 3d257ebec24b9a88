"""The lean HTTP/1.1 server protocol on in-memory connections (what the Site tests cannot show).

Every test runs with both parsers: httptools (where it installs) and h11.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ilphttp import http1_parse
from ilphttp.front import Answer
from ilphttp.h2c import H2C_PREFACE
from ilphttp.http1_server import IDLE_TIMEOUT, MAX_HEADERS, MAX_PIPELINED, Http1ServerProtocol
from ilphttp.listener import make_listener
from ilphttp.packet import MAX_PREPARE_LENGTH, MAX_REJECT_LENGTH
from ilphttp.server_limits import DRAIN_LINGER, ServerLimits
from tests.support.clients import chunked, raw_request

BAD = b"HTTP/1.1 400 Bad Request\r\n\r\n"
TOO_LARGE_HEAD = b"HTTP/1.1 431 Request Header Fields Too Large"


class _Door:
    """Answers from a list the test fills (an Answer by default); records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, bytes]] = []
        self.results: list[Any] = []
        self.headers: list[Any] = []
        #: the answers shown to the observer (the server's own refusals: this
        #: door calls no observer for its own answers)
        self.observed: list[int] = []

    def observer(self, answer: Any) -> Any:
        self.observed.append(answer.status)
        return answer

    def answer(self, method: bytes, path: bytes, header: Any, body: bytes, identity: Any) -> Any:
        self.requests.append((method, path, body))
        self.headers.append(header)
        if self.results:
            return self.results.pop(0)
        return Answer(200, b"answer %d" % len(self.requests))


def post(body: bytes = b"x", extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    headers = [(b"Content-Length", b"%d" % len(body))] if extra is None else extra
    return raw_request(headers=headers, body=body)


def statuses(data: bytes) -> list[bytes]:
    """The status lines in ``data`` (a body may run into the next one)."""
    return re.findall(rb"HTTP/1\.[01] \d{3} [^\r]*", data)


class _Case(SynchronousTestCase):
    parser = "httptools"

    def setUp(self) -> None:
        if self.parser == "httptools" and http1_parse.httptools is None:
            raise SkipTest("httptools is not installed (PyPy)")
        self.door = _Door()
        self.clock = Clock()

    def connect(self, idle_timeout: float | None = IDLE_TIMEOUT) -> tuple[Any, StringTransport]:
        protocol = Http1ServerProtocol(self.door, self.clock, idle_timeout, parser=self.parser)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost)
        return protocol, transport


class FramingTests(_Case):
    def test_keep_alive_and_query_and_health(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(post(b"abc") + raw_request(b"/health?x=1", method=b"GET"))
        self.assertEqual(self.door.requests, [(b"POST", b"/", b"abc"), (b"GET", b"/health", b"")])
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 200 OK"] * 2)
        self.assertIn(b"Content-Length: 8\r\n", transport.value())
        self.assertFalse(transport.disconnecting)
        self.assertNotIn(b"Connection: close", transport.value())

    def test_headers_lower_case_repeats_combined(self) -> None:
        protocol, _ = self.connect()
        protocol.dataReceived(
            post(b"", [(b"X-A", b"1"), (b"x-a", b"2"), (b"Content-Length", b"0")])
        )
        # RFC 9110 section 5.3: one comma-separated list
        self.assertEqual(self.door.headers[0](b"x-a"), b"1, 2")
        self.assertIsNone(self.door.headers[0](b"X-A"))

    def test_connection_close_and_http10(self) -> None:
        cases = [
            (post(b"", [(b"Connection", b"close"), (b"Content-Length", b"0")]), True),
            (b"GET / HTTP/1.0\r\n\r\n", True),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade-Insecure\r\n\r\n",
                False,
            ),
        ]
        for request, closes in cases:
            protocol, transport = self.connect()
            # What follows a closing request is never read.
            protocol.dataReceived(request + raw_request(method=b"GET"))
            self.assertEqual(transport.disconnecting, closes, request)
            self.assertEqual(b"Connection: close" in transport.value(), closes, request)
            self.assertEqual(len(self.door.requests), 1 if closes else 2, request)
            self.door.requests.clear()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK"))

    def test_answer_headers_and_head(self) -> None:
        protocol, transport = self.connect()
        self.door.results = [Answer(503, b"busy", headers=((b"retry-after", b"1"),))] * 2
        protocol.dataReceived(post() + raw_request(method=b"HEAD"))
        data = transport.value()
        self.assertEqual(statuses(data), [b"HTTP/1.1 503 Service Unavailable"] * 2)
        self.assertIn(b"Retry-After: 1\r\n", data)
        self.assertTrue(data.endswith(b"Retry-After: 1\r\n\r\n"), data)  # HEAD: no body


class UpgradeTests(_Case):
    """No protocol switch is offered: Upgrade is ignored (RFC 9110 section 7.8)."""

    UPGRADES = (
        [
            (b"Connection", b"Upgrade, HTTP2-Settings"),
            (b"Upgrade", b"h2c"),
            (b"HTTP2-Settings", b"AAMAAABkAAQCAAAAAAIAAAAA"),
        ],
        [
            (b"Connection", b"keep-alive, Upgrade"),
            (b"Upgrade", b"websocket"),
            (b"Sec-WebSocket-Version", b"13"),
        ],
        [(b"Connection", b"upgrade"), (b"Upgrade", b"foo/1"), (b"Expect", b"100-continue")],
    )

    def test_served_as_plain_http11_with_its_body(self) -> None:
        for upgrade in self.UPGRADES:
            for framing, body in (
                ([(b"Content-Length", b"5")], b"hello"),
                ([(b"Transfer-Encoding", b"chunked")], chunked(b"hello", 2)),
            ):
                protocol, transport = self.connect()
                self.door.requests.clear()
                request = post(body, [*upgrade, *framing])
                # whole, pipelined with a plain request, or a byte at a time
                data = request + post(b"next") + request
                protocol.dataReceived(data[:7])
                protocol.dataReceived(data[7:30])
                for i in range(30, len(data)):
                    protocol.dataReceived(data[i : i + 1])
                protocol.dataReceived(request + post(b"last"))
                self.assertEqual(
                    [body for _, _, body in self.door.requests],
                    [b"hello", b"next", b"hello", b"hello", b"last"],
                    upgrade,
                )
                out = transport.value()
                final = [line for line in statuses(out) if b" 100 " not in line]
                self.assertEqual(final, [b"HTTP/1.1 200 OK"] * 5, upgrade)
                self.assertNotIn(b"101", out)
                self.assertEqual(
                    out.count(b"100 Continue"), 3 if upgrade[-1][0] == b"Expect" else 0
                )
                self.assertFalse(transport.disconnecting)
                # what the door sees: the request's own headers
                self.assertEqual(self.door.headers[0](b"content-type"), None)
                self.assertIn(b"upgrade", self.door.headers[0](b"connection").lower())

    def test_closing_upgrade_request(self) -> None:
        protocol, transport = self.connect()
        headers = [
            (b"Connection", b"Upgrade, close"),
            (b"Upgrade", b"h2c"),
            (b"Content-Length", b"2"),
        ]
        protocol.dataReceived(post(b"ab", headers) + post(b"dropped"))
        self.assertEqual(self.door.requests, [(b"POST", b"/", b"ab")])
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_connect_is_answered_then_closed(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(raw_request(b"example:443", method=b"CONNECT") + post(b"not HTTP"))
        self.assertEqual(self.door.requests, [(b"CONNECT", b"example:443", b"")])
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 200 OK"])
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)


class PipeliningTests(_Case):
    def test_answered_in_order(self) -> None:
        protocol, transport = self.connect()
        slow: Deferred[Answer] = Deferred()
        self.door.results = [slow]
        protocol.dataReceived(post(b"1") + post(b"2"))
        self.assertEqual(len(self.door.requests), 2)  # both handed on at once
        self.assertEqual(transport.value(), b"")  # the fast answer waits for the slow one
        slow.callback(Answer(200, b"first"))
        data = transport.value()
        self.assertLess(data.index(b"first"), data.index(b"answer 2"))

    def test_reading_pauses_past_the_bound(self) -> None:
        protocol, transport = self.connect()
        waiting = [Deferred() for _ in range(MAX_PIPELINED + 1)]
        self.door.results = list(waiting)
        protocol.dataReceived(post() * (MAX_PIPELINED + 1))
        self.assertEqual(transport.producerState, "paused")
        for d in waiting:
            d.callback(Answer(200, b"ok"))
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(statuses(transport.value())), MAX_PIPELINED + 1)

    def test_disconnect_cancels_pending_answers(self) -> None:
        protocol, transport = self.connect()
        pending: list[Deferred[Answer]] = [Deferred(), Deferred()]
        self.door.results = list(pending)
        protocol.dataReceived(post() + post())
        protocol.connectionLost()
        self.assertEqual([d.called for d in pending], [True, True])
        self.assertEqual(transport.value(), b"")

    def test_closing_answer_drops_later_ones(self) -> None:
        protocol, transport = self.connect()
        slow: Deferred[Answer] = Deferred()
        self.door.results = [slow]
        protocol.dataReceived(post() + post(b"y" * (MAX_PREPARE_LENGTH + 1)))
        self.assertEqual(transport.value(), b"")  # the early 413 waits its turn
        slow.callback(Answer(200, b"first"))
        self.assertEqual(
            statuses(transport.value()),
            [b"HTTP/1.1 200 OK", b"HTTP/1.1 413 Request Entity Too Large"],
        )
        self.assertTrue(transport.disconnecting)


class BodyTests(_Case):
    def test_expect_continue_only_when_the_body_is_read(self) -> None:
        protocol, transport = self.connect()
        head = post(b"", [(b"Content-Length", b"3"), (b"Expect", b"100-continue")])
        protocol.dataReceived(head)
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        protocol.dataReceived(b"abc")
        self.assertEqual(self.door.requests, [(b"POST", b"/", b"abc")])
        protocol, transport = self.connect()
        length = b"%d" % (MAX_PREPARE_LENGTH + 1)
        protocol.dataReceived(
            post(b"", [(b"Content-Length", length), (b"Expect", b"100-continue")])
        )
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 413 Request Entity Too Large"])
        self.assertTrue(transport.disconnecting)

    def test_a_reply_may_be_larger_than_a_prepare(self) -> None:
        """RFC 35 reply leg (Request-Id, no Callback-Url): up to the largest legal Reject."""
        request_id = (b"Request-Id", b"42ee09c8-a6de-4ae3-8a47-4732b0cbb07b")
        callback = (b"Callback-Url", b"http://cb.example/")
        body = b"r" * MAX_REJECT_LENGTH
        protocol, transport = self.connect()
        protocol.dataReceived(post(body, [(b"Content-Length", b"%d" % len(body)), request_id]))
        self.assertEqual(self.door.requests, [(b"POST", b"/", body)])
        chunked_body = post(b"", [(b"Transfer-Encoding", b"chunked"), request_id]) + chunked(body)
        protocol.dataReceived(chunked_body)
        self.assertEqual(len(self.door.requests), 2)
        # one byte more, or the same size without the reply's headers: 413 before the body
        for extra, limit in (
            ([request_id], MAX_REJECT_LENGTH),
            ([], MAX_PREPARE_LENGTH),
            ([request_id, callback], MAX_PREPARE_LENGTH),
        ):
            size = MAX_REJECT_LENGTH + 1 if extra == [request_id] else MAX_REJECT_LENGTH
            protocol, transport = self.connect()
            protocol.dataReceived(post(b"", [(b"Content-Length", b"%d" % size), *extra]))
            self.assertEqual(
                statuses(transport.value()), [b"HTTP/1.1 413 Request Entity Too Large"]
            )
            self.assertIn(b"the limit is %d" % limit, transport.value())
            self.assertTrue(transport.disconnecting)
        protocol, transport = self.connect()
        protocol.dataReceived(
            post(b"", [(b"Transfer-Encoding", b"chunked"), request_id]) + chunked(body + b"r")
        )
        self.assertIn(b"the limit is %d bytes" % MAX_REJECT_LENGTH, transport.value())
        self.assertEqual(len(self.door.requests), 2)

    def test_chunked(self) -> None:
        body = b"p" * MAX_PREPARE_LENGTH
        protocol, transport = self.connect()
        request = post(b"", [(b"Transfer-Encoding", b"chunked")]) + chunked(body, 1000)
        for i in range(0, len(request), 777):  # split anywhere
            protocol.dataReceived(request[i : i + 777])
        self.assertEqual(self.door.requests, [(b"POST", b"/", body)])
        protocol, transport = self.connect()
        protocol.dataReceived(
            post(b"", [(b"Transfer-Encoding", b"chunked")]) + chunked(body + b"p")
        )
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 413 Request Entity Too Large"])
        self.assertIn(b"Connection: close", transport.value())
        self.assertEqual(len(self.door.requests), 1)

    def test_malformed_is_400_and_close(self) -> None:
        host = b"Host: x\r\n"
        cases = {
            "no version": b"GET /\r\n\r\n",
            "HTTP/2 line": b"GET / HTTP/2.0\r\n\r\n",
            "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            "bare LF": b"POST / HTTP/1.1\nHost: x\nContent-Length: 0\n\n",
            "bare LF in a header": b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n\r\n",
            "NUL": b"POST / HTTP/1.1\r\n" + host + b"X: a\x00b\r\nContent-Length: 0\r\n\r\n",
            # llhttp refuses every control character but HTAB in a field value
            # (RFC 9110 section 5.5); h11 alone would let SOH, BS, US and DEL by.
            **{
                f"control {c:#04x}": b"POST / HTTP/1.1\r\n"
                + host
                + b"X: a"
                + bytes([c])
                + b"b\r\nContent-Length: 0\r\n\r\n"
                for c in (0x01, 0x08, 0x1F, 0x7F)
            },
            "obs-fold": b"POST / HTTP/1.1\r\n" + host + b"X: a\r\n b\r\nContent-Length: 0\r\n\r\n",
            "CL and TE": b"POST / HTTP/1.1\r\n"
            + host
            + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "two CL": b"POST / HTTP/1.1\r\n"
            + host
            + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "same CL twice": b"POST / HTTP/1.1\r\n"
            + host
            + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\na",
            "CL not digits": b"POST / HTTP/1.1\r\n" + host + b"Content-Length: 1x\r\n\r\na",
            "CL negative": b"POST / HTTP/1.1\r\n" + host + b"Content-Length: -1\r\n\r\n",
            "TE gzip": b"POST / HTTP/1.1\r\n" + host + b"Transfer-Encoding: gzip\r\n\r\n",
            "space before colon": b"POST / HTTP/1.1\r\n" + host + b"X : a\r\n\r\n",
            "no Host": b"GET / HTTP/1.1\r\n\r\n",
            "bad chunk": b"POST / HTTP/1.1\r\n"
            + host
            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        }
        for label, request in cases.items():
            protocol, transport = self.connect()
            protocol.dataReceived(request)
            self.assertEqual(transport.value(), BAD, label)
            self.assertTrue(transport.disconnecting, label)
            self.assertEqual(self.door.requests, [], label)
            protocol.dataReceived(raw_request(method=b"GET"))  # nothing more is read
            self.assertEqual(transport.value(), BAD, label)

    def test_head_too_large_is_431_and_close(self) -> None:
        host = b"Host: x\r\n"
        cases = {
            "header too long": b"GET / HTTP/1.1\r\n" + host + b"X: " + b"a" * 16384 + b"\r\n\r\n",
            "too many headers": b"GET / HTTP/1.1\r\n" + host + b"X: a\r\n" * MAX_HEADERS + b"\r\n",
        }
        for label, request in cases.items():
            protocol, transport = self.connect()
            protocol.dataReceived(request)
            self.assertEqual(statuses(transport.value()), [TOO_LARGE_HEAD], label)
            self.assertIn(b"Connection: close", transport.value(), label)
            self.assertTrue(transport.disconnecting, label)
            self.assertEqual(self.door.requests, [], label)

    def test_header_limits_are_the_listeners(self) -> None:
        limits = ServerLimits(max_headers=3, max_header_bytes=1024)
        protocol = Http1ServerProtocol(self.door, self.clock, parser=self.parser, limits=limits)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost)
        protocol.dataReceived(raw_request(method=b"GET", headers=[(b"A", b"1"), (b"B", b"2")]))
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 200 OK"])
        protocol.dataReceived(
            raw_request(method=b"GET", headers=[(b"A", b"1"), (b"B", b"2"), (b"C", b"3")])
        )
        self.assertEqual(statuses(transport.value())[1:], [TOO_LARGE_HEAD])

    def test_endless_head_is_refused(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nX: ")
        for _ in range(10):
            protocol.dataReceived(b"a" * 4096)
        self.assertEqual(statuses(transport.value()), [TOO_LARGE_HEAD])
        self.assertTrue(transport.disconnecting)


class IdleTimeoutTests(_Case):
    def test_idle_connection_closed_after_the_timeout(self) -> None:
        protocol, transport = self.connect(idle_timeout=10)
        self.clock.advance(9)
        protocol.dataReceived(raw_request(method=b"GET"))
        self.clock.advance(9)  # bytes came 9 s ago
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_not_while_an_answer_is_pending(self) -> None:
        protocol, transport = self.connect(idle_timeout=10)
        pending: Deferred[Answer] = Deferred()
        self.door.results = [pending]
        protocol.dataReceived(post())
        self.clock.advance(25)
        self.assertFalse(transport.disconnecting)
        pending.callback(Answer(200, b"late"))
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        self.assertIn(b"late", transport.value())

    def test_none_never_times_out(self) -> None:
        protocol, transport = self.connect(idle_timeout=None)
        protocol.dataReceived(raw_request(method=b"GET"))
        self.clock.advance(10**6)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DeadlineTests(_Case):
    """head_timeout and body_timeout: a trickle does not extend them (408, or a silent close)."""

    def limited(self) -> tuple[Any, StringTransport]:
        limits = ServerLimits(head_timeout=10, body_timeout=5)
        protocol = Http1ServerProtocol(self.door, self.clock, parser=self.parser, limits=limits)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost)
        return protocol, transport

    def test_trickled_head_is_408_at_the_deadline(self) -> None:
        protocol, transport = self.limited()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            self.clock.advance(3)
            protocol.dataReceived(b"X-Slow: 1\r\n")  # every 3 s: well inside the idle timeout
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 408 Request Timeout"])
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.door.requests, [])

    def test_silent_connection_closed_without_an_answer(self) -> None:
        _, transport = self.limited()
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_trickled_body_is_408_at_its_deadline(self) -> None:
        protocol, transport = self.limited()
        self.clock.advance(9)  # the head comes just in time; the body has 5 s from it
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for _ in range(4):
            self.clock.advance(1)
            protocol.dataReceived(b"a")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 408 Request Timeout"])
        self.assertTrue(transport.disconnecting)

    def test_each_request_has_its_own_deadline(self) -> None:
        protocol, transport = self.limited()
        for _ in range(5):
            self.clock.advance(8)
            protocol.dataReceived(raw_request(method=b"GET"))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(statuses(transport.value())), 5)
        self.clock.advance(59.5)  # then the idle timeout applies, from the last byte
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(statuses(transport.value())), 5)  # closed quietly

    def test_not_while_an_answer_is_pending(self) -> None:
        protocol, transport = self.limited()
        pending: Deferred[Answer] = Deferred()
        self.door.results = [pending]
        protocol.dataReceived(post())
        self.clock.advance(100)
        self.assertFalse(transport.disconnecting)
        pending.callback(Answer(200, b"late"))
        self.assertIn(b"late", transport.value())


class DrainTests(_Case):
    """Http1ServerProtocol.drain(): idle closes after the linger, a request in progress is
    answered first."""

    def test_idle_connection_closes_after_the_linger(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(raw_request(method=b"GET"))
        protocol.drain()
        self.assertFalse(transport.disconnecting)
        self.clock.advance(DRAIN_LINGER)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(statuses(transport.value())), 1)

    def test_request_during_the_linger_is_answered_with_close(self) -> None:
        """A load balancer may have written a request into the idle connection
        as the drain began: it is answered, not lost."""
        protocol, transport = self.connect()
        protocol.drain()
        self.clock.advance(DRAIN_LINGER / 2)
        protocol.dataReceived(post(b"late"))
        self.assertEqual(self.door.requests, [(b"POST", b"/", b"late")])
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)
        self.clock.advance(DRAIN_LINGER)  # the linger's end finds it closing already

    def test_pending_answer_says_connection_close(self) -> None:
        protocol, transport = self.connect()
        pending: Deferred[Answer] = Deferred()
        self.door.results = [pending]
        protocol.dataReceived(post())
        protocol.drain()
        self.assertFalse(transport.disconnecting)
        pending.callback(Answer(200, b"fulfill"))
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertTrue(transport.value().endswith(b"fulfill"))
        self.assertTrue(transport.disconnecting)

    def test_request_in_progress_is_answered_then_closed(self) -> None:
        protocol, transport = self.connect()
        request = post(b"body")
        protocol.dataReceived(request[:-2])
        protocol.drain()
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(request[-2:])
        self.assertEqual(self.door.requests, [(b"POST", b"/", b"body")])
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)


class RefusalCountTests(_Case):
    """Every answer the server gives without the door is shown to the door's observer
    (metrics count them), once each; the door's own answers are not shown twice."""

    def refused(self, *data: bytes, limits: ServerLimits | None = None) -> list[int]:
        self.door.observed.clear()
        protocol = Http1ServerProtocol(self.door, self.clock, parser=self.parser, limits=limits)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost)
        for piece in data:
            protocol.dataReceived(piece)
        self.assertTrue(transport.disconnecting)
        return self.door.observed

    def test_parser_refusals(self) -> None:
        host = b"Host: x\r\n"
        cases = {
            "control character": b"POST / HTTP/1.1\r\n" + host + b"X: a\x00b\r\n\r\n",
            "CL not digits": b"POST / HTTP/1.1\r\n" + host + b"Content-Length: 1x\r\n\r\na",
            "no Host": b"GET / HTTP/1.1\r\n\r\n",
        }
        for label, request in cases.items():
            self.assertEqual(self.refused(request), [400], label)
        too_many = b"GET / HTTP/1.1\r\n" + host + b"X: a\r\n" * MAX_HEADERS + b"\r\n"
        self.assertEqual(self.refused(too_many), [431])
        endless = [b"GET / HTTP/1.1\r\nHost: x\r\nX: "] + [b"a" * 4096] * 10
        self.assertEqual(self.refused(*endless), [431])

    def test_too_large_and_timed_out(self) -> None:
        size = b"%d" % (MAX_PREPARE_LENGTH + 1)
        self.assertEqual(self.refused(post(b"", [(b"Content-Length", size)])), [413])
        body = b"p" * (MAX_PREPARE_LENGTH + 1)
        self.assertEqual(
            self.refused(post(b"", [(b"Transfer-Encoding", b"chunked")]) + chunked(body)), [413]
        )
        self.door.observed.clear()
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\n")
        self.clock.advance(IDLE_TIMEOUT)
        self.assertEqual(statuses(transport.value()), [b"HTTP/1.1 408 Request Timeout"])
        self.assertEqual(self.door.observed, [408])

    def test_door_answers_and_silent_closes_are_not_shown(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(post() + raw_request(method=b"GET"))
        self.assertEqual(len(statuses(transport.value())), 2)
        self.clock.advance(IDLE_TIMEOUT + 1)  # idle: closed without an answer
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.door.observed, [])


class H11RefusalCountTests(RefusalCountTests):
    parser = "h11"


class H11DeadlineTests(DeadlineTests):
    parser = "h11"


class H11DrainTests(DrainTests):
    parser = "h11"


class H11FramingTests(FramingTests):
    parser = "h11"


class H11UpgradeTests(UpgradeTests):
    parser = "h11"


class H11PipeliningTests(PipeliningTests):
    parser = "h11"


class H11BodyTests(BodyTests):
    parser = "h11"


class H11IdleTimeoutTests(IdleTimeoutTests):
    parser = "h11"


class ListenerTests(SynchronousTestCase):
    """The listener's choice per connection, and what it knows of them."""

    def connection(self, listener: Any, alpn: bytes | None = None) -> tuple[Any, StringTransport]:
        protocol = listener.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        transport.negotiatedProtocol = alpn  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        return protocol, transport

    def test_http11_or_http2_per_connection(self) -> None:
        door = _Door()
        listener = make_listener(door, Clock())
        self.assertEqual(listener.acceptableProtocols(), [b"h2", b"http/1.1"])
        http1, t1 = self.connection(listener)
        http1.dataReceived(b"P")  # could be the preface: wait
        self.assertEqual(t1.value(), b"")
        http1.dataReceived(post()[1:])
        self.assertTrue(t1.value().startswith(b"HTTP/1.1 200 OK"))
        for pieces, alpn in (([H2C_PREFACE[:5], H2C_PREFACE[5:]], None), ([H2C_PREFACE], b"h2")):
            h2, t2 = self.connection(listener, alpn)
            for piece in pieces:
                h2.dataReceived(piece)
            # twisted.web's HTTP/2 answers the preface with its SETTINGS frame
            self.assertEqual(t2.value()[3:4], b"\x04", pieces)
            h2.connectionLost()
        self.assertEqual(listener.connections_total, 3)
        self.assertEqual(len(door.requests), 1)
        http1.connectionLost()

    def test_close_all(self) -> None:
        listener = make_listener(_Door(), Clock())
        self.successResultOf(listener.close_all())
        protocols = [self.connection(listener) for _ in range(2)]
        closing = listener.close_all()
        self.assertTrue(all(t.disconnecting for _, t in protocols))
        self.assertNoResult(closing)
        for protocol, _ in protocols:
            protocol.connectionLost()
        self.successResultOf(closing)
