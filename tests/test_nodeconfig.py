"""ilphttp.nodeconfig: node config files (JSON or TOML, ilp-connector's format),
read through ``twistd ilphttp --config FILE``."""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

from twisted.python.filepath import FilePath

from ilphttp import ildcp
from ilphttp.nodeconfig import ConfigError, load_file, parse_node
from tests.support.options import HUB_CONFIG, JWT_SECRET, OptionsCase


class ConfigFileTests(OptionsCase):
    """--config FILE and ilphttp.nodeconfig."""

    def write(self, config: Any, name: str = "hub.json") -> str:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        directory.child("up.token").setContent(b"up-in\n")
        path = directory.child(name)
        text = config if isinstance(config, str) else json.dumps(config)
        path.setContent(text.encode("utf-8"))
        return path.path

    def parse_config(self, config: Any, environ: dict[str, str] | None = None) -> Any:
        return self.parse(["--config", self.write(config)], environ or {"KIDS_OUT": "kids-out"})

    def config_error(self, config: Any, environ: dict[str, str] | None = None) -> str:
        path = self.write(config)
        message = self.usage_error(["--config", path], environ or {"KIDS_OUT": "kids-out"})
        self.assertTrue(message.startswith(path), message)
        return message[len(path) :]

    def test_hub(self) -> None:
        node = self.parse_config(HUB_CONFIG)["node"]
        self.assertEqual(
            (node.routing.address, node.routing.asset_code, node.routing.asset_scale),
            ("test.hub", "XRP", 9),
        )
        accounts = {a.name: a for a in node.accounts}
        self.assertEqual(list(accounts), ["up", "kids", "bob"])
        up, kids, bob = accounts["up"], accounts["kids"], accounts["bob"]
        self.assertEqual(up.relation, "parent")
        self.assertEqual(up.options.incoming.port, 7001)
        self.assertEqual(up.options.incoming.static_token, "up-in")  # from the file
        self.assertEqual(up.options.outgoing.static_token, "up-out")
        self.assertEqual(up.options.address, "test.hub")
        self.assertTrue(kids.multi)
        self.assertEqual(kids.options.outgoing.static_token, "kids-out")  # from the env
        # surrounding whitespace removed, as from a file (a trailing newline)
        padded = self.parse_config(HUB_CONFIG, {"KIDS_OUT": " kids-out\n"})["node"]
        self.assertEqual(padded.accounts[1].options.outgoing.static_token, "kids-out")
        # the multi account answers its children's IL-DCP itself, under its address
        self.assertEqual(kids.options.ildcp, ildcp.IldcpResponse("test.hub.kids", 9, "XRP"))
        self.assertEqual(kids.options.address, "test.hub")
        self.assertIsNone(bob.options.incoming)  # send-only
        self.assertEqual(bob.options.outgoing.jwt_secret, JWT_SECRET)
        table = node.routing.table()
        self.assertEqual(table.lookup("test.hub.kids.alice"), "kids")
        self.assertEqual(table.lookup("test.hub.bob"), "bob")
        self.assertEqual(table.lookup("g.x"), "up")

    def test_secrets_not_in_repr(self) -> None:
        options = self.parse_config(HUB_CONFIG)
        text = repr(options["node"]) + repr(dict(options))
        for secret in ("up-in", "up-out", "kids-out", "'k'", JWT_SECRET):
            self.assertNotIn(secret, text)
        self.assertIn("AccountSpec(name='kids', relation='child'", text)

    def test_address_from_parent(self) -> None:
        config = dict(HUB_CONFIG)
        del config["ilpAddress"]
        node = self.parse_config(config)["node"]
        self.assertIsNone(node.routing.address)
        kids = node.accounts[1]
        self.assertIsNone(kids.options.ildcp)  # fetched through the router at run time
        self.assertIsNone(kids.options.address)
        self.assertEqual(node.routing.upstream(), "up")

    def test_asset_from_accounts(self) -> None:
        """ilp-connector configs give the asset per account."""
        config: dict[str, Any] = {"ilpAddress": "test.hub", "accounts": {}}
        for name in ("a", "b"):
            config["accounts"][name] = {
                "relation": "child",
                "assetCode": "USD",
                "assetScale": 2,
                "options": {"incoming": {"port": 0, "staticToken": "t"}},
            }
        node = self.parse_config(config)["node"]
        self.assertEqual((node.routing.asset_code, node.routing.asset_scale), ("USD", 2))

    def test_connector_settings(self) -> None:
        config = json.loads(json.dumps(HUB_CONFIG))
        config.update(
            {
                "backend": "one-to-one",
                "spread": 0,
                "_comment": "private keys are skipped",
                "routes": [{"targetPrefix": "test.far", "peerId": "bob"}],
                "defaultRoute": "auto",
                "minMessageWindow": 500,
                "maxHoldTime": 10000,
            }
        )
        config["accounts"]["bob"]["balance"] = {"maximum": "100"}
        config["accounts"]["bob"]["ilpAddressSegment"] = "robert"
        node = self.parse_config(config)["node"]
        self.assertEqual(node.ignored, ("backend", "spread", "accounts.bob.balance"))
        self.assertEqual(dict(node.routing.routes), {"test.far": "bob"})
        self.assertIsNone(node.routing.default_route)
        self.assertEqual((node.routing.min_message_window, node.routing.max_hold_time), (0.5, 10.0))
        table = node.routing.table()
        self.assertEqual(table.lookup("test.far.x"), "bob")
        self.assertEqual(table.lookup("test.hub.robert"), "bob")
        self.assertEqual(table.child_address("bob"), "test.hub.robert")

    def test_toml(self) -> None:
        text = """
ilpAddress = "test.hub"
assetCode = "XRP"
assetScale = 9
[accounts.kids]
relation = "child"
[accounts.kids.options]
multi = true
[accounts.kids.options.incoming]
port = 7002
staticToken = "k"
[accounts.kids.options.outgoing]
url = "http://127.0.0.1:%/"
staticToken = "o"
"""
        path = self.write(text, "hub.toml")
        try:
            importlib.import_module("tomllib")
            have_toml = True
        except ImportError:
            have_toml = importlib.util.find_spec("tomli") is not None
        if have_toml:
            node = parse_node(load_file(path))
            [kids] = node.accounts
            self.assertTrue(kids.multi)
            self.assertEqual(kids.options.incoming.port, 7002)
        else:
            with self.assertRaises(ConfigError) as caught:
                load_file(path)
            self.assertIn("TOML needs Python 3.11+ or the tomli package", str(caught.exception))

    def test_file_errors(self) -> None:
        self.assertIn("is not valid JSON", self.config_error("{nope"))
        self.assertIn("the top level must be an object", self.config_error("[1]"))
        message = self.usage_error(["--config", "/nonexistent/hub.json"])
        self.assertIn("cannot read /nonexistent/hub.json", message)

    def test_endpoints_that_cannot_be_listened_on_are_refused_when_read(self) -> None:
        # Not a traceback from bind() or from the unix socket's lock file at start.
        port_rule = "the port must be a number from 0 to 65535"

        def with_endpoint(endpoint: str) -> dict[str, Any]:
            config: dict[str, Any] = json.loads(json.dumps(HUB_CONFIG))
            config["accounts"]["bob"]["options"]["incoming"] = {
                "endpoint": endpoint,
                "staticToken": "bob-in",
            }
            return config

        for endpoint, why in [
            ("tcp:99999:interface=127.0.0.1", f"{port_rule}, got '99999'"),
            ("tcp:-5:interface=127.0.0.1", f"{port_rule}, got '-5'"),
            ("ssl:port=65536:privateKey=key.pem", f"{port_rule}, got '65536'"),
            ("tcp:abc", f"{port_rule}, got 'abc'"),
            (
                "unix:/nonexistent/dir/sock",
                "the socket's directory /nonexistent/dir does not exist",
            ),
        ]:
            self.assertEqual(
                self.config_error(with_endpoint(endpoint)),
                f": accounts.bob.options: incoming.endpoint {endpoint!r}: {why}",
            )
        shared = json.loads(json.dumps(HUB_CONFIG))
        shared["listen"] = ["tcp:0", "tcp:70000"]
        self.assertIn(f": listen[1] 'tcp:70000': {port_rule}", self.config_error(shared))
        shared["listen"] = ["tcp:0"]
        shared["metrics"] = "tcp:99999"
        self.assertIn(f": metrics 'tcp:99999': {port_rule}", self.config_error(shared))
        self.assertIn(
            f"--listen 'tcp:99999': {port_rule}",
            self.usage_error(["--config", self.write(HUB_CONFIG), "--listen", "tcp:99999"]),
        )
        fine = with_endpoint(f"unix:{os.path.abspath(self.mktemp())}.sock")
        self.assertEqual(len(self.parse_config(fine)["node"].accounts), len(HUB_CONFIG["accounts"]))

    def test_two_listeners_on_one_port_are_refused_when_read(self) -> None:
        # Not "cannot listen on 127.0.0.1:8260 (address in use)" once alice listens.
        config: dict[str, Any] = json.loads(json.dumps(HUB_CONFIG))
        loopback = "tcp:8260:interface=127.0.0.1"
        config["accounts"]["kids"]["options"]["incoming"]["endpoint"] = loopback
        config["accounts"]["bob"]["options"]["incoming"] = {
            "endpoint": loopback,
            "staticToken": "bob-in",
        }
        self.assertEqual(
            self.config_error(config),
            f": accounts.kids.options.incoming.endpoint {loopback!r} and"
            f" accounts.bob.options.incoming.endpoint {loopback!r} would both listen on port"
            " 8260 of 127.0.0.1: give each its own port (accounts without a port or endpoint"
            " of their own share the node's listen)",
        )
        # up's port 7001 is every interface's
        config["accounts"]["bob"]["options"]["incoming"]["endpoint"] = (
            "tcp:7001:interface=127.0.0.1"
        )
        self.assertIn(
            "accounts.up.options.incoming.port 'tcp:7001' and accounts.bob.options.incoming"
            ".endpoint 'tcp:7001:interface=127.0.0.1' would both listen on port 7001",
            self.config_error(config),
        )
        # the node's listen and metrics, from the file or the flags
        shared = self.shared(listen=["tcp:0", "tcp:7002:interface=127.0.0.1"])
        shared["accounts"]["kids"]["options"]["incoming"]["endpoint"] = "tcp:7002"
        self.assertIn(
            "listen[1] 'tcp:7002:interface=127.0.0.1' and accounts.kids.options.incoming"
            ".endpoint 'tcp:7002' would both listen on port 7002 (127.0.0.1 and 0.0.0.0)",
            self.config_error(shared),
        )
        self.assertIn(
            "accounts.up.options.incoming.port 'tcp:7001' and metrics 'tcp:7001'",
            self.config_error(self.shared(metrics="tcp:7001")),
        )
        path = self.write(self.shared())
        self.assertIn(
            "--listen 'tcp:7001' and accounts.up.options.incoming.port 'tcp:7001'",
            self.usage_error(["--config", path, "--listen", "tcp:7001"], {"KIDS_OUT": "k"}),
        )
        self.assertIn(
            "accounts.up.options.incoming.port 'tcp:7001' and --metrics 'tcp:7001'",
            self.usage_error(["--config", path, "--metrics", "tcp:7001"], {"KIDS_OUT": "k"}),
        )
        # the shared listeners are one listener for all their accounts; port 0 never collides
        node = self.parse_config(self.shared(listen=["tcp:0", "tcp:0"], metrics="tcp:0"))["node"]
        self.assertEqual(len(node.shared_accounts()), 2)

    def test_a_missing_ssl_key_is_refused_when_read(self) -> None:
        config: dict[str, Any] = json.loads(json.dumps(HUB_CONFIG))
        missing = os.path.abspath(self.mktemp())
        endpoint = f"ssl:0:privateKey={missing}"
        config["accounts"]["bob"]["options"]["incoming"] = {
            "endpoint": endpoint,
            "staticToken": "bob-in",
        }
        self.assertEqual(
            self.config_error(config),
            f": accounts.bob.options: incoming.endpoint {endpoint!r}:"
            f" the privateKey file {missing} does not exist",
        )

    def test_a_key_given_twice_is_refused_with_its_path(self) -> None:
        account = '{"relation": "child", "options": {"incoming": {"port": 0, "staticToken": "%s"}}}'
        head = '{"ilpAddress": "test.a", "assetCode": "X", "assetScale": 9, '
        two_bobs = head + f'"accounts": {{"bob": {account % "x"}, "bob": {account % "y"}}}}}'
        self.assertEqual(
            self.config_error(two_bobs),
            ": accounts: the key 'bob' is given twice (JSON would keep only the last one)",
        )
        two_accounts = head + f'"accounts": {{"a": {account % "x"}}}, "accounts": {{}}}}'
        self.assertIn(
            ": the top level: the key 'accounts' is given twice", self.config_error(two_accounts)
        )
        deep = head + '"accounts": {"a": {"options": {"incoming": {"port": 1, "port": 2}}}}}'
        self.assertIn(
            ": accounts.a.options.incoming: the key 'port' is given twice", self.config_error(deep)
        )
        listed = head + '"listen": ["tcp:0", {"x": 1, "x": 2}], "accounts": {}}'
        self.assertIn(": listen[1]: the key 'x' is given twice", self.config_error(listed))

    def test_config_errors(self) -> None:
        def change(edit: Any) -> dict[str, Any]:
            config = json.loads(json.dumps(HUB_CONFIG))
            edit(config)
            return config

        accounts = "accounts"
        cases: list[tuple[Any, str]] = [
            (lambda c: c.update(spred=1), "unknown setting spred"),
            (
                lambda c: c[accounts]["bob"].update(relatoin="x"),
                "unknown setting accounts.bob.relatoin",
            ),
            (lambda c: c[accounts]["bob"].pop("relation"), "accounts.bob.relation must be one of"),
            (lambda c: c[accounts]["bob"].update(relation="sibling"), "relation must be one of"),
            (
                lambda c: c[accounts]["bob"].update(plugin="ilp-plugin-btp"),
                "accounts.bob.plugin is 'ilp-plugin-btp': ilphttp runs ilp-plugin-http accounts",
            ),
            (lambda c: c[accounts]["bob"].pop("options"), "accounts.bob.options must be an object"),
            (
                lambda c: c[accounts]["bob"]["options"]["outgoing"].pop("jwtSecret"),
                "accounts.bob.options: outgoing needs a static token or a JWT secret",
            ),
            (
                lambda c: c[accounts]["bob"]["options"].update(
                    outgoing={"url": "x", "staticToken": "t"}
                ),
                "accounts.bob.options: outgoing.url must be an http:// or https:// URL",
            ),
            (
                lambda c: c[accounts]["up"]["options"]["incoming"].update(staticToken="x"),
                "accounts.up.options.incoming: give one of staticToken, staticTokenFile",
            ),
            (
                lambda c: c[accounts]["up"]["options"]["incoming"].update(
                    staticTokenFile="no.token"
                ),
                "accounts.up.options.incoming.staticTokenFile: cannot read",
            ),
            (
                lambda c: c[accounts]["kids"]["options"]["outgoing"].update(staticTokenEnv="NOPE"),
                "staticTokenEnv: environment variable NOPE is not set",
            ),
            (
                lambda c: c[accounts]["kids"]["options"]["outgoing"].update(staticTokenEnv="BLANK"),
                "staticTokenEnv: environment variable BLANK is blank (whitespace only)",
            ),
            (lambda c: c.update(accounts={}), "accounts must be an object with at least one"),
            (lambda c: c.update(ilpAddress="hub"), "ilpAddress 'hub' is not a valid ILP address"),
            (lambda c: c.update(assetScale=300), "assetScale must be an integer from 0 to 255"),
            (lambda c: c.update(assetCode=""), "assetCode must not be empty"),
            (
                lambda c: c[accounts]["bob"].update(assetCode="USD"),
                "accounts.bob.assetCode is 'USD' but assetCode is 'XRP'",
            ),
            (
                lambda c: (
                    c.pop("assetCode"),
                    c[accounts]["bob"].update(assetCode="USD"),
                    c[accounts]["up"].update(assetCode="EUR"),
                ),
                "differ: the router converts nothing",
            ),
            (
                lambda c: c[accounts]["bob"].update(relation="parent"),
                "accounts.up and accounts.bob are both parents",
            ),
            (
                lambda c: (c.pop("ilpAddress"), c[accounts]["up"].update(relation="peer")),
                "ilpAddress is required when no account is a parent",
            ),
            (lambda c: c.update(ilpAddressInheritFrom="x"), "ilpAddressInheritFrom: no account"),
            (lambda c: c.update(defaultRoute="nobody"), "defaultRoute: no account named"),
            (lambda c: c.update(routes=[{"targetPrefix": "test.x"}]), "peerId must be"),
            (lambda c: c.update(routes=[{"prefix": "test.x"}]), "routes[0] must be"),
            (lambda c: c.update(routes="test.x"), "routes must be a list"),
            (
                lambda c: c.update(routes=[{"targetPrefix": "test.x", "peerId": "zed"}]),
                "routes: test.x goes to 'zed', which is not an account",
            ),
            (
                lambda c: c[accounts]["up"]["options"].update(multi=True),
                "accounts.up: a multi account must have relation child, not parent",
            ),
            (
                lambda c: c[accounts]["up"].update(ilpAddressSegment="u"),
                "accounts.up.ilpAddressSegment is for children only",
            ),
            (
                lambda c: c[accounts]["bob"].update(ilpAddressSegment="a b"),
                "ilpAddressSegment 'a b' is not a valid address segment",
            ),
            (
                lambda c: c[accounts].update({"bad name": c[accounts].pop("bob")}),
                "'bad name' is not a valid address segment; set ilpAddressSegment",
            ),
            (
                lambda c: c[accounts]["bob"].update(ilpAddressSegment="kids"),
                "both have the address test.hub.kids",
            ),
            (lambda c: c.update(maxHoldTime=-1), "maxHoldTime must be a number of milliseconds"),
            (
                lambda c: (c.pop("ilpAddress"), c[accounts]["up"]["options"].pop("outgoing")),
                "accounts.up has no outgoing link, so it cannot be asked for our address",
            ),
        ]
        for edit, words in cases:
            message = self.config_error(change(edit), {"KIDS_OUT": "kids-out", "BLANK": " \t "})
            self.assertTrue(message.startswith(": "), message)
            self.assertIn(words, message)

    def test_link_flags_with_config(self) -> None:
        path = self.write(HUB_CONFIG)
        token = self.file("t")
        for extra in (
            ["--listen", "tcp:1"],
            ["--port", "1"],
            ["--outgoing-url", "http://x/"],
            ["--name", "n"],
            ["--multi"],
            ["--multi-delimiter", "$"],
            ["--ildcp-address", "test.x"],
            ["--asset-code", "X"],
            ["--asset-scale", "1"],
            ["--send-ilp-destination"],
            ["--incoming-token-file", token],
            ["--outgoing-token-file", token],
            ["--incoming-jwt-secret-file", token],
            ["--outgoing-jwt-secret-file", token],
        ):
            message = self.usage_error(["--config", path, *extra], {"KIDS_OUT": "k"})
            self.assertIn(extra[0], message)
            self.assertIn("--config", message)

    def test_example_hub(self) -> None:
        """examples/hub.json parses as shipped."""
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, os.pardir, "examples", "hub.json")
        node = self.parse(["--config", path])["node"]
        self.assertEqual(node.routing.address, "test.hub")
        relations = {a.name: (a.relation, a.multi) for a in node.accounts}
        self.assertEqual(
            relations,
            {"up": ("parent", False), "kids": ("child", True), "bob": ("child", False)},
        )
        for account in node.accounts:
            self.assertIn("interface=127.0.0.1", account.options.incoming.endpoint)

    def shared(self, **top: Any) -> dict[str, Any]:
        """Two accounts without ports of their own, and one listener for both."""
        config = json.loads(json.dumps(HUB_CONFIG))
        del config["accounts"]["kids"]["options"]["incoming"]["endpoint"]
        config["accounts"]["bob"]["options"]["incoming"] = {"staticToken": "bob-in"}
        config["listen"] = "tcp:0:interface=127.0.0.1"
        config.update(top)
        return config

    def test_listen_serves_the_accounts_without_ports(self) -> None:
        node = self.parse_config(self.shared())["node"]
        self.assertEqual(node.listen, ("tcp:0:interface=127.0.0.1",))
        self.assertEqual([a.name for a in node.shared_accounts()], ["kids", "bob"])
        node = self.parse_config(self.shared(listen=["tcp:1", "tcp:2"]))["node"]
        self.assertEqual(node.listen, ("tcp:1", "tcp:2"))

    def test_listen_flags_with_config(self) -> None:
        options = self.parse(
            ["--config", self.write(self.shared()), "--port", "7000", "--listen", "tcp:7003"],
            {"KIDS_OUT": "kids-out"},
        )
        self.assertEqual(
            options["node"].listen, ("tcp:0:interface=127.0.0.1", "tcp:7000", "tcp:7003")
        )

    def test_listen_errors(self) -> None:
        no_listen = self.shared()
        del no_listen["listen"]
        same_token = self.shared()
        kids_in = same_token["accounts"]["kids"]["options"]["incoming"]
        same_token["accounts"]["bob"]["options"]["incoming"] = dict(kids_in)
        cases = [
            (no_listen, "accounts.kids.options.incoming has no port or endpoint of its own"),
            ({**HUB_CONFIG, "listen": "tcp:1"}, "listen: every account has a port of its own"),
            (self.shared(listen=[]), "listen must be an endpoint string or a list of them"),
            (self.shared(listen=[""]), "listen[0] must not be empty"),
            (self.shared(listen=7000), "listen must be an endpoint string or a list of them"),
            (same_token, "accounts.kids and accounts.bob have the same incoming token"),
            ({**HUB_CONFIG, "accounts": {"": {}}}, "an account's name must be a non-empty string"),
        ]
        rotated = self.shared()
        rotated["accounts"]["bob"]["options"]["incoming"] = {"staticTokens": ["bob-new", "k"]}
        jwt_twice = self.shared()
        jwt_twice["accounts"]["kids"]["options"]["incoming"] = {"jwtSecret": "s" * 32}
        jwt_twice["accounts"]["bob"]["options"]["incoming"] = {"jwtSecrets": ["s" * 32]}
        cases += [
            (rotated, "accounts.kids and accounts.bob have the same incoming token"),
            (jwt_twice, "have the same incoming JWT secret"),
        ]
        for config, words in cases:
            self.assertIn(words, self.config_error(config))

    def test_one_jwt_secret_for_accounts_bound_to_their_own_sub(self) -> None:
        config = self.shared()
        secret = "s" * 32
        config["accounts"]["kids"]["options"]["incoming"] = {"jwtSecret": secret, "subject": "k"}
        config["accounts"]["bob"]["options"]["incoming"] = {"jwtSecret": secret, "subject": "b"}
        node = self.parse_config(config)["node"]
        self.assertEqual(len(node.shared_accounts()), 2)

    def test_children_credentials_count_on_the_shared_listener(self) -> None:
        def hub(kids_incoming: dict[str, Any], other_incoming: dict[str, Any]) -> dict[str, Any]:
            config = self.shared()
            config["accounts"]["kids"]["options"]["incoming"] = kids_incoming
            config["accounts"]["kids"]["options"]["outgoing"]["url"] = "http://127.0.0.1:1/%/"
            config["accounts"]["bob"]["options"]["incoming"] = other_incoming
            return config

        secret = "s" * 32
        token_clash = hub({"children": {"c": {"staticTokens": ["T"]}}}, {"staticToken": "T"})
        self.assertIn(
            "accounts.kids and accounts.bob have the same incoming token",
            self.config_error(token_clash),
        )
        sub_clash = hub(
            {"jwtSecret": secret, "children": {"c": {"subject": "x"}}},
            {"jwtSecret": secret, "subject": "x"},
        )
        self.assertIn("have the same incoming JWT secret", self.config_error(sub_clash))
        own_subs = hub(
            {"jwtSecret": secret, "children": {"c": {"subject": "y"}}},
            {"jwtSecret": secret, "subject": "x"},
        )
        self.assertEqual(len(self.parse_config(own_subs)["node"].shared_accounts()), 2)

    def test_async_options_pass_through(self) -> None:
        config = json.loads(json.dumps(HUB_CONFIG))
        up = config["accounts"]["up"]["options"]
        up["outgoing"].update(mode="async", callbackUrl="https://hub.example/cb/up")
        up["incoming"]["callbackUrls"] = ["https://parent.example/replies"]
        node = self.parse_config(config)["node"]
        spec = next(a for a in node.accounts if a.name == "up")
        self.assertEqual(spec.options.outgoing.mode, "async")
        self.assertEqual(spec.options.outgoing.callback_url, "https://hub.example/cb/up")
        self.assertEqual(spec.options.incoming.callback_urls, ("https://parent.example/replies",))
        bob = next(a for a in node.accounts if a.name == "bob")
        self.assertEqual(bob.options.outgoing.mode, "sync")

    def test_async_option_errors_name_the_account(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"outgoing": {"mode": "later"}},
                "accounts.up.options: outgoing.mode must be 'sync' or 'async'",
            ),
            (
                {"outgoing": {"mode": "async"}},
                "accounts.up.options: outgoing.callbackUrl is required",
            ),
            (
                {"outgoing": {"mode": "async", "callbackUrl": "hub.example/cb"}},
                "accounts.up.options: outgoing.callbackUrl must be an http:// or https:// URL",
            ),
            (
                {"incoming": {"callbackUrls": ["https://p.example/cb?x"]}},
                "accounts.up.options: incoming.callbackUrls[0] must not have a query",
            ),
        ]
        for change, message in cases:
            config = json.loads(json.dumps(HUB_CONFIG))
            for side, values in change.items():
                config["accounts"]["up"]["options"][side].update(values)
            self.assertIn(message, self.config_error(config))
