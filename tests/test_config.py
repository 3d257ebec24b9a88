"""Plugin options in both spellings, legacy aliases, and every refusal naming its option."""

from __future__ import annotations

from functools import partial
from typing import Any

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
