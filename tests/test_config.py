"""Plugin options in both spellings, legacy aliases, and every refusal naming its option."""

from __future__ import annotations

import base64
import warnings
from functools import partial
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from treq.testing import RequestTraversalAgent
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import ilphttp
from ilphttp.config import (
    DEFAULT_JWT_EXPIRY,
    IncomingOptions,
    OptionError,
    OutgoingOptions,
    PluginOptions,
)
from ilphttp.ildcp import IldcpResponse
from ilphttp.plugin import PluginHttp
from tests.support.certs import CertificateAuthority
from tests.support.clients import request

URL = "http://127.0.0.1:9/ilp"


def py(
    incoming: dict[str, Any] | None = None, outgoing: dict[str, Any] | None = None, **top: Any
) -> PluginOptions:
    return PluginHttp(incoming=incoming, outgoing=outgoing, reactor=Clock(), **top).options


def js(opts: dict[str, Any]) -> PluginOptions:
    return PluginHttp.from_options(opts, reactor=Clock()).options


class BothSpellingsTests(SynchronousTestCase):
    """Every option, spelled the Python way and the JS way, gives the same options."""

    def test_every_option_in_both_spellings(self) -> None:
        ca = CertificateAuthority()
        directory = self.mktemp()
        ca_file = ca.write_cert(directory)
        cert_file, key_file = ca.issue("alice", client=True).write(directory)
        from_py = py(
            incoming={
                "port": 8123,
                "static_token": "in-static",
                "jwt_secret": "in-jwt",
                "client_identity": "bob.peer.test",
            },
            outgoing={
                "url": "http://127.0.0.1:9/%/ilp",
                "static_token": "out-static",
                "jwt_secret": "out-jwt",
                "jwt_expiry": 12,
                "http2": True,
                "http2_max_requests_per_session": 50,
                "name": "alice",
                "send_ilp_destination": True,
                "ca_file": ca_file,
                "client_cert_file": cert_file,
                "client_key_file": key_file,
            },
            multi=True,
            multi_delimiter="%",
            ildcp={"client_address": "test.hub", "asset_scale": 9, "asset_code": "XRP"},
            address="test.hub.me",
        )
        from_js = js(
            {
                "incoming": {
                    "port": 8123,
                    "staticToken": "in-static",
                    "jwtSecret": "in-jwt",
                    "clientIdentity": "bob.peer.test",
                },
                "outgoing": {
                    "url": "http://127.0.0.1:9/%/ilp",
                    "staticToken": "out-static",
                    "jwtSecret": "out-jwt",
                    "jwtExpiry": 12000,
                    "http2": True,
                    "http2MaxRequestsPerSession": 50,
                    "name": "alice",
                    "sendIlpDestination": True,
                    "caFile": ca_file,
                    "clientCertFile": cert_file,
                    "clientKeyFile": key_file,
                },
                "multi": True,
                "multiDelimiter": "%",
                "ildcp": {"clientAddress": "test.hub", "assetScale": 9, "assetCode": "XRP"},
                "address": "test.hub.me",
            }
        )
        self.assertEqual(from_py, from_js)
        self.assertEqual(
            from_py.incoming,
            IncomingOptions(
                port=8123,
                endpoint=None,
                static_token="in-static",
                jwt_secret="in-jwt",
                client_identity="bob.peer.test",
            ),
        )
        self.assertEqual(
            from_py.outgoing,
            OutgoingOptions(
                url="http://127.0.0.1:9/%/ilp",
                static_token="out-static",
                jwt_secret="out-jwt",
                jwt_expiry=12.0,
                bearer=True,
                http2=True,
                http2_max_requests_per_session=50,
                name="alice",
                send_ilp_destination=True,
                ca_file=ca_file,
                client_cert_file=cert_file,
                client_key_file=key_file,
            ),
        )
        self.assertTrue(from_py.multi)
        self.assertEqual(from_py.multi_delimiter, "%")
        self.assertEqual(from_py.ildcp, IldcpResponse("test.hub", 9, "XRP"))
        self.assertEqual(from_py.address, "test.hub.me")

    def test_defaults(self) -> None:
        options = py(incoming={"static_token": "t"}, outgoing={"url": URL, "static_token": "u"})
        self.assertEqual(
            options,
            js({"incoming": {"staticToken": "t"}, "outgoing": {"url": URL, "staticToken": "u"}}),
        )
        assert options.outgoing is not None and options.incoming is not None
        self.assertEqual(options.outgoing.jwt_expiry, DEFAULT_JWT_EXPIRY)
        self.assertEqual(DEFAULT_JWT_EXPIRY, 30.0)
        self.assertTrue(options.outgoing.bearer)
        self.assertFalse(options.outgoing.http2)
        self.assertFalse(options.outgoing.send_ilp_destination)
        self.assertIsNone(options.outgoing.name)
        self.assertIsNone(options.incoming.listen_description)
        self.assertFalse(options.multi)
        self.assertEqual(options.multi_delimiter, "%")
        self.assertIsNone(options.ildcp)
        self.assertIsNone(options.address)

    def test_endpoint_and_port_listen_descriptions(self) -> None:
        by_port = py(incoming={"port": 8000, "static_token": "t"})
        by_endpoint = js(
            {"incoming": {"endpoint": "tcp:8001:interface=127.0.0.1", "staticToken": "t"}}
        )
        assert by_port.incoming is not None and by_endpoint.incoming is not None
        self.assertEqual(by_port.incoming.listen_description, "tcp:8000")
        self.assertEqual(by_endpoint.incoming.listen_description, "tcp:8001:interface=127.0.0.1")

    def test_send_only_and_receive_only(self) -> None:
        send_only = js({"outgoing": {"url": URL, "staticToken": "t"}})
        self.assertIsNone(send_only.incoming)
        receive_only = py(incoming={"jwt_secret": "s"})
        self.assertIsNone(receive_only.outgoing)

    def test_numeric_name_is_a_string(self) -> None:
        options = js({"outgoing": {"url": URL, "staticToken": "t", "name": 8000}})
        assert options.outgoing is not None
        self.assertEqual(options.outgoing.name, "8000")

    def test_private_keys_are_ignored(self) -> None:
        options = js(
            {
                "_store": object(),
                "incoming": {"staticToken": "t", "_x": 1},
                "outgoing": {"url": URL, "staticToken": "u", "_y": 2},
            }
        )
        assert options.incoming is not None
        self.assertEqual(options.incoming.static_token, "t")

    def test_address_defaults_to_ildcp_address(self) -> None:
        options = py(
            incoming={"static_token": "t"},
            ildcp=IldcpResponse("test.parent.me", 2, "USD"),
        )
        self.assertEqual(options.address, "test.parent.me")

    def test_from_options_is_the_plugin(self) -> None:
        plugin = PluginHttp.from_options({"incoming": {"staticToken": "t"}}, reactor=Clock())
        self.assertIsInstance(plugin, ilphttp.PluginHttp)
        self.assertIsNotNone(plugin.resource)


class LegacyAliasTests(SynchronousTestCase):
    def test_incoming_secret_is_the_jwt_secret(self) -> None:
        for options in (py(incoming={"secret": "s"}), js({"incoming": {"secret": "s"}})):
            assert options.incoming is not None
            self.assertEqual(options.incoming.jwt_secret, "s")
            self.assertIsNone(options.incoming.static_token)

    def test_incoming_secret_token_is_the_static_token(self) -> None:
        for options in (
            py(incoming={"secret_token": "t"}),
            js({"incoming": {"secretToken": "t"}}),
        ):
            assert options.incoming is not None
            self.assertEqual(options.incoming.static_token, "t")
            self.assertIsNone(options.incoming.jwt_secret)

    def test_legacy_names_win_over_new_ones(self) -> None:
        # The JS plugin: `incoming.secret || incoming.jwtSecret`, and so on.
        options = js(
            {
                "incoming": {
                    "secret": "legacy-jwt",
                    "jwtSecret": "new-jwt",
                    "secretToken": "legacy-static",
                    "staticToken": "new-static",
                },
                "outgoing": {
                    "url": URL,
                    "secret": "legacy-jwt-out",
                    "jwtSecret": "new-jwt-out",
                    "secretToken": "legacy-static-out",
                    "staticToken": "new-static-out",
                    "tokenExpiry": 5000,
                    "jwtExpiry": 9000,
                },
            }
        )
        assert options.incoming is not None and options.outgoing is not None
        self.assertEqual(options.incoming.jwt_secret, "legacy-jwt")
        self.assertEqual(options.incoming.static_token, "legacy-static")
        self.assertEqual(options.outgoing.jwt_secret, "legacy-jwt-out")
        self.assertEqual(options.outgoing.static_token, "legacy-static-out")
        self.assertEqual(options.outgoing.jwt_expiry, 5.0)

    def test_python_legacy_precedence(self) -> None:
        options = py(
            outgoing={
                "url": URL,
                "secret": "a",
                "jwt_secret": "b",
                "token_expiry": 3,
                "jwt_expiry": 40,
            }
        )
        assert options.outgoing is not None
        self.assertEqual(options.outgoing.jwt_secret, "a")
        self.assertEqual(options.outgoing.jwt_expiry, 3.0)

    def test_new_name_used_when_legacy_is_null(self) -> None:
        options = js({"outgoing": {"url": URL, "secret": None, "jwtSecret": "new"}})
        assert options.outgoing is not None
        self.assertEqual(options.outgoing.jwt_secret, "new")
        self.assertTrue(options.outgoing.bearer)

    def test_legacy_outgoing_option_drops_bearer(self) -> None:
        for outgoing in (
            {"url": URL, "secret": "s"},
            {"url": URL, "secretToken": "t"},
            {"url": URL, "secret": "s", "staticToken": "t"},
        ):
            options = js({"outgoing": outgoing})
            assert options.outgoing is not None
            self.assertFalse(options.outgoing.bearer, outgoing)
        for py_outgoing in ({"url": URL, "secret": "s"}, {"url": URL, "secret_token": "t"}):
            options = py(outgoing=py_outgoing)
            assert options.outgoing is not None
            self.assertFalse(options.outgoing.bearer, py_outgoing)

    def test_new_outgoing_options_keep_bearer(self) -> None:
        for outgoing in ({"url": URL, "jwtSecret": "s"}, {"url": URL, "staticToken": "t"}):
            options = js({"outgoing": outgoing})
            assert options.outgoing is not None
            self.assertTrue(options.outgoing.bearer, outgoing)

    def test_legacy_incoming_option_does_not_touch_outgoing_bearer(self) -> None:
        options = js({"incoming": {"secret": "s"}, "outgoing": {"url": URL, "staticToken": "t"}})
        assert options.outgoing is not None
        self.assertTrue(options.outgoing.bearer)


class ExpiryUnitTests(SynchronousTestCase):
    def test_js_jwt_expiry_is_milliseconds(self) -> None:
        options = js({"outgoing": {"url": URL, "jwtSecret": "s", "jwtExpiry": 60000}})
        assert options.outgoing is not None
        self.assertEqual(options.outgoing.jwt_expiry, 60.0)

    def test_js_token_expiry_is_milliseconds(self) -> None:
        options = js({"outgoing": {"url": URL, "secret": "s", "tokenExpiry": 1500}})
        assert options.outgoing is not None
        self.assertEqual(options.outgoing.jwt_expiry, 1.5)

    def test_python_jwt_expiry_is_seconds(self) -> None:
        options = py(outgoing={"url": URL, "jwt_secret": "s", "jwt_expiry": 60})
        assert options.outgoing is not None
        self.assertEqual(options.outgoing.jwt_expiry, 60.0)
        options = py(outgoing={"url": URL, "jwt_secret": "s", "jwt_expiry": 0.25})
        assert options.outgoing is not None
        self.assertEqual(options.outgoing.jwt_expiry, 0.25)


class InvalidOptionTests(SynchronousTestCase):
    """Each bad option is refused with an OptionError whose message names it."""

    def assert_refused(self, build: Any, *names: str) -> OptionError:
        exc = self.assertRaises(OptionError, build)
        for name in names:
            self.assertIn(name, str(exc))
        self.assertIsInstance(exc, ValueError)
        return exc

    def test_credentials_in_a_url_are_refused_without_echoing_them(self) -> None:
        """outgoing.url, a multi account's child URL template and the callback URL:
        one clear error naming the option; the password and query are not repeated."""
        creds = "http://user:hunter2pass@127.0.0.1:9/?token=querysecret123"
        cases: list[tuple[Any, str]] = [
            (lambda: js({"outgoing": {"url": creds, "staticToken": "t"}}), "outgoing.url"),
            (
                lambda: js(
                    {
                        "multi": True,
                        "outgoing": {"url": "http://u:hunter2pass@%.example/", "staticToken": "t"},
                    }
                ),
                "outgoing.url",
            ),
            (
                lambda: js(
                    {
                        "outgoing": {
                            "url": URL,
                            "staticToken": "t",
                            "mode": "async",
                            "callbackUrl": "https://me:hunter2pass@me.example/cb",
                        }
                    }
                ),
                "outgoing.callbackUrl",
            ),
            (
                lambda: js({"incoming": {"staticToken": "t", "callbackUrls": [creds]}}),
                "incoming.callbackUrls",
            ),
        ]
        for build, name in cases:
            exc = self.assert_refused(
                build, name, "credentials in the URL are not supported; use staticToken/jwtSecret"
            )
            self.assertNotIn("hunter2pass", str(exc))
            self.assertNotIn("querysecret123", str(exc))
        # a non-ASCII URL would fail at each send: refused at start
        self.assert_refused(
            lambda: js({"outgoing": {"url": "http://h\u00e9.example/", "staticToken": "t"}}),
            "outgoing.url",
            "must be ASCII",
        )

    def test_python_invalid_values(self) -> None:
        cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
            ({"port": "8000", "static_token": "t"}, {}, "incoming.port"),
            ({"port": -1, "static_token": "t"}, {}, "incoming.port"),
            ({"port": 65536, "static_token": "t"}, {}, "incoming.port"),
            ({"port": True, "static_token": "t"}, {}, "incoming.port"),
            ({"endpoint": 8000, "static_token": "t"}, {}, "incoming.endpoint"),
            ({"endpoint": "", "static_token": "t"}, {}, "incoming.endpoint"),
            ({"static_token": 5}, {}, "incoming.static_token"),
            ({"static_token": ""}, {}, "incoming.static_token"),
            ({"jwt_secret": b"bytes"}, {}, "incoming.jwt_secret"),
            ({}, {"url": 5, "static_token": "t"}, "outgoing.url"),
            ({}, {"url": "ftp://h/", "static_token": "t"}, "outgoing.url"),
            ({}, {"url": "not a url", "static_token": "t"}, "outgoing.url"),
            ({}, {"url": "http://[::1/", "static_token": "t"}, "outgoing.url"),
            # ports outside 1-65535, refused when configured rather than at the first send
            ({}, {"url": "http://127.0.0.1:99999/", "static_token": "t"}, "outgoing.url: port"),
            ({}, {"url": "http://127.0.0.1:0/", "static_token": "t"}, "outgoing.url: port 0 is"),
            ({}, {"url": "https://[::1]:65536/x", "static_token": "t"}, "out of range (1 to"),
            ({}, {"url": "http://h:" + "9" * 5000 + "/", "static_token": "t"}, "outgoing.url"),
            ({}, {"url": URL, "static_token": 1}, "outgoing.static_token"),
            ({}, {"url": URL, "jwt_secret": ""}, "outgoing.jwt_secret"),
            ({}, {"url": URL, "jwt_secret": "s", "jwt_expiry": 0}, "outgoing.jwt_expiry"),
            ({}, {"url": URL, "jwt_secret": "s", "jwt_expiry": -5}, "outgoing.jwt_expiry"),
            ({}, {"url": URL, "jwt_secret": "s", "jwt_expiry": "30"}, "outgoing.jwt_expiry"),
            ({}, {"url": URL, "jwt_secret": "s", "jwt_expiry": True}, "outgoing.jwt_expiry"),
            ({}, {"url": URL, "static_token": "t", "http2": "yes"}, "outgoing.http2"),
            (
                {},
                {"url": URL, "static_token": "t", "http2_max_requests_per_session": 0},
                "outgoing.http2_max_requests_per_session",
            ),
            (
                {},
                {"url": URL, "static_token": "t", "http2_max_requests_per_session": "9"},
                "outgoing.http2_max_requests_per_session",
            ),
            ({}, {"url": URL, "static_token": "t", "name": ""}, "outgoing.name"),
            ({}, {"url": URL, "static_token": "t", "name": "a\r\nX: y"}, "outgoing.name"),
            ({}, {"url": URL, "static_token": "t", "name": 1.5}, "outgoing.name"),
            (
                {},
                {"url": URL, "static_token": "t", "send_ilp_destination": 1},
                "outgoing.send_ilp_destination",
            ),
            ({}, {"url": URL, "static_token": "t", "ca_file": 3}, "outgoing.ca_file"),
            (
                {},
                {"url": URL, "static_token": "t", "client_cert_file": 3},
                "outgoing.client_cert_file",
            ),
            (
                {},
                {"url": URL, "static_token": "t", "client_key_file": 3},
                "outgoing.client_key_file",
            ),
        ]
        for incoming, outgoing, name in cases:
            inc = dict(incoming) if incoming else {"static_token": "t"}
            out = outgoing or None
            self.assert_refused(partial(py, incoming=inc, outgoing=out), name)

    def test_js_invalid_values_name_the_js_option(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"incoming": {"staticToken": 5}}, "incoming.staticToken"),
            ({"incoming": {"jwtSecret": 5}}, "incoming.jwtSecret"),
            ({"outgoing": {"url": URL, "jwtSecret": "s", "jwtExpiry": -1}}, "outgoing.jwtExpiry"),
            ({"outgoing": {"url": URL, "staticToken": "t", "http2": 1}}, "outgoing.http2"),
            (
                {"outgoing": {"url": URL, "staticToken": "t", "http2MaxRequestsPerSession": -1}},
                "outgoing.http2MaxRequestsPerSession",
            ),
            (
                {"outgoing": {"url": URL, "staticToken": "t", "sendIlpDestination": "y"}},
                "outgoing.sendIlpDestination",
            ),
            ({"outgoing": {"url": URL, "staticToken": "t", "caFile": 1}}, "outgoing.caFile"),
            ({"incoming": {"staticToken": "t"}, "multiDelimiter": ""}, "multiDelimiter"),
            ({"incoming": {"staticToken": "t"}, "multiDelimiter": 7}, "multiDelimiter"),
            ({"incoming": {"staticToken": "t"}, "multi": "true"}, "multi"),
        ]
        for opts, name in cases:
            self.assert_refused(partial(js, opts), name)

    def test_legacy_aliases_are_named_when_invalid(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"incoming": {"secretToken": 5}}, "incoming.secretToken"),
            ({"incoming": {"secret": ""}}, "incoming.secret"),
            ({"outgoing": {"url": URL, "secret": 5}}, "outgoing.secret"),
            ({"outgoing": {"url": URL, "secret": "s", "tokenExpiry": "x"}}, "outgoing.tokenExpiry"),
        ]
        for opts, name in cases:
            self.assert_refused(partial(js, opts), name)
        self.assert_refused(lambda: py(incoming={"secret_token": 5}), "incoming.secret_token")

    def test_missing_options(self) -> None:
        self.assert_refused(lambda: py(), "incoming", "outgoing")
        self.assert_refused(lambda: js({}), "incoming", "outgoing")
        self.assert_refused(lambda: py(outgoing={"static_token": "t"}), "outgoing.url")
        self.assert_refused(lambda: js({"outgoing": {"staticToken": "t"}}), "outgoing.url")
        self.assert_refused(
            lambda: py(incoming={"port": 1}), "incoming.static_token", "incoming.jwt_secret"
        )
        self.assert_refused(
            lambda: js({"incoming": {"port": 1}}), "incoming.staticToken", "incoming.jwtSecret"
        )
        self.assert_refused(
            lambda: js({"outgoing": {"url": URL}}), "outgoing.staticToken", "outgoing.jwtSecret"
        )

    def test_not_a_dict(self) -> None:
        self.assert_refused(lambda: py(incoming="tcp:8000"), "incoming")  # type: ignore[arg-type]
        self.assert_refused(lambda: js({"outgoing": [URL]}), "outgoing")
        self.assert_refused(lambda: js("incoming"), "options")  # type: ignore[arg-type]

    def test_unknown_options(self) -> None:
        self.assert_refused(lambda: js({"incoming": {"staticToken": "t"}, "mult": True}), "mult")
        self.assert_refused(lambda: js({"incoming": {"staticToken": "t", "prot": 1}}), "prot")
        self.assert_refused(
            lambda: py(outgoing={"url": URL, "static_token": "t", "timeout": 3}),
            "outgoing.timeout",
        )
        # One dialect per object: camelCase in the Python spelling is unknown, and vice versa.
        self.assert_refused(lambda: py(incoming={"staticToken": "t"}), "staticToken")
        self.assert_refused(lambda: js({"incoming": {"static_token": "t"}}), "static_token")
        self.assert_refused(
            lambda: js({"outgoing": {"url": URL, "staticToken": "t", "jwt_expiry": 1}}),
            "jwt_expiry",
        )

    def test_unknown_python_keyword(self) -> None:
        self.assertRaises(
            TypeError,
            lambda: PluginHttp(incoming={"static_token": "t"}, mult=True),  # type: ignore[call-arg]
        )

    def test_port_and_endpoint_conflict(self) -> None:
        self.assert_refused(
            lambda: py(incoming={"port": 8000, "endpoint": "tcp:8000", "static_token": "t"}),
            "incoming.port",
            "incoming.endpoint",
        )
        self.assert_refused(
            lambda: js({"incoming": {"port": 1, "endpoint": "tcp:1", "staticToken": "t"}}),
            "port",
            "endpoint",
        )

    def test_invalid_ildcp(self) -> None:
        good = {"client_address": "test.a", "asset_scale": 9, "asset_code": "XRP"}
        cases: list[Any] = [
            {**good, "client_address": "not an address"},
            {**good, "asset_scale": 256},
            {**good, "asset_scale": -1},
            {**good, "asset_scale": "nine"},
            {"client_address": "test.a", "asset_scale": 9},
            {"clientAddress": "test.a", "assetCode": "XRP"},
            "test.a",
            42,
        ]
        for bad in cases:
            self.assert_refused(partial(py, incoming={"static_token": "t"}, ildcp=bad), "ildcp")
            self.assert_refused(
                partial(js, {"incoming": {"staticToken": "t"}, "ildcp": bad}), "ildcp"
            )

    def test_invalid_address(self) -> None:
        self.assert_refused(lambda: py(incoming={"static_token": "t"}, address="nope"), "address")
        self.assert_refused(lambda: js({"incoming": {"staticToken": "t"}, "address": 7}), "address")

    def test_client_identity_and_tls_files(self) -> None:
        self.assert_refused(
            lambda: py(incoming={"static_token": "t", "client_identity": 5}),
            "incoming.client_identity",
        )
        self.assert_refused(
            lambda: js({"incoming": {"staticToken": "t", "clientIdentity": ""}}),
            "incoming.clientIdentity",
        )
        missing = self.mktemp()
        self.assert_refused(
            lambda: py(outgoing={"url": URL, "static_token": "t", "ca_file": missing}), "ca_file"
        )
        not_pem = self.mktemp()
        with open(not_pem, "w") as f:
            f.write("not a certificate")
        self.assert_refused(
            lambda: js({"outgoing": {"url": URL, "staticToken": "t", "clientCertFile": not_pem}}),
            "client_cert_file",
        )

    def test_http2_supported_builds(self) -> None:
        options = py(outgoing={"url": URL, "static_token": "t", "http2": True})
        assert options.outgoing is not None
        self.assertTrue(options.outgoing.http2)

    def test_option_error_is_exported(self) -> None:
        self.assertIs(ilphttp.OptionError, OptionError)


class AuthOptionTests(SynchronousTestCase):
    """Issue 10: token lists (rotation), JWT claim checks and leeway, outgoing claims."""

    def assert_refused(self, build: Any, *names: str) -> OptionError:
        exc = self.assertRaises(OptionError, build)
        for name in names:
            self.assertIn(name, str(exc))
        return exc

    def test_both_spellings(self) -> None:
        key_file = self.mktemp()
        with open(key_file, "wb") as f:
            f.write(_ec_public_pem())
        from_py = py(
            incoming={
                "static_token": "a",
                "static_tokens": ["b", "c"],
                "jwt_secret": "s1",
                "jwt_secrets": ["s2"],
                "audience": "https://bob.example",
                "issuer": "https://alice.example",
                "subject": "alice",
                "jwt_leeway": 2.5,
                "jwt_public_key_file": key_file,
            },
            outgoing={
                "url": URL,
                "jwt_secret": "o",
                "jwt_subject": "bob",
                "jwt_audience": "https://alice.example",
                "jwt_issuer": "https://bob.example",
            },
        )
        from_js = js(
            {
                "incoming": {
                    "staticToken": "a",
                    "staticTokens": ["b", "c"],
                    "jwtSecret": "s1",
                    "jwtSecrets": ["s2"],
                    "audience": "https://bob.example",
                    "issuer": "https://alice.example",
                    "subject": "alice",
                    "jwtLeeway": 2500,
                    "jwtPublicKeyFile": key_file,
                },
                "outgoing": {
                    "url": URL,
                    "jwtSecret": "o",
                    "jwtSubject": "bob",
                    "jwtAudience": "https://alice.example",
                    "jwtIssuer": "https://bob.example",
                },
            }
        )
        self.assertEqual(from_py, from_js)
        inc, out = from_py.incoming, from_py.outgoing
        assert inc is not None and out is not None
        self.assertEqual((inc.static_tokens, inc.jwt_secrets), (("b", "c"), ("s2",)))
        self.assertEqual(
            (inc.audience, inc.issuer, inc.subject, inc.jwt_leeway),
            ("https://bob.example", "https://alice.example", "alice", 2.5),
        )
        assert inc.jwt_public_key is not None
        self.assertEqual(inc.jwt_public_key.algorithm, "ES256")
        self.assertEqual(
            (out.jwt_subject, out.jwt_audience, out.jwt_issuer),
            ("bob", "https://alice.example", "https://bob.example"),
        )
        # Secrets stay out of reprs.
        for secret in ("'b'", "'c'", "'s2'"):
            self.assertNotIn(secret, repr(inc))

    def test_defaults(self) -> None:
        options = py(incoming={"static_token": "t"}, outgoing={"url": URL, "jwt_secret": "s"})
        inc, out = options.incoming, options.outgoing
        assert inc is not None and out is not None
        self.assertEqual((inc.static_tokens, inc.jwt_secrets), ((), ()))
        self.assertEqual((inc.audience, inc.issuer, inc.subject), (None, None, None))
        self.assertEqual(inc.jwt_leeway, 0.0)
        self.assertIsNone(inc.jwt_public_key_file)
        self.assertEqual((out.jwt_subject, out.jwt_audience, out.jwt_issuer), (None, None, None))

    def test_a_list_alone_is_enough(self) -> None:
        for incoming in ({"static_tokens": ["t"]}, {"jwt_secrets": ["s"]}):
            options = py(incoming=incoming)
            self.assertIsNotNone(options.incoming)
        self.assertIsNotNone(js({"incoming": {"staticTokens": ["t"]}}).incoming)

    def test_python_refusals(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"static_tokens": ["a", ""]}, "incoming.static_tokens[1]"),
            ({"static_tokens": [""]}, "incoming.static_tokens[0]"),
            ({"static_token": "t", "jwt_secrets": ["s", ""]}, "incoming.jwt_secrets[1]"),
            ({"static_tokens": ["a", 5]}, "incoming.static_tokens[1]"),
            ({"static_tokens": "a"}, "incoming.static_tokens"),
            ({"static_tokens": {"a": 1}}, "incoming.static_tokens"),
            ({"static_tokens": ["a", "b", "a"]}, "incoming.static_tokens[2]"),
            ({"static_token": "a", "static_tokens": ["b", "a"]}, "incoming.static_tokens[1]"),
            ({"jwt_secrets": ["s", "s"]}, "incoming.jwt_secrets[1]"),
            ({"jwt_secret": "s", "jwt_secrets": ["s"]}, "incoming.jwt_secrets[0]"),
            ({"static_tokens": []}, "incoming.static_tokens"),
            ({"jwt_secrets": [], "static_tokens": []}, "incoming.jwt_secrets"),
            ({"jwt_secret": "s", "audience": ""}, "incoming.audience"),
            ({"jwt_secret": "s", "issuer": 5}, "incoming.issuer"),
            ({"jwt_secret": "s", "subject": ["alice"]}, "incoming.subject"),
            ({"jwt_secret": "s", "jwt_leeway": -1}, "incoming.jwt_leeway"),
            ({"jwt_secret": "s", "jwt_leeway": "5"}, "incoming.jwt_leeway"),
            ({"jwt_secret": "s", "jwt_leeway": True}, "incoming.jwt_leeway"),
            ({"jwt_secret": "s", "jwt_leeway": float("inf")}, "incoming.jwt_leeway"),
            ({"jwt_secret": "s", "jwt_leeway": float("nan")}, "incoming.jwt_leeway"),
            # claim checks without a way to verify JWTs would never apply
            ({"static_token": "t", "audience": "a"}, "incoming.audience"),
            ({"static_tokens": ["t"], "subject": "a"}, "incoming.subject"),
            ({"static_token": "t", "jwt_leeway": 1}, "incoming.jwt_leeway"),
            ({"jwt_secret": "s", "jwt_public_key_file": ""}, "incoming.jwt_public_key_file"),
        ]
        for incoming, name in cases:
            self.assert_refused(partial(py, incoming=incoming), name)

    def test_blank_secrets_and_padded_tokens_refused(self) -> None:
        """A secret of whitespace only authenticates ``Bearer    ``; a static
        token with surrounding whitespace could never match a header value."""
        cases: list[tuple[Any, str]] = [
            (
                partial(py, incoming={"static_token": "   "}),
                "incoming.static_token must not be blank",
            ),
            (partial(py, incoming={"jwt_secret": "\t "}), "incoming.jwt_secret must not be blank"),
            (partial(py, incoming={"static_tokens": ["t", " "]}), "incoming.static_tokens[1]"),
            (partial(py, incoming={"jwt_secrets": ["  "], "static_token": "t"}), "jwt_secrets[0]"),
            (
                partial(py, incoming={"static_token": " tok"}),
                "must not begin or end with whitespace",
            ),
            (partial(py, incoming={"static_tokens": ["tok "]}), "incoming.static_tokens[0]"),
            (partial(py, outgoing={"url": URL, "static_token": "tok\t"}), "outgoing.static_token"),
            # a line break would end the Authorization header, or smuggle in another
            (
                partial(py, outgoing={"url": URL, "static_token": "tok\nX-Injected: yes"}),
                "outgoing.static_token must not contain control characters",
            ),
            (
                partial(js, {"incoming": {"staticToken": "tok\r\nX: y"}}),
                "incoming.staticToken must not contain control characters",
            ),
            (partial(py, incoming={"static_tokens": ["a\x7fb"]}), "incoming.static_tokens[0]"),
            (partial(py, outgoing={"url": URL, "jwt_secret": "  "}), "outgoing.jwt_secret"),
            (partial(js, {"incoming": {"staticToken": "  "}}), "incoming.staticToken"),
            (partial(js, {"incoming": {"secretToken": "  "}}), "incoming.secretToken"),
            (partial(js, {"incoming": {"secret": " "}}), "incoming.secret must not be blank"),
            (
                partial(
                    py,
                    incoming={"static_token": "t", "children": {"c": {"static_tokens": [" x "]}}},
                ),
                "incoming.children.c.static_tokens[0]",
            ),
        ]
        for build, words in cases:
            exc = self.assert_refused(build, words)
            self.assertIsInstance(exc, ValueError)
        # inner spaces, and a JWT secret's own surrounding spaces, are the secret's
        self.assertEqual(py(incoming={"static_token": "a b"}).incoming.static_token, "a b")
        self.assertEqual(py(incoming={"jwt_secret": " s "}).incoming.jwt_secret, " s ")

    def test_url_ports_in_range_accepted(self) -> None:
        for url in ("http://127.0.0.1:1/", "https://[::1]:65535/x", "http://h:/", "http://h/"):
            self.assertEqual(py(outgoing={"url": url, "static_token": "t"}).outgoing.url, url)
        # a multi account's template may hold its delimiter where the port goes
        template = py(outgoing={"url": "http://127.0.0.1:%/", "static_token": "t"}, multi=True)
        self.assertEqual(template.outgoing.url, "http://127.0.0.1:%/")

    def test_duplicate_token_is_not_echoed(self) -> None:
        exc = self.assert_refused(
            lambda: py(incoming={"static_tokens": ["hunter2", "hunter2"]}), "given twice"
        )
        self.assertNotIn("hunter2", str(exc))

    def test_js_refusals_name_the_js_option(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"staticTokens": ["a", ""]}, "incoming.staticTokens[1]"),
            ({"jwtSecrets": [""]}, "incoming.jwtSecrets[0]"),
            ({"staticToken": "a", "staticTokens": ["a"]}, "incoming.staticTokens[0]"),
            ({"jwtSecret": "s", "jwtLeeway": -0.5}, "incoming.jwtLeeway"),
            ({"jwtSecret": "s", "audience": 1}, "incoming.audience"),
            ({"staticToken": "t", "issuer": "i"}, "incoming.issuer"),
            ({"jwtSecret": "s", "jwtPublicKeyFile": 3}, "incoming.jwtPublicKeyFile"),
            ({"static_tokens": ["t"]}, "static_tokens"),
        ]
        for incoming, name in cases:
            self.assert_refused(partial(js, {"incoming": incoming}), name)

    def test_outgoing_stays_one_credential(self) -> None:
        self.assert_refused(
            lambda: py(outgoing={"url": URL, "static_tokens": ["a", "b"]}),
            "outgoing.static_tokens",
        )
        self.assert_refused(
            lambda: js({"outgoing": {"url": URL, "jwtSecrets": ["a"]}}), "outgoing.jwtSecrets"
        )
        self.assert_refused(
            lambda: py(outgoing={"url": URL, "jwt_secret": "s", "audience": "a"}),
            "outgoing.audience",
        )

    def test_outgoing_claim_refusals(self) -> None:
        cases: list[tuple[Any, str]] = [
            (
                partial(py, outgoing={"url": URL, "jwt_secret": "s", "jwt_subject": ""}),
                "jwt_subject",
            ),
            (partial(py, outgoing={"url": URL, "jwt_secret": "s", "jwt_issuer": 1}), "jwt_issuer"),
            (
                partial(py, outgoing={"url": URL, "static_token": "t", "jwt_subject": "bob"}),
                "outgoing.jwt_subject",
            ),
            (
                partial(js, {"outgoing": {"url": URL, "staticToken": "t", "jwtAudience": "a"}}),
                "outgoing.jwtAudience",
            ),
        ]
        for build, name in cases:
            self.assert_refused(build, name)

    def test_public_key_file_refusals(self) -> None:
        missing = self.mktemp()
        not_pem = self.mktemp()
        with open(not_pem, "w") as f:
            f.write("not a key")
        for path in (missing, not_pem):
            exc = self.assert_refused(
                lambda path=path: py(incoming={"jwt_public_key_file": path}),
                "incoming.jwt_public_key_file",
            )
            self.assertNotIn("Traceback", str(exc))
        self.assert_refused(
            lambda: js({"incoming": {"jwtPublicKeyFile": missing}}), "incoming.jwtPublicKeyFile"
        )


def _ec_public_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _sign(claims: dict[str, Any], secret: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, secret, algorithm="HS256").encode("ascii")


class AuthOptionsReachTheListenerTests(SynchronousTestCase):
    """The options above, through a PluginHttp's resource: 401 or not."""

    SECRET = "a-jwt-secret-that-is-long-enough-for-hs256"

    def status(self, plugin: PluginHttp, authorization: bytes) -> int:
        plugin.register_data_handler(lambda data: self.fail("no packet reaches the handler"))
        self.successResultOf(plugin.connect())
        assert plugin.resource is not None
        agent = RequestTraversalAgent(plugin.resource)
        headers = {b"authorization": authorization, b"content-type": b"application/octet-stream"}
        result = self.successResultOf(request(agent, "http://ilp.test/", b"", headers))
        return result.code

    def test_table(self) -> None:
        clock = Clock()
        clock.advance(1_700_000_000)
        now = int(clock.seconds())
        alice = {
            "sub": "alice",
            "exp": now + 60,
            "iss": "https://alice.example",
            "aud": "https://bob.example",
        }
        old, new = self.SECRET, self.SECRET[::-1]
        deep = base64.urlsafe_b64encode(b'{"alg":"HS256","x":' + b"[" * 3_000 + b"]" * 3_000 + b"}")
        cases: list[tuple[str, dict[str, Any], bytes, bool]] = [
            (
                "rotation: old static",
                {"static_token": "old", "static_tokens": ["new"]},
                b"old",
                True,
            ),
            (
                "rotation: new static",
                {"static_token": "old", "static_tokens": ["new"]},
                b"new",
                True,
            ),
            ("rotation: removed static", {"static_tokens": ["new"]}, b"old", False),
            ("rotation: old secret", {"jwt_secrets": [old, new]}, _sign(alice, old), True),
            ("rotation: new secret", {"jwt_secrets": [old, new]}, _sign(alice, new), True),
            ("rotation: removed secret", {"jwt_secrets": [new]}, _sign(alice, old), False),
            ("issue 10 example", {"jwt_secret": old}, _sign(alice, old), True),
            (
                "wrong aud, audience configured",
                {"jwt_secret": old, "audience": "https://carol.example"},
                _sign(alice, old),
                False,
            ),
            (
                "subject configured",
                {"jwt_secret": old, "subject": "alice"},
                _sign(alice, old),
                True,
            ),
            (
                "expired, within leeway",
                {"jwt_secret": old, "jwt_leeway": 10},
                _sign({**alice, "exp": now - 5}, old),
                True,
            ),
            ("expired", {"jwt_secret": old}, _sign({**alice, "exp": now - 5}, old), False),
            ("deeply nested header", {"jwt_secret": old}, deep + b".e30.AAAA", False),
        ]
        for case, incoming, token, accepted in cases:
            plugin = PluginHttp(incoming=incoming, reactor=clock)
            code = self.status(plugin, b"Bearer " + token)
            # Accepted: past auth, the empty body is a bad packet (400).
            self.assertEqual(code, 400 if accepted else 401, case)

    def test_outgoing_claims_reach_the_header(self) -> None:
        clock = Clock()
        plugin = PluginHttp(
            outgoing={"url": URL, "jwt_secret": self.SECRET, "jwt_subject": "bob"}, reactor=clock
        )
        header = plugin._outgoing_auth.header()
        claims = jwt.decode(
            header[7:], self.SECRET, algorithms=["HS256"], options={"verify_exp": False}
        )
        self.assertEqual(claims["sub"], "bob")


class ChildrenOptionTests(SynchronousTestCase):
    """incoming.children: each child of a multi account bound to its own credentials."""

    def test_both_spellings(self) -> None:
        py_options = py(
            incoming={
                "jwt_secret": "s" * 32,
                "children": {
                    "alice": {"static_tokens": ["a1", "a2"]},
                    "bob": {"subject": "bob"},
                },
            },
            multi=True,
        )
        js_options = js(
            {
                "multi": True,
                "incoming": {
                    "jwtSecret": "s" * 32,
                    "children": {
                        "alice": {"staticTokens": ["a1", "a2"]},
                        "bob": {"subject": "bob"},
                    },
                },
            }
        )
        for options in (py_options, js_options):
            assert options.incoming is not None and options.incoming.children is not None
            children = options.incoming.children
            self.assertEqual(sorted(children), ["alice", "bob"])
            self.assertEqual(children["alice"].static_tokens, ("a1", "a2"))
            self.assertEqual(children["bob"].subject, "bob")
            self.assertNotIn("a1", repr(options))

    def test_refused(self) -> None:
        cases: list[tuple[dict[str, Any], bool, str]] = [
            ({"children": {"alice": {"static_tokens": ["a"]}}}, False, "for multi accounts"),
            (
                {"static_token": "t", "children": {"alice": {"static_tokens": ["a"]}}},
                True,
                "incoming.static_token and incoming.children",
            ),
            ({"children": {}}, True, "must be an object of child names"),
            ({"children": {"a.b": {"static_tokens": ["a"]}}}, True, "not a valid address segment"),
            ({"children": {"alice": {}}}, True, "incoming.children.alice needs static_tokens"),
            ({"children": {"alice": {"subject": "a"}}}, True, "applies to JWTs"),
            (
                {"children": {"a": {"static_tokens": ["t"]}, "b": {"static_tokens": ["t"]}}},
                True,
                "incoming.children.b.static_tokens[0] is also incoming.children.a's",
            ),
            (
                {
                    "jwt_secret": "s" * 32,
                    "children": {"a": {"subject": "x"}, "b": {"subject": "x"}},
                },
                True,
                "two children have the same subject",
            ),
            ({"children": {"alice": {"static_tokens": ["a"], "x": 1}}}, True, "unknown setting"),
        ]
        for incoming, multi, words in cases:
            with self.assertRaises(OptionError, msg=words) as caught:
                py(incoming=incoming, multi=multi)
            self.assertIn(words, str(caught.exception))

    def test_a_listed_child_must_be_reachable(self) -> None:
        """With the name in the port's place, a listed child must be a port."""
        outgoing = {"url": "http://127.0.0.1:%/", "static_token": "o"}
        children = {"7790": {"static_tokens": ["a"]}, "alice": {"static_tokens": ["b"]}}
        with self.assertRaises(OptionError) as caught:
            py(incoming={"children": children}, outgoing=outgoing, multi=True)
        self.assertIn(
            "incoming.children.alice: the child's name fills the port", str(caught.exception)
        )
        del children["alice"]
        py(incoming={"children": children}, outgoing=outgoing, multi=True)


class AsyncOptionTests(SynchronousTestCase):
    """RFC 35 options: outgoing.mode and callback_url, incoming.callback_urls."""

    CB = "https://me.example:8443/callback"
    PREFIXES = ["https://peer.example/cb", "http://10.0.0.7:8080/"]

    def test_both_spellings(self) -> None:
        from_py = py(
            incoming={"static_token": "t", "callback_urls": self.PREFIXES},
            outgoing={"url": URL, "static_token": "u", "mode": "async", "callback_url": self.CB},
        )
        from_js = js(
            {
                "incoming": {"staticToken": "t", "callbackUrls": self.PREFIXES},
                "outgoing": {
                    "url": URL,
                    "staticToken": "u",
                    "mode": "async",
                    "callbackUrl": self.CB,
                },
            }
        )
        self.assertEqual(from_py, from_js)
        assert from_py.incoming is not None and from_py.outgoing is not None
        self.assertEqual(from_py.incoming.callback_urls, tuple(self.PREFIXES))
        self.assertEqual((from_py.outgoing.mode, from_py.outgoing.callback_url), ("async", self.CB))

    def test_defaults(self) -> None:
        options = js(
            {"incoming": {"staticToken": "t"}, "outgoing": {"url": URL, "staticToken": "u"}}
        )
        assert options.incoming is not None and options.outgoing is not None
        self.assertEqual(options.outgoing.mode, "sync")
        self.assertIsNone(options.outgoing.callback_url)
        self.assertEqual(options.incoming.callback_urls, ())
        sync = js({"outgoing": {"url": URL, "staticToken": "u", "mode": "sync"}}).outgoing
        self.assertEqual(sync, options.outgoing)

    def test_refused(self) -> None:
        out = {"url": URL, "static_token": "u"}
        cases: list[tuple[Any, Any, str]] = [
            (None, {**out, "mode": "Async"}, "outgoing.mode must be 'sync' or 'async'"),
            (None, {**out, "mode": True}, "outgoing.mode must be 'sync' or 'async'"),
            (None, {**out, "mode": "async"}, "outgoing.callback_url is required when"),
            (None, {**out, "callback_url": self.CB}, "outgoing.callback_url applies to"),
            (
                None,
                {**out, "mode": "sync", "callback_url": self.CB},
                "outgoing.callback_url applies to",
            ),
            (
                None,
                {**out, "mode": "async", "callback_url": "ftp://me/"},
                "outgoing.callback_url must be an http:// or https:// URL",
            ),
            (
                None,
                {**out, "mode": "async", "callback_url": "https://me.example/#x"},
                "outgoing.callback_url must not have a fragment",
            ),
            (
                None,
                {**out, "mode": "async", "callback_url": "https://u:p@me.example/"},
                "outgoing.callback_url: credentials in the URL are not supported",
            ),
            (
                None,
                {**out, "mode": "async", "callback_url": 5},
                "outgoing.callback_url must be a string",
            ),
            ({"callback_urls": "https://p/"}, None, "incoming.callback_urls must be a list"),
            ({"callback_urls": [""]}, None, "incoming.callback_urls[0] must not be empty"),
            (
                {"callback_urls": ["https://p/", "https://p/"]},
                None,
                "incoming.callback_urls[1] is given twice",
            ),
            (
                {"callback_urls": ["https://p/", "p/cb"]},
                None,
                "incoming.callback_urls[1] must be an http:// or https:// URL",
            ),
            (
                {"callback_urls": ["https://p/cb?x=1"]},
                None,
                "incoming.callback_urls[0] must not have a query",
            ),
            (
                {"callback_urls": ["https://p/cb/../x"]},
                None,
                "incoming.callback_urls[0] must not have dot segments",
            ),
        ]
        for incoming, outgoing, message in cases:
            inc = None if incoming is None else {"static_token": "t", **incoming}
            exc = self.assertRaises(OptionError, py, incoming=inc, outgoing=outgoing)
            self.assertIn(message, str(exc))

    def test_js_refusals_name_the_js_option(self) -> None:
        out = {"url": URL, "staticToken": "u"}
        cases: list[tuple[dict[str, Any], str]] = [
            ({"outgoing": {**out, "mode": "async"}}, "outgoing.callbackUrl is required"),
            ({"outgoing": {**out, "callbackUrl": self.CB}}, "outgoing.callbackUrl applies to"),
            (
                {"incoming": {"staticToken": "t", "callbackUrls": ["x"]}},
                "incoming.callbackUrls[0] must be",
            ),
            (
                {"outgoing": {**out, "callback_url": self.CB}},
                "unknown setting outgoing.callback_url",
            ),
            (
                {"incoming": {"staticToken": "t", "callback_urls": []}},
                "unknown setting incoming.callback_urls",
            ),
        ]
        for options, message in cases:
            exc = self.assertRaises(OptionError, js, options)
            self.assertIn(message, str(exc))
