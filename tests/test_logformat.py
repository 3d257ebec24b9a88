"""JSON and text log observers: fields, redaction of secrets, escaping of peer text."""

from __future__ import annotations

import io
import json
from typing import Any

import jwt
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.logformat import (
    FORMATS,
    REDACTED,
    json_observer,
    redact_text,
    text_observer,
    to_json_dict,
)

A_JWT = jwt.encode({"sub": "bob", "exp": 2_000_000_000}, "the-shared-secret", algorithm="HS256")
WHEN = 1_767_323_045.678  # 2026-01-02T03:04:05.678Z


def _logger(observer: ILogObserver) -> Logger:
    publisher = LogPublisher(observer)
    return Logger(namespace="ilphttp.test", observer=publisher)


def _json_lines(emit: Any, level: LogLevel = LogLevel.debug) -> list[dict[str, Any]]:
    out = io.StringIO()
    emit(_logger(json_observer(out, level)))
    text = out.getvalue()
    self_check = [line for line in text.split("\n") if line]
    assert text.isascii()
    return [json.loads(line) for line in self_check]


class JsonTests(SynchronousTestCase):
    def test_packet_event(self) -> None:
        def emit(log: Logger) -> None:
            log.debug(
                "{account}: {code} for {destination}",
                event="packet",
                account="bob",
                code="F02",
                destination="g.x\u202ey",
                amount=10,
                duration_ms=1.25,
                direction="incoming",
            )

        [line] = _json_lines(emit)
        self.assertRegex(line.pop("time"), r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
        self.assertEqual(
            line,
            {
                "level": "debug",
                "namespace": "ilphttp.test",
                "event": "packet",
                "message": "bob: F02 for g.x\u202ey",
                "account": "bob",
                "code": "F02",
                "destination": "g.x\u202ey",
                "amount": 10,
                "duration_ms": 1.25,
                "direction": "incoming",
            },
        )

    def test_event_is_the_message_without_an_event_key(self) -> None:
        [line] = _json_lines(lambda log: log.info("account {account} started", account="bob"))
        self.assertEqual(
            (line["event"], line["account"], line["level"]),
            ("account bob started", "bob", "info"),
        )
        self.assertNotIn("message", line)

    def test_level_filter(self) -> None:
        def emit(log: Logger) -> None:
            log.debug("quiet")
            log.info("loud")

        self.assertEqual([line["event"] for line in _json_lines(emit, LogLevel.info)], ["loud"])

    def test_no_secret_ever_appears(self) -> None:
        def emit(log: Logger) -> None:
            log.info(
                "auth with {token} and {authorization} ({note})",
                token="in-secret",
                authorization=f"Bearer {A_JWT}",
                static_token="out-secret",
                jwtSecret="the-shared-secret",
                incomingPassword="pw",
                note=f"peer sent {A_JWT}",
                header="Bearer raw-token-value",
            )
            try:
                raise ValueError(f"bad token {A_JWT}")
            except ValueError:
                log.failure("unexpected")  # critical: the traceback goes in too

        text = io.StringIO()
        out = io.StringIO()
        for observer in (json_observer(out), text_observer(text)):
            emit(_logger(observer))
        for written in (out.getvalue(), text.getvalue()):
            for secret in ("in-secret", "out-secret", "the-shared-secret", "pw", A_JWT):
                self.assertNotIn(secret, written)
            self.assertNotIn("raw-token-value", written)
        first, failure = (json.loads(x) for x in out.getvalue().splitlines())
        self.assertEqual(first["token"], REDACTED)
        self.assertEqual(first["jwtSecret"], REDACTED)
        self.assertEqual(first["note"], f"peer sent {REDACTED}")
        self.assertEqual(first["header"], f"Bearer {REDACTED}")
        self.assertIn(f"auth with {REDACTED} and {REDACTED}", first["event"])
        self.assertEqual(failure["failure"], f"ValueError: bad token {REDACTED}")
        self.assertIn("Traceback", failure["traceback"])

    def test_failure_below_critical_has_no_traceback(self) -> None:
        def emit(log: Logger) -> None:
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                log.failure("expected kind of trouble", level=LogLevel.warn)

        [line] = _json_lines(emit)
        self.assertEqual(line["failure"], "ZeroDivisionError: division by zero")
        self.assertNotIn("traceback", line)
        self.assertEqual(line["level"], "warn")

    def test_objects_and_twisted_keys_are_left_out(self) -> None:
        event = {
            "log_format": "x {obj}",
            "log_level": LogLevel.info,
            "log_namespace": "n",
            "log_time": WHEN,
            "obj": object(),
            "ratio": float("nan"),
            "isError": 0,
        }
        line = to_json_dict(event)
        self.assertEqual(line["time"], "2026-01-02T03:04:05.678Z")
        self.assertNotIn("obj", line)
        self.assertNotIn("isError", line)
        self.assertEqual(line["ratio"], "nan")
        json.dumps(line, allow_nan=False)

    def test_unformattable_event_stays_one_line_and_redacted(self) -> None:
        [line] = _json_lines(lambda log: log.info("{missing} {token}", token="in-secret"))
        self.assertNotIn("in-secret", json.dumps(line))
        self.assertIn("Unable to format event", line["event"])

    def test_formats(self) -> None:
        self.assertEqual(sorted(FORMATS), ["json", "text"])


class TextTests(SynchronousTestCase):
    def test_peer_text_is_escaped(self) -> None:
        out = io.StringIO()
        forged = "g.parent\r\n2026-01-01T00:00:00.000Z [ilphttp.node#info] all good\x1b[1A"
        text_observer(out)(
            {
                "log_format": "IL-DCP Reject from {triggered_by}",
                "log_level": LogLevel.info,
                "log_namespace": "ilphttp.test",
                "log_time": WHEN,
                "triggered_by": forged,
            }
        )
        written = out.getvalue()
        self.assertEqual(written.count("\n"), 1)
        self.assertEqual(
            written,
            "2026-01-02T03:04:05.678Z [ilphttp.test#info] IL-DCP Reject from "
            "g.parent\\r\\n2026-01-01T00:00:00.000Z [ilphttp.node#info] all good\\x1b[1A\n",
        )

    def test_critical_failure_traceback_indented(self) -> None:
        out = io.StringIO()
        log = _logger(text_observer(out))
        try:
            raise KeyError("k\x1b")
        except KeyError:
            log.failure("boom")
        first, *rest = out.getvalue().splitlines()
        self.assertIn("[ilphttp.test#critical] boom (KeyError: 'k\\x1b')", first)
        self.assertTrue(rest and all(line.startswith("\t") for line in rest))
        self.assertNotIn("\x1b", out.getvalue())

    def test_redact_text(self) -> None:
        self.assertEqual(redact_text("a.b.c"), "a.b.c")  # an address is not a JWT
        self.assertEqual(redact_text(f"x {A_JWT} y"), f"x {REDACTED} y")


def _logger_name(node: Any) -> str:
    import ast

    if isinstance(node, ast.Name):
        return str(node.id)
    return str(node.attr) if isinstance(node, ast.Attribute) else ""


def _log_calls() -> list[tuple[str, str, list[str]]]:
    """(module, format string, keyword names) of each ``<logger>.<level>("...", k=...)``
    call in ilphttp whose format is a literal (implicit concatenation included)."""
    import ast
    import pathlib

    import ilphttp

    levels = {"debug", "info", "warn", "error", "critical", "failure"}
    found = []
    for path in sorted(pathlib.Path(ilphttp.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in levels
                and _logger_name(node.func.value).endswith("log")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            keywords = [k.arg for k in node.keywords if k.arg is not None]
            found.append((path.name, node.args[0].value, keywords))
    return found


class EveryLogCallTests(SynchronousTestCase):
    """Each log line ilphttp writes renders under --log-format json and text with the
    fields its call gives, whatever their names ({message}, {why}, ...)."""

    def test_every_format_string_renders(self) -> None:
        calls = _log_calls()
        formats = {fmt for _, fmt, _ in calls}
        self.assertGreater(len(formats), 50)
        # the ones that were garbled: a sanity check that the scan finds them
        self.assertIn("{url}: {code} {message}{more}", formats)
        self.assertTrue(any("{why}" in fmt for fmt in formats), formats)
        for module, fmt, keywords in calls:
            fields = {name: 7 if f"{{{name}:" in fmt else f"v-{name}" for name in keywords}
            event = {
                "log_format": fmt,
                "log_level": LogLevel.info,
                "log_namespace": "ilphttp.x",
                "log_time": WHEN,
                **fields,
            }
            for name, observer in FORMATS.items():
                out = io.StringIO()
                observer(out, LogLevel.debug)(event)
                line = out.getvalue()
                self.assertNotIn("Unable to format event", line, f"{module}: {fmt!r} ({name})")
                for key, value in fields.items():
                    if f"{{{key}}}" in fmt and not any(
                        s in key for s in ("token", "secret", "jwt", "password")
                    ):
                        self.assertIn(str(value), line, f"{module}: {fmt!r} ({name})")

    def test_the_client_line_keeps_its_message(self) -> None:
        [line] = _json_lines(
            lambda log: log.info(
                "{url}: {code} {message}{more}",
                url="http://127.0.0.1:1/",
                code="T01",
                message="peer unreachable",
                more="",
            )
        )
        self.assertEqual(line["event"], "http://127.0.0.1:1/: T01 peer unreachable")
        out = io.StringIO()
        _logger(text_observer(out, LogLevel.debug)).warn("gave up: {why}", why="no answer")
        self.assertIn("gave up: no answer", out.getvalue())
