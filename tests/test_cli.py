"""python -m ilphttp ping: options, the printed replies, exit statuses (loopback only)."""

from __future__ import annotations

import io
import os
import socket
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp import ildcp
from ilphttp.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    USAGE_HINT,
    describe_ildcp,
    describe_reply,
    parse,
    run,
)
from ilphttp.packet import (
    Fulfill,
    Reject,
    condition_from_fulfillment,
    deserialize_prepare,
    serialize_fulfill,
    serialize_reject,
)
from ilphttp.plugin import PluginHttp

TOKEN = "cli-test-token-0123456789"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: the preimage PingTests' handler fulfils
PREIMAGE = bytes(range(100, 132))


class ParseTests(SynchronousTestCase):
    def token_file(self) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(TOKEN + "\n")
        return path

    def test_ildcp(self) -> None:
        options = parse(["ping", "--url", "http://127.0.0.1:1/", "--token-file", self.token_file()])
        self.assertEqual(options["token"], TOKEN)
        self.assertIsNone(options["jwt_secret"])
        self.assertIsNone(options["destination"])
        self.assertEqual(options["timeout"], 10.0)

    def test_prepare(self) -> None:
        argv = ["ping", "-u", "http://127.0.0.1:1/", "-d", "test.bob", "-a", "12", "--data", "hé"]
        options = parse([*argv, "-n", "alice", "-t", "2.5"], {"ILPHTTP_OUTGOING_TOKEN": TOKEN})
        self.assertEqual(options["token"], TOKEN)
        self.assertEqual(
            (options["destination"], options["amount"], options["data"]),
            ("test.bob", 12, "hé".encode()),
        )
        self.assertEqual((options["name"], options["timeout"]), ("alice", 2.5))

    def test_data_that_is_not_utf8_is_sent_as_given(self) -> None:
        """argv bytes that are not UTF-8 reach Python as surrogates (PEP 383)."""
        argv = ["ping", "-u", "http://127.0.0.1:1/", "-d", "test.bob", "-a", "1"]
        env = {"ILPHTTP_OUTGOING_TOKEN": TOKEN}
        options = parse([*argv, "--data", os.fsdecode(b"\xffa\xc3")], env)
        self.assertEqual(options["data"], b"\xffa\xc3")

    def test_jwt_secret(self) -> None:
        options = parse(
            ["ping", "--url", "http://127.0.0.1:1/"], {"ILPHTTP_OUTGOING_JWT_SECRET": "s" * 32}
        )
        self.assertEqual((options["token"], options["jwt_secret"]), (None, "s" * 32))

    def test_errors(self) -> None:
        url = ["--url", "http://127.0.0.1:1/"]
        env = {"ILPHTTP_OUTGOING_TOKEN": TOKEN}
        both = ["--fulfillment", "00" * 32, "--condition", "11" * 32]
        cases: list[tuple[list[str], dict[str, str], str]] = [
            ([], env, "a command is required"),
            (["pong"], env, "Unknown command: pong"),
            (["ping"], env, "--url is required"),
            (["ping", *url], {}, "give --token-file or --jwt-secret-file"),
            (
                ["ping", *url],
                {**env, "ILPHTTP_OUTGOING_JWT_SECRET": "x"},
                "give ILPHTTP_OUTGOING_TOKEN or ILPHTTP_OUTGOING_JWT_SECRET, not both",
            ),
            (
                ["ping", *url, "--token-file", "a", "--jwt-secret-file", "b"],
                env,
                "not both",
            ),
            (["ping", *url, "--token-file", "/nonexistent"], env, "--token-file: cannot read"),
            (
                ["ping", *url],
                {"ILPHTTP_OUTGOING_TOKEN": " \t "},
                "environment variable ILPHTTP_OUTGOING_TOKEN is blank",
            ),
            (["ping", *url, "-a", "1"], env, "--amount needs --destination"),
            (["ping", *url, "--data", "x"], env, "--data needs --destination"),
            (["ping", *url, "-d", "test.bob"], env, "--destination needs --amount"),
            (["ping", *url, "-d", "bob", "-a", "1"], env, "is not a valid ILP address"),
            (["ping", *url, "-d", "test.bob", "-a", "-1"], env, "--amount must be an integer"),
            (["ping", *url, "-d", "test.bob", "-a", "10_000"], env, "--amount must be an integer"),
            (
                ["ping", *url, "-d", "test.bob", "-a", "\u0661\u0660"],
                env,
                "--amount must be an integer",
            ),
            (["ping", *url, "-d", "test.bob", "-a", "9" * 5000], env, "got '9999999999"),
            (["ping", *url, "-d", "test.bob", "-a", str(2**64)], env, "--amount must be"),
            (
                ["ping", *url, "-t", "0"],
                env,
                "--timeout must be seconds, more than 0 and at most 3600, got '0'",
            ),
            (["ping", *url, "-t", "3600.5"], env, "more than 0 and at most 3600, got '3600.5'"),
            (["ping", *url, "-t", "soon"], env, "--timeout must be seconds"),
            (["ping", "--url", "ftp://127.0.0.1/"], env, "--url must be an http:// or https://"),
            (
                ["ping", "--url", "http://127.0.0.1:99999/"],
                env,
                "--url: port 99999 is out of range",
            ),
            (["ping", "--url", "127.0.0.1:8000"], env, "--url must be an http:// or https://"),
            (["ping", "--url", "http://127.0.0.1:abc/"], env, "--url: port 'abc' is not a number"),
            (["ping", "--url", "http://127.0.0.1:-1/"], env, "--url: port '-1' is not a number"),
            (["ping", "--url", "http://:8000/"], env, "--url has no host"),
            (["ping", "--url", "http://a b/"], env, "--url must not contain whitespace"),
            (["ping", *url, "--fulfillment", "00" * 32], env, "--fulfillment needs --destination"),
            (["ping", *url, "--condition", "00" * 32], env, "--condition needs --destination"),
            (
                ["ping", *url, "-d", "test.bob", "-a", "1", *both],
                env,
                "give --fulfillment or --condition, not both",
            ),
            (
                ["ping", *url, "-d", "test.bob", "-a", "1", "--fulfillment", "00" * 31],
                env,
                "--fulfillment must be 32 bytes as 64 hex digits, got '" + "00" * 31 + "'",
            ),
            (
                ["ping", *url, "-d", "test.bob", "-a", "1", "--fulfillment", "zz" * 32],
                env,
                "--fulfillment must be 32 bytes as 64 hex digits",
            ),
            (
                ["ping", *url, "-d", "test.bob", "-a", "1", "--condition", "00" * 33],
                env,
                "--condition must be 32 bytes as 64 hex digits",
            ),
            # not read as an abbreviation of --token-file (the token as a file name)
            (["ping", *url, "--token", TOKEN], {}, "--token is not an option"),
        ]
        for argv, environ, words in cases:
            with self.assertRaises(usage.UsageError, msg=repr(argv)) as caught:
                parse(argv, environ)
            self.assertIn(words, str(caught.exception))
            self.assertNotIn(TOKEN, str(caught.exception))

    def test_conditions(self) -> None:
        """--fulfillment gives the condition's preimage, --condition the condition; else random."""
        argv = ["ping", "-u", "http://127.0.0.1:1/", "-d", "test.bob", "-a", "1"]
        env = {"ILPHTTP_OUTGOING_TOKEN": TOKEN}
        given = parse([*argv, "--fulfillment", PREIMAGE.hex().upper()], env)
        self.assertEqual(
            (given["fulfillment"], given["condition"]),
            (PREIMAGE, condition_from_fulfillment(PREIMAGE)),
        )
        condition = bytes(range(32))
        given = parse([*argv, "--condition", condition.hex()], env)
        self.assertEqual((given["fulfillment"], given["condition"]), (None, condition))
        first, second = parse(argv, env), parse(argv, env)
        self.assertEqual(first["condition"], condition_from_fulfillment(first["fulfillment"]))
        self.assertNotEqual(first["condition"], second["condition"])

    def test_url_with_credentials(self) -> None:
        out = io.StringIO()
        argv = ["ping", "--url", "http://u:hunter2pass@127.0.0.1:1/"]
        status = self.successResultOf(run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN}))
        self.assertEqual(status, EXIT_USAGE)
        self.assertIn("--url: credentials in the URL are not supported", out.getvalue())
        self.assertNotIn("hunter2pass", out.getvalue())

    def test_unusable_port_is_a_usage_error(self) -> None:
        """A port that cannot be connected to is refused before any packet (exit
        2), and the error shows the URL without its query."""
        for url in ("http://127.0.0.1:abc/?token=SECRETQ3", "http://127.0.0.1:-1/?token=SECRETQ3"):
            out = io.StringIO()
            argv = ["ping", "--url", url]
            status = self.successResultOf(
                run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN})
            )
            self.assertEqual(status, EXIT_USAGE, out.getvalue())
            lines = out.getvalue().splitlines()
            self.assertEqual(lines[1:], [USAGE_HINT])
            self.assertIn("is not a number (1 to 65535), got 'http://127.0.0.1:", lines[0])
            self.assertNotIn("SECRETQ3", out.getvalue())

    def test_bad_url(self) -> None:
        """A bad --url is a usage error like the others: the flag's name, then the hint."""
        out = io.StringIO()
        argv = ["ping", "--url", "ftp://127.0.0.1/"]
        status = self.successResultOf(run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN}))
        self.assertEqual(status, EXIT_USAGE)
        self.assertEqual(
            out.getvalue().splitlines(),
            [
                "ilphttp: --url must be an http:// or https:// URL, got 'ftp://127.0.0.1/'",
                USAGE_HINT,
            ],
        )

    def test_plugin_option_error(self) -> None:
        """What only the plugin refuses is reported with our flag's name too."""
        out = io.StringIO()
        argv = ["ping", "--url", "http://127.0.0.1:1/", "--name", "a\nb"]
        status = self.successResultOf(run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN}))
        self.assertEqual(status, EXIT_USAGE)
        self.assertEqual(
            out.getvalue().splitlines(),
            ["ilphttp: --name must not contain line breaks", USAGE_HINT],
        )

    def test_a_token_with_a_line_break_is_a_usage_error(self) -> None:
        """A token file whose token holds a line break would inject a header."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("TOPSECRET\nX-Injected: yes\n")
        out = io.StringIO()
        argv = ["ping", "--url", "http://127.0.0.1:1/", "--token-file", path]
        status = self.successResultOf(run(reactor, argv, out, {}))
        self.assertEqual(status, EXIT_USAGE)
        lines = out.getvalue().splitlines()
        self.assertIn("must not contain control characters", lines[0])
        self.assertNotIn("TOPSECRET", out.getvalue())

    def test_run_usage_error(self) -> None:
        out = io.StringIO()
        status = self.successResultOf(run(reactor, ["ping"], out, {}))
        self.assertEqual(status, EXIT_USAGE)
        self.assertEqual(out.getvalue(), f"ilphttp: --url is required\n{USAGE_HINT}\n")

    def help_text(self, argv: list[str]) -> str:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            parse(argv, {})
        self.assertIn(caught.exception.code, (None, 0))
        return out.getvalue()

    def test_ping_help(self) -> None:
        """A clean usage line first; the new options and the exit statuses are listed."""
        text = self.help_text(["ping", "--help"])
        lines = text.splitlines()
        self.assertEqual(
            lines[0],
            "Usage: ilphttp ping --url URL [--destination ADDRESS --amount N] [options]",
        )
        for words in ("--fulfillment=", "--condition=", "ILPHTTP_OUTGOING_TOKEN"):
            self.assertIn(words, text)
        start = lines.index("Exit status:")
        self.assertEqual(
            [line.split()[0] for line in lines[start + 1 : start + 4]],
            [str(EXIT_OK), str(EXIT_FAILED), str(EXIT_USAGE)],
        )
        self.assertIn("Fulfill", lines[start + 1])
        self.assertIn("Reject", lines[start + 2])
        self.assertIn("usage", lines[start + 3])

    def test_help(self) -> None:
        text = self.help_text(["--help"])
        self.assertEqual(text.splitlines()[0], "Usage: ilphttp <command> [options]")
        self.assertIn("ping", text)


class DescribeTests(SynchronousTestCase):
    """How replies are printed (pure)."""

    def test_reject(self) -> None:
        reply = serialize_reject(Reject("F02", "test.hub", "no route to test.x", b"why"))
        text, ok = describe_reply(reply, 0.0123)
        self.assertFalse(ok)
        self.assertEqual(
            text.splitlines(),
            [
                "Reject F02 Unreachable after 12.3 ms",
                "  triggered by: test.hub",
                "  message:      no route to test.x",
                "  data:         'why' (3 bytes)",
            ],
        )

    def test_fulfill(self) -> None:
        reply = serialize_fulfill(Fulfill(bytes(range(32)), b"\xff\x00"))
        text, ok = describe_reply(reply, 0.001)
        self.assertTrue(ok)
        self.assertIn("Fulfill after 1.0 ms", text)
        self.assertIn(bytes(range(32)).hex(), text)
        self.assertIn("ff00 (2 bytes, hex)", text)

    def test_garbage(self) -> None:
        self.assertEqual(describe_reply(b"nonsense", 0)[1], False)
        self.assertIn("invalid reply", describe_ildcp(b"nonsense", 0)[0])

    def test_ildcp(self) -> None:
        reply = ildcp.serialize_response(ildcp.IldcpResponse("test.hub.alice", 9, "XRP"))
        text, ok = describe_ildcp(reply, 0.002)
        self.assertTrue(ok)
        self.assertIn("address:      test.hub.alice", text)
        self.assertIn("asset:        XRP, scale 9", text)
        text, ok = describe_ildcp(serialize_reject(Reject("F00", "test.hub", "bad name")), 0)
        self.assertFalse(ok)
        self.assertTrue(text.startswith("IL-DCP failed: Reject F00 Bad Request"))
        # a Fulfill that is not an IL-DCP answer
        text, ok = describe_ildcp(serialize_fulfill(Fulfill(bytes(32), b"\x01")), 0)
        self.assertFalse(ok)
        self.assertIn("IL-DCP failed", text)


class PingTests(TestCase):
    """ping against a real PluginHttp on 127.0.0.1."""

    def setUp(self) -> Deferred[None]:
        self.received: list[Any] = []
        self.server = PluginHttp(
            incoming={"endpoint": "tcp:0:interface=127.0.0.1", "static_token": TOKEN},
            multi=True,
            outgoing={"url": "http://127.0.0.1:1/%/", "static_token": "unused"},
            ildcp={"client_address": "test.hub", "asset_scale": 9, "asset_code": "XRP"},
        )
        self.server.register_data_handler(self.handler)
        d: Deferred[None] = self.server.connect()
        return d

    def tearDown(self) -> Deferred[None]:
        d: Deferred[None] = self.server.disconnect()
        return d

    def handler(self, data: bytes) -> bytes:
        """Fulfils a Prepare whose condition is PREIMAGE's; rejects any other with F99."""
        prepare = deserialize_prepare(data)
        self.received.append(prepare)
        if prepare.execution_condition == condition_from_fulfillment(PREIMAGE):
            return serialize_fulfill(Fulfill(PREIMAGE, b"paid"))
        return serialize_reject(Reject("F99", "test.hub", "seen", prepare.data))

    @property
    def url(self) -> str:
        assert self.server.port is not None
        return f"http://127.0.0.1:{self.server.port.getHost().port}/"

    @inlineCallbacks
    def test_ildcp(self) -> Any:
        out = io.StringIO()
        argv = ["ping", "--url", self.url, "--name", "alice"]
        status = yield run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN})
        self.assertEqual(status, EXIT_OK)
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], f"IL-DCP request (peer.config) -> {self.url}")
        self.assertTrue(lines[1].startswith("IL-DCP answer after "))
        self.assertIn("address:      test.hub.alice", out.getvalue())

    @inlineCallbacks
    def test_ildcp_without_name(self) -> Any:
        """A multi peer needs our name; the Reject says so and the status is 1."""
        out = io.StringIO()
        status = yield run(
            reactor, ["ping", "--url", self.url], out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN}
        )
        self.assertEqual(status, EXIT_FAILED)
        self.assertIn("IL-DCP failed: Reject F00", out.getvalue())

    @inlineCallbacks
    def test_prepare(self) -> Any:
        out = io.StringIO()
        argv = ["ping", "--url", self.url, "-d", "test.hub.bob", "-a", "7", "--data", "hi"]
        status = yield run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN})
        self.assertEqual(status, EXIT_FAILED)
        [prepare] = self.received
        self.assertEqual(
            (prepare.destination, prepare.amount, prepare.data), ("test.hub.bob", 7, b"hi")
        )
        text = out.getvalue()
        self.assertIn("Prepare of 7 to test.hub.bob", text)
        condition = prepare.execution_condition
        self.assertIn(f"  condition:    {condition.hex()} (random)\n", text)
        [shown] = [line for line in text.splitlines() if line.startswith("  fulfillment:  ")]
        self.assertEqual(condition_from_fulfillment(bytes.fromhex(shown.split()[1])), condition)
        self.assertIn("Reject F99 Application Error", text)
        self.assertIn("message:      seen", text)
        self.assertIn("data:         'hi' (2 bytes)", text)

    @inlineCallbacks
    def test_prepare_with_fulfillment(self) -> Any:
        """The handler checks the condition: with --fulfillment it fulfils, and ping exits 0."""
        out = io.StringIO()
        argv = ["ping", "--url", self.url, "-d", "test.hub.bob", "-a", "7"]
        argv += ["--fulfillment", PREIMAGE.hex()]
        status = yield run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN})
        self.assertEqual(status, EXIT_OK, out.getvalue())
        [prepare] = self.received
        self.assertEqual(prepare.execution_condition, condition_from_fulfillment(PREIMAGE))
        lines = out.getvalue().splitlines()
        self.assertEqual(
            lines[:3],
            [
                f"Prepare of 7 to test.hub.bob -> {self.url}",
                f"  condition:    {prepare.execution_condition.hex()} (SHA-256 of the fulfillment)",
                f"  fulfillment:  {PREIMAGE.hex()}",
            ],
        )
        self.assertTrue(lines[3].startswith("Fulfill after "), lines)
        self.assertIn("data:         'paid' (4 bytes)", out.getvalue())

    @inlineCallbacks
    def test_prepare_with_condition(self) -> Any:
        """--condition alone: the handler knows the fulfillment; ping shows it does not."""
        out = io.StringIO()
        condition = condition_from_fulfillment(PREIMAGE)
        argv = ["ping", "--url", self.url, "-d", "test.hub.bob", "-a", "7"]
        status = yield run(
            reactor, [*argv, "--condition", condition.hex()], out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN}
        )
        self.assertEqual(status, EXIT_OK, out.getvalue())
        text = out.getvalue()
        self.assertIn(f"  condition:    {condition.hex()} (given)\n", text)
        self.assertIn("  fulfillment:  (unknown)\n", text)
        self.assertIn("Fulfill after", text)
        self.assertIn(f"fulfillment:  {PREIMAGE.hex()}", text)

    @inlineCallbacks
    def test_wrong_token(self) -> Any:
        out = io.StringIO()
        argv = ["ping", "--url", self.url, "-n", "alice"]
        status = yield run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": "wrong"})
        self.assertEqual(status, EXIT_FAILED)
        self.assertIn("HTTP 401", out.getvalue())

    @inlineCallbacks
    def test_connection_refused(self) -> Any:
        """Nobody listens: the plugin's T01 Reject is printed, the status is 1."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = io.StringIO()
        argv = ["ping", "--url", f"http://127.0.0.1:{port}/", "-d", "test.x", "-a", "1"]
        status = yield run(reactor, argv, out, {"ILPHTTP_OUTGOING_TOKEN": TOKEN})
        self.assertEqual(status, EXIT_FAILED)
        self.assertIn("Reject T01 Peer Unreachable", out.getvalue())

    @inlineCallbacks
    def test_module_entry_point(self) -> Any:
        """``python -m ilphttp`` exits 0 on an answer, 1 on a Reject, 2 on bad usage."""
        env = dict(os.environ)
        env["ILPHTTP_OUTGOING_TOKEN"] = TOKEN
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        argv = ["-m", "ilphttp", "ping", "--url", self.url, "--name", "bob"]
        out, err, code = yield getProcessOutputAndValue(sys.executable, argv, env=env, path=ROOT)
        self.assertEqual(code, EXIT_OK, err)
        self.assertIn(b"address:      test.hub.bob", out)
        argv = ["-m", "ilphttp", "ping", "--url", self.url, "-d", "test.hub.x", "-a", "1"]
        out, err, code = yield getProcessOutputAndValue(sys.executable, argv, env=env, path=ROOT)
        self.assertEqual(code, EXIT_FAILED, err)
        self.assertIn(b"Reject F99", out)
        self.assertNotIn(b"Traceback", err)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, [*argv, "--data", b"\xff"], env=env, path=ROOT
        )
        self.assertEqual(code, EXIT_FAILED, err)
        self.assertIn(b"Reject F99", out)
        self.assertNotIn(b"Traceback", err)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "ilphttp", "ping"], env=env, path=ROOT
        )
        self.assertEqual(code, EXIT_USAGE)
        self.assertEqual(err.decode().splitlines(), ["ilphttp: --url is required", USAGE_HINT])
        self.assertNotIn(b"Traceback", err)
