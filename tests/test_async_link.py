"""RFC 35 asynchronous mode through PluginHttp, sans-IO: a Clock, a FakeAgent, the door.

Sending (``outgoing.mode = "async"``): the Prepare leg's headers, the reply on
the callback URL, R00 at expiry, the Prepare leg's failures, the pending
table's bounds.  Receiving: ``202``, the reply POSTed back with retries, the
refusals.  Loopback runs are in ``tests/test_async_e2e.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import error as net_error
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.front import Answer
from ilphttp.packet import ErrorCode, Fulfill, serialize
from ilphttp.plugin import PluginHttp
from ilphttp.reply_delivery import LOG_INTERVAL
from ilphttp.rfc35 import REPLY_GRACE, parse_request_id
from tests.support.fakes import FakeAgent, FakeResponse, LogCapture
from tests.support.packets import (
    CLOCK_START,
    Made,
    expect_fulfill,
    expect_reject,
    make_prepare,
    reject_bytes,
)

A_TO_B = "alice-to-bob-token"
B_TO_A = "bob-to-alice-token"
CALLBACK = "http://alice.example/cb"


def door_post(
    plugin: PluginHttp, body: bytes, path: bytes = b"/ilp", **headers: bytes
) -> Answer | Deferred[Answer]:
    """What ``plugin``'s door answers to a POST with ``headers`` (``request_id=`` ...)."""
    fields = {k.replace("_", "-").encode(): v for k, v in headers.items()}
    assert plugin.resource is not None
    return plugin.resource.door.answer(b"POST", path, fields.get, body, lambda: None)


def bearer(token: str) -> bytes:
    return b"Bearer " + token.encode()


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.agent = FakeAgent()
        self.logs = LogCapture(self)

    def plugin(
        self, incoming: dict[str, Any], outgoing: dict[str, Any] | None, **top: Any
    ) -> PluginHttp:
        plugin = PluginHttp(
            incoming=incoming, outgoing=outgoing, reactor=self.clock, agent=self.agent, **top
        )
        self.successResultOf(plugin.connect())
        return plugin

    def header(self, index: int, name: bytes) -> list[bytes]:
        return list(self.agent.requests[index][2].getRawHeaders(name, []))


class SendingTests(_Case):
    """Alice sends asynchronously to Bob (``http://bob.example/ilp``); the FakeAgent is Bob."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.plugin(
            {"static_token": B_TO_A},
            {
                "url": "http://bob.example/ilp",
                "static_token": A_TO_B,
                "mode": "async",
                "callback_url": CALLBACK,
            },
            address="test.alice",
        )
        self.made = make_prepare(self.clock.seconds(), expires_in=10)

    def send(self, made: Made | None = None) -> tuple[Deferred[bytes], str]:
        made = made or self.made
        d = self.alice.send_data(made.packet)
        [request_id] = self.header(-1, b"request-id")
        return d, request_id.decode()

    def reply(self, request_id: str, body: bytes, token: str = B_TO_A) -> Answer:
        answer = door_post(
            self.alice,
            body,
            authorization=bearer(token),
            request_id=request_id.encode(),
            content_type=b"application/octet-stream",
        )
        assert isinstance(answer, Answer)
        return answer

    def test_prepare_leg_headers(self) -> None:
        d, request_id = self.send()
        method, url, headers, body = self.agent.requests[-1]
        self.assertEqual(
            (method, url, body), (b"POST", b"http://bob.example/ilp", self.made.packet)
        )
        self.assertEqual(headers.getRawHeaders(b"callback-url"), [CALLBACK.encode()])
        self.assertEqual(uuid.UUID(request_id).version, 4)
        self.assertEqual(parse_request_id(request_id), request_id)
        self.assertEqual(headers.getRawHeaders(b"authorization"), [bearer(A_TO_B)])
        self.assertEqual(headers.getRawHeaders(b"accept"), [b"application/octet-stream"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/octet-stream"])
        self.assertNoResult(d)
        # two Prepares, two ids
        self.alice.send_data(make_prepare(self.clock.seconds()).packet)
        self.assertNotEqual(self.header(-1, b"request-id"), [request_id.encode()])

    def test_202_then_the_reply_on_the_callback(self) -> None:
        d, request_id = self.send()
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        self.assertNoResult(d)
        self.assertEqual(len(self.alice._async), 1)
        self.assertEqual(self.reply(request_id, self.made.fulfill(b"hi")).status, 200)
        expect_fulfill(self, self.successResultOf(d), self.made.fulfillment)
        self.assertEqual(len(self.alice._async), 0)
        # the first reply won: a second one (a retry, a duplicate) is 400
        second = self.reply(request_id, self.made.fulfill())
        self.assertEqual(second.status, 400)
        self.assertIn(b"already answered", second.body)

    def test_the_reply_may_beat_the_202(self) -> None:
        d, request_id = self.send()
        self.assertEqual(self.reply(request_id, reject_bytes("F99", "test.bob")).status, 200)
        self.assertNoResult(d)
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        expect_reject(self, self.successResultOf(d), "F99")

    def test_a_callback_fulfill_wins_over_a_lost_prepare_leg(self) -> None:
        d, request_id = self.send()
        self.assertEqual(self.reply(request_id, self.made.fulfill()).status, 200)
        lost = net_error.ConnectionLost("after the peer took it")
        self.agent.pending[-1].errback(Failure(lost))
        expect_fulfill(self, self.successResultOf(d), self.made.fulfillment)

    def test_no_reply_is_r00_at_expiry_and_nothing_stays(self) -> None:
        d, request_id = self.send()
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        self.clock.advance(9.999)
        self.assertNoResult(d)
        self.clock.advance(0.002)
        expect_reject(self, self.successResultOf(d), ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.assertEqual(len(self.alice._async.pending), 0)
        late = self.reply(request_id, self.made.fulfill())
        self.assertEqual(late.status, 400)
        self.assertIn(b"unknown", late.body)

    def test_a_failed_prepare_leg_is_the_sync_reject(self) -> None:
        cases = [(401, "T00"), (403, "T00"), (404, "F00"), (400, "F00"), (500, "T00"), (503, "T00")]
        for status, code in cases:
            d, request_id = self.send(make_prepare(self.clock.seconds()))
            self.agent.pending[-1].callback(FakeResponse(status, b"no"))
            expect_reject(self, self.successResultOf(d), code)
            self.assertNotIn(request_id, self.alice._async.pending)
            self.assertEqual(self.reply(request_id, self.made.fulfill()).status, 400)

    def test_a_200_with_a_body_is_a_synchronous_answer(self) -> None:
        d, request_id = self.send()
        self.agent.pending[-1].callback(FakeResponse(200, self.made.fulfill()))
        expect_fulfill(self, self.successResultOf(d), self.made.fulfillment)
        self.assertEqual(len(self.alice._async.pending), 0)
        self.assertEqual(self.reply(request_id, self.made.fulfill()).status, 400)

    def test_unreachable_peer_is_t01(self) -> None:
        d, _ = self.send()
        self.agent.pending[-1].errback(Failure(net_error.ConnectionRefusedError()))
        expect_reject(self, self.successResultOf(d), ErrorCode.T01_PEER_UNREACHABLE)
        self.assertEqual(len(self.alice._async), 0)

    def test_wrong_fulfillment_is_f05_and_answered_200(self) -> None:
        d, request_id = self.send()
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        wrong = serialize(Fulfill(b"\x07" * 32))
        self.assertEqual(self.reply(request_id, wrong).status, 200)
        expect_reject(self, self.successResultOf(d), ErrorCode.F05_WRONG_CONDITION)

    def test_a_reply_that_is_not_ilp_is_400_and_t00(self) -> None:
        d, request_id = self.send()
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        answer = self.reply(request_id, b"<html>oops</html>")
        self.assertEqual(answer.status, 400)
        expect_reject(self, self.successResultOf(d), ErrorCode.T00_INTERNAL_ERROR)

    def test_bad_reply_posts(self) -> None:
        d, request_id = self.send()
        fulfill = self.made.fulfill()
        # unknown, malformed ids
        for bad in (str(uuid.uuid4()), "not-a-uuid", "{" + request_id + "}"):
            self.assertEqual(self.reply(bad, fulfill).status, 400, bad)
        # a wrong credential never reaches the table
        unauthorized = self.reply(request_id, fulfill, token="someone-else")
        self.assertEqual(unauthorized.status, 401)
        self.assertNoResult(d)
        self.assertEqual(self.reply(request_id, fulfill).status, 200)

    def test_a_fulfill_for_an_unknown_id_is_a_warning(self) -> None:
        """Another process's Fulfill (nodes sharing one callback URL) must not pass unseen."""

        def warnings() -> list[dict[str, Any]]:
            return [e for e in self.logs.at_least(LogLevel.warn) if "Fulfill" in e["log_format"]]

        fulfill = self.made.fulfill()
        for _ in range(3):
            self.assertEqual(self.reply(str(uuid.uuid4()), fulfill).status, 400)
        [line] = warnings()  # one line a second, not one per reply
        self.assertIn("unknown Request-Id", line["reason"])
        self.clock.advance(1)
        self.assertEqual(self.reply(str(uuid.uuid4()), fulfill).status, 400)
        self.assertIn("2 more", warnings()[-1]["more"])
        # a Reject, or a duplicate of a reply that counted, is no lost money: no warning
        self.clock.advance(1)
        self.assertEqual(self.reply(str(uuid.uuid4()), reject_bytes("F99", "t.b")).status, 400)
        d, request_id = self.send()
        self.assertEqual(self.reply(request_id, fulfill).status, 200)
        self.assertEqual(self.reply(request_id, fulfill).status, 400)
        self.assertEqual(len(warnings()), 2)
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        expect_fulfill(self, self.successResultOf(d), self.made.fulfillment)

    def test_a_reply_from_another_account_is_400(self) -> None:
        """Carol is another account of the same node: her listener does not know Alice's ids."""
        carol = self.plugin(
            {"static_token": B_TO_A},
            {
                "url": "http://carol.example/",
                "static_token": "x",
                "mode": "async",
                "callback_url": "http://alice.example/carol",
            },
        )
        d, request_id = self.send()
        answer = door_post(
            carol, self.made.fulfill(), authorization=bearer(B_TO_A), request_id=request_id.encode()
        )
        assert isinstance(answer, Answer)
        self.assertEqual(answer.status, 400)
        self.assertNoResult(d)
        self.assertEqual(self.reply(request_id, self.made.fulfill()).status, 200)
        self.agent.pending[-1].callback(FakeResponse(202, b""))
        expect_fulfill(self, self.successResultOf(d), self.made.fulfillment)

    def test_ten_thousand_pending_leave_nothing_after_expiry(self) -> None:
        made = [make_prepare(self.clock.seconds(), expires_in=5 + i / 1000) for i in range(10000)]
        results = [self.alice.send_data(m.packet) for m in made]
        for pending in self.agent.pending:
            pending.callback(FakeResponse(202, b""))
        # a few answered, the rest never
        for i in range(0, 10000, 1000):
            [request_id] = self.header(i, b"request-id")
            self.assertEqual(self.reply(request_id.decode(), made[i].fulfill()).status, 200)
        self.assertEqual(len(self.alice._async.pending), 9990)
        self.clock.advance(5 + 10 + REPLY_GRACE)
        for i, d in enumerate(results):
            reply = self.successResultOf(d)
            if i % 1000:
                expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)
        self.clock.advance(2)  # the sweep of answered ids
        table = self.alice._async.pending
        self.assertEqual((len(table), table.answered, len(self.alice._async)), (0, 0, 0))
        self.assertEqual(table.next_expiry(), None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_full_table_is_t00(self) -> None:
        self.alice._async.pending.max_pending = 2
        first = [self.alice.send_data(make_prepare(self.clock.seconds()).packet) for _ in range(2)]
        d = self.alice.send_data(self.made.packet)
        reject = expect_reject(self, self.successResultOf(d), ErrorCode.T00_INTERNAL_ERROR)
        self.assertIn("too many Prepares", reject.message)
        self.assertEqual(len(self.agent.requests), 2)
        for pending in self.agent.pending:
            pending.callback(FakeResponse(500, b""))
        for f in first:
            self.successResultOf(f)

    def test_expired_prepare_is_not_sent(self) -> None:
        made = make_prepare(self.clock.seconds(), expires_in=-1)
        expect_reject(self, self.successResultOf(self.alice.send_data(made.packet)), "R00")
        self.assertEqual(self.agent.requests, [])


class ReceivingTests(_Case):
    """Bob receives Alice's asynchronous Prepares; the FakeAgent is Alice's callback URL."""

    def setUp(self) -> None:
        super().setUp()
        self.calls: list[bytes] = []
        self.bob = self.plugin(
            {"static_token": A_TO_B},
            {"url": "http://alice.example/ilp", "static_token": B_TO_A},
            address="test.bob",
        )
        self.made = make_prepare(self.clock.seconds(), expires_in=10)
        self.answer_with: Any = self.made.fulfill(b"ok")

        def handler(data: bytes) -> Any:
            self.calls.append(data)
            return self.answer_with

        self.bob.register_data_handler(handler)

    def prepare(self, body: bytes | None = None, **headers: bytes) -> Answer | Deferred[Answer]:
        fields: dict[str, bytes] = {
            "authorization": bearer(A_TO_B),
            "content_type": b"application/octet-stream",
            "callback_url": CALLBACK.encode(),
            "request_id": str(uuid.uuid4()).encode(),
        }
        fields.update(headers)
        fields = {k: v for k, v in fields.items() if v}
        return door_post(self.bob, self.made.packet if body is None else body, **fields)

    def test_202_then_the_reply_is_posted_back(self) -> None:
        request_id = str(uuid.uuid4()).upper()
        answer = self.prepare(request_id=request_id.encode())
        self.assertEqual(answer, Answer(202, b""))
        self.assertEqual(self.calls, [self.made.packet])
        [(method, url, headers, body)] = self.agent.requests
        self.assertEqual(
            (method, url, body), (b"POST", CALLBACK.encode(), self.made.fulfill(b"ok"))
        )
        self.assertEqual(headers.getRawHeaders(b"request-id"), [request_id.lower().encode()])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/octet-stream"])
        self.assertEqual(headers.getRawHeaders(b"authorization"), [bearer(B_TO_A)])
        self.assertIsNone(headers.getRawHeaders(b"callback-url"))
        self.agent.pending[0].callback(FakeResponse(200, b""))
        self.assertEqual(self.bob._async._busy, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_slow_handler_is_still_202_at_once(self) -> None:
        later: Deferred[bytes] = Deferred()
        self.answer_with = later
        self.assertEqual(self.prepare(), Answer(202, b""))
        self.assertEqual(self.agent.requests, [])
        later.callback(self.made.fulfill())
        self.assertEqual(len(self.agent.requests), 1)

    def test_an_expired_prepare_is_202_and_a_r00_reply(self) -> None:
        self.made = make_prepare(self.clock.seconds(), expires_in=-0.5)
        self.assertEqual(self.prepare(), Answer(202, b""))
        self.assertEqual(self.calls, [])
        expect_reject(self, self.agent.requests[0][3], ErrorCode.R00_TRANSFER_TIMED_OUT)

    def test_503_twice_then_200_is_three_attempts(self) -> None:
        self.prepare()
        self.agent.pending[0].callback(FakeResponse(503, b""))
        self.assertEqual(len(self.agent.requests), 1)
        self.clock.advance(0.099)
        self.assertEqual(len(self.agent.requests), 1)
        self.clock.advance(0.001)
        self.agent.pending[1].callback(FakeResponse(503, b""))
        self.clock.advance(0.2)
        self.agent.pending[2].callback(FakeResponse(200, b""))
        self.clock.advance(30)
        self.assertEqual(len(self.agent.requests), 3)
        self.assertEqual({r[3] for r in self.agent.requests}, {self.made.fulfill(b"ok")})

    def test_connection_failures_and_timeouts_are_retried(self) -> None:
        self.prepare()
        self.agent.pending[0].errback(Failure(net_error.ConnectionRefusedError()))
        self.clock.advance(0.1)
        self.assertEqual(len(self.agent.requests), 2)
        self.clock.advance(3)  # no answer within the attempt's timeout: cancelled
        self.assertEqual(self.agent.cancelled, 1)
        self.clock.advance(0.2)
        self.assertEqual(len(self.agent.requests), 3)
        self.agent.pending[2].callback(FakeResponse(204, b""))
        self.assertEqual(self.bob._async._busy, 0)

    def test_4xx_stops_at_once_and_is_logged(self) -> None:
        self.prepare()
        self.agent.pending[0].callback(FakeResponse(400, b"unknown"))
        self.clock.advance(30)
        self.assertEqual(len(self.agent.requests), 1)
        [line] = [
            e for e in self.logs.at_least(LogLevel.info) if "refused a reply" in e["log_format"]
        ]
        self.assertEqual(line["status"], 400)

    def test_the_reply_leg_log_lines_name_the_account(self) -> None:
        self.bob.setName("bob")  # as a node names its plugins, after making them
        self.prepare()
        self.agent.pending[0].callback(FakeResponse(400, b"unknown"))
        self.clock.advance(LOG_INTERVAL)
        self.prepare()
        self.agent.pending[1].errback(Failure(net_error.ConnectionRefusedError()))
        while self.clock.getDelayedCalls():
            self.clock.advance(
                min(c.getTime() for c in self.clock.getDelayedCalls()) - self.clock.seconds()
            )
            for d in self.agent.pending[2:]:
                if not d.called:
                    d.errback(Failure(net_error.ConnectionRefusedError()))
        lines = [
            e
            for e in self.logs.at_least(LogLevel.info)
            if "refused a reply" in e["log_format"] or "gave up delivering" in e["log_format"]
        ]
        self.assertEqual(len(lines), 2)
        self.assertEqual({e["account"] for e in lines}, {"bob"})

    def test_a_callback_that_never_answers_stops_after_expiry_and_grace(self) -> None:
        self.prepare()
        end = self.clock.seconds() + 10 + REPLY_GRACE
        while self.clock.getDelayedCalls():
            self.clock.advance(
                min(c.getTime() for c in self.clock.getDelayedCalls()) - self.clock.seconds()
            )
        self.assertLessEqual(self.clock.seconds(), end)
        attempts = len(self.agent.requests)
        self.assertGreaterEqual(attempts, 4)  # several, as RFC 35 asks
        self.assertEqual(self.agent.cancelled, attempts)
        [line] = [e for e in self.logs.at_least(LogLevel.info) if "gave up" in e["log_format"]]
        self.assertEqual(line["n"], attempts)
        self.assertEqual(self.bob._async._busy, 0)
        self.assertEqual(self.logs.errors(), [])

    def test_refused_async_prepares_never_reach_the_handler(self) -> None:
        rid = str(uuid.uuid4()).encode()
        cases = [
            {"request_id": b"not-a-uuid"},
            {"request_id": b"00000000-0000-0000-0000-000000000000"},
            {"request_id": b""},  # Callback-Url without Request-Id
            {"callback_url": b"/relative/cb"},
            {"callback_url": b"ftp://alice.example/cb"},
            {"callback_url": b"http://evil.example/cb"},  # a foreign origin
            {"callback_url": b"http://alice.example@evil.example/cb"},
            {"callback_url": b"http://alice.example:8080/cb"},  # another port
            {"callback_url": b"http://alice.example/cb/../admin"},
            {"callback_url": "http://alice.example/caf\u00e9".encode(), "request_id": rid},
        ]
        for headers in cases:
            answer = self.prepare(**headers)
            assert isinstance(answer, Answer)
            self.assertEqual(answer.status, 400, headers)
            self.assertNotIn(b"Traceback", answer.body)
        self.assertEqual((self.calls, self.agent.requests), ([], []))

    def test_without_callback_url_it_is_synchronous(self) -> None:
        for headers in ({"callback_url": b""}, {"callback_url": b"", "request_id": b""}):
            answer = self.prepare(**headers)
            assert isinstance(answer, Answer)
            self.assertEqual((answer.status, answer.body), (200, self.made.fulfill(b"ok")))
        self.assertEqual(self.agent.requests, [])

    def test_other_door_rules_still_apply(self) -> None:
        self.assertEqual(self.prepare(authorization=bearer("wrong")).status, 401)  # type: ignore[union-attr]
        self.assertEqual(self.prepare(body=b"\x0c\x05junk").status, 400)  # type: ignore[union-attr]
        self.assertEqual(self.prepare(content_type=b"text/plain").status, 415)  # type: ignore[union-attr]
        self.assertEqual(self.calls, [])

    def test_a_receive_only_account_cannot_send_replies(self) -> None:
        carol = self.plugin({"static_token": A_TO_B, "callback_urls": [CALLBACK]}, None)
        carol.register_data_handler(lambda data: self.made.fulfill())
        answer = door_post(
            carol,
            self.made.packet,
            authorization=bearer(A_TO_B),
            callback_url=CALLBACK.encode(),
            request_id=str(uuid.uuid4()).encode(),
        )
        assert isinstance(answer, Answer)
        self.assertEqual(answer.status, 400)
        self.assertIn(b"no outgoing side", answer.body)

    def test_disconnect_waits_for_the_reply_to_be_delivered(self) -> None:
        self.prepare()
        stopping = self.bob.disconnect()
        self.assertNoResult(stopping)
        self.agent.pending[0].callback(FakeResponse(200, b""))
        self.successResultOf(stopping)


class MultiTests(_Case):
    """A multi account (a hub's children at ``http://{child}.kids.example/ilp``), both roles."""

    def setUp(self) -> None:
        super().setUp()
        self.hub = self.plugin(
            {"static_token": "kids-to-hub"},
            {
                "url": "http://%.kids.example/ilp",
                "static_token": "hub-to-kids",
                "mode": "async",
                "callback_url": "http://hub.example/ilp",
            },
            multi=True,
            ildcp={"client_address": "test.hub", "asset_scale": 9, "asset_code": "XRP"},
        )
        self.made = make_prepare(self.clock.seconds(), destination="test.hub.kid.x")
        self.hub.register_data_handler(lambda data: self.made.fulfill())

    def post(self, body: bytes, child: bytes, **headers: bytes) -> Answer:
        answer = door_post(
            self.hub,
            body,
            authorization=bearer("kids-to-hub"),
            ilp_peer_name=child,
            content_type=b"application/octet-stream",
            **headers,
        )
        assert isinstance(answer, Answer)
        return answer

    def test_a_reply_must_come_from_the_child_it_went_to(self) -> None:
        d = self.hub.send_data(self.made.packet)
        [(_, url, headers, _)] = self.agent.requests
        self.assertEqual(url, b"http://kid.kids.example/ilp")
        [request_id] = headers.getRawHeaders(b"request-id")
        self.agent.pending[0].callback(FakeResponse(202, b""))
        other = self.post(self.made.fulfill(), b"other", request_id=request_id)
        self.assertEqual(other.status, 400)
        self.assertIn(b"not pending for this account", other.body)
        self.assertEqual(self.post(self.made.fulfill(), b"kid", request_id=request_id).status, 200)
        expect_fulfill(self, self.successResultOf(d), self.made.fulfillment)

    def test_a_child_may_name_only_its_own_callback(self) -> None:
        rid = str(uuid.uuid4()).encode()
        own = self.post(
            self.made.packet, b"kid", request_id=rid, callback_url=b"http://kid.kids.example/cb"
        )
        self.assertEqual(own.status, 202)
        [(_, url, headers, _)] = self.agent.requests
        self.assertEqual(url, b"http://kid.kids.example/cb")
        self.assertEqual(headers.getRawHeaders(b"request-id"), [rid])
        foreign = self.post(
            self.made.packet,
            b"kid",
            request_id=str(uuid.uuid4()).encode(),
            callback_url=b"http://other.kids.example/cb",
        )
        self.assertEqual(foreign.status, 400)
        self.assertEqual(len(self.agent.requests), 1)
