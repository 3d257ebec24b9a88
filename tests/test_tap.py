"""twistd ilphttp: option parsing (every flag, every error), --config, makeService."""

from __future__ import annotations

import errno
import importlib.util
import io
import json
import os
import sys
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.copyright import version as twisted_version
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp import __version__, ildcp
from ilphttp.errors import OptionError
from ilphttp.node import HandlerContext, NodeService, startup_error
from ilphttp.packet import Reject, deserialize_reject, serialize_reject
from ilphttp.plugin import PluginHttp
from ilphttp.router import Router
from ilphttp.tap import Options, make_service
from ilphttp.testing import make_prepare
from tests.support.options import HUB_CONFIG, IN_TOKEN, JWT_SECRET, OUT_TOKEN, OptionsCase

# -- handler factories for --handler -------------------------------------------------

CONTEXTS: list[HandlerContext] = []


def echo_factory(context: HandlerContext) -> Any:
    """A --handler factory: rejects every Prepare with F99, naming the account."""
    CONTEXTS.append(context)

    def handler(data: bytes) -> bytes:
        return serialize_reject(Reject("F99", "", f"handled by {context.account}"))

    return handler


def not_a_factory_result(context: HandlerContext) -> Any:
    return 42


NOT_CALLABLE = "just a string"


class SingleLinkOptionsTests(OptionsCase):
    """One link from flags."""

    def test_hub(self) -> None:
        options = self.parse(self.hub_argv())
        node = options["node"]
        [account] = node.accounts
        plugin = account.options
        self.assertEqual(account.relation, "child")
        self.assertTrue(plugin.multi)
        self.assertEqual(plugin.multi_delimiter, "%")
        assert plugin.incoming is not None and plugin.outgoing is not None
        self.assertEqual(plugin.incoming.endpoint, "tcp:0:interface=127.0.0.1")
        self.assertEqual(plugin.incoming.static_token, IN_TOKEN)  # the newline is gone
        self.assertEqual(plugin.outgoing.url, "http://127.0.0.1:%/")
        self.assertEqual(plugin.outgoing.static_token, OUT_TOKEN)
        self.assertFalse(plugin.outgoing.send_ilp_destination)
        self.assertIsNone(plugin.outgoing.name)
        self.assertEqual(plugin.ildcp, ildcp.IldcpResponse("test.hub", 9, "XRP"))
        self.assertEqual(
            (node.routing.address, node.routing.asset_code, node.routing.asset_scale),
            ("test.hub", "XRP", 9),
        )
        self.assertIsNone(options["handler_factory"])

    def test_every_link_flag(self) -> None:
        argv = [
            *self.hub_argv(),
            "--name",
            "hub7",
            "--send-ilp-destination",
            "--multi-delimiter",
            "$",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--port",
            "0",
        ]
        argv[argv.index("http://127.0.0.1:%/")] = "http://127.0.0.1:$/"
        [account] = self.parse(argv)["node"].accounts
        out = account.options.outgoing
        self.assertEqual((out.name, out.send_ilp_destination), ("hub7", True))
        self.assertEqual(account.options.multi_delimiter, "$")
        self.assertEqual(account.extra_listen, ("tcp:0:interface=127.0.0.1", "tcp:0"))

    def test_port(self) -> None:
        for flag in ("--port", "-p"):
            argv = [*self.hub_argv()[2:], flag, "8000"]
            [account] = self.parse(argv)["node"].accounts
            self.assertEqual(account.options.incoming.endpoint, "tcp:8000")
        for bad in ("http", "70000", "-1", ""):
            message = self.usage_error([*self.hub_argv()[2:], "--port", bad])
            self.assertIn("--port must be a TCP port number", message)

    def test_listen_and_metrics_endpoints_are_checked_before_start(self) -> None:
        rule = "the port must be a number from 0 to 65535"
        for argv, expected in [
            (["--listen", "tcp:99999:interface=127.0.0.1"], f"{rule}, got '99999'"),
            (["--listen", "tcp:0", "--listen", "tcp:-5"], f"--listen 'tcp:-5': {rule}, got '-5'"),
            (["--listen", r"unix:/nonexistent/a\:b/s"], "directory /nonexistent/a:b does not"),
            (["--listen", "tcp:0", "--metrics", "tcp:port=70000"], "--metrics 'tcp:port=70000'"),
            (
                ["--listen", "tcp:8260:interface=127.0.0.1", "--listen", "tcp:8260"],
                "--listen 'tcp:8260:interface=127.0.0.1' and --listen 'tcp:8260' would both"
                " listen on port 8260",
            ),
            (
                ["--listen", "tcp:8260", "--metrics", "tcp:8260"],
                "--listen 'tcp:8260' and --metrics 'tcp:8260' would both listen",
            ),
        ]:
            message = self.usage_error([*self.hub_argv()[2:], *argv])
            self.assertIn(expected, message)
        # Types we do not know are Twisted's to parse, when it listens.
        self.parse([*self.hub_argv()[2:], "--listen", "systemd:domain=INET:index=0"])

    def test_jwt_secrets(self) -> None:
        argv = [
            "--port",
            "0",
            "--incoming-jwt-secret-file",
            self.file(JWT_SECRET),
            "--outgoing-url",
            "http://127.0.0.1:9/",
            "--outgoing-jwt-secret-file",
            self.file(JWT_SECRET),
            "--handler",
            "tests.test_tap:echo_factory",
        ]
        [account] = self.parse(argv)["node"].accounts
        self.assertEqual(account.options.incoming.jwt_secret, JWT_SECRET)
        self.assertIsNone(account.options.incoming.static_token)
        self.assertEqual(account.options.outgoing.jwt_secret, JWT_SECRET)
        self.assertIsNone(account.options.outgoing.static_token)
        self.assertEqual(account.relation, "peer")

    def test_incoming_token_and_jwt(self) -> None:
        """Incoming, both are allowed (the JS plugin accepts either then)."""
        argv = [
            "--port",
            "0",
            "--incoming-token-file",
            self.file(IN_TOKEN),
            "--incoming-jwt-secret-file",
            self.file(JWT_SECRET),
            "--handler",
            "tests.test_tap:echo_factory",
        ]
        [account] = self.parse(argv)["node"].accounts
        incoming = account.options.incoming
        self.assertEqual((incoming.static_token, incoming.jwt_secret), (IN_TOKEN, JWT_SECRET))
        self.assertIsNone(account.options.outgoing)

    def test_environment(self) -> None:
        environ = {
            "ILPHTTP_INCOMING_TOKEN": IN_TOKEN,
            "ILPHTTP_OUTGOING_TOKEN": OUT_TOKEN,
        }
        argv = ["--port", "0", "--outgoing-url", "http://127.0.0.1:%/", "--multi"]
        argv += ["--ildcp-address", "test.hub", "--asset-code", "XRP", "--asset-scale", "0"]
        [account] = self.parse(argv, environ)["node"].accounts
        self.assertEqual(account.options.incoming.static_token, IN_TOKEN)
        self.assertEqual(account.options.outgoing.static_token, OUT_TOKEN)
        environ = {
            "ILPHTTP_INCOMING_JWT_SECRET": JWT_SECRET,
            "ILPHTTP_OUTGOING_JWT_SECRET": JWT_SECRET,
        }
        [account] = self.parse(argv, environ)["node"].accounts
        self.assertEqual(account.options.incoming.jwt_secret, JWT_SECRET)
        self.assertEqual(account.options.outgoing.jwt_secret, JWT_SECRET)

    def test_files_win_over_environment(self) -> None:
        environ = {
            "ILPHTTP_INCOMING_TOKEN": "from-env",
            "ILPHTTP_INCOMING_JWT_SECRET": "from-env-too",
            "ILPHTTP_OUTGOING_TOKEN": "from-env",
            "ILPHTTP_OUTGOING_JWT_SECRET": "from-env-too",
        }
        [account] = self.parse(self.hub_argv(), environ)["node"].accounts
        self.assertEqual(account.options.incoming.static_token, IN_TOKEN)
        self.assertIsNone(account.options.incoming.jwt_secret)
        self.assertEqual(account.options.outgoing.static_token, OUT_TOKEN)
        self.assertIsNone(account.options.outgoing.jwt_secret)

    def test_handler(self) -> None:
        argv = ["--port", "0", "--incoming-token-file", self.file(IN_TOKEN)]
        options = self.parse([*argv, "--handler", "tests.test_tap:echo_factory"])
        self.assertIs(options["handler_factory"], echo_factory)

    def test_errors(self) -> None:
        token = self.file(IN_TOKEN)
        hub = self.hub_argv()
        no_multi = [a for a in hub if a != "--multi"]

        def without(*flags: str) -> list[str]:
            argv = list(hub)
            for flag in flags:
                i = argv.index(flag)
                del argv[i : i + 2]
            return argv

        handler = ["--handler", "tests.test_tap:echo_factory"]
        cases: list[tuple[list[str], dict[str, str], str]] = [
            (without("--listen"), {}, "--listen or --port is required"),
            (without("--incoming-token-file"), {}, "incoming authentication is missing"),
            (without("--outgoing-token-file"), {}, "outgoing authentication is missing"),
            (
                [*hub, "--outgoing-jwt-secret-file", token],
                {},
                "give --outgoing-token-file or --outgoing-jwt-secret-file, not both",
            ),
            (
                without("--outgoing-token-file"),
                {"ILPHTTP_OUTGOING_TOKEN": "a", "ILPHTTP_OUTGOING_JWT_SECRET": "b"},
                "give ILPHTTP_OUTGOING_TOKEN or ILPHTTP_OUTGOING_JWT_SECRET, not both",
            ),
            (
                [*without("--outgoing-url", "--outgoing-token-file"), "--name", "x", *handler],
                {},
                "--name needs --outgoing-url",
            ),
            (
                [*without("--outgoing-url"), *handler],
                {},
                "--outgoing-token-file needs --outgoing-url",
            ),
            (
                [
                    *without("--outgoing-url", "--outgoing-token-file"),
                    "--outgoing-jwt-secret-file",
                    token,
                    *handler,
                ],
                {},
                "--outgoing-jwt-secret-file needs --outgoing-url",
            ),
            (
                [*without("--outgoing-url", "--outgoing-token-file"), "--send-ilp-destination"],
                {},
                "--send-ilp-destination needs --outgoing-url",
            ),
            ([*no_multi, "--multi-delimiter", "$"], {}, "--multi-delimiter needs --multi"),
            (
                [*without("--ildcp-address"), "--ildcp-address", "hub"],
                {},
                "--ildcp-address 'hub' is not a valid ILP address",
            ),
            (without("--asset-code"), {}, "--ildcp-address needs --asset-code"),
            (without("--asset-scale"), {}, "--ildcp-address needs --asset-scale"),
            (
                [*without("--ildcp-address", "--asset-scale"), *handler],
                {},
                "--asset-code needs --ildcp-address",
            ),
            (
                [*without("--ildcp-address", "--asset-code"), *handler],
                {},
                "--asset-scale needs --ildcp-address",
            ),
            (
                [a if a != "http://127.0.0.1:%/" else "http://127.0.0.1:9/" for a in no_multi],
                {},
                "a single bilateral link gives the router nowhere to route",
            ),
            (
                no_multi,
                {},
                "--outgoing-url: port '%' is not a number (1 to 65535), got"
                " 'http://127.0.0.1:%/'; a URL template needs --multi",
            ),
            (
                [*without("--outgoing-url"), "--outgoing-url", "http://127.0.0.1:-1/?t=SECRETQ1"],
                {},
                "--outgoing-url: port '-1' is not a number (1 to 65535), got"
                " 'http://127.0.0.1:-1/'",
            ),
            (
                [*hub, "--multi-delimiter", "{c}"],
                {},
                "--outgoing-url: port '%' is not a number",
            ),
            (
                without("--ildcp-address", "--asset-code", "--asset-scale"),
                {},
                "--multi needs --ildcp-address",
            ),
            (
                without("--outgoing-url", "--outgoing-token-file"),
                {},
                "--multi needs --outgoing-url",
            ),
            (
                [*without("--incoming-token-file"), "--incoming-token-file", "/nonexistent/x"],
                {},
                "--incoming-token-file: cannot read /nonexistent/x",
            ),
            (
                [*without("--outgoing-token-file"), "--outgoing-token-file", self.file("\n\n")],
                {},
                "--outgoing-token-file:",
            ),
            (
                [*without("--outgoing-url"), "--outgoing-url", "ftp://127.0.0.1/"],
                {},
                "--outgoing-url must be an http:// or https:// URL",
            ),
            (
                [*without("--outgoing-url"), "--outgoing-url", "http://u:p@127.0.0.1:1/"],
                {},
                "--outgoing-url: credentials in the URL are not supported",
            ),
            ([*hub, "--handler", "nocolon"], {}, "--handler must be pkg.module:callable"),
            (
                [*hub, "--handler", "no_such_module_xyz:f"],
                {},
                "--handler: cannot import no_such_module_xyz",
            ),
            (
                [*hub, "--handler", "tests.test_tap:missing"],
                {},
                "--handler: tests.test_tap has no missing",
            ),
            (
                [*hub, "--handler", "tests.test_tap:NOT_CALLABLE"],
                {},
                "tests.test_tap:NOT_CALLABLE is not callable",
            ),
        ]
        for scale in ("x", "256", "-1", "1.5"):
            cases.append(
                (
                    [*without("--asset-scale"), "--asset-scale", scale],
                    {},
                    "--asset-scale must be an integer from 0 to 255",
                )
            )
        for argv, environ, words in cases:
            message = self.usage_error(argv, environ)
            self.assertIn(words, message, argv)
            self.assertNotIn("SECRETQ1", message)

    def test_empty_token_file(self) -> None:
        argv = self.hub_argv()
        argv[argv.index("--incoming-token-file") + 1] = self.file("  \n")
        message = self.usage_error(argv)
        self.assertIn("--incoming-token-file", message)
        self.assertIn("is empty", message)

    def test_unknown_option(self) -> None:
        with self.assertRaises(usage.UsageError):
            self.parse(["--secret", "x"])

    def test_help_lists_every_option(self) -> None:
        text = str(Options())
        for flag in (
            "--listen",
            "--port",
            "--config",
            "--outgoing-url",
            "--name",
            "--multi",
            "--multi-delimiter",
            "--ildcp-address",
            "--asset-code",
            "--asset-scale",
            "--send-ilp-destination",
            "--incoming-token-file",
            "--outgoing-token-file",
            "--incoming-jwt-secret-file",
            "--outgoing-jwt-secret-file",
            "--handler",
            "ILPHTTP_INCOMING_TOKEN",
        ):
            self.assertIn(flag, text)


class VersionTests(TestCase):
    """``twistd ilphttp --version`` names ilphttp's version beside Twisted's."""

    def test_option(self) -> None:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            Options(environ={}).parseOptions(["--version"])
        self.assertIn(caught.exception.code, (None, 0))
        self.assertEqual(
            out.getvalue().splitlines(),
            [f"ilphttp {__version__}", f"Twisted version: {twisted_version}"],
        )

    @inlineCallbacks
    def test_twistd(self) -> Any:
        """The real twistd, this checkout first on the path: exit status 0, no traceback."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        program = "from twisted.scripts.twistd import run; run()"
        where = self.mktemp()
        os.makedirs(where)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-c", program, "ilphttp", "--version"], env=env, path=where
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(out.decode().splitlines()[0], f"ilphttp {__version__}")
        self.assertNotIn(b"Traceback", err)


class StartupErrorTests(SynchronousTestCase):
    """How a service that cannot start is named in the one line (pure)."""

    def test_wording(self) -> None:
        in_use = OSError(errno.EADDRINUSE, "Address already in use")
        cases: list[tuple[str, Exception, str]] = [
            (
                "account 'up'",
                CannotListenError("127.0.0.1", 7770, in_use),
                "cannot start account 'up': cannot listen on 127.0.0.1:7770 (address in use)",
            ),
            (
                "account 'up'",
                CannotListenError("", 80, OSError(errno.EACCES, "Permission denied")),
                "cannot start account 'up': cannot listen on port 80 (permission denied)",
            ),
            (
                "listener 'listen-1'",
                CannotListenError("::1", 7770, in_use),
                "cannot start listener 'listen-1': cannot listen on [::1]:7770 (address in use)",
            ),
            (
                "account 'b'",
                CannotListenError("10.9.9.9", 1, OSError(errno.EADDRNOTAVAIL, "x")),
                "cannot start account 'b': cannot listen on 10.9.9.9:1"
                " (address not available on this host)",
            ),
            (
                "account 'b'",
                CannotListenError("127.0.0.1", 1, OSError(errno.EMFILE, "Too many open files")),
                "cannot start account 'b': cannot listen on 127.0.0.1:1 (Too many open files)",
            ),
            (
                "account 'b'",
                OptionError("incoming.endpoint 'tcp:x' is invalid: bad port"),
                "cannot start account 'b': incoming.endpoint 'tcp:x' is invalid: bad port",
            ),
        ]
        for what, exc, expected in cases:
            self.assertEqual(startup_error(what, exc), expected)


class MakeServiceTests(OptionsCase):
    """makeService builds the right services; MemoryReactor, no sockets."""

    def node_options(self, config: dict[str, Any], handler: str | None = None) -> Options:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        directory.child("up.token").setContent(b"up-in")
        path = directory.child("hub.json")
        path.setContent(json.dumps(config).encode("utf-8"))
        argv = ["--config", path.path]
        if handler is not None:
            argv += ["--handler", handler]
        return self.parse(argv, {"KIDS_OUT": "kids-out"})

    def test_hub(self) -> None:
        reactor = MemoryReactorClock()
        service = make_service(self.node_options(HUB_CONFIG), reactor=reactor)
        self.assertIsInstance(service, NodeService)
        names = [s.name for s in service]
        self.assertEqual(names, ["up", "kids", "bob", "router"])
        for name in ("up", "kids", "bob"):
            plugin = service.getServiceNamed(name)
            self.assertIsInstance(plugin, PluginHttp)
            self.assertIs(service.plugins[name], plugin)
        router = service.getServiceNamed("router")
        self.assertIsInstance(router, Router)
        self.assertIs(service.router, router)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        listening = sorted((port, interface) for port, _, _, interface in reactor.tcpServers)
        self.assertEqual(listening, [(7001, ""), (7002, "127.0.0.1")])
        self.assertTrue(all(p.is_connected() for p in service.plugins.values()))
        assert router.table is not None
        self.assertEqual(router.table.address, "test.hub")
        # each plugin has the router's handler for its own account
        request, parsed = ildcp.serialize_request(), ildcp.request_prepare()
        up = service.plugins["up"]
        reply = up._handler.prepare_handler(parsed, request, None)  # type: ignore[misc]
        self.assertEqual(reply.code, "F02")  # not answered to a parent
        bob = service.plugins["bob"]
        reply = bob._handler.prepare_handler(parsed, request, None)  # type: ignore[misc]
        self.assertEqual(ildcp.deserialize_response(reply).client_address, "test.hub.bob")

    def test_stop(self) -> None:
        reactor = MemoryReactorClock()
        service = make_service(self.node_options(HUB_CONFIG), reactor=reactor)
        service.startService()
        d = service.stopService()
        self.successResultOf(d)
        self.assertFalse(any(p.is_connected() for p in service.plugins.values()))
        self.assertFalse(service.running)

    def test_several_listeners(self) -> None:
        options = self.parse(
            [
                *self.hub_argv(),
                "--listen",
                "tcp:7010:interface=127.0.0.1",
                "--port",
                "7011",
            ]
        )
        reactor = MemoryReactorClock()
        service = make_service(options, reactor=reactor)
        self.assertEqual(
            [s.name for s in service], ["link", "link-listen-1", "link-listen-2", "router"]
        )
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(
            sorted((port, interface) for port, _, _, interface in reactor.tcpServers),
            [(0, "127.0.0.1"), (7010, "127.0.0.1"), (7011, "")],
        )
        # every listener serves the same link, through its door (behind the reload switch)
        plugin = service.plugins["link"]
        factories = [factory for _, factory, _, _ in reactor.tcpServers]
        doors = [getattr(factory, "door", None) for factory in factories]
        switch = service.doors["link"]
        self.assertEqual(doors.count(switch), 3)
        self.assertIs(switch.door, plugin.resource.door)

    def test_handler_factory(self) -> None:
        del CONTEXTS[:]
        options = self.node_options(HUB_CONFIG, "tests.test_tap:echo_factory")
        service = make_service(options, reactor=MemoryReactorClock())
        self.assertEqual([s.name for s in service], ["up", "kids", "bob"])
        self.assertIsNone(service.router)
        self.assertEqual([c.account for c in CONTEXTS], ["up", "kids", "bob"])
        self.assertEqual([c.relation for c in CONTEXTS], ["parent", "child", "child"])
        for context in CONTEXTS:
            self.assertIs(context.plugin, service.plugins[context.account])
            self.assertEqual(dict(context.plugins), service.plugins)
            self.assertIs(context.node, options["node"])
        packet, _ = make_prepare(destination="test.x")
        reply = service.plugins["kids"]._handler.data_handler(packet)  # type: ignore[misc]
        self.assertEqual(deserialize_reject(reply).message, "handled by kids")

    def test_handler_factory_returns_garbage(self) -> None:
        options = self.node_options(HUB_CONFIG, "tests.test_tap:not_a_factory_result")
        with self.assertRaises(SystemExit) as caught:
            make_service(options, reactor=MemoryReactorClock())
        self.assertIn(
            "ilphttp: --handler tests.test_tap:not_a_factory_result: the handler factory"
            " returned int, not a callable data handler",
            str(caught.exception),
        )


class ExampleHandlerTests(OptionsCase):
    """examples/handler.py works as a --handler factory."""

    def test_example(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        examples = os.path.join(here, os.pardir, "examples")
        self.patch(sys, "path", [examples, *sys.path])
        self.addCleanup(sys.modules.pop, "handler", None)
        options = self.parse(
            [
                "--port",
                "0",
                "--incoming-token-file",
                self.file(IN_TOKEN),
                "--handler",
                "handler:make_handler",
            ]
        )
        service = make_service(options, reactor=MemoryReactorClock())
        packet, _ = make_prepare(amount=3, destination="test.x")
        reply = service.plugins["link"]._handler.data_handler(packet)  # type: ignore[misc]
        rejected = deserialize_reject(reply)
        self.assertEqual((rejected.code, rejected.message), ("F99", "seen by link"))


class TwistdPluginTests(SynchronousTestCase):
    """twisted/plugins/ilphttp_plugin.py (discovery itself: test_twistd_e2e)."""

    def test_service_maker(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, os.pardir, "twisted", "plugins", "ilphttp_plugin.py")
        spec = importlib.util.spec_from_file_location("_ilphttp_plugin_under_test", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        maker = module.ilphttp
        self.assertTrue(IServiceMaker.providedBy(maker))
        self.assertEqual(maker.tapname, "ilphttp")
        self.assertIs(maker.options, Options)
        from ilphttp import tap

        self.assertIs(maker.makeService, tap.makeService)
        self.assertFalse(
            os.path.exists(os.path.join(here, os.pardir, "twisted", "__init__.py")),
            "twisted/ must not be a package of ours",
        )
        self.assertFalse(
            os.path.exists(os.path.join(here, os.pardir, "twisted", "plugins", "__init__.py"))
        )


class StartupFailureTests(TestCase):
    """A port in use stops the node with one line, not a traceback (real loopback)."""

    def test_port_in_use(self) -> None:
        busy = global_reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        options = Options(environ={})
        options.parseOptions(
            [
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--incoming-token-file",
                _write_temp(self.mktemp(), IN_TOKEN),
                "--handler",
                "tests.test_tap:echo_factory",
            ]
        )
        service = make_service(options)
        with self.assertRaises(SystemExit) as caught:
            service.startService()
        self.assertEqual(caught.exception.code, 1, "twistd exits 1 without printing it again")
        self.assertEqual(
            str(caught.exception),
            f"ilphttp: cannot start account 'link': cannot listen on 127.0.0.1:{port}"
            " (address in use)",
        )
        self.flushLoggedErrors()

    def test_extra_listener_in_use(self) -> None:
        """An account's extra --listen is named as the listener it is."""
        busy = global_reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        options = Options(environ={})
        options.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--incoming-token-file",
                _write_temp(self.mktemp(), IN_TOKEN),
                "--handler",
                "tests.test_tap:echo_factory",
            ]
        )
        service = make_service(options)
        self.addCleanup(service.stopService)
        with self.assertRaises(SystemExit) as caught:
            service.startService()
        self.assertEqual(
            str(caught.exception),
            f"ilphttp: cannot start listener 'link-listen-1': cannot listen on 127.0.0.1:{port}"
            " (address in use)",
        )
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_twistd_says_it_once(self) -> Any:
        """Under the real twistd, a port in use (an account's, then ``/metrics``)
        is one critical line: no ``stderr`` echo of it, no traceback, exit status 1."""
        busy = global_reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        where = os.path.abspath(self.mktemp())
        os.makedirs(where)
        config = os.path.join(where, "node.json")

        def write(account_port: int) -> None:
            account = {"incoming": {"port": account_port, "staticToken": IN_TOKEN}}
            node = {"ilpAddress": "test.hub", "assetCode": "XRP", "assetScale": 9}
            node["accounts"] = {"a": {"relation": "child", "options": account}}
            with open(config, "w", encoding="utf-8") as f:
                json.dump(node, f)

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        program = "from twisted.scripts.twistd import run; run()"
        for extra, what in (
            ((), f"cannot start account 'a': cannot listen on port {port} (address in use)"),
            (
                ("--metrics", f"tcp:{port}:interface=127.0.0.1"),
                f"cannot start listener 'metrics': cannot listen on 127.0.0.1:{port}",
            ),
        ):
            write(0 if extra else port)  # the account on a free port beside --metrics
            argv = ["-c", program, "-n", "--pidfile=", "ilphttp", "--config", config, *extra]
            out, err, code = yield getProcessOutputAndValue(
                sys.executable, argv, env=env, path=where
            )
            text = (out + err).decode("utf-8", "replace")
            self.assertEqual(code, 1, text)
            lines = [line for line in text.splitlines() if "cannot start" in line]
            self.assertEqual(len(lines), 1, text)
            self.assertIn(what, lines[0])
            self.assertIn("#critical]", lines[0])
            self.assertNotIn("stderr#", text)
            self.assertNotIn("Traceback", text)

    def test_real_stop(self) -> Deferred[None]:
        """A node on a real loopback port starts, answers, and stops."""
        options = Options(environ={})
        options.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--incoming-token-file",
                _write_temp(self.mktemp(), IN_TOKEN),
                "--handler",
                "tests.test_tap:echo_factory",
            ]
        )
        service = make_service(options)
        service.startService()
        port = service.plugins["link"].port
        assert port is not None
        self.assertEqual(port.getHost().host, "127.0.0.1")
        sender = PluginHttp(
            outgoing={"url": f"http://127.0.0.1:{port.getHost().port}/", "static_token": IN_TOKEN}
        )
        sender.connect()
        packet, _ = make_prepare(destination="test.x")
        d = sender.send_data(packet)

        def check(reply: bytes) -> Deferred[None]:
            self.assertEqual(deserialize_reject(reply).message, "handled by link")
            return sender.disconnect()

        d.addCallback(check)
        d.addCallback(lambda _: service.stopService())
        d.addCallback(lambda _: self.assertIsNone(service.plugins["link"].port))
        return d


def _write_temp(path: str, content: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    return path
