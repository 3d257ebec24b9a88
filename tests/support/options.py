"""A base for tests of ``twistd ilphttp`` options (``ilphttp.tap.Options``) and
the example node config (in ilp-connector's format) they parse."""

from __future__ import annotations

from typing import Any

from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.tap import Options

IN_TOKEN = "incoming-secret-0123456789"
OUT_TOKEN = "outgoing-secret-9876543210"
JWT_SECRET = "a-jwt-secret-of-32-bytes-or-more!!"


class OptionsCase(SynchronousTestCase):
    """Parses ``twistd ilphttp`` options; an error must be one line without secrets."""

    def file(self, content: str, name: str | None = None) -> str:
        path = FilePath(self.mktemp())
        path.makedirs()
        child = path.child(name or "secret")
        child.setContent(content.encode("utf-8"))
        return child.path

    def parse(self, argv: list[str], environ: dict[str, str] | None = None) -> Options:
        options = Options(environ=environ or {})
        options.parseOptions(argv)
        return options

    def usage_error(self, argv: list[str], environ: dict[str, str] | None = None) -> str:
        with self.assertRaises(usage.UsageError) as caught:
            self.parse(argv, environ)
        message = str(caught.exception)
        self.assertNotIn("\n", message, "one clear line")
        self.assertNotIn(IN_TOKEN, message)
        self.assertNotIn(OUT_TOKEN, message)
        return message

    def hub_argv(self) -> list[str]:
        return [
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--incoming-token-file",
            self.file(IN_TOKEN + "\n"),
            "--outgoing-url",
            "http://127.0.0.1:%/",
            "--outgoing-token-file",
            self.file(OUT_TOKEN),
            "--multi",
            "--ildcp-address",
            "test.hub",
            "--asset-code",
            "XRP",
            "--asset-scale",
            "9",
        ]


HUB_CONFIG: dict[str, Any] = {
    "ilpAddress": "test.hub",
    "assetCode": "XRP",
    "assetScale": 9,
    "accounts": {
        "up": {
            "relation": "parent",
            "plugin": "ilp-plugin-http",
            "options": {
                "incoming": {"port": 7001, "staticTokenFile": "up.token"},
                "outgoing": {"url": "http://127.0.0.1:7101/", "staticToken": "up-out"},
            },
        },
        "kids": {
            "relation": "child",
            "options": {
                "multi": True,
                "incoming": {"endpoint": "tcp:7002:interface=127.0.0.1", "staticToken": "k"},
                "outgoing": {"url": "http://127.0.0.1:%/", "staticTokenEnv": "KIDS_OUT"},
            },
        },
        "bob": {
            "relation": "child",
            "options": {"outgoing": {"url": "http://127.0.0.1:7103/", "jwtSecret": JWT_SECRET}},
        },
    },
}
