"""Peer text in log lines: controls, separators and bidi overrides show as escapes."""

from __future__ import annotations

import unicodedata

from twisted.trial.unittest import SynchronousTestCase

from ilphttp.logtext import escape


class EscapeTests(SynchronousTestCase):
    def test_table(self) -> None:
        table: list[tuple[str | bytes, str]] = [
            ("g.alice.bob", "g.alice.bob"),
            ("", ""),
            ("caf\u00e9 \u00fcber \u65e5\u672c", "caf\u00e9 \u00fcber \u65e5\u672c"),
            ("back\\slash 100%", "back\\slash 100%"),  # printable text stays as it is
            ("a\u00a0b", "a\u00a0b"),  # no-break space is printable
            ("a\rb\nc\td", "a\\rb\\nc\\td"),
            ("\x00\x1b[2J\x7f", "\\x00\\x1b[2J\\x7f"),
            ("\x85\x9b", "\\x85\\x9b"),  # C1: NEL and CSI
            ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),
            ("\u202egnp.exe", "\\u202egnp.exe"),  # right-to-left override
            (
                "\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
                "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c",
            ),
            ("\ufeff\u200b", "\\ufeff\\u200b"),
            ("\U000e0041", "\\U000e0041"),  # a tag character: invisible
            ("\ud800", "\\ud800"),  # a lone surrogate would break the log file's encoder
            (b"ok\r\n\xff", "ok\\r\\n\\xff"),
        ]
        for raw, shown in table:
            with self.subTest(raw=raw):
                self.assertEqual(escape(raw), shown)

    def test_forged_log_line(self) -> None:
        """A parent's IL-DCP Reject whose triggered_by tries to start a genuine-looking line."""
        triggered_by = (
            "g.parent\r\n2026-01-01T00:00:00+0000 [ilphttp.node#info] "
            "account bob: token rotated\x1b[1A\x1b[2K"
        )
        line = f"IL-DCP failed: Reject from {escape(triggered_by)}"
        self.assertEqual(len(line.splitlines()), 1)
        self.assertNotIn("\x1b", line)
        self.assertIn("g.parent\\r\\n2026-01-01T00:00:00+0000 [ilphttp.node#info]", line)
        self.assertTrue(line.endswith("\\x1b[1A\\x1b[2K"))
        self.assertTrue(line.isprintable())

    def test_every_code_point_comes_out_printable(self) -> None:
        text = "".join(chr(c) for c in range(0x3000))
        escaped = escape(text)
        # what stays unprintable to str.isprintable is only spaces, private use, unassigned
        left = {unicodedata.category(c) for c in escaped if not c.isprintable()}
        self.assertLessEqual(left, {"Zs", "Co", "Cn"})
        self.assertFalse(any(c in escaped for c in "\r\n\x1b\x7f\x85\u2028\u202e"))
