"""RFC 35 asynchronous mode, the pure core: Request-Id, the callback allow-list,
the sender's pending Prepares, both legs' statuses and the reply retry schedule.

No reactor: times are plain numbers, as the core takes them.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ilphttp import client
from ilphttp.callbacks import CallbackPolicy, CallbackUrlError, normalize
from ilphttp.config import options_from_js
from ilphttp.multi import ChildUrlTemplate
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    Reject,
    Reply,
    deserialize,
    serialize_fulfill,
)
from ilphttp.pending import PendingPrepares, Registration
from ilphttp.replies import check_reply_body, reject_for_status
from ilphttp.rfc35 import (
    FIRST_RETRY_DELAY,
    MAX_ATTEMPT_TIMEOUT,
    MAX_RETRY_DELAY,
    MIN_ATTEMPT_TIMEOUT,
    REPLY_GRACE,
    RETRY_BACKOFF,
    AsyncRequest,
    PrepareLeg,
    Refusal,
    ReplyLeg,
    attempt_timeout,
    callback_policy,
    classify_prepare,
    new_request_id,
    parse_request_id,
    prepare_leg,
    reply_leg,
    retry_delay,
)
from tests.support.packets import CLOCK_START, known_fulfillment, make_prepare, reject_bytes

V4 = "42ee09c8-a6de-4ae3-8a47-4732b0cbb07b"  # RFC 35's example
ME = "test.me"


class RequestIdTests(SynchronousTestCase):
    def test_new_ids_are_fresh_canonical_uuid4(self) -> None:
        ids = {new_request_id() for _ in range(200)}
        self.assertEqual(len(ids), 200)
        for request_id in ids:
            self.assertEqual(uuid.UUID(request_id).version, 4)
            self.assertEqual(str(uuid.UUID(request_id)), request_id)
            self.assertEqual(parse_request_id(request_id), request_id)

    def test_accepted(self) -> None:
        v1 = str(uuid.uuid1())
        v7 = "018f3c1e-7b2a-7c3d-9e4f-0a1b2c3d4e5f"
        cases: list[tuple[str | bytes, str]] = [
            (V4, V4),
            (V4.upper(), V4),
            ("42EE09c8-A6de-4ae3-8A47-4732b0cbb07B", V4),
            (V4.encode(), V4),
            (v1, v1),
            (v7, v7),
        ]
        for given, expected in cases:
            self.assertEqual(parse_request_id(given), expected, given)

    def test_refused(self) -> None:
        cases: list[str | bytes] = [
            "",
            "42",
            "00000000-0000-0000-0000-000000000000",  # nil
            "ffffffff-ffff-ffff-ffff-ffffffffffff",  # max
            "{" + V4 + "}",
            "urn:uuid:" + V4,
            V4.replace("-", ""),
            V4 + "0",
            V4[:-1],
            V4 + "\n",
            " " + V4[1:],
            "42ee09c8-a6de-4ae3-ca47-4732b0cbb07b",  # variant 110 (Microsoft)
            "42ee09c8-a6de-0ae3-8a47-4732b0cbb07b",  # version 0
            "42ee09c8-a6de-4ae3-8a47-4732b0cbb07g",
            "42ee09c8_a6de_4ae3_8a47_4732b0cbb07b",
            "\uff14\uff12ee09c8-a6de-4ae3-8a47-4732b0cbb07b",  # fullwidth digits
            b"\xff" * 36,
        ]
        for given in cases:
            with self.assertRaises(ValueError, msg=repr(given)) as caught:
                parse_request_id(given)
            self.assertIn("Request-Id", str(caught.exception))


PEER = "https://peer.example/ilp"
PREFIXES = ("https://cb.example/cb", "http://10.0.0.7:8080/replies/", "https://[2001:db8::1]/")


class CallbackPolicyTests(SynchronousTestCase):
    """Only the peer's origin, the child's URL and the listed prefixes are allowed."""

    policy = CallbackPolicy(PREFIXES, peer_url=PEER)

    def test_allowed_and_normalized(self) -> None:
        cases = [
            ("https://peer.example/incoming/ilp", "https://peer.example/incoming/ilp"),
            ("https://peer.example", "https://peer.example/"),
            ("HTTPS://PEER.Example/x", "https://peer.example/x"),
            ("https://peer.example./x", "https://peer.example/x"),
            ("https://peer.example:443/x", "https://peer.example/x"),
            ("https://peer.example/x?node=3", "https://peer.example/x?node=3"),
            ("https://peer.example/%7euser/%2fa", "https://peer.example/~user/%2Fa"),
            ("https://cb.example/cb", "https://cb.example/cb"),
            ("https://cb.example/cb/", "https://cb.example/cb/"),
            ("https://cb.example/cb/node-1", "https://cb.example/cb/node-1"),
            ("https://cb.example/%63b/x", "https://cb.example/cb/x"),
            ("http://10.0.0.7:8080/replies/a", "http://10.0.0.7:8080/replies/a"),
            ("https://[2001:DB8:0:0::1]:443/r", "https://[2001:db8::1]/r"),
        ]
        for url, expected in cases:
            decision = self.policy.check(url)
            self.assertTrue(decision.allowed, (url, decision))
            self.assertEqual(decision.url, expected, url)
            self.assertEqual(decision.reason, "")

    def test_refused(self) -> None:
        not_listed = "not on this account's allow-list"
        cases = [
            ("https://peer.example@evil.example/", "user information"),
            ("https://user:pw@peer.example/", "user information"),
            ("https://peer.example.evil.example/", not_listed),
            ("https://evil.example/peer.example/", not_listed),
            ("https://peer.example:8443/", not_listed),
            ("http://peer.example/", not_listed),
            ("https://cb.example/cbx", not_listed),
            ("https://cb.example/c", not_listed),
            ("https://cb.example/cb%2Fx", not_listed),
            ("https://cb.example/cb/../admin", "dot segments"),
            ("https://cb.example/cb/%2e%2E/admin", "dot segments"),
            ("https://cb.example/cb/./x", "dot segments"),
            ("http://10.0.0.7:8080/replies", not_listed),
            ("http://10.0.0.7/replies/", not_listed),
            ("https://[2001:db8::2]/", not_listed),
            ("https://[fe80::1%25eth0]/", "zone"),
            ("https://[::1/", "not a valid URL"),
            ("https://peer.example/x#frag", "fragment"),
            ("https://peer.example/#", "fragment"),
            ("ftp://peer.example/", "http:// or https://"),
            ("javascript:alert(1)", "http:// or https://"),
            ("//peer.example/", "http:// or https://"),
            ("https:peer.example/", "http:// or https://"),
            ("/relative", "http:// or https://"),
            ("", "http:// or https://"),
            ("https://peer%2eexample/", "percent-encoded host"),
            ("https://peer.example\\@evil.example/", "may not contain"),
            ("https://peer.example/a b", "may not contain"),
            ("https://peer.example/\r\nX: y", "may not contain"),
            ("https://peer.exämple/", "may not contain"),
            ("https://peer.example/%zz", "percent-escape"),
            ("https://peer.example/100%", "percent-escape"),
            ("https://peer.example:0/", "port"),
            ("https://peer.example:99999/", "not a valid URL"),
            ("https://peer.example:x/", "not a valid URL"),
            ("https:///x", "no host"),
            ("https://peer..example/", "invalid host name"),
            ("https://-peer.example/", "invalid host name"),
            ("https://2130706433/", "not a dotted-quad"),
            ("https://0x7f.1/", "not a dotted-quad"),
            ("https://127.1/", "not a dotted-quad"),
            ("https://peer.example/" + "a" * 2048, "longer than 2048"),
        ]
        for url, reason in cases:
            decision = self.policy.check(url)
            self.assertFalse(decision.allowed, url)
            self.assertIsNone(decision.url)
            self.assertIn(reason, decision.reason, url)
            self.assertTrue(decision.reason.startswith("Callback-Url"), decision.reason)

    def test_not_a_string(self) -> None:
        self.assertIn("must be a string", self.policy.check(b"https://peer.example/").reason)  # type: ignore[arg-type]

    def test_nothing_allowed_without_peer_url_or_prefixes(self) -> None:
        decision = CallbackPolicy().check("https://peer.example/")
        self.assertIsNone(decision.url)
        self.assertIn("no Callback-Url is allowed", decision.reason)

    def test_prefixes_alone(self) -> None:
        policy = CallbackPolicy(["https://cb.example/"])
        self.assertTrue(policy.check("https://cb.example/anything").allowed)
        self.assertFalse(policy.check("https://peer.example/").allowed)

    def test_the_peer_url_gives_its_origin_not_its_user_or_path(self) -> None:
        policy = CallbackPolicy(peer_url="https://me:secret@Peer.Example:8443/deep/ilp#x")
        self.assertEqual(
            policy.check("https://peer.example:8443/other").url, "https://peer.example:8443/other"
        )
        self.assertFalse(policy.check("https://peer.example/other").allowed)

    def test_bad_prefixes_are_refused(self) -> None:
        for prefix, reason in [
            ("https://cb.example/cb?x=1", "query"),
            ("https://u@cb.example/", "user information"),
            ("https://cb.example/#", "fragment"),
            ("cb.example/cb", "http:// or https://"),
        ]:
            with self.assertRaises(CallbackUrlError, msg=prefix) as caught:
                CallbackPolicy([prefix])
            self.assertIn(reason, str(caught.exception))

    def test_normal_form(self) -> None:
        url = normalize("HTTP://[::FFFF:1.2.3.4]:80/A%2f%41?q=%41")
        self.assertEqual(
            (url.scheme, url.host, url.port, url.path, url.query),
            ("http", "::ffff:102:304", 80, "/A%2FA", "q=%41"),
        )
        self.assertEqual(url.geturl(), "http://[::ffff:102:304]/A%2FA?q=%41")
        self.assertEqual(normalize("https://h.example:8443").geturl(), "https://h.example:8443/")


class MultiCallbackPolicyTests(SynchronousTestCase):
    """Multi accounts: the child's own URL from the template, no other child's."""

    def check(self, template: str, url: str, child: str | None) -> bool:
        policy = CallbackPolicy(child_template=ChildUrlTemplate(template, "%", (8000, 8999)))
        return policy.check(url, child).allowed

    def test_table(self) -> None:
        cases = [
            # the name fills the port: that origin
            ("http://127.0.0.1:%/", "http://127.0.0.1:8001/cb", "8001", True),
            ("http://127.0.0.1:%/", "http://127.0.0.1:8002/cb", "8001", False),
            ("http://127.0.0.1:%/", "http://127.0.0.1:9001/cb", "9001", False),  # out of range
            # the name fills the host: that origin
            ("https://%.kids.example/ilp", "https://bob.kids.example/cb", "bob", True),
            ("https://%.kids.example/ilp", "https://BOB.kids.example./cb", "bob", True),
            ("https://%.kids.example/ilp", "https://eve.kids.example/cb", "bob", False),
            ("https://%.kids.example/ilp", "https://kids.example/cb", "bob", False),
            # the name fills the path: the path up to the end of its segment
            ("https://hub.example/kids/%/ilp", "https://hub.example/kids/bob", "bob", True),
            ("https://hub.example/kids/%/ilp", "https://hub.example/kids/bob/cb", "bob", True),
            ("https://hub.example/kids/%/ilp", "https://hub.example/kids/bobby/cb", "bob", False),
            ("https://hub.example/kids/%/ilp", "https://hub.example/kids/eve/cb", "bob", False),
            ("https://hub.example/kids/%/ilp", "https://hub.example/kids/", "bob", False),
            ("https://hub.example/k-%-x/ilp", "https://hub.example/k-bob-x/cb", "bob", True),
            ("https://hub.example/k-%-x/ilp", "https://hub.example/k-bob/cb", "bob", False),
            # no child, or a name the template cannot take
            ("https://hub.example/kids/%/ilp", "https://hub.example/kids/bob", None, False),
            ("https://%.kids.example/ilp", "https://a_b.kids.example/", "a_b", False),
        ]
        for template, url, child, allowed in cases:
            self.assertEqual(self.check(template, url, child), allowed, (template, url, child))

    def test_prefixes_apply_to_every_child(self) -> None:
        policy = CallbackPolicy(
            ["https://cb.example/"], child_template=ChildUrlTemplate("http://127.0.0.1:%/")
        )
        self.assertTrue(policy.check("https://cb.example/x", "8001").allowed)
        self.assertTrue(policy.check("https://cb.example/x", None).allowed)


class CallbackPolicyFromOptionsTests(SynchronousTestCase):
    def test_table(self) -> None:
        single = {"outgoing": {"url": PEER, "staticToken": "t"}}
        listed = {
            "incoming": {"staticToken": "t", "callbackUrls": ["https://cb.example/cb"]},
            "outgoing": {"url": PEER, "staticToken": "t"},
        }
        receive_only = {"incoming": {"staticToken": "t", "callbackUrls": ["https://cb.example/"]}}
        multi = {"multi": True, "outgoing": {"url": "https://%.kids.example/", "staticToken": "t"}}
        cases: list[tuple[dict[str, Any], str, str | None, bool]] = [
            (single, "https://peer.example/cb", None, True),
            (single, "https://cb.example/cb", None, False),
            (listed, "https://cb.example/cb/1", None, True),
            (listed, "https://peer.example/cb", None, True),
            (receive_only, "https://cb.example/x", None, True),
            (receive_only, "https://peer.example/x", None, False),
            (multi, "https://bob.kids.example/cb", "bob", True),
            (multi, "https://bob.kids.example/cb", "eve", False),
        ]
        for options, url, child, allowed in cases:
            policy = callback_policy(options_from_js(options))
            self.assertEqual(policy.check(url, child).allowed, allowed, (options, url, child))


class ClassifyPrepareTests(SynchronousTestCase):
    """Which Prepares are answered asynchronously, synchronously, or refused (400)."""

    policy = CallbackPolicy(peer_url=PEER)

    def test_table(self) -> None:
        cb = "https://peer.example/cb"
        cases: list[tuple[list[Any], list[Any], AsyncRequest | Refusal | None]] = [
            ([], [], None),
            ([V4], [], None),  # a tracing Request-Id alone: synchronous
            (["|abc.1."], [], None),
            ([V4], [cb], AsyncRequest(V4, cb)),
            ([V4.upper().encode()], [cb.encode()], AsyncRequest(V4, cb)),
            ([V4], ["HTTPS://Peer.Example:443/cb"], AsyncRequest(V4, cb)),
            ([], [cb], Refusal("Callback-Url without Request-Id")),
            ([V4, V4], [cb], Refusal("more than one Request-Id")),
            ([V4], [cb, cb], Refusal("more than one Callback-Url")),
            (["nope"], [cb], Refusal("Request-Id must be a UUID (8-4-4-4-12 hex digits)")),
            (
                [V4],
                ["https://peer.example/\xe9".encode("latin-1")],
                Refusal("Callback-Url must be ASCII"),
            ),
        ]
        for request_ids, urls, expected in cases:
            self.assertEqual(
                classify_prepare(request_ids, urls, self.policy), expected, (request_ids, urls)
            )

    def test_a_url_not_allowed_is_refused_with_the_policy_reason(self) -> None:
        for url in ["https://evil.example/", "https://peer.example@evil/", "not a url"]:
            result = classify_prepare([V4], [url], self.policy)
            self.assertIsInstance(result, Refusal)
            self.assertEqual(result, Refusal(self.policy.check(url).reason))

    def test_child_is_passed_on(self) -> None:
        policy = CallbackPolicy(child_template=ChildUrlTemplate("https://%.kids.example/"))
        url = "https://bob.kids.example/cb"
        self.assertEqual(classify_prepare([V4], [url], policy, "bob"), AsyncRequest(V4, url))
        self.assertIsInstance(classify_prepare([V4], [url], policy, "eve"), Refusal)


class LegStatusTests(SynchronousTestCase):
    def test_prepare_leg(self) -> None:
        cases = [(202, PrepareLeg.ACCEPTED), (200, PrepareLeg.REPLIED)]
        cases += [(s, PrepareLeg.FAILED) for s in (201, 204, 301, 400, 401, 413, 500, 503)]
        for status, expected in cases:
            self.assertEqual(prepare_leg(status), expected, status)

    def test_reply_leg(self) -> None:
        cases: list[tuple[int | None, ReplyLeg]] = [(None, ReplyLeg.RETRY)]
        cases += [(s, ReplyLeg.DELIVERED) for s in (200, 201, 202, 204, 299)]
        cases += [(s, ReplyLeg.REFUSED) for s in (400, 401, 404, 408, 409, 429, 499)]
        cases += [(s, ReplyLeg.REFUSED) for s in (100, 301, 302, 307)]  # no redirects
        cases += [(s, ReplyLeg.RETRY) for s in (500, 502, 503, 504, 599)]
        for status, expected in cases:
            self.assertEqual(reply_leg(status), expected, status)

    def test_status_table_is_the_sync_one(self) -> None:
        # One rule: the client's status table is the core's.
        self.assertIs(client.reject_for_status, reject_for_status)
        codes = {s: reject_for_status(s, ME).code for s in (201, 401, 403, 404, 500, 503)}
        self.assertEqual(
            codes, {201: "T00", 401: "T00", 403: "T00", 404: "F00", 500: "T00", 503: "T00"}
        )


class RetryScheduleTests(SynchronousTestCase):
    def test_delays_grow_then_cap(self) -> None:
        expires_at = 1000.0
        delays = [retry_delay(n, 0.0, expires_at) for n in range(1, 12)]
        self.assertEqual(delays[0], FIRST_RETRY_DELAY)
        self.assertLessEqual(FIRST_RETRY_DELAY, 0.1)
        for before, after in zip(delays, delays[1:]):
            assert before is not None and after is not None
            self.assertEqual(after, min(before * RETRY_BACKOFF, MAX_RETRY_DELAY))
        self.assertEqual(delays[-1], MAX_RETRY_DELAY)
        self.assertEqual(retry_delay(10**6, 0.0, expires_at), MAX_RETRY_DELAY)

    def test_stops_at_expiry_plus_grace(self) -> None:
        expires_at = 100.0
        deadline = expires_at + REPLY_GRACE
        self.assertIsNone(retry_delay(1, deadline - FIRST_RETRY_DELAY, expires_at))
        self.assertIsNone(retry_delay(1, deadline + 5, expires_at))
        self.assertEqual(retry_delay(1, deadline - 1, expires_at), FIRST_RETRY_DELAY)
        self.assertIsNone(retry_delay(1, expires_at, expires_at, grace=0.0))
        self.assertRaises(ValueError, retry_delay, 0, 0.0, expires_at)

    def test_attempt_timeout(self) -> None:
        expires_at = 100.0
        deadline = expires_at + REPLY_GRACE
        cases = [
            (0.0, MAX_ATTEMPT_TIMEOUT),  # plenty of time
            (deadline - 3 * MAX_ATTEMPT_TIMEOUT, MAX_ATTEMPT_TIMEOUT),
            (deadline - 1.5, 0.5),  # a third of what is left
            (deadline - 0.6, MIN_ATTEMPT_TIMEOUT),
            (deadline - MIN_ATTEMPT_TIMEOUT / 2, MIN_ATTEMPT_TIMEOUT / 2),  # never past it
            (deadline, None),
            (expires_at + 60, None),
        ]
        for now, expected in cases:
            self.assertEqual(attempt_timeout(now, expires_at), expected, now)

    def simulate(self, expires_in: float, fails_after: float) -> list[tuple[float, float]]:
        """(start, end) of each attempt to a callback failing each after ``fails_after`` s."""
        now, attempts = 0.0, []
        while True:
            timeout = attempt_timeout(now, expires_in)
            if timeout is None:
                return attempts
            attempts.append((now, now + min(fails_after, timeout)))
            now = attempts[-1][1]
            delay = retry_delay(len(attempts), now, expires_in)
            if delay is None:
                return attempts
            now += delay

    def test_several_attempts_before_expiry(self) -> None:
        # RFC 35: "multiple attempts ... before the corresponding ILP Prepare expires"
        for expires_in in (1.0, 2.0, 5.0, 30.0):
            for fails_after in (0.0, 0.05, 1.0, 60.0):  # 503 at once ... never answers
                attempts = self.simulate(expires_in, fails_after)
                case = (expires_in, fails_after)
                self.assertGreaterEqual(len([a for a in attempts if a[0] < expires_in]), 2, case)
                self.assertLessEqual(attempts[-1][1], expires_in + REPLY_GRACE, case)
                # the first retry follows the first failure within FIRST_RETRY_DELAY
                self.assertAlmostEqual(attempts[1][0] - attempts[0][1], FIRST_RETRY_DELAY)


class PendingPreparesTests(SynchronousTestCase):
    """The sender's table: first reply wins, from the right account, before expiry."""

    def setUp(self) -> None:
        self.now = CLOCK_START
        self.made = make_prepare(self.now, expires_in=30.0)
        self.expires_at = self.now + 30.0
        self.table = PendingPrepares(max_pending=4)

    def register(self, request_id: str = V4, account: Any = "bob", **kw: Any) -> Registration:
        args: dict[str, Any] = {
            "condition": self.made.prepare.execution_condition,
            "expires_at": self.expires_at,
            "now": self.now,
            "triggered_by": ME,
        }
        args.update(kw)
        return self.table.register(request_id, account, **args)

    def test_a_fulfill_resolves_once(self) -> None:
        self.assertEqual(self.register(), Registration.REGISTERED)
        self.assertIn(V4, self.table)
        decision = self.table.reply([V4.upper()], "bob", self.made.fulfill(), self.now + 1)
        self.assertEqual((decision.status, decision.request_id), (200, V4))
        assert decision.reply is not None
        self.assertEqual(decision.reply, Reply(Fulfill(self.made.fulfillment), self.made.fulfill()))
        self.assertEqual(len(self.table), 0)
        again = self.table.reply([V4], "bob", self.made.fulfill(), self.now + 2)
        self.assertEqual((again.status, again.reply), (400, None))
        self.assertIn("already answered", again.reason)

    def test_refusals_resolve_nothing(self) -> None:
        self.register()
        body = self.made.fulfill()
        cases: list[tuple[list[Any], Any, float, str]] = [
            ([], "bob", self.now, "no Request-Id"),
            ([V4, V4], "bob", self.now, "more than one Request-Id"),
            (["x"], "bob", self.now, "Request-Id must be a UUID"),
            ([new_request_id()], "bob", self.now, "unknown Request-Id"),
            ([V4], "eve", self.now, "not pending for this account"),
        ]
        for request_ids, account, now, reason in cases:
            decision = self.table.reply(request_ids, account, body, now)
            self.assertEqual((decision.status, decision.reply), (400, None), reason)
            self.assertIn(reason, decision.reason)
            self.assertIn(V4, self.table, "still pending for bob")
        self.assertEqual(self.table.reply([V4], "bob", body, self.now).status, 200)

    def test_replies_checked_as_the_sync_path_checks_them(self) -> None:
        other = known_fulfillment()
        cases: list[tuple[bytes, int, str | None]] = [
            (self.made.fulfill(b"data"), 200, None),
            (self.made.fulfill() + b"trailing", 200, None),
            (reject_bytes("F99", "test.bob", "no"), 200, "F99"),
            (serialize_fulfill(Fulfill(other)), 200, ErrorCode.F05_WRONG_CONDITION),
            (b"", 400, ErrorCode.T00_INTERNAL_ERROR),
            (b"\x0e\x05abc", 400, ErrorCode.T00_INTERNAL_ERROR),
            (self.made.packet, 400, ErrorCode.T00_INTERNAL_ERROR),  # a Prepare
            (b"<html>oops</html>", 400, ErrorCode.T00_INTERNAL_ERROR),
        ]
        for i, (body, status, code) in enumerate(cases):
            request_id = str(uuid.UUID(int=i, version=4))
            self.register(request_id)
            decision = self.table.reply([request_id], "bob", body, self.now)
            self.assertEqual(decision.status, status, body)
            assert decision.reply is not None
            packet = decision.reply.packet
            self.assertEqual(deserialize(decision.reply.data), packet)
            if code is None:
                self.assertIsInstance(packet, Fulfill)
            else:
                assert isinstance(packet, Reject)
                self.assertEqual(packet.code, code)
            # the same answer as ilphttp.client.check_reply gives in sync mode
            self.assertEqual(decision.reply, client.check_reply(body, self.made.prepare, ME))
            checked = check_reply_body(body, self.made.prepare.execution_condition, ME)
            self.assertEqual(isinstance(checked, Reply), code is None or code == "F99")
            if status == 400:
                self.assertIn("not a valid ILP Fulfill or Reject", decision.reason)
            # answered: a retry of the same reply is refused, nothing resolved twice
            self.assertEqual(self.table.reply([request_id], "bob", body, self.now).status, 400)

    def test_expiry_leaves_no_trace(self) -> None:
        self.register(V4)
        answered = new_request_id()
        self.register(answered)
        self.table.reply([answered], "bob", self.made.fulfill(), self.now)
        late = new_request_id()
        self.register(late, expires_at=self.expires_at + 10)
        self.assertEqual((len(self.table), self.table.answered), (2, 1))
        self.assertEqual(self.table.next_expiry(), self.expires_at)
        self.assertEqual(self.table.expire(self.expires_at - 0.001), [])
        self.assertEqual(self.table.expire(self.expires_at), [V4])
        self.assertEqual((len(self.table), self.table.answered), (1, 0))
        after = self.table.reply([answered], "bob", self.made.fulfill(), self.expires_at)
        self.assertIn("unknown", after.reason)
        self.assertEqual(self.table.expire(self.expires_at + 10), [late])
        self.assertEqual((len(self.table), self.table.answered), (0, 0))
        self.assertIsNone(self.table.next_expiry())

    def test_a_reply_after_expiry_is_refused_even_before_expire_runs(self) -> None:
        self.register()
        decision = self.table.reply([V4], "bob", self.made.fulfill(), self.expires_at)
        self.assertEqual((decision.status, decision.reply), (400, None))
        self.assertIn("expired", decision.reason)
        self.assertNotIn(V4, self.table)

    def test_registration_refusals(self) -> None:
        self.assertEqual(self.register(expires_at=self.now), Registration.EXPIRED)
        self.assertEqual(self.register(), Registration.REGISTERED)
        self.assertEqual(self.register(V4.upper()), Registration.DUPLICATE)
        self.table.reply([V4], "bob", self.made.fulfill(), self.now)
        self.assertEqual(self.register(), Registration.DUPLICATE, "answered, until expiry")
        for _ in range(4):
            self.assertEqual(self.register(new_request_id()), Registration.REGISTERED)
        self.assertEqual(self.register(new_request_id()), Registration.FULL)
        # when full, expired entries make room
        self.now = self.expires_at
        self.assertEqual(
            self.register(new_request_id(), expires_at=self.now + 5), Registration.REGISTERED
        )
        self.assertEqual(len(self.table), 1)
        self.assertRaises(ValueError, PendingPrepares, 0)

    def test_cancel(self) -> None:
        self.register()
        self.assertTrue(self.table.cancel(V4.upper()))
        self.assertFalse(self.table.cancel(V4))
        self.assertIn(
            "unknown", self.table.reply([V4], "bob", self.made.fulfill(), self.now).reason
        )
        self.assertEqual(self.register(), Registration.REGISTERED, "the id is free again")

    def test_answered_ids_are_bounded(self) -> None:
        table = PendingPrepares(max_pending=10, max_answered=2)
        ids = [new_request_id() for _ in range(3)]
        for request_id in ids:
            table.register(request_id, "bob", b"\0" * 32, self.expires_at, self.now, ME)
            table.reply([request_id], "bob", reject_bytes("F99"), self.now)
        self.assertEqual(table.answered, 2)
        self.assertIn("unknown", table.reply([ids[0]], "bob", b"", self.now).reason)
        self.assertIn("already answered", table.reply([ids[2]], "bob", b"", self.now).reason)

    def test_ten_thousand_unanswered_prepares_are_forgotten(self) -> None:
        table = PendingPrepares(max_pending=10_000)
        for i in range(10_000):
            table.register(new_request_id(), "bob", b"\0" * 32, self.now + 1 + i % 7, self.now, ME)
        self.assertEqual(len(table), 10_000)
        self.assertEqual(len(table.expire(self.now + 8)), 10_000)
        self.assertEqual((len(table), table.answered, table.next_expiry()), (0, 0, None))

    def test_cancelled_entries_do_not_pile_up(self) -> None:
        table = PendingPrepares()
        for _ in range(5_000):
            request_id = new_request_id()
            table.register(request_id, "bob", b"\0" * 32, self.expires_at, self.now, ME)
            table.cancel(request_id)
        # the expiry heap is rebuilt when dead entries outnumber live ones
        self.assertLessEqual(len(table._expiries), 64 + 1)
        self.assertEqual(table.expire(self.expires_at), [])
        self.assertIsNone(table.next_expiry())

    def test_accounts_are_any_hashable(self) -> None:
        self.register(account=("kids", "bob"))
        self.assertEqual(
            self.table.reply([V4], ("kids", "eve"), self.made.fulfill(), self.now).status, 400
        )
        self.assertEqual(
            self.table.reply([V4], ("kids", "bob"), self.made.fulfill(), self.now).status, 200
        )
