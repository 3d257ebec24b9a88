"""Tests for ilphttp.ildcp: IL-DCP (RFC 31) requests, responses, fetch and serve.

Vectors: ``vectors/ilp-protocol-ildcp/examples.json``, the hex examples of the npm
``ilp-protocol-ildcp`` tests (interledgerjs/ilp-protocol-ildcp ``test/index.test.ts``,
commit 5860f9311fe5279c12391283ac4d9dce8d3e9447, v2.0.2, Apache-2.0); see
tests/vectors/README.md. The differential test against the installed npm package is
in test_packet_differential.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import ildcp
from ilphttp.ildcp import (
    ILDCP_CONDITION,
    ILDCP_DESTINATION,
    ILDCP_FULFILLMENT,
    IldcpError,
    IldcpResponse,
    deserialize_response,
    is_ildcp_request,
    request_prepare,
    serialize_request,
    serialize_response,
    serve,
)
from ilphttp.packet import (
    Fulfill,
    Prepare,
    Reject,
    deserialize_fulfill,
    deserialize_prepare,
    deserialize_reject,
    serialize,
    serialize_fulfill,
)
from ilphttp.plugin import fetch_ildcp as fetch
from tests.support.packets import var_octets
from tests.support.vectors import load_vector

UTC = dt.timezone.utc
ADDRESS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-"
EXAMPLE = IldcpResponse("example.client", 13, "XAM")


def load_examples() -> Any:
    return load_vector("ilp-protocol-ildcp", "examples.json")


def response_with_data(data: bytes, fulfillment: bytes = ILDCP_FULFILLMENT) -> bytes:
    return serialize_fulfill(Fulfill(fulfillment, data))


class VectorTests(SynchronousTestCase):
    """ilp-protocol-ildcp's own examples (Apache-2.0, see the module docstring)."""

    def setUp(self) -> None:
        self.v = load_examples()
        self.request = bytes.fromhex(self.v["request"]["binary"])
        self.response = bytes.fromhex(self.v["response"]["binary"])

    def test_condition_constant(self) -> None:
        # ilp-protocol-ildcp's PEER_PROTOCOL_CONDITION, base64
        self.assertEqual(
            ILDCP_CONDITION,
            base64.b64decode("Zmh6rfhivXdsj8GLjp+OIAiXFIVu4jOzkCpZHQ1fKSU="),
        )
        self.assertEqual(ILDCP_FULFILLMENT, bytes(32))
        self.assertEqual(ILDCP_DESTINATION, "peer.config")

    def test_serialize_request(self) -> None:
        expires = dt.datetime(2015, 6, 16, 0, 1, tzinfo=UTC)  # the tests' frozen clock + 60 s
        self.assertEqual(serialize_request(expires), self.request)
        self.assertEqual(
            request_prepare(expires), Prepare(0, expires, ILDCP_CONDITION, "peer.config", b"")
        )

    def test_deserialize_request(self) -> None:
        prepare = deserialize_prepare(self.request)
        self.assertTrue(is_ildcp_request(prepare))
        self.assertEqual(prepare.amount, 0)
        self.assertEqual(prepare.expires_at, dt.datetime(2015, 6, 16, 0, 1, tzinfo=UTC))

    def test_requests_that_are_not_ildcp(self) -> None:
        for example in self.v["invalid_requests"]:
            prepare = deserialize_prepare(bytes.fromhex(example["binary"]))
            if "expired" in example["name"]:
                # expiry is the caller's business here: serve() takes no clock
                self.assertTrue(is_ildcp_request(prepare))
                self.assertEqual(prepare.expires_at.year, 2014)
                continue
            self.assertFalse(is_ildcp_request(prepare), example["name"])
            self.assertRaises(ValueError, serve, prepare, EXAMPLE)

    def test_deserialize_response(self) -> None:
        j = self.v["response"]["json"]
        expected = IldcpResponse(j["clientAddress"], j["assetScale"], j["assetCode"])
        self.assertEqual(deserialize_response(self.response), expected)
        self.assertEqual(expected, EXAMPLE)

    def test_serialize_response(self) -> None:
        self.assertEqual(serialize_response(EXAMPLE), self.response)

    def test_serve(self) -> None:
        self.assertEqual(serve(deserialize_prepare(self.request), EXAMPLE), self.response)

    def test_invalid_responses(self) -> None:
        for example in self.v["invalid_responses"]:
            raw = bytes.fromhex(example["binary"])
            self.assertRaises(IldcpError, deserialize_response, raw)

    def test_rejects(self) -> None:
        for example in self.v["rejects"]:
            raw = bytes.fromhex(example["binary"])
            j = example["json"]
            self.assertEqual(
                deserialize_reject(raw), Reject(j["code"], j["triggeredBy"], j["message"], b"")
            )
            err = self.assertRaises(IldcpError, deserialize_response, raw)
            self.assertIn(j["message"], str(err))
            self.assertIn("F00", str(err))
            self.assertIn(j["triggeredBy"], str(err))


class FetchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sent: list[bytes] = []

    def sender(self, reply: Any) -> Any:
        def send_data(data: bytes) -> Any:
            self.sent.append(data)
            return reply

        return send_data

    def test_fulfill(self) -> None:
        before = dt.datetime.now(UTC)
        d = fetch(self.sender(succeed(serialize_response(EXAMPLE))))
        after = dt.datetime.now(UTC)
        self.assertEqual(self.successResultOf(d), EXAMPLE)
        self.assertEqual(len(self.sent), 1)
        prepare = deserialize_prepare(self.sent[0])
        self.assertTrue(is_ildcp_request(prepare))
        self.assertEqual(prepare.amount, 0)
        self.assertEqual(prepare.data, b"")
        # expires 60 s from now (the wire keeps milliseconds, truncated)
        lo = before + dt.timedelta(seconds=60) - dt.timedelta(milliseconds=1)
        hi = after + dt.timedelta(seconds=60)
        self.assertTrue(lo <= prepare.expires_at <= hi, prepare.expires_at)

    def test_later_reply(self) -> None:
        pending: Deferred[bytes] = Deferred()
        d = fetch(self.sender(pending))
        self.assertNoResult(d)
        pending.callback(serialize_response(IldcpResponse("g.parent.child", 9, "USD")))
        self.assertEqual(self.successResultOf(d), IldcpResponse("g.parent.child", 9, "USD"))

    def test_plain_bytes_reply(self) -> None:
        d = fetch(self.sender(serialize_response(EXAMPLE)))
        self.assertEqual(self.successResultOf(d), EXAMPLE)

    def test_reject(self) -> None:
        reject = serialize(Reject("T01", "g.parent", "peer unreachable", b""))
        failure = self.failureResultOf(fetch(self.sender(succeed(reject))), IldcpError)
        self.assertIn("T01", str(failure.value))
        self.assertIn("peer unreachable", str(failure.value))
        self.assertIn("g.parent", str(failure.value))

    def test_the_parents_reject_is_kept(self) -> None:
        """IldcpError.reject is the parent's Reject (None when the answer was not one)."""
        parent = Reject("F00", "g.parent", "no address for you", b"")
        failure = self.failureResultOf(fetch(self.sender(succeed(serialize(parent)))), IldcpError)
        self.assertEqual(failure.value.reject, parent)
        failure = self.failureResultOf(fetch(self.sender(succeed(b"garbage"))), IldcpError)
        self.assertIsNone(failure.value.reject)

    def test_reject_without_triggered_by(self) -> None:
        reject = serialize(Reject("F00", "", "no", b""))
        failure = self.failureResultOf(fetch(self.sender(succeed(reject))), IldcpError)
        self.assertIn("unknown", str(failure.value))

    def test_garbage(self) -> None:
        for garbage in (b"", b"\x89", b"garbage", b"\x0d\x05abc", b"\x0d\x00"):
            self.failureResultOf(fetch(self.sender(succeed(garbage))), IldcpError)

    def test_not_bytes(self) -> None:
        self.failureResultOf(fetch(self.sender(succeed(None))), IldcpError)

    def test_prepare_reply(self) -> None:
        prepare = serialize(request_prepare())
        failure = self.failureResultOf(fetch(self.sender(succeed(prepare))), IldcpError)
        self.assertIn("Prepare", str(failure.value))

    def test_fulfill_with_bad_data(self) -> None:
        for data in (b"", b"\x0eexample.client", b"\x05g.abc\x02"):
            reply = succeed(response_with_data(data))
            self.failureResultOf(fetch(self.sender(reply)), IldcpError)

    def test_send_data_fails(self) -> None:
        class Down(Exception):
            pass

        self.failureResultOf(fetch(self.sender(fail(Down()))), Down)

        def raising(data: bytes) -> bytes:
            raise Down()

        self.failureResultOf(fetch(raising), Down)


class ServeTests(SynchronousTestCase):
    def test_serve_answers_request(self) -> None:
        resp = IldcpResponse("g.parent.alice", 2, "EUR")
        reply = serve(request_prepare(), resp)
        self.assertEqual(deserialize_response(reply), resp)

    def test_serve_refuses_other_prepares(self) -> None:
        now = dt.datetime.now(UTC)
        others = [
            Prepare(0, now, ILDCP_CONDITION, "peer.route.control", b""),
            Prepare(0, now, bytes(32), "peer.config", b""),
            Prepare(10, now, b"\1" * 32, "g.alice", b"hello"),
        ]
        for prepare in others:
            self.assertFalse(is_ildcp_request(prepare))
            self.assertRaises(ValueError, serve, prepare, EXAMPLE)

    def test_serve_checks_the_response(self) -> None:
        self.assertRaises(ValueError, serve, request_prepare(), IldcpResponse("nope", 2, "X"))


class ResponseTests(SynchronousTestCase):
    def test_as_response_spellings(self) -> None:
        self.assertIs(ildcp.as_response(EXAMPLE), EXAMPLE)
        js = {"clientAddress": "example.client", "assetScale": 13, "assetCode": "XAM"}
        py = {"client_address": "example.client", "asset_scale": 13, "asset_code": "XAM"}
        self.assertEqual(ildcp.as_response(js), EXAMPLE)
        self.assertEqual(ildcp.as_response(py), EXAMPLE)

    def test_as_response_refusals(self) -> None:
        for bad in (
            {"clientAddress": "example.client", "assetScale": 13},
            {"clientAddress": "client", "assetScale": 13, "assetCode": "XAM"},
            {"clientAddress": "g.c", "assetScale": 256, "assetCode": "XAM"},
            {"clientAddress": "g.c", "assetScale": -1, "assetCode": "XAM"},
            {"clientAddress": "g.c", "assetScale": 2, "assetCode": "X" * 256},
        ):
            self.assertRaises(ValueError, ildcp.as_response, bad)

    def test_serialize_refusals(self) -> None:
        for bad in (
            IldcpResponse("", 0, "X"),
            IldcpResponse("g.a b", 0, "X"),
            IldcpResponse("g.c", 256, "X"),
            IldcpResponse("g.c", -1, "X"),
            IldcpResponse("g.c", 0, "€" * 86),  # 258 UTF-8 bytes
        ):
            self.assertRaises(ValueError, serialize_response, bad)

    def test_limits(self) -> None:
        for resp in (
            IldcpResponse("g." + "a" * 1021, 255, "€" * 85),  # 1023 chars, 255 bytes
            IldcpResponse("g." + "a" * 126, 0, ""),  # 128: long-form prefix
            IldcpResponse("test.x", 0, "🪙"),
        ):
            reply = serialize_response(resp)
            self.assertEqual(deserialize_response(reply), resp)
        data = response_with_data(var_octets(b"g." + b"a" * 126) + b"\x00" + var_octets(b""))
        self.assertEqual(deserialize_response(data).client_address, "g." + "a" * 126)

    def test_bytes_after_the_envelope_are_ignored(self) -> None:
        """A liberal reader (RFC 30): the parent's answer is read from its envelope."""
        reject = serialize(Reject("F00", "g.parent", "no", b""))
        for extra in (b"\x00", b"garbage", reject):
            self.assertEqual(deserialize_response(serialize_response(EXAMPLE) + extra), EXAMPLE)
            err = self.assertRaises(IldcpError, deserialize_response, reject + extra)
            self.assertEqual(err.reject, Reject("F00", "g.parent", "no", b""))

    def test_extra_bytes_in_the_data_are_ignored(self) -> None:
        data = var_octets(b"g.x") + b"\x02" + var_octets(b"USD") + b"more"
        self.assertEqual(deserialize_response(response_with_data(data)), ("g.x", 2, "USD"))

    def test_malformed_data(self) -> None:
        for data in (
            b"",  # nothing
            var_octets(b"g.x"),  # no scale
            var_octets(b"g.x") + b"\x02",  # no asset code
            var_octets(b"g.x") + b"\x02\x05US",  # asset code cut
            b"\x05g.x",  # address cut
            b"\x81\x03g.x\x02\x03USD",  # non-canonical long form
            b"\x82\x00\x03g.x\x02\x03USD",  # leading zero
            b"\x80g.x\x02\x03USD",  # indefinite
            b"\x83\x00\x00\x03g.x\x02\x03USD",  # length-of-length 3
            b"\x82\x01",  # prefix cut
            var_octets(b"nope") + b"\x02" + var_octets(b"USD"),  # not an ILP address
            var_octets(b"g.\xe9") + b"\x02" + var_octets(b"USD"),  # address not ASCII
            var_octets(b"g.x") + b"\x02" + var_octets(b"\xff"),  # asset code not UTF-8
        ):
            self.assertRaises(IldcpError, deserialize_response, response_with_data(data))

    def test_wrong_fulfillment(self) -> None:
        good = serialize_response(EXAMPLE)
        data = deserialize_fulfill(good).data
        self.assertEqual(deserialize_response(response_with_data(data)), EXAMPLE)
        self.assertRaises(
            IldcpError, deserialize_response, response_with_data(data, b"\1" + bytes(31))
        )

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.builds(
            lambda scheme, segs: ".".join([scheme, *segs]),
            st.sampled_from(["g", "test", "example", "private", "local", "peer"]),
            st.lists(st.text(alphabet=ADDRESS_CHARS, min_size=1, max_size=60), min_size=1),
        ).filter(lambda a: len(a) <= 1023),
        st.integers(0, 255),
        st.text(max_size=60).filter(lambda c: len(c.encode("utf-8")) <= 255),
    )
    def test_round_trip(self, address: str, scale: int, code: str) -> None:
        resp = IldcpResponse(address, scale, code)
        self.assertEqual(deserialize_response(serve(request_prepare(), resp)), resp)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_hostile_data_only_raises_ildcp_error(self, data: bytes) -> None:
        for reply in (data, response_with_data(data)):
            try:
                resp = deserialize_response(reply)
            except IldcpError:
                continue
            self.assertIsInstance(resp, IldcpResponse)
