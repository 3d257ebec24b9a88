"""Tests for ilphttp.packet: the ILPv4 codec against official vectors, every error
branch, and properties (round trips; hostile bytes only ever raise InvalidPacketError).

Vectors (data, see tests/vectors/README.md):

- ``vectors/ilp-packet/``: the ILPv4 examples of the npm ``ilp-packet`` package,
  interledgerjs/ilp-packet ``test/data/ilp_*/valid/example01.json`` at commit
  699d24bd838617bb3ef497b2f77af8f8c48019a3 (v3.0.9), Apache-2.0.
- ``vectors/rfc30/oer-examples.json``: the examples of Interledger RFC 30 "Notes on
  OER Encoding" (interledger/rfcs, commit d289332feb3b5a360b34a902f7f146777a5542d3),
  CC BY-SA 4.0: length determinants, UInt64, timestamps, addresses.

The byte strings the error tests feed in are assembled here by a small OER writer
of the tests' own (``_var``, ``_envelope``), independent of the module under test.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import random
import re
from typing import Callable

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import packet as P
from ilphttp.packet import (
    ERROR_NAMES,
    MAX_ADDRESS_LENGTH,
    MAX_DATA_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_PREPARE_LENGTH,
    MAX_REJECT_LENGTH,
    TYPE_FULFILL,
    TYPE_PREPARE,
    TYPE_REJECT,
    ErrorCode,
    Fulfill,
    InvalidPacketError,
    Prepare,
    Reject,
    condition_from_fulfillment,
    deserialize,
    deserialize_fulfill,
    deserialize_prepare,
    deserialize_reject,
    envelope_length,
    format_timestamp,
    is_valid_address,
    is_valid_segment,
    make_reject,
    packet_type,
    parse_timestamp,
    serialize,
    serialize_fulfill,
    serialize_prepare,
    serialize_reject,
)
from tests.support.packets import var_octets
from tests.support.vectors import load_vector

UTC = dt.timezone.utc
MAX_UINT64 = 2**64 - 1
ADDRESS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-"
SCHEMES = ("g", "private", "example", "peer", "self", "test", "test1", "test2", "test3", "local")


_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z\Z")


def iso_utc(text: str) -> dt.datetime:
    """A ``YYYY-MM-DDTHH:MM:SS.mmmZ`` string as an aware datetime (no fromisoformat 'Z' on 3.9)."""
    m = _ISO.match(text)
    assert m is not None, text
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups())
    return dt.datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC)


# -- an OER writer of the tests' own ---------------------------------------------


def _envelope(type_: int, content: bytes) -> bytes:
    return bytes([type_]) + var_octets(content)


def _content(wire: bytes) -> bytes:
    """The content of a serialized packet: what follows the type and length bytes."""
    head = 2 if wire[1] < 0x80 else 2 + (wire[1] & 0x7F)
    return wire[head:]


EXPIRY = b"20171223012140549"
CONDITION = bytes(range(32))


def prepare_content(
    amount: bytes = (107).to_bytes(8, "big"),
    expiry: bytes = EXPIRY,
    condition: bytes = CONDITION,
    destination: bytes = var_octets(b"example.alice"),
    data: bytes = var_octets(b"hi"),
) -> bytes:
    return amount + expiry + condition + destination + data


def reject_content(
    code: bytes = b"F02",
    triggered_by: bytes = var_octets(b"g.connector"),
    message: bytes = var_octets(b"no route"),
    data: bytes = var_octets(b""),
) -> bytes:
    return code + triggered_by + message + data


SAMPLE_PREPARE = Prepare(
    amount=107,
    expires_at=dt.datetime(2017, 12, 23, 1, 21, 40, 549000, tzinfo=UTC),
    execution_condition=CONDITION,
    destination="example.alice",
    data=b"hi",
)


# -- hypothesis strategies ---------------------------------------------------------

segments = st.text(alphabet=ADDRESS_CHARS, min_size=1, max_size=40)
addresses = st.builds(
    lambda scheme, segs: ".".join([scheme, *segs]),
    st.sampled_from(SCHEMES),
    st.lists(segments, min_size=1, max_size=6),
)


@st.composite
def long_addresses(draw: st.DrawFn) -> str:
    """Addresses of 120..1023 characters, around the long-form length boundary and the cap."""
    scheme = draw(st.sampled_from(SCHEMES))
    total = draw(st.sampled_from([126, 127, 128, 129, 255, 256, 1022, 1023]))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    body = "".join(rnd.choice(ADDRESS_CHARS) for _ in range(total - len(scheme) - 1))
    address = scheme + "." + body
    assert len(address) == total
    return address


any_addresses = st.one_of(addresses, addresses, addresses, long_addresses())


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Mostly small data, sometimes around 127/128 bytes, sometimes up to the 32767 cap."""
    kind = draw(st.integers(0, 9))
    if kind < 6:
        return draw(st.binary(max_size=300))
    if kind < 8:
        n = draw(st.sampled_from([127, 128, 255, 256, 65535 // 4]))
    else:
        n = draw(st.sampled_from([MAX_DATA_LENGTH - 1, MAX_DATA_LENGTH]))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(n)


ms_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30, 23, 59, 59, 999999),
    timezones=st.one_of(
        st.just(UTC),
        st.builds(
            lambda m: dt.timezone(dt.timedelta(minutes=m)),
            st.integers(-23 * 60 - 59, 23 * 60 + 59),
        ),
    ),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))

prepares = st.builds(
    Prepare,
    amount=st.one_of(st.integers(0, MAX_UINT64), st.sampled_from([0, 1, 2**53 + 1, MAX_UINT64])),
    expires_at=ms_datetimes,
    execution_condition=st.binary(min_size=32, max_size=32),
    destination=any_addresses,
    data=payloads(),
)
fulfills = st.builds(Fulfill, fulfillment=st.binary(min_size=32, max_size=32), data=payloads())
rejects = st.builds(
    Reject,
    code=st.one_of(
        st.sampled_from(sorted(ERROR_NAMES)),
        st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), min_size=3, max_size=3),
    ),
    triggered_by=st.one_of(st.just(""), any_addresses),
    message=st.one_of(st.text(max_size=200), st.text(min_size=100, max_size=3000)),
    data=payloads(),
)
packets = st.one_of(prepares, fulfills, rejects)

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decode_or_invalid(data: bytes, decode: Callable[[bytes], object] = deserialize) -> object:
    """Decode; InvalidPacketError is fine, any other exception fails the test."""
    try:
        return decode(data)
    except InvalidPacketError:
        return None


# -- official vectors -----------------------------------------------------------------


class IlpPacketVectorTests(SynchronousTestCase):
    """The npm ilp-packet test/data examples (Apache-2.0, see the module docstring)."""

    def test_prepare_example(self) -> None:
        v = load_vector("ilp-packet", "ilp_prepare-valid-example01.json")
        wire = bytes.fromhex(v["binary"])
        j = v["json"]
        expected = Prepare(
            amount=int(j["amount"]),
            expires_at=iso_utc(j["expiresAt"]),
            execution_condition=base64.b64decode(j["executionCondition"]),
            destination=j["destination"],
            data=base64.b64decode(j["data"]),
        )
        self.assertEqual(deserialize_prepare(wire), expected)
        self.assertEqual(deserialize(wire), expected)
        self.assertEqual(serialize_prepare(expected), wire)
        self.assertEqual(serialize(expected), wire)
        self.assertEqual(packet_type(wire), TYPE_PREPARE)

    def test_fulfill_example(self) -> None:
        v = load_vector("ilp-packet", "ilp_fulfill-valid-example01.json")
        wire = bytes.fromhex(v["binary"])
        expected = Fulfill(
            fulfillment=base64.b64decode(v["json"]["fulfillment"]),
            data=base64.b64decode(v["json"]["data"]),
        )
        self.assertEqual(deserialize_fulfill(wire), expected)
        self.assertEqual(deserialize(wire), expected)
        self.assertEqual(serialize_fulfill(expected), wire)
        self.assertEqual(packet_type(wire), TYPE_FULFILL)

    def test_reject_example(self) -> None:
        v = load_vector("ilp-packet", "ilp_reject-valid-example01.json")
        wire = bytes.fromhex(v["binary"])
        j = v["json"]
        expected = Reject(j["code"], j["triggeredBy"], j["message"], base64.b64decode(j["data"]))
        self.assertEqual(deserialize_reject(wire), expected)
        self.assertEqual(deserialize(wire), expected)
        self.assertEqual(serialize_reject(expected), wire)
        self.assertEqual(packet_type(wire), TYPE_REJECT)
        self.assertEqual(ERROR_NAMES[expected.code], "Invalid Packet")

    def test_examples_refused_as_the_other_kinds(self) -> None:
        for kind, others in [
            ("prepare", (deserialize_fulfill, deserialize_reject)),
            ("fulfill", (deserialize_prepare, deserialize_reject)),
            ("reject", (deserialize_prepare, deserialize_fulfill)),
        ]:
            wire = bytes.fromhex(
                load_vector("ilp-packet", f"ilp_{kind}-valid-example01.json")["binary"]
            )
            for decode in others:
                self.assertRaises(InvalidPacketError, decode, wire)


class Rfc30VectorTests(SynchronousTestCase):
    """Interledger RFC 30's OER examples (CC BY-SA 4.0, see the module docstring)."""

    def setUp(self) -> None:
        self.v = load_vector("rfc30", "oer-examples.json")

    def test_length_determinants_encode(self) -> None:
        for e in self.v["length_determinants"]:
            self.assertEqual(P._length_prefix(int(e["value"])), bytes.fromhex(e["hex"]), e)

    def test_length_determinants_decode(self) -> None:
        # ilphttp reads length-of-lengths up to 4 bytes (RFC 30: implementations MAY
        # limit them); a packet is at most 33857 bytes, so 2 would do.
        for e in self.v["length_determinants"]:
            raw = bytes.fromhex(e["hex"])
            if (raw[0] & 0x7F) <= 4 or raw[0] < 0x80:
                self.assertEqual(P._read_length(raw, 0, len(raw)), (int(e["value"]), len(raw)), e)
            else:
                self.assertRaises(InvalidPacketError, P._read_length, raw, 0, len(raw))

    def test_length_determinants_in_packets(self) -> None:
        # The examples small enough for a packet, as the data field's prefix.
        for e in self.v["length_determinants"]:
            n = int(e["value"])
            if n > MAX_DATA_LENGTH:
                continue
            data = bytes([0xA5]) * n
            wire = serialize_fulfill(Fulfill(bytes(32), data))
            self.assertEqual(_content(wire)[32 : 32 + len(e["hex"]) // 2], bytes.fromhex(e["hex"]))
            self.assertEqual(deserialize_fulfill(wire).data, data)

    def test_uint64_amount(self) -> None:
        for e in self.v["uint64"]:
            content = prepare_content(amount=bytes.fromhex(e["hex"]))
            prepare = deserialize_prepare(_envelope(TYPE_PREPARE, content))
            self.assertEqual(prepare.amount, int(e["value"]))
            self.assertEqual(_content(serialize_prepare(prepare))[:8], bytes.fromhex(e["hex"]))

    def test_timestamp_encoding(self) -> None:
        for e in self.v["timestamp_encode"]:
            tz = dt.timezone(dt.timedelta(minutes=e["utc_offset_minutes"]))
            year, month, day, hour, minute, second, micro = e["datetime"]
            when = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
            self.assertEqual(format_timestamp(when), e["encoded"], e["rfc"])

    def test_timestamp_decoding_valid(self) -> None:
        for e in self.v["timestamp_decode_valid"]:
            expected = iso_utc(e.get("reads_as", e["iso"]))
            got = parse_timestamp(e["encoded"])
            self.assertEqual(got, expected, e)
            self.assertEqual(got.utcoffset(), dt.timedelta(0))
            self.assertEqual(parse_timestamp(e["encoded"].encode("ascii")), expected)
            self.assertEqual(format_timestamp(got), e["encoded"])

    def test_timestamp_decoding_invalid(self) -> None:
        for e in self.v["timestamp_decode_invalid"]:
            self.assertRaises(InvalidPacketError, parse_timestamp, e["encoded"])
            # and inside a Prepare, where a 17-byte one takes the timestamp's place
            raw = e["encoded"].encode("ascii")
            if len(raw) == 17:
                wire = _envelope(TYPE_PREPARE, prepare_content(expiry=raw))
                self.assertRaises(InvalidPacketError, deserialize, wire)

    def test_timestamp_binary(self) -> None:
        for e in self.v["timestamp_binary"]:
            raw = bytes.fromhex(e["hex"])
            self.assertEqual(raw.decode("ascii"), e["value"])
            when = deserialize_prepare(_envelope(TYPE_PREPARE, prepare_content(expiry=raw)))
            self.assertEqual(format_timestamp(when.expires_at), e["value"])
            self.assertEqual(_content(serialize_prepare(when))[8:25], raw)

    def test_addresses(self) -> None:
        for e in self.v["addresses"]:
            raw = bytes.fromhex(e["hex"])
            self.assertTrue(is_valid_address(e["value"]))
            wire = _envelope(TYPE_PREPARE, prepare_content(destination=raw))
            prepare = deserialize_prepare(wire)
            self.assertEqual(prepare.destination, e["value"])
            self.assertEqual(serialize_prepare(prepare), wire)


# -- known answers and helpers ----------------------------------------------------------


class EncodingTests(SynchronousTestCase):
    def test_prepare_layout(self) -> None:
        expected = _envelope(TYPE_PREPARE, prepare_content())
        self.assertEqual(serialize_prepare(SAMPLE_PREPARE), expected)
        self.assertEqual(deserialize_prepare(expected), SAMPLE_PREPARE)

    def test_long_form_envelope(self) -> None:
        p = SAMPLE_PREPARE._replace(data=bytes(100))
        wire = serialize_prepare(p)
        content_length = len(wire) - 3
        self.assertGreaterEqual(content_length, 128)
        self.assertEqual(wire[:3], bytes([TYPE_PREPARE, 0x81, content_length]))
        self.assertEqual(deserialize(wire), p)

    def test_empty_data_and_message(self) -> None:
        f = Fulfill(bytes(32))
        self.assertEqual(serialize_fulfill(f), bytes([13, 33]) + bytes(32) + b"\x00")
        r = Reject("T00", "", "")
        self.assertEqual(serialize_reject(r), bytes([14, 6]) + b"T00\x00\x00\x00")
        self.assertEqual(deserialize(serialize(r)), r)

    def test_unicode_reject_message(self) -> None:
        r = make_reject(ErrorCode.F99_APPLICATION_ERROR, "zahlung abgelehnt: ä€𝄞 — 你好", "g.x")
        wire = serialize_reject(r)
        encoded = r.message.encode("utf-8")
        self.assertIn(var_octets(encoded), wire)
        self.assertEqual(deserialize_reject(wire), r)

    def test_expiry_in_other_timezone_is_written_in_utc(self) -> None:
        tz = dt.timezone(dt.timedelta(hours=-5))
        p = SAMPLE_PREPARE._replace(expires_at=dt.datetime(2017, 12, 22, 20, 21, 40, 549999, tz))
        wire = serialize_prepare(p)
        self.assertEqual(_content(wire)[8:25], EXPIRY)  # microseconds truncated to ms
        self.assertEqual(deserialize_prepare(wire).expires_at.tzinfo, UTC)

    def test_amount_limits(self) -> None:
        for amount in (0, 1, 2**53 + 1, MAX_UINT64):
            wire = serialize_prepare(SAMPLE_PREPARE._replace(amount=amount))
            self.assertEqual(_content(wire)[:8], amount.to_bytes(8, "big"))
            self.assertEqual(deserialize_prepare(wire).amount, amount)

    def test_bytearray_and_memoryview_input(self) -> None:
        wire = serialize_prepare(SAMPLE_PREPARE)
        self.assertEqual(deserialize(bytearray(wire)), SAMPLE_PREPARE)  # type: ignore[arg-type]
        self.assertEqual(deserialize(memoryview(wire)), SAMPLE_PREPARE)  # type: ignore[arg-type]

    def test_extra_bytes_inside_the_envelope_are_ignored(self) -> None:
        # RFC 30 / RFC 27: readers ignore unknown trailing fields inside the content.
        for type_, content, expected in [
            (TYPE_PREPARE, prepare_content(), SAMPLE_PREPARE),
            (TYPE_FULFILL, bytes(32) + var_octets(b"x"), Fulfill(bytes(32), b"x")),
            (TYPE_REJECT, reject_content(), Reject("F02", "g.connector", "no route")),
        ]:
            self.assertEqual(deserialize(_envelope(type_, content + b"future")), expected)

    def test_largest_reject_is_max_reject_length(self) -> None:
        """RFC 27's limits: a 1,023-byte triggered_by, an 8,191-byte message, full data."""
        r = Reject(
            "F99",
            "g." + "a" * (MAX_ADDRESS_LENGTH - 2),
            "\u00e9" * (MAX_MESSAGE_LENGTH // 2) + "m",
            b"\xff" * MAX_DATA_LENGTH,
        )
        wire = serialize(r)
        self.assertEqual(len(wire), MAX_REJECT_LENGTH)
        self.assertEqual(deserialize(wire), r)
        self.assertGreater(MAX_REJECT_LENGTH, MAX_PREPARE_LENGTH)
        largest_fulfill = serialize(Fulfill(bytes(32), b"\xff" * MAX_DATA_LENGTH))
        self.assertLess(len(largest_fulfill), MAX_REJECT_LENGTH)

    def test_largest_prepare_is_max_prepare_length(self) -> None:
        p = Prepare(
            MAX_UINT64,
            dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
            bytes(32),
            "g." + "a" * (MAX_ADDRESS_LENGTH - 2),
            b"\xff" * MAX_DATA_LENGTH,
        )
        self.assertEqual(len(p.destination), MAX_ADDRESS_LENGTH)
        wire = serialize_prepare(p)
        self.assertEqual(len(wire), MAX_PREPARE_LENGTH)
        self.assertEqual(MAX_PREPARE_LENGTH, 33857)
        self.assertEqual(deserialize_prepare(wire), p)
        # one more byte anywhere is refused
        self.assertRaises(
            ValueError, serialize_prepare, p._replace(destination=p.destination + "a")
        )
        self.assertRaises(ValueError, serialize_prepare, p._replace(data=p.data + b"\0"))

    def test_largest_fulfill_and_reject(self) -> None:
        f = Fulfill(bytes(32), b"\1" * MAX_DATA_LENGTH)
        self.assertEqual(deserialize(serialize(f)), f)
        r = Reject("F00", "g." + "b" * 1021, "m" * 1000, b"\2" * MAX_DATA_LENGTH)
        self.assertEqual(deserialize(serialize(r)), r)


class RepeatedDecodeTests(SynchronousTestCase):
    """A data handler decoding the very bytes the server decoded gets the same Prepare
    again; anything else is decoded (and checked) as ever."""

    def test_same_bytes_object_gives_the_same_prepare(self) -> None:
        wire = serialize_prepare(SAMPLE_PREPARE)
        first = deserialize_prepare(wire, strict=False)
        self.assertIs(deserialize_prepare(wire), first)
        self.assertEqual(first, SAMPLE_PREPARE)

    def test_trailing_bytes_are_still_refused_when_strict(self) -> None:
        wire = serialize_prepare(SAMPLE_PREPARE) + b"\0"
        self.assertEqual(deserialize_prepare(wire, strict=False), SAMPLE_PREPARE)
        with self.assertRaises(InvalidPacketError):
            deserialize_prepare(wire)

    def test_a_mutated_buffer_is_decoded_again(self) -> None:
        buf = bytearray(serialize_prepare(SAMPLE_PREPARE))
        self.assertEqual(deserialize_prepare(buf).amount, SAMPLE_PREPARE.amount)
        buf[1 + 1 + 7] ^= 1  # the amount's last byte
        self.assertEqual(deserialize_prepare(buf).amount, SAMPLE_PREPARE.amount ^ 1)

    def test_another_prepare_in_between(self) -> None:
        one = serialize_prepare(SAMPLE_PREPARE)
        other = serialize_prepare(SAMPLE_PREPARE._replace(amount=7))
        deserialize_prepare(one)
        self.assertEqual(deserialize_prepare(other).amount, 7)
        self.assertEqual(deserialize_prepare(one), SAMPLE_PREPARE)


class HelperTests(SynchronousTestCase):
    def test_error_codes_and_names_agree(self) -> None:
        codes = {
            value
            for name, value in vars(ErrorCode).items()
            if not name.startswith("_") and isinstance(value, str)
        }
        self.assertEqual(codes, set(ERROR_NAMES))
        self.assertEqual(len(codes), 21)
        for name, value in vars(ErrorCode).items():
            if not name.startswith("_"):
                self.assertTrue(name.startswith(value + "_"), name)
        self.assertEqual(
            ERROR_NAMES[ErrorCode.T04_INSUFFICIENT_LIQUIDITY], "Insufficient Liquidity"
        )

    def test_condition_from_fulfillment(self) -> None:
        self.assertEqual(
            condition_from_fulfillment(bytes(32)).hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925",
        )
        self.assertEqual(condition_from_fulfillment(b"x"), hashlib.sha256(b"x").digest())

    def test_make_reject(self) -> None:
        r = make_reject(ErrorCode.T01_PEER_UNREACHABLE, "down", "g.me", b"d")
        self.assertEqual(r, Reject("T01", "g.me", "down", b"d"))
        self.assertEqual(make_reject("F00"), Reject("F00", "", "", b""))

    def test_valid_addresses(self) -> None:
        for address in [
            "g.a",
            "private.a.b",
            "example.alice",
            "peer.config",
            "self.x",
            "test.a",
            "test1.a",
            "test2.a",
            "test3.a",
            "local.a",
            "g.A-Z_a~z.09",
            "g." + "x" * (MAX_ADDRESS_LENGTH - 2),
        ]:
            self.assertTrue(is_valid_address(address), address)

    def test_invalid_addresses(self) -> None:
        for address in [
            "",
            "g",
            "g.",
            ".g.a",
            "g..a",
            "g.a.",
            "x.a",
            "G.a",
            "test4.a",
            "testx.a",
            "g.a b",
            "g.a/b",
            "g.ä",
            "g.a\n",
            "g.a\x00",
            "g.a:1",
            "g." + "x" * (MAX_ADDRESS_LENGTH - 1),
        ]:
            self.assertFalse(is_valid_address(address), repr(address))

    def test_segments(self) -> None:
        for segment in ["a", "Z9", "_", "~", "-", "a-b_c~d"]:
            self.assertTrue(is_valid_segment(segment), segment)
        for segment in ["", "a.b", "a b", "é", "a\n", "/"]:
            self.assertFalse(is_valid_segment(segment), repr(segment))

    def test_packet_type(self) -> None:
        self.assertEqual(packet_type(b"\x0c"), TYPE_PREPARE)
        self.assertEqual(packet_type(serialize(Fulfill(bytes(32)))), TYPE_FULFILL)
        self.assertEqual(packet_type(serialize(make_reject("F00"))), TYPE_REJECT)
        for bad in (b"", b"\x0b", b"\x0f\x00", b"\x89"):
            self.assertRaises(InvalidPacketError, packet_type, bad)

    def test_invalid_packet_error_is_value_error(self) -> None:
        self.assertTrue(issubclass(InvalidPacketError, ValueError))

    def test_format_timestamp_pads_small_years(self) -> None:
        self.assertEqual(format_timestamp(dt.datetime(1, 1, 1, tzinfo=UTC)), "00010101000000000")
        self.assertEqual(parse_timestamp("00010101000000000"), dt.datetime(1, 1, 1, tzinfo=UTC))


# -- every refusal ---------------------------------------------------------------------


class DecodeErrorTests(SynchronousTestCase):
    def assertInvalid(self, wire: bytes, *decoders: Callable[[bytes], object]) -> None:
        for decode in decoders or (deserialize,):
            self.assertRaises(InvalidPacketError, decode, wire)

    def test_not_bytes(self) -> None:
        for value in ("0c00", None, 12, [12, 0]):
            self.assertRaises(InvalidPacketError, deserialize, value)

    def test_empty(self) -> None:
        self.assertInvalid(b"", deserialize, deserialize_prepare, deserialize_fulfill)

    def test_wrong_type_byte(self) -> None:
        for type_ in (0, 1, 11, 15, 16, 255):
            self.assertInvalid(_envelope(type_, prepare_content()))
        self.assertInvalid(_envelope(TYPE_FULFILL, prepare_content()), deserialize_prepare)
        self.assertInvalid(_envelope(TYPE_PREPARE, bytes(32) + b"\0"), deserialize_fulfill)
        self.assertInvalid(_envelope(TYPE_REJECT, bytes(32) + b"\0"), deserialize_prepare)
        self.assertInvalid(_envelope(TYPE_PREPARE, reject_content()), deserialize_reject)

    def test_missing_envelope_length(self) -> None:
        self.assertInvalid(bytes([TYPE_PREPARE]))

    def test_non_canonical_length_prefixes(self) -> None:
        content = prepare_content()
        n = len(content)  # < 128: the short form is the only canonical one
        self.assertLess(n, 128)
        for prefix in (
            bytes([0x81, n]),  # long form for a short length
            bytes([0x82, 0, n]),  # leading zero byte
            bytes([0x80]),  # indefinite length
            bytes([0x85, 0, 0, 0, 0, n]),  # length-of-length over 4
        ):
            self.assertInvalid(bytes([TYPE_PREPARE]) + prefix + content)
        # the same inside the content: the destination's prefix
        dest = b"example.alice"
        for prefix in (bytes([0x81, len(dest)]), bytes([0x82, 0, len(dest)]), b"\x80"):
            self.assertInvalid(_envelope(TYPE_PREPARE, prepare_content(destination=prefix + dest)))
        # a long length with a leading zero
        data = bytes(200)
        wire = _envelope(TYPE_FULFILL, bytes(32) + b"\x82\x00\xc8" + data)
        self.assertInvalid(wire)
        self.assertEqual(
            deserialize(_envelope(TYPE_FULFILL, bytes(32) + var_octets(data))).data, data
        )

    def test_length_prefix_at_the_very_end(self) -> None:
        for wire in (b"\x0c\x80", b"\x0d\x81", b"\x0e\x82\x01"):
            self.assertInvalid(wire)

    def test_incomplete_length_prefix(self) -> None:
        self.assertInvalid(bytes([TYPE_FULFILL, 0x82, 0x01]))
        self.assertInvalid(_envelope(TYPE_FULFILL, bytes(32) + b"\x82\x01"))

    def test_trailing_bytes_after_the_envelope(self) -> None:
        """Strict (the default) refuses bytes after the envelope; liberal reads
        the envelope and ignores them (RFC 30), and envelope_length says where
        the packet ends."""
        for packet, decode in (
            (SAMPLE_PREPARE, deserialize_prepare),
            (Fulfill(bytes(range(32)), b"data"), deserialize_fulfill),
            (Reject("F02", "g.connector", "no route", b"d"), deserialize_reject),
        ):
            wire = serialize(packet)
            for extra in (b"\0", b"\x0c", b"garbage", wire, bytes(200)):
                with_extra = wire + extra
                self.assertInvalid(with_extra, deserialize, decode)
                self.assertInvalid(
                    with_extra,
                    functools.partial(deserialize, strict=True),
                    functools.partial(decode, strict=True),
                )
                self.assertEqual(deserialize(with_extra, strict=False), packet)
                self.assertEqual(decode(with_extra, strict=False), packet)
                self.assertEqual(envelope_length(with_extra), len(wire))
                # the liberal reader still checks the type it was asked for
                other = (
                    deserialize_fulfill if decode is deserialize_prepare else deserialize_prepare
                )
                self.assertInvalid(with_extra, functools.partial(other, strict=False))

    def test_liberal_reader_refuses_what_strict_refuses_inside_the_envelope(self) -> None:
        """Only bytes *after* the envelope are forgiven: a bad envelope stays bad."""
        wire = serialize_prepare(SAMPLE_PREPARE)
        liberal = (
            functools.partial(deserialize, strict=False),
            functools.partial(deserialize_prepare, strict=False),
        )
        for bad in (
            b"",
            wire[:-1],  # the envelope announces more than there is
            wire[:1],  # no length determinant
            b"\x0b" + wire[1:],  # unknown type
            bytes([TYPE_PREPARE, 0x81, 3]) + wire[2:],  # non-canonical length
            _envelope(TYPE_PREPARE, prepare_content()[:40]) + wire,  # truncated content
        ):
            self.assertInvalid(bad, *liberal)

    def test_envelope_length(self) -> None:
        fulfill = serialize_fulfill(Fulfill(bytes(32), bytes(200)))  # a long-form length
        self.assertEqual(fulfill[1], 0x81)
        for data, expected in (
            (serialize_prepare(SAMPLE_PREPARE), len(serialize_prepare(SAMPLE_PREPARE))),
            (fulfill + b"more", len(fulfill)),
            (serialize_reject(Reject("T00", "", "")) + b"\0", 1 + 1 + 6),
            # only the envelope is read: content the decoders would refuse
            (_envelope(TYPE_PREPARE, b"xyz") + b"!", 5),
        ):
            self.assertEqual(envelope_length(data), expected, data[:10])
        for bad in (b"", b"\x0c", b"\x0b\x00", b"\x0d\x05abc", b"\x0e\x80", b"\x0c\x81\x05"):
            self.assertRaises(InvalidPacketError, envelope_length, bad)

    def test_envelope_longer_than_the_bytes(self) -> None:
        wire = serialize_prepare(SAMPLE_PREPARE)
        for cut in range(1, len(wire)):
            self.assertInvalid(wire[:cut], deserialize, deserialize_prepare)

    def test_truncated_fields(self) -> None:
        full = prepare_content()
        # content cut short inside each fixed field and inside the variable ones
        for cut in (0, 5, 8, 20, 25, 40, 57, 58, 60, len(full) - 3, len(full) - 1):
            self.assertInvalid(_envelope(TYPE_PREPARE, full[:cut]))
        fulfill = bytes(32) + var_octets(b"abc")
        for cut in (0, 31, 32, 33, 35):
            self.assertInvalid(_envelope(TYPE_FULFILL, fulfill[:cut]))
        reject = reject_content(message=var_octets(b"message"), data=var_octets(b"data"))
        for cut in (0, 2, 3, 4, 10, 15, len(reject) - 1):
            self.assertInvalid(_envelope(TYPE_REJECT, reject[:cut]))

    def test_invalid_timestamps(self) -> None:
        for expiry in (
            b"20170230000000000",  # Feb 30
            b"20190229000000000",  # Feb 29 of a common year
            b"20171301000000000",  # month 13
            b"20171200000000000",  # day 0
            b"20171224240000000",  # hour 24
            b"20171224236000000",  # minute 60
            b"20171224235960000",  # second 60
            b"00000101000000000",  # year 0
            b"2017122400000000 ",  # 16 digits and a space
            b"+2017122400000000",  # a sign
            b"2017-12-240000000",
            b"\xff" * 17,
        ):
            self.assertInvalid(_envelope(TYPE_PREPARE, prepare_content(expiry=expiry)))
        self.assertRaises(InvalidPacketError, parse_timestamp, "2017122400000000")  # 16 digits
        self.assertRaises(InvalidPacketError, parse_timestamp, "201712240000000000")  # 18
        self.assertRaises(InvalidPacketError, parse_timestamp, "20171224000000000\n")
        self.assertRaises(
            InvalidPacketError, parse_timestamp, "2017122400000000\u0660"
        )  # Arabic-Indic 0
        self.assertRaises(InvalidPacketError, parse_timestamp, b"20170230000000000")

    def test_destination_not_an_address(self) -> None:
        for destination in (
            b"",
            b"alice",
            b"g.",
            b"x.alice",
            b"example..alice",
            b"example.al ice",
            b"example.al\xe9ice",  # not ASCII
            b"\xe7.alice",  # 0xe7 & 0x7f is 'g': JS's 'ascii' decoding would read g.alice
            b"g." + b"a" * (MAX_ADDRESS_LENGTH - 1),  # 1024 bytes
        ):
            wire = _envelope(TYPE_PREPARE, prepare_content(destination=var_octets(destination)))
            self.assertInvalid(wire, deserialize, deserialize_prepare)

    def test_data_over_the_limit(self) -> None:
        big = var_octets(bytes(MAX_DATA_LENGTH + 1))
        self.assertInvalid(_envelope(TYPE_PREPARE, prepare_content(data=big)))
        self.assertInvalid(_envelope(TYPE_FULFILL, bytes(32) + big))
        self.assertInvalid(_envelope(TYPE_REJECT, reject_content(data=big)))
        ok = var_octets(bytes(MAX_DATA_LENGTH))
        self.assertEqual(
            len(deserialize(_envelope(TYPE_FULFILL, bytes(32) + ok)).data), MAX_DATA_LENGTH
        )

    def test_reject_code_not_ascii(self) -> None:
        self.assertInvalid(_envelope(TYPE_REJECT, reject_content(code=b"F\xff1")))

    def test_reject_triggered_by(self) -> None:
        self.assertInvalid(
            _envelope(TYPE_REJECT, reject_content(triggered_by=var_octets(b"g.\xe9")))
        )
        too_long = var_octets(b"g." + b"a" * (MAX_ADDRESS_LENGTH - 1))
        self.assertInvalid(_envelope(TYPE_REJECT, reject_content(triggered_by=too_long)))
        longest = "g." + "a" * (MAX_ADDRESS_LENGTH - 2)
        wire = _envelope(TYPE_REJECT, reject_content(triggered_by=var_octets(longest.encode())))
        self.assertEqual(deserialize_reject(wire).triggered_by, longest)

    def test_reject_message_not_utf8(self) -> None:
        for message in (
            b"\xff",
            b"caf\xe9",  # Latin-1
            b"\xc3",  # cut sequence
            b"\xed\xa0\x80",  # an encoded surrogate
            b"\xc0\xaf",  # overlong
        ):
            self.assertInvalid(_envelope(TYPE_REJECT, reject_content(message=var_octets(message))))


class EncodeErrorTests(SynchronousTestCase):
    def test_amount_out_of_range(self) -> None:
        for amount in (-1, -(2**64), MAX_UINT64 + 1, 2**70):
            self.assertRaises(ValueError, serialize_prepare, SAMPLE_PREPARE._replace(amount=amount))

    def test_condition_length(self) -> None:
        for condition in (b"", bytes(31), bytes(33)):
            p = SAMPLE_PREPARE._replace(execution_condition=condition)
            self.assertRaises(ValueError, serialize, p)

    def test_destination(self) -> None:
        for destination in ("", "alice", "g.a b", "g.é", "g." + "a" * MAX_ADDRESS_LENGTH):
            p = SAMPLE_PREPARE._replace(destination=destination)
            self.assertRaises(ValueError, serialize_prepare, p)

    def test_data_length(self) -> None:
        big = bytes(MAX_DATA_LENGTH + 1)
        self.assertRaises(ValueError, serialize_prepare, SAMPLE_PREPARE._replace(data=big))
        self.assertRaises(ValueError, serialize_fulfill, Fulfill(bytes(32), big))
        self.assertRaises(ValueError, serialize_reject, Reject("F00", "", "", big))

    def test_naive_datetime(self) -> None:
        naive = dt.datetime(2020, 1, 1)
        self.assertRaises(ValueError, serialize_prepare, SAMPLE_PREPARE._replace(expires_at=naive))
        self.assertRaises(ValueError, format_timestamp, naive)

        class NoOffset(dt.tzinfo):
            def utcoffset(self, when: dt.datetime | None) -> dt.timedelta | None:
                return None

            def dst(self, when: dt.datetime | None) -> dt.timedelta | None:
                return None

            def tzname(self, when: dt.datetime | None) -> str | None:
                return None

        # a tzinfo that knows no offset makes a naive datetime, as Python defines it
        self.assertRaises(ValueError, format_timestamp, dt.datetime(2020, 1, 1, tzinfo=NoOffset()))

    def test_datetime_outside_utc_years(self) -> None:
        east = dt.timezone(dt.timedelta(hours=5))
        west = dt.timezone(dt.timedelta(hours=-5))
        for when in (dt.datetime(1, 1, 1, tzinfo=east), dt.datetime(9999, 12, 31, 23, tzinfo=west)):
            self.assertRaises(
                ValueError, serialize_prepare, SAMPLE_PREPARE._replace(expires_at=when)
            )

    def test_fulfillment_length(self) -> None:
        for fulfillment in (b"", bytes(31), bytes(33)):
            self.assertRaises(ValueError, serialize_fulfill, Fulfill(fulfillment))

    def test_reject_fields(self) -> None:
        for code in ("", "F0", "F000", "F0é"):
            self.assertRaises(ValueError, serialize_reject, Reject(code, "", ""))
        self.assertRaises(ValueError, serialize_reject, Reject("F00", "g.é", ""))
        self.assertRaises(
            ValueError, serialize_reject, Reject("F00", "g." + "a" * MAX_ADDRESS_LENGTH, "")
        )
        self.assertRaises(ValueError, serialize_reject, Reject("F00", "", "lone \ud800 surrogate"))

    def test_not_a_packet(self) -> None:
        for value in (b"\x0c", None, ("F00", "", "", b"")):
            self.assertRaises(TypeError, serialize, value)


# -- properties --------------------------------------------------------------------------


class RoundTripProperties(SynchronousTestCase):
    @PROPERTY
    @given(prepares)
    def test_prepare(self, p: Prepare) -> None:
        wire = serialize_prepare(p)
        back = deserialize_prepare(wire)
        self.assertEqual(back, p)
        self.assertEqual(back.expires_at.tzinfo, UTC)
        self.assertEqual(deserialize(wire), p)
        self.assertEqual(serialize(back), wire)
        self.assertLessEqual(len(wire), MAX_PREPARE_LENGTH)

    @PROPERTY
    @given(fulfills)
    def test_fulfill(self, f: Fulfill) -> None:
        wire = serialize_fulfill(f)
        self.assertEqual(deserialize_fulfill(wire), f)
        self.assertEqual(serialize(deserialize(wire)), wire)

    @PROPERTY
    @given(rejects)
    def test_reject(self, r: Reject) -> None:
        wire = serialize_reject(r)
        self.assertEqual(deserialize_reject(wire), r)
        self.assertEqual(serialize(deserialize(wire)), wire)

    @PROPERTY
    @given(ms_datetimes)
    def test_timestamp(self, when: dt.datetime) -> None:
        text = format_timestamp(when)
        self.assertEqual(len(text), 17)
        self.assertEqual(parse_timestamp(text), when)

    @PROPERTY
    @given(st.datetimes(timezones=st.just(UTC)))
    def test_timestamp_truncates_to_milliseconds(self, when: dt.datetime) -> None:
        back = parse_timestamp(format_timestamp(when))
        self.assertEqual(back, when.replace(microsecond=when.microsecond // 1000 * 1000))


class HostileBytesProperties(SynchronousTestCase):
    """Whatever arrives, the decoders return a packet or raise InvalidPacketError."""

    def check(self, data: bytes) -> None:
        for decode in (deserialize, deserialize_prepare, deserialize_fulfill, deserialize_reject):
            decoded = decode_or_invalid(data, decode)
            if decoded is not None:
                # anything accepted is a well-formed packet that serializes again
                self.assertIsInstance(decoded, (Prepare, Fulfill, Reject))
                serialize(decoded)  # type: ignore[arg-type]
            liberal = decode_or_invalid(data, functools.partial(decode, strict=False))
            if liberal is not None:
                # the liberal reader reads exactly the envelope, as strict
                # reads it without what follows
                self.assertEqual(decode(data[: envelope_length(data)]), liberal)
            elif decoded is not None:
                self.fail("the liberal reader refused what the strict one read")
        try:
            packet_type(data)
        except InvalidPacketError:
            pass

    @FUZZ
    @given(st.binary(max_size=400))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        self.check(data)

    @FUZZ
    @given(st.sampled_from([TYPE_PREPARE, TYPE_FULFILL, TYPE_REJECT]), st.binary(max_size=300))
    def test_arbitrary_content_in_an_envelope(self, type_: int, content: bytes) -> None:
        self.check(_envelope(type_, content))

    @FUZZ
    @given(packets, st.data())
    def test_truncations_are_refused(self, p: P.Packet, data: st.DataObject) -> None:
        wire = serialize(p)
        cut = data.draw(st.integers(0, len(wire) - 1))
        self.assertRaises(InvalidPacketError, deserialize, wire[:cut])
        self.assertRaises(InvalidPacketError, deserialize, wire[:cut], strict=False)

    @FUZZ
    @given(packets, st.binary(min_size=1, max_size=20))
    def test_trailing_bytes(self, p: P.Packet, extra: bytes) -> None:
        """Bytes after a packet: the strict reader refuses them; the liberal
        reader returns the packet itself, and envelope_length is the length of
        the packet as written (liberal reader, strict writer, RFC 30)."""
        wire = serialize(p)
        self.assertRaises(InvalidPacketError, deserialize, wire + extra)
        self.assertEqual(deserialize(wire + extra, strict=False), p)
        self.assertEqual(envelope_length(wire + extra), len(wire))

    @FUZZ
    @given(packets, st.data())
    def test_flipped_bytes(self, p: P.Packet, data: st.DataObject) -> None:
        wire = bytearray(serialize(p))
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, len(wire) - 1))
            wire[i] ^= data.draw(st.integers(1, 255))
        self.check(bytes(wire))

    @FUZZ
    @given(packets, st.data())
    def test_flipped_length_bytes(self, p: P.Packet, data: st.DataObject) -> None:
        """Rewrite one length determinant (envelope or a field) to any other value."""
        wire = bytearray(serialize(p))
        offsets = _length_offsets(bytes(wire))
        i = data.draw(st.sampled_from(offsets))
        new = data.draw(st.integers(0, 255))
        assume(new != wire[i])
        wire[i] = new
        self.check(bytes(wire))
        if i == 1:
            # the envelope's own length no longer matches the bytes
            self.assertRaises(InvalidPacketError, deserialize, bytes(wire))

    @FUZZ
    @given(packets, st.data())
    def test_inserted_and_deleted_bytes(self, p: P.Packet, data: st.DataObject) -> None:
        wire = serialize(p)
        # After the envelope's length determinant, so the length stays what it
        # was: a byte inserted into the determinant can make another valid
        # envelope whose spare inner bytes are ignored, as RFC 30 says.
        header = 2 if wire[1] < 0x80 else 2 + (wire[1] & 0x7F)
        i = data.draw(st.integers(header, len(wire)))
        if data.draw(st.booleans()) and i < len(wire):
            mutated = wire[:i] + wire[i + 1 :]
        else:
            mutated = wire[:i] + data.draw(st.binary(min_size=1, max_size=3)) + wire[i:]
        # the envelope length no longer fits the total
        self.assertRaises(InvalidPacketError, deserialize, mutated)


def _length_offsets(wire: bytes) -> list[int]:
    """Offsets of the first byte of each length determinant in a well-formed packet."""

    def skip(pos: int) -> int:
        first = wire[pos]
        head = 1 if first < 0x80 else 1 + (first & 0x7F)
        n = first if first < 0x80 else int.from_bytes(wire[pos + 1 : pos + head], "big")
        return pos + head + n

    offsets = [1]
    first = wire[1]
    pos = 2 if first < 0x80 else 2 + (first & 0x7F)
    if wire[0] == TYPE_PREPARE:
        pos += 8 + 17 + 32
        fields = 2
    elif wire[0] == TYPE_FULFILL:
        pos += 32
        fields = 1
    else:
        pos += 3
        fields = 3
    for _ in range(fields):
        offsets.append(pos)
        pos = skip(pos)
    return offsets
