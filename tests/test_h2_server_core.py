"""
Tests for ilphttp.h2_server_core: the sans-IO HTTP/2 server session, driven
with h2's client side as the frame factory (as hyper-h2's own tests are). No
network, no reactor, no clock.
"""

from __future__ import annotations

from typing import Any

import h2.errors
import h2.events
import h2.settings
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PriorityFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import h2_guard
from ilphttp.front import TOO_LARGE
from ilphttp.h2_server_core import IDLE_TIMEOUT, MAX_HEADERS, MAX_STREAMS, ServerSession
from ilphttp.h2_server_events import (
    Calmed,
    ConnectionError,
    RequestCancelled,
    RequestReceived,
    RequestRefused,
)
from ilphttp.h2_server_stream import TOO_LARGE_BODY
from ilphttp.http2_connection import goaway_tolerant_state_machine
from ilphttp.http2_events import CloseConnection
from ilphttp.packet import MAX_PREPARE_LENGTH, MAX_REJECT_LENGTH
from tests.support.h2server import answered, goaways, h2_client, request, statuses

Codes = h2.errors.ErrorCodes


class _Case(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = ServerSession()
        self.server.initiate()
        self.client = h2_client()
        self.now = 0.0

    def send(self, data: bytes | None = None) -> list[Any]:
        """One read on the server; its events."""
        if data is None:
            data = self.client.data_to_send()
        return self.server.receive_data(data, self.now)

    def reply(self) -> list[Any]:
        """What the client makes of everything the server queued."""
        return self.client.receive_data(self.server.data_to_send())

    def requests(self, events: list[Any]) -> list[RequestReceived]:
        return [e for e in events if isinstance(e, RequestReceived)]

    def answer_all(self, events: list[Any]) -> None:
        for e in self.requests(events):
            self.server.answer(e.stream_id, 200, [(b"content-type", b"t")], b"ok " + e.path)


class RequestTests(_Case):
    def test_request_and_answer(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/ilp", (b"authorization", b"Bearer t")))
        c.send_data(1, b"hello ", end_stream=False)
        c.send_data(1, b"world", end_stream=True)
        [req] = self.send()
        self.assertEqual(
            req,
            RequestReceived(1, b"POST", b"/ilp", [(b"authorization", b"Bearer t")], b"hello world"),
        )
        self.server.answer(1, 200, [(b"content-type", b"application/octet-stream")], b"reply")
        events = self.reply()
        [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
        self.assertEqual(
            response.headers,
            [
                (b":status", b"200"),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"5"),
            ],
        )
        self.assertEqual(answered(events), {1: b"reply"})

    def test_settings_advertised(self) -> None:
        [changed] = [e for e in self.reply() if isinstance(e, h2.events.RemoteSettingsChanged)]
        settings = {k: v.new_value for k, v in changed.changed_settings.items()}
        self.assertEqual(settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS], MAX_STREAMS)
        self.assertEqual(settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE], 16384)

    def test_many_concurrent_streams_answered_in_any_order(self) -> None:
        c = self.client
        sids = [2 * i + 1 for i in range(200)]
        for sid in sids:
            c.send_headers(sid, request(b"POST", b"/%d" % sid), end_stream=True)
        events = self.send()
        self.assertEqual([e.stream_id for e in self.requests(events)], sids)
        for sid in reversed(sids):
            self.server.answer(sid, 200, [], b"ok %d" % sid)
        self.assertEqual(answered(self.reply()), {sid: b"ok %d" % sid for sid in sids})

    def test_reset_between_requests_in_one_read(self) -> None:
        """
        The regression: HEADERS(1, END_STREAM), RST_STREAM(1), HEADERS(3,
        END_STREAM) in one read. Stream 1 is never delivered (nor answered),
        stream 3 is, nothing raises, the connection goes on.
        """
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        c.reset_stream(1)
        c.send_headers(3, request(b"POST", b"/3"), end_stream=True)
        events = self.send()
        self.assertEqual([e.stream_id for e in self.requests(events)], [3])
        self.server.answer(1, 200, [], b"dropped")  # quietly ignored
        self.answer_all(events)
        self.assertEqual(answered(self.reply()), {3: b"ok /3"})
        c.send_headers(5, request(b"POST", b"/5"), end_stream=True)
        self.answer_all(self.send())
        self.assertEqual(answered(self.reply()), {5: b"ok /5"})

    def test_reset_after_delivery_cancels(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        self.assertEqual(len(self.requests(self.send())), 1)
        c.reset_stream(1, error_code=Codes.CANCEL)
        c.send_headers(3, request(b"POST", b"/3"), end_stream=True)
        events = self.send()
        self.assertEqual(events[0], RequestCancelled(1))
        self.server.answer(1, 200, [], b"late")  # dropped, no StreamIDTooLowError
        self.answer_all(events)
        self.assertEqual(answered(self.reply()), {3: b"ok /3"})

    def test_window_overflow_behind_a_request(self) -> None:
        """h2 itself resets stream 1 (a WINDOW_UPDATE overflowing its window)."""
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        data = c.data_to_send() + WindowUpdateFrame(1, window_increment=2**31 - 1).serialize()
        c.send_headers(3, request(b"POST", b"/3"), end_stream=True)
        events = self.send(data + c.data_to_send())
        self.answer_all(events)
        self.server.answer(1, 200, [], b"dropped")
        self.assertEqual(answered(self.reply()), {3: b"ok /3"})

    def test_burst_with_early_resets(self) -> None:
        """
        300 Prepares, the first 100 (short expiry) reset before they are
        answered, in the same reads as later Prepares: the 200 others are all
        answered.
        """
        c = self.client
        self.send()
        self.reply()
        sids = [2 * i + 1 for i in range(300)]
        delivered: list[RequestReceived] = []
        cancelled: list[Any] = []
        for wave in range(3):
            for sid in sids[100 * wave : 100 * (wave + 1)]:
                c.send_headers(sid, request(b"POST", b"/%d" % sid), end_stream=True)
            if wave == 1:
                for sid in sids[:100]:
                    c.reset_stream(sid, error_code=Codes.CANCEL)
            events = self.send()
            delivered += self.requests(events)
            cancelled += [e for e in events if isinstance(e, RequestCancelled)]
        self.assertEqual(len(delivered), 300)
        gone = sids[:100]
        self.assertEqual(cancelled, [RequestCancelled(sid) for sid in gone])
        self.answer_all(delivered)
        got = answered(self.reply())
        self.assertEqual(sorted(got), sorted(set(sids) - set(gone)))
        self.assertEqual(goaways(self.reply()), [])


class FlowControlTests(_Case):
    def test_large_answer_small_window(self) -> None:
        c = self.client
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        self.send()
        self.reply()
        c.send_headers(1, request(), end_stream=True)
        self.send()
        body = bytes(range(256)) * 160  # 40,960 bytes
        self.server.answer(1, 200, [], body)
        received = b""
        for _ in range(100):
            events = self.reply()
            chunk = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            self.assertLessEqual(len(chunk), 1000)
            received += chunk
            if answered(events):
                break
            c.acknowledge_received_data(len(chunk), 1)
            self.send()
        self.assertEqual(received, body)

    def test_connection_window_shared_by_answers(self) -> None:
        """Three 32 KB answers exceed the 65,535-byte connection window: the
        rest goes when the client opens it."""
        c = self.client
        for sid in (1, 3, 5):
            c.send_headers(sid, request(), end_stream=True)
        self.send()
        for sid in (1, 3, 5):
            self.server.answer(sid, 200, [], b"%d" % sid * 32_000)
        events = self.reply()
        sent = sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived))
        self.assertEqual(sent, 65_535)
        c.acknowledge_received_data(32_000, 1)
        c.acknowledge_received_data(32_000, 3)
        self.send()
        got = answered(events + self.reply())
        self.assertEqual(got, {sid: b"%d" % sid * 32_000 for sid in (1, 3, 5)})

    def test_received_data_is_credited(self) -> None:
        """More request bodies than the 16 MiB connection window: credited back."""
        c = self.client
        self.send()
        self.reply()
        start = c.outbound_flow_control_window
        for i in range(600):
            sid = 2 * i + 1
            c.send_headers(sid, request(), end_stream=False)
            c.send_data(sid, b"x" * 15_000)
            c.send_data(sid, b"x" * 15_000, end_stream=True)
            self.answer_all(self.send())
            self.reply()
        self.assertGreater(600 * 30_000, start)
        self.assertGreater(c.outbound_flow_control_window, 0)


class LimitTests(_Case):
    def test_too_large_content_length(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/", (b"content-length", b"40000")))
        self.assertEqual(self.send(), [RequestRefused(1, 413, TOO_LARGE_BODY)])
        events = self.reply()
        self.assertEqual(statuses(events), {1: 413})
        self.assertEqual(answered(events), {1: TOO_LARGE_BODY})
        [reset] = [e for e in events if isinstance(e, h2.events.StreamReset)]
        self.assertEqual(reset.error_code, Codes.NO_ERROR)
        self.assertEqual(TOO_LARGE_BODY, TOO_LARGE.body)
        # the rest of the body, sent before the client saw the reset, is ignored
        data = DataFrame(1, data=b"x" * 1000).serialize()
        self.assertEqual(self.send(data), [])
        c.send_headers(3, request(b"POST", b"/3"), end_stream=True)
        self.assertEqual(len(self.requests(self.send())), 1)

    def test_body_over_the_limit(self) -> None:
        c = self.client
        c.send_headers(1, request(), end_stream=False)
        for _ in range(3):
            c.send_data(1, b"x" * 12_000)
        self.assertEqual(self.send(), [RequestRefused(1, 413, TOO_LARGE_BODY)])
        self.assertEqual(statuses(self.reply()), {1: 413})

    def test_largest_body_is_delivered(self) -> None:
        c = self.client
        body = b"y" * MAX_PREPARE_LENGTH
        c.send_headers(1, request(b"POST", b"/", (b"content-length", b"%d" % len(body))))
        for i in range(0, len(body), 16384):
            c.send_data(1, body[i : i + 16384])
        c.end_stream(1)
        [req] = self.send()
        self.assertEqual(req.body, body)

    def test_a_reply_may_be_larger_than_a_prepare(self) -> None:
        """RFC 35's reply leg (Request-Id, no Callback-Url): up to the largest legal Reject."""
        c = self.client
        request_id = (b"request-id", b"42ee09c8-a6de-4ae3-8a47-4732b0cbb07b")
        body = b"r" * MAX_REJECT_LENGTH
        c.send_headers(1, request(b"POST", b"/", request_id), end_stream=False)
        for i in range(0, len(body), 16384):
            c.send_data(1, body[i : i + 16384])
        c.end_stream(1)
        [req] = self.requests(self.send())
        self.assertEqual(req.body, body)
        size = b"%d" % len(body)
        for sid, fields in (
            (3, [(b"content-length", b"%d" % (len(body) + 1)), request_id]),
            (5, [(b"content-length", size)]),
            (7, [(b"content-length", size), request_id, (b"callback-url", b"http://x.example/")]),
        ):
            c.send_headers(sid, request(b"POST", b"/", *fields))
            [refused] = self.send()  # never delivered, only told of
            self.assertEqual(
                (type(refused), refused.stream_id, refused.status), (RequestRefused, sid, 413)
            )
            events = self.reply()
            self.assertEqual(statuses(events), {sid: 413})
            limit = MAX_REJECT_LENGTH if sid == 3 else MAX_PREPARE_LENGTH
            self.assertIn(b"the limit is %d bytes" % limit, answered(events)[sid])

    def test_too_many_header_fields(self) -> None:
        fields = [(b"x-%d" % i, b"v") for i in range(MAX_HEADERS + 1)]
        self.client.send_headers(1, request(b"POST", b"/", *fields), end_stream=True)
        self.assertEqual(self.send(), [RequestRefused(1, 431, b"too many header fields")])
        self.assertEqual(statuses(self.reply()), {1: 431})

    def test_incomplete_request_is_408_at_its_deadline(self) -> None:
        """A stream opened and never ended is answered 408 (and reset) once expired."""
        c = self.client
        c.send_headers(1, request(b"POST", b"/"))
        self.assertEqual(self.send(), [])
        self.now = 5.0
        c.send_headers(3, request(b"POST", b"/"))
        c.send_data(3, b"part")
        self.assertEqual(self.send(), [])
        self.assertEqual(self.server.oldest_incomplete(), 0.0)
        self.assertEqual(self.server.expire_incomplete(1.0), 1)  # stream 1 only
        self.assertEqual(self.server.next_events(), [RequestRefused(1, 408, b"request timed out")])
        self.assertEqual(statuses(self.reply()), {1: 408})
        self.assertEqual(self.server.oldest_incomplete(), 5.0)
        c.end_stream(3)
        [req] = self.requests(self.send())
        self.assertEqual(req.body, b"part")
        self.assertIsNone(self.server.oldest_incomplete())
        self.assertEqual(self.server.expire_incomplete(100.0), 0)

    def test_max_headers_is_a_parameter(self) -> None:
        server = ServerSession(max_headers=2)
        server.initiate()
        client = h2_client()
        client.send_headers(1, request(b"POST", b"/", (b"a", b"1"), (b"b", b"2"), (b"c", b"3")))
        self.assertEqual(
            server.receive_data(client.data_to_send(), 0.0),
            [RequestRefused(1, 431, b"too many header fields")],
        )
        self.assertEqual(statuses(client.receive_data(server.data_to_send())), {1: 431})

    def test_max_concurrent_streams(self) -> None:
        """One stream over the advertised limit is refused; the others go on."""
        c = self.client
        sids = [2 * i + 1 for i in range(MAX_STREAMS + 1)]
        for sid in sids:
            c.send_headers(sid, request(b"POST", b"/%d" % sid), end_stream=True)
        events = self.send()
        self.assertEqual(len(self.requests(events)), MAX_STREAMS)
        reply = self.reply()
        [refused] = [e for e in reply if isinstance(e, h2.events.StreamReset)]
        self.assertEqual((refused.stream_id, refused.error_code), (sids[-1], Codes.REFUSED_STREAM))
        self.answer_all(events)
        self.assertEqual(len(answered(self.reply())), MAX_STREAMS)
        c.send_headers(sids[-1] + 2, request(), end_stream=True)
        self.assertEqual(len(self.requests(self.send())), 1)


class StopTests(_Case):
    def test_stop_drains_then_closes(self) -> None:
        c = self.client
        c.state_machine = goaway_tolerant_state_machine()
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        self.send()
        self.server.stop(5.0)
        self.assertEqual(self.server.timer.kind if self.server.timer else None, "drain")
        goaway_bytes = self.server.data_to_send()
        # a new stream (sent before the client saw the GOAWAY) is refused
        c.send_headers(3, request(), end_stream=True)
        self.assertEqual(self.send(), [])
        [goaway] = goaways(self.client.receive_data(goaway_bytes))
        self.assertEqual((goaway.error_code, goaway.last_stream_id), (Codes.NO_ERROR, 1))
        # the open one is answered, then the connection closes
        self.server.answer(1, 200, [], b"last")
        self.assertEqual(self.server.next_events(), [CloseConnection()])
        reply = self.reply()
        self.assertEqual(answered(reply), {1: b"last"})
        self.assertEqual(statuses(reply), {1: 200})
        [refused] = [e for e in reply if isinstance(e, h2.events.StreamReset)]
        self.assertEqual((refused.stream_id, refused.error_code), (3, Codes.REFUSED_STREAM))

    def test_drain_timeout_cancels(self) -> None:
        self.client.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        self.send()
        self.server.stop(5.0)
        timer = self.server.timer
        assert timer is not None
        self.server.timer_expired(timer)
        self.assertEqual(self.server.next_events(), [RequestCancelled(1), CloseConnection()])

    def test_stop_now_when_idle(self) -> None:
        self.send()
        self.server.stop(5.0)
        self.assertEqual(self.server.next_events(), [CloseConnection()])
        self.assertEqual(len(goaways(self.reply())), 1)

    def test_idle_timeout(self) -> None:
        """No open request for IDLE_TIMEOUT seconds: GOAWAY(NO_ERROR) and close."""
        idle = self.server.timer
        assert idle is not None and idle.kind == "idle"
        self.assertEqual(idle.seconds, IDLE_TIMEOUT)
        self.client.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        self.send()
        self.assertIsNone(self.server.timer)  # a request is open
        self.server.answer(1, 200, [], b"ok")
        again = self.server.timer
        assert again is not None and again.kind == "idle"
        self.server.timer_expired(idle)  # an old deadline is ignored
        self.assertEqual(self.server.next_events(), [])
        self.server.timer_expired(again)
        self.assertEqual(self.server.next_events(), [CloseConnection()])
        [goaway] = goaways(self.reply())
        self.assertEqual((goaway.error_code, goaway.last_stream_id), (Codes.NO_ERROR, 1))

    def test_reset_of_the_last_stream_while_draining_closes(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        self.send()
        self.server.stop(5.0)
        c.reset_stream(1, error_code=Codes.CANCEL)
        self.assertEqual(self.send(), [RequestCancelled(1), CloseConnection()])

    def test_client_goaway(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        c.close_connection()
        events = self.send()
        self.server.answer(1, 200, [], b"still")
        self.assertEqual(self.server.next_events(), [CloseConnection()])
        self.assertEqual(len(self.requests(events)), 1)

    def test_connection_lost_cancels_delivered(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        c.send_headers(3, request(b"POST", b"/3"), end_stream=False)
        self.send()
        self.server.connection_lost()
        self.assertEqual(self.server.next_events(), [RequestCancelled(1)])
        self.assertEqual(self.server.data_to_send(), b"")


class BadClientTests(_Case):
    def expect_goaway(self, events: list[Any], code: int) -> Any:
        self.assertEqual(events[-1], CloseConnection())
        [goaway] = goaways(self.reply())
        self.assertEqual(goaway.error_code, code)
        self.assertEqual(self.server.data_to_send(), b"")
        return goaway

    def test_garbage_after_preface(self) -> None:
        self.send()
        events = self.send(HeadersFrame(2, data=b"\x82", flags=["END_HEADERS"]).serialize())
        self.assertIsInstance(events[0], ConnectionError)
        self.assertEqual(events[0].error_code, Codes.PROTOCOL_ERROR)
        self.expect_goaway(events, Codes.PROTOCOL_ERROR)
        self.assertEqual(self.send(b"more"), [])

    def test_no_preface(self) -> None:
        events = self.server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
        self.assertIsInstance(events[0], ConnectionError)
        self.assertEqual(events[-1], CloseConnection())

    def test_protocol_error_cancels_delivered(self) -> None:
        c = self.client
        c.send_headers(1, request(b"POST", b"/1"), end_stream=True)
        self.send()
        events = self.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA on stream 0
        self.assertEqual(events[0], RequestCancelled(1))
        self.assertIsInstance(events[1], ConnectionError)

    def calm(self, events: list[Any], reason: str) -> None:
        [calmed] = [e for e in events if isinstance(e, Calmed)]
        self.assertEqual(calmed.reason, reason)
        goaway = self.expect_goaway(events, Codes.ENHANCE_YOUR_CALM)
        self.assertEqual(goaway.additional_data, reason.encode())

    def test_rapid_reset(self) -> None:
        c = self.client
        self.send()
        delivered = 0
        for i in range(3_000):
            sid = 2 * i + 1
            c.send_headers(sid, request(b"POST", b"/later"), end_stream=True)
            c.reset_stream(sid)
            events = self.send()
            delivered += len(self.requests(events))
            if self.server.closing:
                break
        self.assertEqual(delivered, 0)  # reset in the read that opened them
        self.assertLess(i, h2_guard.CLIENT_RESET_BURST + 1)
        self.calm(events, "RST_STREAM rate")

    def test_rapid_reset_across_reads(self) -> None:
        c = self.client
        self.send()
        all_events: list[Any] = []
        for i in range(3_000):
            sid = 2 * i + 1
            c.send_headers(sid, request(b"POST", b"/later"), end_stream=True)
            all_events += self.send()
            c.reset_stream(sid)
            all_events += self.send()
            if self.server.closing:
                break
        self.assertLessEqual(len(self.requests(all_events)), h2_guard.CLIENT_RESET_BURST + 1)
        self.calm(all_events, "RST_STREAM rate")

    def test_provoked_server_resets(self) -> None:
        """MadeYouReset (CVE-2025-8671): WINDOW_UPDATEs that make h2 reset streams."""
        c = self.client
        self.send()
        events: list[Any] = []
        for i in range(500):
            sid = 2 * i + 1
            c.send_headers(sid, request(b"POST", b"/later"), end_stream=True)
            overflow = WindowUpdateFrame(sid, window_increment=2**31 - 1).serialize()
            events += self.send(c.data_to_send() + overflow)
            self.server.data_to_send()  # the server's resets are counted as they go out
            events += self.server.next_events()
            if self.server.closing:
                break
        self.assertLessEqual(i, h2_guard.SERVER_RESET_BURST + 1)
        [calmed] = [e for e in events if isinstance(e, Calmed)]
        self.assertEqual(calmed.reason, "server RST_STREAM rate")

    def test_ping_flood(self) -> None:
        c = self.client
        self.send()
        for i in range(1_000):
            c.ping(b"%08d" % i)
        self.calm(self.send(), "PING rate")

    def test_settings_flood(self) -> None:
        self.send()
        flood = SettingsFrame(0, settings={4: 65535}).serialize() * 1_000
        self.calm(self.send(flood), "SETTINGS rate")

    def test_priority_flood(self) -> None:
        self.send()
        flood = b"".join(
            PriorityFrame(2 * i + 1, depends_on=0, stream_weight=15).serialize()
            for i in range(1_000)
        )
        self.calm(self.send(flood), "PRIORITY rate")

    def test_empty_data_flood(self) -> None:
        c = self.client
        c.send_headers(1, request(), end_stream=False)
        self.send()
        self.calm(self.send(DataFrame(1, data=b"").serialize() * 1_000), "empty DATA rate")

    def test_continuation_flood(self) -> None:
        self.send()
        flood = (
            HeadersFrame(1, data=b"").serialize() + ContinuationFrame(1, data=b"").serialize() * 100
        )
        self.calm(self.send(flood), "CONTINUATION frames in one header block")
