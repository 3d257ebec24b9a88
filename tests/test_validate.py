"""ilphttp.validate.http_url: the check every configured URL goes through
(outgoing.url, callback URLs, --outgoing-url, ping --url)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ilphttp import validate
from ilphttp.config import options_from_js
from ilphttp.errors import OptionError

#: what a URL's query or user information may carry; never in an error
SECRETS = ("SECRETQ1", "SECRETU1")


class HttpUrlTests(SynchronousTestCase):
    def refused(self, url: str, delimiter: str | None = None) -> str:
        with self.assertRaises(OptionError, msg=url) as caught:
            validate.http_url("outgoing.url", url, delimiter=delimiter)
        message = str(caught.exception)
        self.assertTrue(message.startswith("outgoing.url"), message)
        self.assertNotIn("\n", message)
        return message

    def test_good(self) -> None:
        for url in (
            "http://127.0.0.1:8000/ilp",
            "https://peer.example/ilp?token=x",
            "http://127.0.0.1:/",  # an empty port is the default one
            "http://[::1]:65535/",
            "http://127.0.0.1:00080/",
            "http://h/a%20b",  # percent-encoded
        ):
            self.assertEqual(validate.http_url("outgoing.url", url), url)

    def test_bad_ports(self) -> None:
        """Every port that cannot be connected to is refused now, not at each send."""
        cases = {
            "http://127.0.0.1:-1/": "outgoing.url: port '-1' is not a number (1 to 65535)",
            "http://127.0.0.1:abc/": "outgoing.url: port 'abc' is not a number",
            "http://127.0.0.1:+80/": "port '+80' is not a number",
            "http://127.0.0.1:1:2/": "port '1:2' is not a number",
            "http://[::1]:x/": "port 'x' is not a number",
            "http://127.0.0.1:99999/": "outgoing.url: port 99999 is out of range (1 to 65535)",
            "http://127.0.0.1:0/": "port 0 is out of range",
            "http://h:" + "9" * 5000 + "/": "port 99999999999999999999 is out of range",
            # a template's delimiter is a port only in a multi account
            "http://127.0.0.1:%/": "port '%' is not a number",
        }
        for url, words in cases.items():
            message = self.refused(url)
            self.assertIn(words, message)

    def test_no_host(self) -> None:
        for url in ("http://:8000/", "http://:/", "https://:443/ilp?x=1"):
            self.assertIn("outgoing.url has no host", self.refused(url))

    def test_whitespace_and_controls(self) -> None:
        for url in (
            "http://a b/",
            "http://ab/ c",
            "http://ab/?q=a b",
            " http://ab/",
            "http://ab/\t",
            "http://a\nb/",
            "http://ab/\x00",
            "http://ab/\x7f",
        ):
            self.assertIn("must not contain whitespace or control characters", self.refused(url))

    def test_templates(self) -> None:
        """Each place the delimiter may stand (docs/options.rst, ilphttp.multi)
        passes as a multi account's template, whatever the delimiter."""
        for url, delimiter in (
            ("http://127.0.0.1:%/", "%"),
            ("https://%.hub.example/ilp", "%"),
            ("https://%/ilp", "%"),
            ("http://127.0.0.1:8000/children/%/ilp", "%"),
            ("http://127.0.0.1:8000/ilp?child=%", "%"),
            ("http://[::1]:%/", "%"),
            ("http://127.0.0.1:{child}/", "{child}"),
            ("http://127.0.0.1:<child name>/", "<child name>"),
            ("https://peer.example/ilp", "%"),  # no delimiter: one URL for all
        ):
            self.assertEqual(validate.http_url("outgoing.url", url, delimiter=delimiter), url)
        # Only the first occurrence is a child's name.
        self.assertIn("port '%' is not a number", self.refused("http://%:%/", "%"))
        self.assertIn("has no host", self.refused("http://:%/", "%"))

    def test_no_query_or_user_information_in_errors(self) -> None:
        """A URL's query (and user information) may hold a credential: no
        error echoes it (docs/options.rst: logs show the URL without its query)."""
        bad = (
            "ftp://127.0.0.1/?token=SECRETQ1",
            "http://127.0.0.1:99999/?token=SECRETQ1",
            "http://127.0.0.1:-1/?token=SECRETQ1#SECRETQ1",
            "http://:8000/?token=SECRETQ1",
            "http://SECRETU1:SECRETQ1@127.0.0.1/",
            "http://SECRETU1@127.0.0.1:-1/?token=SECRETQ1",
            "http://127.0.0.1:8000/?token=SECRETQ1 x",
            "http://[::1/?token=SECRETQ1",
        )
        for url in bad:
            message = self.refused(url)
            for secret in SECRETS:
                self.assertNotIn(secret, message)
        self.assertIn("got 'http://127.0.0.1:99999/'", self.refused(bad[1]))

    def test_callback_urls_are_echoed_without_query(self) -> None:
        """outgoing.callbackUrl and incoming.callbackUrls get the same treatment."""
        cases = (
            {
                "outgoing": {
                    "url": "http://127.0.0.1:8000/",
                    "staticToken": "t",
                    "mode": "async",
                    "callbackUrl": "http://127.0.0.1:-1/cb?token=SECRETQ1",
                }
            },
            {
                "incoming": {
                    "port": 0,
                    "staticToken": "t",
                    "callbackUrls": ["http://127.0.0.1:8000/cb?token=SECRETQ1"],
                }
            },
        )
        for opts in cases:
            with self.assertRaises(OptionError) as caught:
                options_from_js(opts)
            message = str(caught.exception)
            self.assertIn("allback", message)
            self.assertNotIn("SECRETQ1", message)

    def test_multi_account_template(self) -> None:
        """A template is a template only in a multi account, with its delimiter."""
        out = {"url": "http://127.0.0.1:{c}/", "staticToken": "t"}
        options = options_from_js({"multi": True, "multiDelimiter": "{c}", "outgoing": out})
        self.assertEqual(options.outgoing.url if options.outgoing else None, out["url"])
        with self.assertRaises(OptionError) as caught:
            options_from_js({"outgoing": out})
        self.assertIn("outgoing.url: port '{c}' is not a number", str(caught.exception))
        with self.assertRaises(OptionError) as caught:
            options_from_js({"outgoing": {"url": "http://127.0.0.1:%/", "staticToken": "t"}})
        self.assertEqual(
            str(caught.exception),
            "outgoing.url: port '%' is not a number (1 to 65535), got 'http://127.0.0.1:%/';"
            " a URL template needs multi: true",
        )
