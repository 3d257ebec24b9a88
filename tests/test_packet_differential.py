"""Differential tests: ilphttp's codec against the real npm ``ilp-packet`` (3.1.3)
and ``ilp-protocol-ildcp`` (2.2.3) installed under interop/node_modules.

Both directions:

- node -> Python: ``interop/packets.js generate SEED COUNT`` has the npm packages
  serialize a few hundred random packets of all three kinds and IL-DCP requests and
  responses (the largest legal Prepare, empty data, 32767-byte data, 1023-byte
  addresses, long-form lengths, unicode reject messages, amounts up to 2^64-1).
  Python must decode every one to the same fields and re-encode the same bytes.
- Python -> node: a seeded Python generator makes packets that ``packets.js decode``
  decodes with the npm packages; the fields must match and npm's re-serialization
  must give back Python's bytes.

Plus the invalid inputs both refuse, and the documented places where the two differ.

The seed is fixed for reproducible runs; set ILPHTTP_DIFF_SEED to explore others.
These tests fail rather than skip when node or the npm packages are missing and
CI=true.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from ilphttp.ildcp import (
    ILDCP_CONDITION,
    ILDCP_DESTINATION,
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
    ERROR_NAMES,
    MAX_ADDRESS_LENGTH,
    MAX_DATA_LENGTH,
    MAX_PREPARE_LENGTH,
    Fulfill,
    InvalidPacketError,
    Packet,
    Prepare,
    Reject,
    deserialize,
    deserialize_fulfill,
    deserialize_prepare,
    deserialize_reject,
    envelope_length,
    serialize,
)
from tests.support.jsinterop import require_node
from tests.support.packets import var_octets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEROP = os.path.join(ROOT, "interop")
SCRIPT = os.path.join(INTEROP, "packets.js")
#: what require_node must find for these tests
NODE_NEEDS: dict[str, Any] = {
    "packages": ("ilp-packet", "ilp-protocol-ildcp"),
    "scripts": ("packets.js",),
}
SEED = int(os.environ.get("ILPHTTP_DIFF_SEED", "20240615"))
COUNT = 400
NODE_TIMEOUT = 120  # seconds for one run of packets.js

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MS = dt.timedelta(milliseconds=1)
MAX_UINT64 = 2**64 - 1
ADDRESS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~-"
SCHEMES = ("g", "private", "example", "peer", "self", "test", "test1", "test2", "test3", "local")
# code point ranges for reject messages and asset codes (no surrogates)
TEXT_RANGES = (
    (0x20, 0x7E),
    (0x20, 0x7E),
    (0x00, 0x1F),
    (0xA0, 0x24F),
    (0x300, 0x36F),
    (0x370, 0x3FF),
    (0x400, 0x4FF),
    (0x600, 0x6FF),
    (0x3040, 0x30FF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0xE000, 0xF8FF),
    (0xFFF0, 0xFFFD),
    (0x1F300, 0x1FAFF),
    (0x10000, 0x10FFFF),
)


def run_packets_js(node: str, args: list[str], stdin: str = "") -> list[dict[str, Any]]:
    """Run interop/packets.js once (bounded by NODE_TIMEOUT); its JSON lines."""
    proc = subprocess.run(
        [node, SCRIPT, *args],
        input=stdin.encode("ascii"),
        capture_output=True,
        cwd=INTEROP,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"packets.js {' '.join(args)} exited {proc.returncode}: "
            f"{proc.stderr.decode('utf-8', 'replace')[-2000:]}"
        )
    return [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines() if line]


_generated: dict[int, list[dict[str, Any]]] = {}


def node_generated(node: str) -> list[dict[str, Any]]:
    """The lines of ``packets.js generate SEED COUNT`` (run once per test run)."""
    if SEED not in _generated:
        _generated[SEED] = run_packets_js(node, ["generate", str(SEED), str(COUNT)])
    return _generated[SEED]


def node_decode(node: str, items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Have the npm packages decode each (kind, bytes); one result per item, in order."""
    stdin = "".join(f"{kind} {raw.hex()}\n" for kind, raw in items)
    results = run_packets_js(node, ["decode"], stdin)
    assert len(results) == len(items), (len(results), len(items))
    return results


# -- the shape both sides describe packets in -----------------------------------------


def ms(when: dt.datetime) -> int:
    return (when - EPOCH) // MS


def iso(when: dt.datetime) -> str:
    u = when.astimezone(UTC)
    return f"{u:%Y-%m-%dT%H:%M:%S}.{u.microsecond // 1000:03d}Z"


def fields_of(packet: Packet) -> dict[str, Any]:
    if isinstance(packet, Prepare):
        return {
            "amount": str(packet.amount),
            "expiresAt": ms(packet.expires_at),
            "expiresAtIso": iso(packet.expires_at),
            "executionCondition": packet.execution_condition.hex(),
            "destination": packet.destination,
            "data": packet.data.hex(),
        }
    if isinstance(packet, Fulfill):
        return {"fulfillment": packet.fulfillment.hex(), "data": packet.data.hex()}
    return {
        "code": packet.code,
        "triggeredBy": packet.triggered_by,
        "message": packet.message,
        "data": packet.data.hex(),
    }


def kind_of(packet: Packet) -> str:
    return {Prepare: "prepare", Fulfill: "fulfill", Reject: "reject"}[type(packet)]


def ildcp_fields(resp: IldcpResponse) -> dict[str, Any]:
    return {
        "clientAddress": resp.client_address,
        "assetScale": resp.asset_scale,
        "assetCode": resp.asset_code,
    }


# -- a seeded generator of Python-made packets --------------------------------------------


class PacketMaker:
    """Random packets with the same edge cases as packets.js, from ``random.Random(seed)``."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def address(self, total: int | None = None) -> str:
        r = self.rnd
        scheme = r.choice(SCHEMES)
        if total is None:
            pick = r.randrange(10)
            if pick < 6:
                total = len(scheme) + 1 + r.randint(1, 40)
            elif pick < 9:
                total = r.choice([126, 127, 128, 129, 255, 256, 300])
            else:
                total = r.choice([1000, 1022, MAX_ADDRESS_LENGTH])
        body: list[str] = []
        n = total - len(scheme) - 1
        for i in range(n):
            dot_ok = 0 < i < n - 1 and body[-1] != "."
            body.append("." if dot_ok and r.random() < 0.12 else r.choice(ADDRESS_CHARS))
        return scheme + "." + "".join(body)

    def data(self) -> bytes:
        r = self.rnd
        pick = r.randrange(20)
        if pick < 5:
            return b""
        if pick < 12:
            return r.randbytes(r.randint(1, 127))
        if pick < 16:
            return r.randbytes(r.choice([127, 128, 255, 256, 257, 16383]))
        if pick < 19:
            return r.randbytes(r.randint(1, MAX_DATA_LENGTH))
        return r.randbytes(MAX_DATA_LENGTH)

    def amount(self) -> int:
        r = self.rnd
        pick = r.randrange(8)
        if pick == 0:
            return r.choice([0, 1, MAX_UINT64])
        if pick == 1:
            return r.choice([2**53 + 1, 2**63, 2**32, MAX_UINT64 - 1])
        if pick < 4:
            return r.randrange(1_000_000)
        return r.getrandbits(64)

    def expiry(self) -> dt.datetime:
        # years 1000..9999, never the epoch itself (see NodeDifferences)
        lo = ms(dt.datetime(1000, 1, 1, tzinfo=UTC))
        hi = ms(dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))
        pick = self.rnd.randrange(10)
        if pick == 0:
            value = self.rnd.choice([lo, hi, 1, -1, ms(dt.datetime(2000, 2, 29, tzinfo=UTC))])
        else:
            value = self.rnd.randint(lo, hi)
        when = EPOCH + value * MS
        # sometimes in another zone: it is written in UTC all the same
        if self.rnd.random() < 0.2 and dt.datetime(1001, 1, 1, tzinfo=UTC) < when:
            offset = dt.timedelta(minutes=self.rnd.randint(-23 * 60, 23 * 60))
            when = when.astimezone(dt.timezone(offset))
            if when.year > 9998:
                when = when.astimezone(UTC)
        return when

    def text(self, max_chars: int) -> str:
        r = self.rnd
        n = 0 if r.random() < 0.2 else r.randint(1, max_chars)
        return "".join(chr(r.randint(*r.choice(TEXT_RANGES))) for _ in range(n))

    def prepare(self) -> Prepare:
        return Prepare(
            self.amount(), self.expiry(), self.rnd.randbytes(32), self.address(), self.data()
        )

    def fulfill(self) -> Fulfill:
        return Fulfill(self.rnd.randbytes(32), self.data())

    def reject(self) -> Reject:
        r = self.rnd
        if r.random() < 0.8:
            code = r.choice(sorted(ERROR_NAMES))
        else:
            code = "".join(chr(r.randrange(128)) for _ in range(3))
        triggered_by = "" if r.random() < 0.2 else self.address()
        message = self.text(r.choice([40, 40, 400, 5000]))
        return Reject(code, triggered_by, message, self.data())

    def ildcp_response(self) -> IldcpResponse:
        code = self.text(6 if self.rnd.random() < 0.8 else 120)
        while len(code.encode("utf-8")) > 255:
            code = code[:-1]
        scale = self.rnd.choice([0, 255]) if self.rnd.random() < 0.1 else self.rnd.randrange(256)
        return IldcpResponse(self.address(), scale, code)

    def packets(self, count: int) -> list[Packet]:
        longest = Prepare(
            MAX_UINT64,
            dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
            self.rnd.randbytes(32),
            self.address(MAX_ADDRESS_LENGTH),
            self.rnd.randbytes(MAX_DATA_LENGTH),
        )
        edges: list[Packet] = [
            longest,
            Prepare(0, dt.datetime(2020, 1, 1, tzinfo=UTC), bytes(32), "g.a", b""),
            Fulfill(bytes(32), b""),
            Fulfill(b"\xff" * 32, self.rnd.randbytes(MAX_DATA_LENGTH)),
            Reject("F00", "", "", b""),
            Reject(
                "T04",
                self.address(MAX_ADDRESS_LENGTH),
                self.text(3000),
                self.rnd.randbytes(MAX_DATA_LENGTH),
            ),
            Reject("F99", "g.x", "zahlung abgelehnt: ä€𝄞 — 你好 🙂\n\t\x00", b"\x00"),
        ]
        makers: list[Callable[[], Packet]] = [self.prepare, self.fulfill, self.reject]
        return [edges[i] if i < len(edges) else self.rnd.choice(makers)() for i in range(count)]


# -- node -> Python ---------------------------------------------------------------------------


class NodeToPythonTests(SynchronousTestCase):
    """What the npm packages serialize, Python reads to the same fields and bytes."""

    def setUp(self) -> None:
        self.lines = node_generated(require_node(**NODE_NEEDS))

    def of_kind(self, *kinds: str) -> list[tuple[int, dict[str, Any]]]:
        return [(i, line) for i, line in enumerate(self.lines) if line["kind"] in kinds]

    def test_generated_set_covers_the_edges(self) -> None:
        """The generator really made the cases the differential tests claim to cover."""
        self.assertEqual(len(self.lines), COUNT)
        kinds = {line["kind"] for line in self.lines}
        self.assertEqual(kinds, {"prepare", "fulfill", "reject", "ildcp_response", "ildcp_request"})
        sizes = [len(line["hex"]) // 2 for line in self.lines]
        self.assertIn(MAX_PREPARE_LENGTH, sizes)
        fields = [line["fields"] for line in self.lines]
        datas = [len(f["data"]) // 2 for f in fields if "data" in f]
        self.assertIn(0, datas)
        self.assertIn(MAX_DATA_LENGTH, datas)
        self.assertTrue(any(128 <= n < 256 for n in datas))
        self.assertIn(str(MAX_UINT64), [f.get("amount") for f in fields])
        self.assertIn("0", [f.get("amount") for f in fields])
        addresses = [f.get("destination") or f.get("triggeredBy") or "" for f in fields]
        self.assertIn(MAX_ADDRESS_LENGTH, [len(a) for a in addresses])
        messages = [f["message"] for f in fields if "message" in f]
        self.assertTrue(any(len(m.encode("utf-8")) > len(m) for m in messages))
        self.assertTrue(any(len(m.encode("utf-8")) > 255 for m in messages))
        self.assertTrue(any(ord(c) > 0xFFFF for m in messages for c in m))

    def test_packets(self) -> None:
        checked = 0
        for i, line in self.of_kind("prepare", "fulfill", "reject"):
            raw = bytes.fromhex(line["hex"])
            where = f"line {i} of packets.js generate {SEED} {COUNT} ({line['kind']})"
            try:
                packet = deserialize(raw)
            except InvalidPacketError as exc:
                self.fail(f"{where}: Python refused what ilp-packet wrote: {exc}")
            self.assertEqual(kind_of(packet), line["kind"], where)
            self.assertEqual(fields_of(packet), line["fields"], where)
            if isinstance(packet, Prepare):
                # exactly that millisecond, nothing below it
                expires_at = EPOCH + line["fields"]["expiresAt"] * MS
                self.assertEqual(packet.expires_at, expires_at, where)
                self.assertEqual(packet.expires_at.utcoffset(), dt.timedelta(0), where)
            self.assertEqual(serialize(packet), raw, where)
            decode = {
                "prepare": deserialize_prepare,
                "fulfill": deserialize_fulfill,
                "reject": deserialize_reject,
            }[line["kind"]]
            self.assertEqual(decode(raw), packet, where)
            checked += 1
        self.assertGreater(checked, COUNT // 2)

    def test_ildcp_responses(self) -> None:
        found = self.of_kind("ildcp_response")
        self.assertGreater(len(found), 10)
        for i, line in found:
            raw = bytes.fromhex(line["hex"])
            where = f"line {i} of packets.js generate {SEED} {COUNT}"
            resp = deserialize_response(raw)
            self.assertEqual(ildcp_fields(resp), line["fields"], where)
            self.assertEqual(serialize_response(resp), raw, where)
            self.assertEqual(serve(request_prepare(), resp), raw, where)

    def test_ildcp_requests(self) -> None:
        found = self.of_kind("ildcp_request")
        self.assertGreater(len(found), 10)
        for i, line in found:
            raw = bytes.fromhex(line["hex"])
            where = f"line {i} of packets.js generate {SEED} {COUNT}"
            prepare = deserialize_prepare(raw)
            self.assertTrue(is_ildcp_request(prepare), where)
            self.assertEqual(prepare.amount, 0, where)
            self.assertEqual(prepare.expires_at, EPOCH + line["fields"]["expiresAt"] * MS, where)
            self.assertEqual(prepare.data.hex(), line["fields"]["data"], where)
            if not prepare.data:
                self.assertEqual(serialize_request(prepare.expires_at), raw, where)
            self.assertEqual(serialize(prepare), raw, where)


# -- Python -> node ---------------------------------------------------------------------------


class PythonToNodeTests(SynchronousTestCase):
    """What Python serializes, the npm packages read to the same fields and bytes."""

    def setUp(self) -> None:
        self.node = require_node(**NODE_NEEDS)

    def test_packets(self) -> None:
        packets = PacketMaker(SEED).packets(COUNT)
        wires = [serialize(p) for p in packets]
        self.assertIn(MAX_PREPARE_LENGTH, [len(w) for w in wires])
        results = node_decode(self.node, [("packet", w) for w in wires])
        for i, (packet, wire, got) in enumerate(zip(packets, wires, results)):
            where = f"packet {i} of PacketMaker({SEED}) ({kind_of(packet)})"
            self.assertTrue(got["ok"], f"{where}: ilp-packet refused it: {got.get('error')}")
            self.assertEqual(got["kind"], kind_of(packet), where)
            self.assertEqual(got["fields"], fields_of(packet), where)
            self.assertEqual(bytes.fromhex(got["hex"]), wire, where)

    def test_ildcp_responses(self) -> None:
        maker = PacketMaker(SEED + 1)
        responses = [
            IldcpResponse("example.client", 13, "XAM"),
            IldcpResponse(maker.address(MAX_ADDRESS_LENGTH), 255, "€" * 85),
            IldcpResponse(maker.address(128), 0, ""),
        ] + [maker.ildcp_response() for _ in range(100)]
        wires = [serialize_response(r) for r in responses]
        results = node_decode(self.node, [("ildcp_response", w) for w in wires])
        for i, (resp, wire, got) in enumerate(zip(responses, wires, results)):
            where = f"IL-DCP response {i} ({resp!r:.80})"
            self.assertTrue(got["ok"], f"{where}: ilp-protocol-ildcp refused: {got.get('error')}")
            self.assertEqual(got["fields"], ildcp_fields(resp), where)
            self.assertEqual(bytes.fromhex(got["hex"]), wire, where)

    def test_ildcp_requests(self) -> None:
        maker = PacketMaker(SEED + 2)
        now = dt.datetime.now(UTC)
        prepares = [request_prepare()]
        for _ in range(50):
            # ilp-protocol-ildcp refuses expired requests: an hour to ten years ahead
            when = now + dt.timedelta(seconds=maker.rnd.randint(3600, 10 * 365 * 86400))
            data = b"" if maker.rnd.random() < 0.6 else maker.data()
            prepares.append(Prepare(0, when, ILDCP_CONDITION, ILDCP_DESTINATION, data))
        wires = [serialize(p) for p in prepares]
        for prepare, wire in zip(prepares, wires):
            if not prepare.data:
                self.assertEqual(serialize_request(prepare.expires_at), wire)
        results = node_decode(self.node, [("ildcp_request", w) for w in wires])
        for i, (prepare, wire, got) in enumerate(zip(prepares, wires, results)):
            where = f"IL-DCP request {i}"
            self.assertTrue(got["ok"], f"{where}: ilp-protocol-ildcp refused: {got.get('error')}")
            self.assertEqual(got["fields"]["expiresAt"], ms(prepare.expires_at), where)
            self.assertEqual(got["fields"]["expiresAtIso"], iso(prepare.expires_at), where)
            self.assertEqual(got["fields"]["data"], prepare.data.hex(), where)
            self.assertEqual(bytes.fromhex(got["hex"]), wire, where)


# -- invalid input: where the two agree, and where they differ on purpose ----------------------

SAMPLE = Prepare(
    5, dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), bytes(range(32)), "g.alice", b"hi"
)


def _prepare_with(
    expiry: bytes = b"20300102030405678",
    destination: bytes = b"g.alice",
    destination_field: bytes | None = None,
) -> bytes:
    if destination_field is None:
        destination_field = var_octets(destination)
    content = (
        (5).to_bytes(8, "big") + expiry + bytes(range(32)) + destination_field + var_octets(b"hi")
    )
    return b"\x0c" + var_octets(content)


def _reject_with(triggered_by: bytes = b"g.x", message: bytes = b"m") -> bytes:
    return b"\x0e" + var_octets(
        b"F02" + var_octets(triggered_by) + var_octets(message) + var_octets(b"")
    )


class NodeDifferencesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.node = require_node(**NODE_NEEDS)

    def test_sample_is_read_alike(self) -> None:
        # the builders above make what both sides write
        self.assertEqual(_prepare_with(), serialize(SAMPLE))
        got = node_decode(self.node, [("packet", _prepare_with())])[0]
        self.assertEqual(got["fields"], fields_of(SAMPLE))

    def test_both_refuse(self) -> None:
        wire = serialize(SAMPLE)
        fulfill = serialize(Fulfill(bytes(32), b"x"))
        cases = {
            "empty": b"",
            "unknown type": b"\x0b" + wire[1:],
            "long form for a short envelope length": b"\x0d\x81" + fulfill[1:],
            "envelope longer than the bytes": wire[:-1],
            "destination not an address": _prepare_with(destination=b"x.alice"),
            "destination empty": _prepare_with(destination=b""),
            "timestamp not digits": _prepare_with(expiry=b"2030010203040567x"),
            "non-canonical destination length": _prepare_with(destination_field=b"\x81\x07g.alice"),
            "destination length with a leading zero": _prepare_with(
                destination_field=b"\x82\x00\x07g.alice"
            ),
            "condition cut short": b"\x0c" + var_octets(wire[2:40]),
            "fulfillment cut short": b"\x0d" + var_octets(bytes(20)),
            "reject code cut short": b"\x0e\x02F0",
        }
        names = list(cases)
        results = node_decode(self.node, [("packet", cases[n]) for n in names])
        for name, got in zip(names, results):
            self.assertRaises(InvalidPacketError, deserialize, cases[name])
            self.assertRaises(InvalidPacketError, deserialize, cases[name], strict=False)
            self.assertFalse(got["ok"], f"{name}: ilp-packet accepted it as {got.get('fields')}")

    def test_bytes_after_the_envelope(self) -> None:
        """Both liberal readers read the envelope and ignore what follows (RFC 30).

        ilp-packet 3.1.3 ignores bytes after the envelope; so does ilphttp's
        ``strict=False`` reader, which reads the same fields, and both write
        back only the envelope.  ilphttp's default (strict) reader refuses them.
        """
        packets: list[Packet] = [
            SAMPLE,
            Fulfill(bytes(range(32)), b"x" * 200),
            Reject("F02", "g.x", "no route", b"d"),
        ]
        cases = [
            serialize(p) + extra
            for p in packets
            for extra in (b"\x00", b"garbage", serialize(SAMPLE))
        ]
        results = node_decode(self.node, [("packet", raw) for raw in cases])
        for raw, got in zip(cases, results):
            where = raw.hex()[:40]
            self.assertTrue(got["ok"], f"{where}: ilp-packet refuses it now: {got.get('error')}")
            self.assertRaises(InvalidPacketError, deserialize, raw)
            ours = deserialize(raw, strict=False)
            self.assertEqual(got["fields"], fields_of(ours), where)
            envelope = raw[: envelope_length(raw)]
            self.assertEqual(bytes.fromhex(got["hex"]), envelope, where)
            self.assertEqual(serialize(ours), envelope, where)

    def test_python_is_stricter(self) -> None:
        """Inputs ilp-packet 3.1.3 accepts and ilphttp refuses, on purpose.

        ilp-packet lets ``Date.UTC`` roll Feb 30 over into March, has no cap on
        data, decodes bad UTF-8 to U+FFFD and reads the destination as 7-bit
        ASCII. ilphttp refuses all of these as malformed, with either reader;
        no correct peer sends them, since ilp-packet never writes them.  (Bytes
        after the envelope: :meth:`test_bytes_after_the_envelope`.)
        """
        cases = {
            "Feb 30": _prepare_with(expiry=b"20300230030405678"),
            "month 13": _prepare_with(expiry=b"20301302030405678"),
            "hour 24": _prepare_with(expiry=b"20300102240405678"),
            "data over 32767 bytes": b"\x0d"
            + var_octets(bytes(32) + var_octets(bytes(MAX_DATA_LENGTH + 1))),
            "reject message not UTF-8": _reject_with(message=b"caf\xe9"),
        }
        names = list(cases)
        results = node_decode(self.node, [("packet", cases[n]) for n in names])
        for name, got in zip(names, results):
            self.assertRaises(InvalidPacketError, deserialize, cases[name])
            self.assertRaises(InvalidPacketError, deserialize, cases[name], strict=False)
            self.assertTrue(got["ok"], f"{name}: ilp-packet refuses it now: {got.get('error')}")

    def test_non_ascii_destination(self) -> None:
        """0xe7 is 'g' with the high bit set: Node's 'ascii' decoding drops that bit, so
        ilp-packet reads g.alice where the bytes say something else. ilphttp refuses."""
        raw = _prepare_with(destination=b"\xe7.alice")
        self.assertRaises(InvalidPacketError, deserialize, raw)
        got = node_decode(self.node, [("packet", raw)])[0]
        self.assertTrue(got["ok"], got)
        self.assertEqual(got["fields"]["destination"], "g.alice")

    def test_python_reads_what_node_cannot(self) -> None:
        """Two valid packets ilp-packet 3.1.3 fails on, which ilphttp reads.

        A Prepare expiring at exactly the epoch: its date check is ``!date.valueOf()``,
        and 0 is falsy. A Reject whose triggeredBy is not an ILP address: ilp-packet
        refuses it, ilphttp keeps it (a Reject is passed back whatever its origin
        wrote there). ilphttp must therefore never write either to a JS peer.
        """
        epoch = SAMPLE._replace(expires_at=EPOCH)
        cases = [serialize(epoch), _reject_with(triggered_by=b"not an address")]
        self.assertEqual(deserialize(cases[0]), epoch)
        self.assertEqual(deserialize_reject(cases[1]).triggered_by, "not an address")
        for got in node_decode(self.node, [("packet", raw) for raw in cases]):
            self.assertFalse(got["ok"], got)

    def test_ildcp_both_refuse(self) -> None:
        good = serialize_response(IldcpResponse("g.x", 2, "USD"))
        wrong_fulfillment = serialize(Fulfill(b"\x01" + bytes(31), deserialize_fulfill(good).data))
        cases = {
            "wrong fulfillment": wrong_fulfillment,
            "a Reject": serialize(Reject("F00", "g.parent", "no", b"")),
            "bad client address": serialize(Fulfill(bytes(32), var_octets(b"nope") + b"\x02\x00")),
            "no asset scale": serialize(Fulfill(bytes(32), var_octets(b"g.x"))),
        }
        names = list(cases)
        results = node_decode(self.node, [("ildcp_response", cases[n]) for n in names])
        for name, got in zip(names, results):
            self.assertRaises(IldcpError, deserialize_response, cases[name])
            self.assertFalse(got["ok"], f"{name}: ilp-protocol-ildcp accepted {got.get('fields')}")
