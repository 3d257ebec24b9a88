"""``twistd ilphttp --workers N``: options, sockets, supervision, and real processes.

The end-to-end tests run ``twistd -n ilphttp --workers 2`` with the running
interpreter (``from twisted.scripts.twistd import run``) and this checkout on
``PYTHONPATH``, so the twistd plugin in ``twisted/plugins`` is found without
installing anything.  The workers' handler is :func:`make_pid_handler` below:
it fulfils every Prepare whose condition is ``sha256(PREIMAGE)`` and puts its
process id in the Fulfill's data, so the test sees which worker answered.
Everything is on 127.0.0.1 and bounded in time.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import (
    CannotListenError,
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, eventFromJSON, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp import worker_process, worker_supervisor, workers
from ilphttp.config import OptionError
from ilphttp.node import HandlerContext, NodeService
from ilphttp.nodeconfig import SHARED_LISTEN, ConfigError, NodeConfig, parse_node
from ilphttp.packet import (
    Fulfill,
    Reject,
    deserialize,
    deserialize_prepare,
    serialize,
    serialize_reject,
)
from ilphttp.plugin import PluginHttp
from ilphttp.tap import Options, make_service, makeService
from ilphttp.testing import make_prepare
from ilphttp.worker_setup import SETUP_LENGTH, frame_setup
from ilphttp.workers import (
    FIRST_LISTEN_FD,
    Listener,
    WorkerSetup,
    WorkersService,
    listeners_of,
    open_sockets,
    parse_listener,
    parse_workers,
    read_setup,
    worker_endpoints,
)
from tests.support.certs import CertificateAuthority
from tests.support.spawning import FakeReactor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "workers-test-token-0123456789"
#: the workers' handler fulfils Prepares with this preimage (as bench/ does)
PREIMAGE = bytes([7]) * 32
CONDITION = hashlib.sha256(PREIMAGE).digest()
TWISTD = "from twisted.scripts.twistd import run; run()"


def child_env() -> dict[str, str]:
    """This environment, with this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


# -- handler factories the workers import (--handler tests.test_workers:...) -----------


def make_pid_handler(context: HandlerContext) -> Any:
    """Fulfils Prepares for sha256(PREIMAGE); the Fulfill's data is our process id."""
    fulfill = serialize(Fulfill(PREIMAGE, str(os.getpid()).encode("ascii")))

    def handler(data: bytes) -> bytes:
        if deserialize_prepare(data).execution_condition != CONDITION:
            return serialize_reject(Reject("F05", "test.workers", "wrong condition"))
        return fulfill

    return handler


def make_failing_handler(context: HandlerContext) -> Any:
    raise RuntimeError("this handler factory always fails")


def _esc(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def node_config(endpoint: str = "tcp:0:interface=127.0.0.1", **top: Any) -> dict[str, Any]:
    return dict(
        {
            "ilpAddress": "test.workers",
            "assetCode": "XRP",
            "assetScale": 9,
            "accounts": {
                "a": {
                    "relation": "peer",
                    "options": {"incoming": {"endpoint": endpoint, "staticToken": TOKEN}},
                }
            },
        },
        **top,
    )


def hold_a_port(case: SynchronousTestCase) -> int:
    """A port on 127.0.0.1 that something listens on until ``case`` ends."""
    holder = socket.socket()
    case.addCleanup(holder.close)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port: int = holder.getsockname()[1]
    return port


def node(endpoint: str = "tcp:0:interface=127.0.0.1") -> NodeConfig:
    return parse_node(node_config(endpoint), ".", {})


# -- options ---------------------------------------------------------------------------


class OptionsTests(SynchronousTestCase):
    def write(self, data: dict[str, Any]) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
        return path

    def parse(self, *argv: str) -> Options:
        options = Options(environ={})
        options.parseOptions(list(argv))
        return options

    def error(self, *argv: str) -> str:
        with self.assertRaises(usage.UsageError) as caught:
            self.parse(*argv)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        self.assertNotIn(TOKEN, message)
        return message

    def test_default_is_one_process(self) -> None:
        options = self.parse("--config", self.write(node_config()))
        self.assertEqual(options["workers"], 1)
        self.assertIsInstance(makeService(options), NodeService)

    def test_flag(self) -> None:
        options = self.parse("--config", self.write(node_config()), "--workers", "3")
        self.assertEqual(options["workers"], 3)
        service = makeService(options).getServiceNamed("workers")  # type: ignore[attr-defined]
        self.assertIsInstance(service, WorkersService)
        assert isinstance(service, WorkersService)
        self.assertEqual(service.count, 3)
        self.assertIsNone(service.handler)
        self.assertEqual([lst.account for lst in service.listeners], ["a"])

    def test_file_and_the_flag_wins(self) -> None:
        path = self.write(node_config(workers=4))
        self.assertEqual(self.parse("--config", path)["workers"], 4)
        self.assertEqual(self.parse("--config", path, "--workers", "2")["workers"], 2)
        self.assertEqual(self.parse("--config", path, "--workers", "1")["workers"], 1)

    def test_handler_spec_goes_to_the_workers(self) -> None:
        options = self.parse(
            "--config",
            self.write(node_config()),
            "--workers",
            "2",
            "--handler",
            "tests.test_workers:make_pid_handler",
        )
        service = makeService(options).getServiceNamed("workers")  # type: ignore[attr-defined]
        assert isinstance(service, WorkersService)
        self.assertEqual(service.handler, "tests.test_workers:make_pid_handler")

    def test_single_link_flags(self) -> None:
        token = os.path.abspath(self.mktemp())
        with open(token, "w", encoding="utf-8") as f:
            f.write(TOKEN)
        options = self.parse(
            "--port",
            "0",
            "--incoming-token-file",
            token,
            "--handler",
            "tests.test_workers:make_pid_handler",
            "--workers",
            "2",
        )
        self.assertEqual(options["workers"], 2)

    def test_bad_counts(self) -> None:
        path = self.write(node_config())
        for bad in ("0", "-1", "x", "2.5", "257"):
            self.assertEqual(
                self.error("--config", path, "--workers", bad),
                f"--workers must be an integer from 1 to 256, got {bad!r}",
            )
        for bad_file in (0, "2", True, 1000):
            message = self.error("--config", self.write(node_config(workers=bad_file)))
            self.assertIn("workers must be an integer from 1 to 256", message)

    def test_unix_endpoint_is_refused_with_workers(self) -> None:
        path = self.write(node_config("unix:/tmp/ilphttp-never.sock"))
        message = self.error("--config", path, "--workers", "2")
        self.assertIn("account a: listener 'unix:/tmp/ilphttp-never.sock'", message)
        self.assertIn("tcp:, tcp6: and ssl: listeners only", message)
        # one process is fine with it
        self.assertEqual(self.parse("--config", path)["workers"], 1)

    def test_async_sender_is_refused_with_workers(self) -> None:
        """Its replies would land on any worker; all but one would refuse them (400)."""
        data = node_config()
        data["accounts"]["a"]["options"]["outgoing"] = {
            "url": "http://peer.example/ilp",
            "staticToken": "us-to-peer-token",
            "mode": "async",
            "callbackUrl": "http://node.example/accounts/a/ilp",
        }
        path = self.write(data)
        message = self.error("--config", path, "--workers", "2")
        self.assertIn('account a: outgoing mode "async"', message)
        self.assertIn("--workers 1", message)
        with self.assertRaises(ConfigError):
            WorkersService(parse_node(data, ".", {}), None, 2)
        self.assertEqual(self.parse("--config", path)["workers"], 1)
        # receiving asynchronously keeps no state: workers are fine with it
        del data["accounts"]["a"]["options"]["outgoing"]["mode"]
        del data["accounts"]["a"]["options"]["outgoing"]["callbackUrl"]
        self.assertEqual(self.parse("--config", self.write(data), "--workers", "2")["workers"], 2)

    def test_parse_workers(self) -> None:
        self.assertEqual(parse_workers("7"), 7)
        self.assertEqual(parse_workers(256), 256)
        with self.assertRaises(ConfigError):
            parse_workers(False)


# -- listeners and sockets -----------------------------------------------------------------


class ListenerTests(SynchronousTestCase):
    def test_tcp(self) -> None:
        self.assertEqual(
            parse_listener("a", 0, "tcp:8000:interface=127.0.0.1:backlog=10"),
            Listener(
                "a", 0, "tcp:8000:interface=127.0.0.1:backlog=10", "tcp", 8000, "127.0.0.1", 10
            ),
        )
        listener = parse_listener("a", 1, "tcp:port=0")
        self.assertEqual((listener.port, listener.interface, listener.backlog), (0, "", 50))
        self.assertEqual(listener.family, socket.AF_INET)
        self.assertEqual(listener.bind_address, ("", 0))

    def test_ipv6(self) -> None:
        listener = parse_listener("a", 0, "tcp:0:interface=\\:\\:1")
        self.assertEqual((listener.interface, listener.family), ("::1", socket.AF_INET6))
        listener = parse_listener("a", 0, "tcp6:0")
        self.assertEqual((listener.family, listener.bind_address), (socket.AF_INET6, ("::", 0)))

    def test_refused(self) -> None:
        for bad in (
            "unix:/tmp/x.sock",
            "systemd:domain=INET:index=0",
            "tcp:8000:reusePort=yes",
            "tcp:http",
            "tcp:70000",
            "tcp:1:2",
            "tcp:8000:backlog=0",
            "ssl:0:privateKey=/nonexistent/key.pem",
        ):
            with self.assertRaises(ConfigError, msg=bad) as caught:
                parse_listener("acct", 0, bad)
            self.assertIn(f"account acct: listener {bad!r}", str(caught.exception))

    def test_ssl(self) -> None:
        directory = self.mktemp()
        paths = CertificateAuthority().issue("server", ip_addresses=["127.0.0.1"]).write(directory)
        description = (
            f"ssl:0:interface=127.0.0.1:privateKey={_esc(paths.key)}:certKey={_esc(paths.cert)}"
        )
        listener = parse_listener("a", 0, description)
        self.assertEqual(
            (listener.kind, listener.port, listener.interface), ("ssl", 0, "127.0.0.1")
        )

    def test_every_account_and_extra_listener(self) -> None:
        data = node_config()
        data["accounts"]["b"] = {
            "relation": "peer",
            "options": {"incoming": {"port": 0, "staticToken": TOKEN}},
        }
        data["accounts"]["send-only"] = {
            "relation": "peer",
            "options": {"outgoing": {"url": "http://127.0.0.1:1/", "staticToken": TOKEN}},
        }
        found = listeners_of(parse_node(data, ".", {}))
        self.assertEqual(
            [(lst.account, lst.index, lst.description) for lst in found],
            [("a", 0, "tcp:0:interface=127.0.0.1"), ("b", 0, "tcp:0")],
        )

    def test_node_listeners_come_first_under_the_shared_key(self) -> None:
        data = node_config()
        data["accounts"]["b"] = {"relation": "peer", "options": {"incoming": {"staticToken": "b"}}}
        data["listen"] = ["tcp:0:interface=127.0.0.1", "tcp:0"]
        found = listeners_of(parse_node(data, ".", {}))
        self.assertEqual(
            [(lst.account, lst.index, lst.description) for lst in found],
            [
                (SHARED_LISTEN, 0, "tcp:0:interface=127.0.0.1"),
                (SHARED_LISTEN, 1, "tcp:0"),
                ("a", 0, "tcp:0:interface=127.0.0.1"),
            ],
        )
        message = self.assertRaises(
            ConfigError, listeners_of, parse_node({**data, "listen": "unix:/tmp/x"}, ".", {})
        )
        self.assertIn("listen 'unix:/tmp/x'", str(message))


class SocketTests(SynchronousTestCase):
    def listener(self, port: int = 0) -> Listener:
        return parse_listener("a", 0, f"tcp:{port}:interface=127.0.0.1")

    def close_all(self, socks: list[socket.socket]) -> list[socket.socket]:
        for sock in socks:
            self.addCleanup(sock.close)
        return socks

    def test_reuse_port_group(self) -> None:
        if not workers.reuse_port_available():
            raise self.skipTest("no SO_REUSEPORT here")
        socks = self.close_all(open_sockets(self.listener(), 3, reuse_port=True))
        self.assertEqual(len(socks), 3)
        ports = {s.getsockname() for s in socks}
        self.assertEqual(len(ports), 1, "one address for all")
        host, port = ports.pop()
        self.assertEqual(host, "127.0.0.1")
        self.assertNotEqual(port, 0)
        for sock in socks:
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
            self.assertTrue(os.get_inheritable(sock.fileno()))
            self.assertFalse(sock.getblocking())

    def test_shared(self) -> None:
        socks = self.close_all(open_sockets(self.listener(), 3, reuse_port=False))
        self.assertEqual(len(socks), 1)
        with socket.create_connection(socks[0].getsockname(), timeout=5):
            pass  # it listens

    def test_port_in_use(self) -> None:
        port = hold_a_port(self)
        for reuse in (False, True):
            with self.assertRaises(CannotListenError) as caught:
                open_sockets(self.listener(port), 2, reuse_port=reuse)
            self.assertIn("Address already in use", str(caught.exception))

    def test_a_stranger_with_reuse_port_is_not_joined(self) -> None:
        if not workers.reuse_port_available():
            raise self.skipTest("no SO_REUSEPORT here")
        stranger = socket.socket()
        self.addCleanup(stranger.close)
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        stranger.bind(("127.0.0.1", 0))
        stranger.listen(1)
        with self.assertRaises(CannotListenError):
            open_sockets(self.listener(stranger.getsockname()[1]), 2, reuse_port=True)


class SetupTests(SynchronousTestCase):
    def test_through_a_pipe(self) -> None:
        the_node = node()
        listener = listeners_of(the_node)[0]
        setup = WorkerSetup(2, the_node, "pkg.mod:factory", ((listener, FIRST_LISTEN_FD),))
        self.assertNotIn(TOKEN, repr(setup), "no secret in the repr")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        with os.fdopen(w, "wb") as f:
            f.write(frame_setup(setup))
        again = read_setup(r)
        self.assertEqual(again, setup)
        incoming = again.node.accounts[0].options.incoming
        assert incoming is not None
        self.assertEqual(incoming.static_token, TOKEN)

    def test_eof_and_wrong_type(self) -> None:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        with os.fdopen(w, "wb") as f:
            f.write(b"\0\0\0")
        self.assertRaises(EOFError, read_setup, r)
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        payload = pickle.dumps({"not": "a setup"})
        with os.fdopen(w, "wb") as f:
            f.write(SETUP_LENGTH.pack(len(payload)) + payload)
        self.assertRaises(TypeError, read_setup, r)

    def test_the_setup_module_imports_no_twisted(self) -> None:
        """Not at the top, not lazily in a function, not through what it imports."""
        import ilphttp.worker_setup as pure

        assert pure.__file__ is not None
        with open(pure.__file__, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        imported = [
            alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names
        ]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        self.assertEqual([m for m in imported if m.split(".")[0] in ("twisted", "zope")], [])
        code = (
            "import sys, ilphttp.worker_setup;"
            " print(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'zope')))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=child_env(), capture_output=True, timeout=60
        )
        self.assertEqual((done.returncode, done.stdout.strip()), (0, b"[]"), done.stderr)

    def boot(self, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        """A real worker process (as the parent starts it) fed ``stdin``."""
        argv = [sys.executable, "-c", worker_supervisor.BOOT, "ilphttp-worker", "1"]
        return subprocess.run(argv, input=stdin, env=child_env(), capture_output=True, timeout=60)

    def test_a_worker_refuses_a_bad_setup(self) -> None:
        payload = pickle.dumps({"not": "a setup"})
        for stdin, error in (
            (SETUP_LENGTH.pack(len(payload)) + payload, b"TypeError: expected a WorkerSetup"),
            (SETUP_LENGTH.pack(100) + b"short", b"EOFError: the parent closed the pipe"),
            (b"", b"EOFError"),
        ):
            done = self.boot(stdin)
            self.assertEqual(done.returncode, 1, done.stderr)
            self.assertIn(error, done.stderr)
            self.assertEqual(done.stdout, b"", "nothing logged, never ready")


# -- listening on an adopted socket, in this process -------------------------------------


class AdoptedListenerTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def send(self, url: str, count: int = 1, **outgoing: Any) -> Any:
        sender = PluginHttp(outgoing=dict({"url": url, "static_token": TOKEN}, **outgoing))
        yield sender.connect()
        self.addCleanup(sender.disconnect)
        replies = []
        for _ in range(count):
            raw, _ = make_prepare(destination="test.workers.x", fulfillment=PREIMAGE)
            replies.append(deserialize((yield sender.send_data(raw))))
        return replies

    @defer.inlineCallbacks
    def serve(self, description: str) -> Any:
        the_node = node(description)
        [listener] = listeners_of(the_node)
        [sock] = open_sockets(listener, 1, reuse_port=False)
        self.addCleanup(sock.close)
        # the worker's descriptor is a copy, as after spawnProcess's dup2
        fd = os.dup(sock.fileno())
        setup = WorkerSetup(1, the_node, None, ((listener, fd),))
        service = make_service(
            {"node": the_node, "handler_factory": make_pid_handler},
            reactor,
            listeners=worker_endpoints(reactor, setup),
        )
        service.startService()
        self.addCleanup(service.stopService)
        plugin = service.plugins["a"]
        assert plugin.port is not None
        host: Any = plugin.port.getHost()
        self.assertEqual(host.port, sock.getsockname()[1])
        yield None
        return sock.getsockname()[1]

    @defer.inlineCallbacks
    def test_tcp(self) -> Any:
        port = yield self.serve("tcp:0:interface=127.0.0.1")
        replies = yield self.send(f"http://127.0.0.1:{port}/", 3)
        self.assertEqual(replies, [Fulfill(PREIMAGE, str(os.getpid()).encode())] * 3)

    @defer.inlineCallbacks
    def test_tls(self) -> Any:
        directory = self.mktemp()
        ca = CertificateAuthority()
        ca_path = ca.write_cert(directory)
        paths = ca.issue("server", ip_addresses=["127.0.0.1"]).write(directory)
        port = yield self.serve(
            f"ssl:0:interface=127.0.0.1:privateKey={_esc(paths.key)}:certKey={_esc(paths.cert)}"
        )
        for http2 in (False, True):
            replies = yield self.send(f"https://127.0.0.1:{port}/", 2, ca_file=ca_path, http2=http2)
            self.assertEqual(replies, [Fulfill(PREIMAGE, str(os.getpid()).encode())] * 2)

    def test_endpoint_needs_incoming(self) -> None:
        with self.assertRaises(OptionError):
            PluginHttp(outgoing={"url": "http://127.0.0.1:1/", "static_token": TOKEN}, endpoint=1)  # type: ignore[arg-type]


# -- the parent's supervision, with a fake reactor --------------------------------------


class SupervisionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.events: list[dict[str, Any]] = []
        self.fatal: list[bool] = []
        self.service = WorkersService(
            node(),
            "tests.test_workers:make_pid_handler",
            2,
            reactor=self.reactor,
            reuse_port=workers.reuse_port_available(),
            on_fatal=lambda: self.fatal.append(True),
            publisher=self.events.append,
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service._close)

    def proto(self, n: int) -> Any:
        return self.reactor.spawned[n][0]

    def ready(self, n: int) -> None:
        self.proto(n).childDataReceived(workers.CONTROL_FD, b"rea")
        self.proto(n).childDataReceived(workers.CONTROL_FD, b"dy\n")

    def end(self, n: int, reason: Exception) -> None:
        self.proto(n).processEnded(Failure(reason))

    def test_spawns_with_the_sockets_and_the_setup(self) -> None:
        self.assertEqual(len(self.reactor.spawned), 2)
        fds_seen = set()
        for i, (proto, args, child_fds) in enumerate(self.reactor.spawned):
            self.assertEqual(args[0], sys.executable)
            self.assertEqual(args[-2:], ["ilphttp-worker", str(i + 1)])
            self.assertNotIn(TOKEN, " ".join(args))
            self.assertEqual(child_fds[0], "w")
            fd = child_fds[FIRST_LISTEN_FD]
            fds_seen.add(fd)
            written = bytes(proto.transport.written)
            r, w = os.pipe()
            with os.fdopen(w, "wb") as f:
                f.write(written)
            setup = read_setup(r)
            os.close(r)
            self.assertEqual((setup.worker, setup.handler), (i + 1, self.service.handler))
            self.assertEqual(setup.listeners, ((self.service.listeners[0], FIRST_LISTEN_FD),))
        # one socket each with SO_REUSEPORT, else one shared
        self.assertEqual(len(fds_seen), 2 if self.service.reuse_port else 1)
        self.assertEqual(self.service.pids, [1000, 1001])
        [(key, port)] = self.service.ports.items()
        self.assertEqual(key, ("a", 0))
        self.assertNotEqual(port, 0, "port 0 is resolved once, by the parent")

    def test_restart_with_backoff(self) -> None:
        self.ready(0)
        self.ready(1)
        delays = []
        for round_ in range(8):
            before = len(self.reactor.spawned)
            self.end(before - 1 if round_ else 0, ProcessTerminated(signal=signal.SIGKILL))
            self.assertEqual(len(self.reactor.spawned), before, "not at once")
            waited = 0.0
            while len(self.reactor.spawned) == before:
                self.reactor.advance(0.25)
                waited += 0.25
                self.assertLess(waited, 100)
            delays.append(waited)
            # the new process takes the same slot (worker 1) and the same socket
            self.assertEqual(self.reactor.spawned[-1][1][-1], "1")
            self.assertEqual(
                self.reactor.spawned[-1][2][FIRST_LISTEN_FD],
                self.reactor.spawned[0][2][FIRST_LISTEN_FD],
            )
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0])
        self.assertEqual(self.fatal, [])
        # a worker that ran long enough starts from the shortest delay again
        self.reactor.advance(workers.STABLE_AFTER)
        before = len(self.reactor.spawned)
        self.end(before - 1, ProcessDone(0))
        self.reactor.advance(0.5)
        self.assertEqual(len(self.reactor.spawned), before + 1)

    def test_a_worker_that_never_starts_stops_the_node(self) -> None:
        self.ready(1)
        self.end(0, ProcessTerminated(exitCode=1))
        self.assertEqual(self.fatal, [True])
        assert self.service.fatal is not None
        self.assertIn("worker 1 could not start (exit status 1)", self.service.fatal)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2, "not started again")

    def test_stop_terms_waits_and_kills_the_slow(self) -> None:
        self.ready(0)
        self.ready(1)
        d = self.service.stopService()
        self.assertEqual([self.proto(i).transport.signals for i in (0, 1)], [["TERM"], ["TERM"]])
        self.end(0, ProcessDone(0))
        self.assertNoResult(d)
        self.reactor.advance(workers.STOP_TIMEOUT)
        self.assertEqual(self.proto(1).transport.signals, ["TERM", "KILL"])
        self.end(1, ProcessTerminated(signal=signal.SIGKILL))
        self.successResultOf(d)
        self.assertEqual(self.service._sockets, [], "sockets closed")
        self.assertEqual(len(self.reactor.spawned), 2, "no restart while stopping")
        self.assertEqual(self.fatal, [])

    def test_stop_cancels_a_pending_restart(self) -> None:
        self.ready(0)
        self.ready(1)
        self.end(0, ProcessTerminated(signal=signal.SIGSEGV))
        d = self.service.stopService()
        self.end(1, ProcessDone(0))
        self.successResultOf(d)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_logs_are_forwarded_with_the_worker(self) -> None:
        from twisted.logger import eventAsJSON

        event = {
            "log_format": "hello {who}",
            "who": "there",
            "log_level": LogLevel.warn,
            "log_namespace": "ilphttp.tap",
            "log_time": 1.5,
        }
        line = ("\x1e" + eventAsJSON(event) + "\n").encode()
        self.proto(1).childDataReceived(1, line[:10])
        self.assertEqual(self.events, [])
        self.proto(1).childDataReceived(1, line[10:])
        [forwarded] = self.events
        self.assertEqual(formatEvent(forwarded), "hello there")
        self.assertEqual(forwarded["log_system"], "worker 2: ilphttp.tap#warn")
        self.assertEqual(forwarded["log_level"], LogLevel.warn)
        self.assertEqual(forwarded["log_time"], 1.5)

    def captured(self) -> list[dict[str, Any]]:
        """The parent's own log events from now on."""
        events: list[dict[str, Any]] = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    def test_plain_lines_are_logged_with_the_worker(self) -> None:
        logged = self.captured()
        proto = self.proto(0)
        proto.childDataReceived(1, b"hello\n\x1e{not json\n   \n")
        proto.childDataReceived(2, b"Traceback (most\r\n")
        proto.childDataReceived(2, b"a last line without its newline")
        self.assertEqual(self.events, [], "no JSON event among them")
        self.end(0, ProcessTerminated(exitCode=1))
        lines = [
            (e["log_system"], e["log_level"], formatEvent(e))
            for e in logged
            if e.get("log_system", "").startswith("worker 1: fd")
        ]
        self.assertEqual(
            lines,
            [
                ("worker 1: fd 1", LogLevel.info, "hello"),
                ("worker 1: fd 1", LogLevel.info, "\x1e{not json"),
                ("worker 1: fd 2", LogLevel.warn, "Traceback (most"),
                ("worker 1: fd 2", LogLevel.warn, "a last line without its newline"),
            ],
        )

    def test_a_restarted_worker_is_ready_once(self) -> None:
        self.ready(0)
        self.ready(1)
        self.end(0, ProcessTerminated(signal=signal.SIGKILL))
        self.reactor.advance(workers.RESTART_DELAY)
        logged = self.captured()
        new = self.proto(2)
        new.childDataReceived(workers.CONTROL_FD, b"not ready\n")
        self.assertFalse(new.ready)
        self.ready(2)
        self.ready(2)
        said = [formatEvent(e) for e in logged]
        self.assertEqual(said, ["worker 1 (pid 1002) is ready"])
        self.assertEqual(sorted(self.service.pids), [1001, 1002])

    def test_a_process_already_gone_is_not_signalled(self) -> None:
        def gone(name: str) -> None:
            raise ProcessExitedAlready()

        self.ready(0)
        self.ready(1)
        self.proto(0).transport.signalProcess = gone
        d = self.service.stopService()
        self.assertEqual(self.proto(1).transport.signals, ["TERM"])
        self.end(0, ProcessDone(0))
        self.end(1, ProcessDone(0))
        self.successResultOf(d)

    def test_how_a_worker_ended(self) -> None:
        for reason, said in (
            (ProcessDone(0), "exit status 0"),
            (ProcessTerminated(exitCode=3), "exit status 3"),
            (ProcessTerminated(signal=signal.SIGTERM), "killed by SIGTERM"),
            (ProcessTerminated(signal=250), "killed by signal 250"),
        ):
            self.assertEqual(worker_supervisor.describe_end(Failure(reason)), said)

    def test_restart_delays_double_up_to_the_cap(self) -> None:
        slot = worker_supervisor._Slot(1)
        young = [slot.next_delay(0.1) for _ in range(9)]
        self.assertEqual(young, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0])
        self.assertEqual(slot.next_delay(workers.STABLE_AFTER), workers.RESTART_DELAY)
        self.assertEqual(slot.next_delay(workers.STABLE_AFTER - 0.1), 1.0)


class SupervisorStartTests(SynchronousTestCase):
    def test_port_in_use_stops_start_up_with_one_line(self) -> None:
        port = hold_a_port(self)
        data = node_config()
        data["accounts"]["b"] = {
            "relation": "peer",
            "options": {
                "incoming": {"endpoint": f"tcp:{port}:interface=127.0.0.1", "staticToken": TOKEN}
            },
        }
        service = WorkersService(parse_node(data, ".", {}), None, 2, reactor=FakeReactor())
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertIn(
            f"ilphttp: cannot start account 'b': cannot listen on 127.0.0.1:{port}"
            " (address in use)",
            str(caught.exception),
        )
        self.assertEqual(service.ports, {}, "account a's sockets are closed again")

    def test_by_default_a_worker_that_cannot_start_stops_the_reactor(self) -> None:
        fake = FakeReactor()
        service = WorkersService(node(), None, 1, reactor=fake, publisher=lambda event: None)
        service.startService()
        self.addCleanup(service._close)
        fake.spawned[0][0].processEnded(Failure(ProcessTerminated(exitCode=1)))
        self.assertEqual(fake.stopped, 0, "after the reactor's turn")
        fake.advance(0)
        self.assertEqual(fake.stopped, 1)
        fake.running = False
        service.stopService()
        self.assertEqual(fake.stopped, 1, "not twice")


# -- the worker's side, in this process ---------------------------------------------------


class WorkerSideTests(SynchronousTestCase):
    def test_log_events_become_json_lines(self) -> None:
        out = io.StringIO()
        lines = worker_process._JSONLines(out)
        lines({"log_format": "hi {who}", "who": "you", "log_level": LogLevel.info})
        lines(
            {
                "log_format": "odd {x}",
                "x": object(),
                "log_namespace": "n",
                "log_level": LogLevel.warn,
            }
        )
        records = out.getvalue().split("\n")
        self.assertEqual(records[-1], "")
        events = [eventFromJSON(r[1:]) for r in records[:-1] if r.startswith("\x1e")]
        self.assertEqual(len(events), 2)
        self.assertEqual(formatEvent(events[0]), "hi you")
        self.assertTrue(formatEvent(events[1]).startswith("odd <object object at"))
        self.assertEqual((events[1]["log_namespace"], events[1]["log_level"]), ("n", LogLevel.warn))

    def test_the_parent_watch_sees_the_pipe_close(self) -> None:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        os.set_blocking(r, False)
        gone: list[bool] = []
        watch = worker_process._ParentWatch(r, lambda: gone.append(True))
        self.assertEqual((watch.fileno(), watch.logPrefix()), (r, "parent-watch"))
        self.assertIsNone(watch.doRead(), "nothing to read yet")
        os.write(w, b"\0\0\0")  # the start of a frame
        self.assertIsNone(watch.doRead())
        os.close(w)
        self.assertIs(watch.doRead(), CONNECTION_DONE)
        self.assertEqual(gone, [])
        watch.connectionLost(Failure(CONNECTION_DONE))
        self.assertEqual(gone, [True])

    def test_a_worker_whose_node_cannot_be_built_ends_at_once(self) -> None:
        logged: list[dict[str, Any]] = []
        observer = logged.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for handler in (
            "no_such_module_for_ilphttp:factory",
            "tests.test_workers:make_failing_handler",
        ):
            setup = WorkerSetup(1, node(), handler, ())
            self.assertEqual(worker_process.run_worker(setup, reactor=Clock()), 1)
        said = [formatEvent(e) for e in logged]
        self.assertIn(
            "ilphttp: --handler no_such_module_for_ilphttp:factory: --handler: cannot import"
            " no_such_module_for_ilphttp: No module named 'no_such_module_for_ilphttp'",
            said,
        )
        self.assertIn(  # one line, not the factory's traceback
            "ilphttp: --handler tests.test_workers:make_failing_handler: the handler factory"
            " raised RuntimeError: this handler factory always fails (account a)",
            said,
        )
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])


# -- real processes ---------------------------------------------------------------------


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z"


class Twistd(ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def wait_for(self, pattern: str, timeout: float = 45.0, start: int = 0) -> Any:
        """The first match of the regular expression in the log after ``start``."""
        for _ in range(int(timeout * 10)):
            match = re.compile(pattern).search(self.text(), start)
            if match is not None:
                return match
            if self.reason is not None:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        raise self.failure(f"{pattern!r} never logged")

    def failure(self, why: str) -> AssertionError:
        return AssertionError(f"{why}; the log:\n{self.text()[-6000:]}")

    def kill(self) -> None:
        if self.reason is None and self.transport is not None:
            self.transport.signalProcess("KILL")


@defer.inlineCallbacks
def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    for _ in range(int(timeout * 10)):
        if predicate():
            return
        yield deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class TwistdWorkersTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        if os.name != "posix":
            raise self.skipTest("worker processes need POSIX")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.pids: set[int] = set()
        self.addCleanup(self.kill_workers)

    def kill_workers(self) -> None:
        for pid in self.pids:  # only if a test failed half way
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def config(self, port: int = 0, **top: Any) -> str:
        path = os.path.join(self.workdir, "node.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(node_config(f"tcp:{port}:interface=127.0.0.1", **top), f)
        return path

    @defer.inlineCallbacks
    def start(self, *argv: str, ready: bool = True) -> Any:
        process = Twistd()
        args = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "ilphttp", *argv]
        reactor.spawnProcess(process, sys.executable, args, env=child_env(), path=self.workdir)
        self.addCleanup(process.kill)
        if not ready:
            return process, []
        match = yield process.wait_for(r"all (\d+) workers are ready \(pids ([\d ]+)\)")
        pids = [int(p) for p in match.group(2).split()]
        self.pids.update(pids)
        return process, pids

    def port(self, process: Twistd) -> int:
        match = re.search(r"account a: \S+ on port (\d+)", process.text())
        if match is None:
            raise process.failure("no port logged")
        return int(match.group(1))

    @defer.inlineCallbacks
    def blast(self, port: int, total: int, concurrency: int) -> Any:
        """Send ``total`` Prepares, ``concurrency`` at a time, from a fresh sender."""
        sender = PluginHttp(outgoing={"url": f"http://127.0.0.1:{port}/", "static_token": TOKEN})
        yield sender.connect()
        answered: dict[int, int] = {}
        try:
            for _ in range(total // concurrency):
                sends = []
                for _ in range(concurrency):
                    raw, _ = make_prepare(destination="test.workers.x", fulfillment=PREIMAGE)
                    sends.append(sender.send_data(raw))
                replies = yield defer.gatherResults(sends)
                for reply in replies:
                    packet = deserialize(reply)
                    self.assertIsInstance(packet, Fulfill, packet)
                    assert isinstance(packet, Fulfill)
                    pid = int(packet.data)
                    answered[pid] = answered.get(pid, 0) + 1
        finally:
            yield sender.disconnect()
        return answered

    @defer.inlineCallbacks
    def stop(self, process: Twistd, pids: list[int]) -> Any:
        process.transport.signalProcess("TERM")  # type: ignore[union-attr]
        yield process.ended
        reason = process.reason
        assert reason is not None
        log = process.text()
        # twistd re-raises the signal after its clean shutdown
        self.assertIsInstance(reason.value, ProcessTerminated, log)
        self.assertEqual(getattr(reason.value, "signal", None), signal.SIGTERM, log)
        for pid in pids:
            self.assertFalse(alive(pid), f"worker {pid} outlived the parent")
            self.assertRegex(log, rf"worker \d \(pid {pid}\) stopped \(exit status 0\)")
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn(TOKEN, log, "a secret was logged")
        return log

    @defer.inlineCallbacks
    def test_two_workers_share_the_port_and_restart(self) -> Any:
        process, pids = yield self.start(
            "--config",
            self.config(),
            "--workers",
            "2",
            "--handler",
            "tests.test_workers:make_pid_handler",
        )
        self.assertEqual(len(set(pids)), 2)
        port = self.port(process)
        answered = yield self.blast(port, 320, 32)
        self.assertEqual(sum(answered.values()), 320)
        self.assertEqual(set(answered), set(pids), f"both workers answer: {answered}")
        self.assertIn(
            "worker 1: ilphttp.node#info] account a: peer, listening on port", process.text()
        )

        # a worker killed is started again, on the same port
        victim = pids[0]
        mark = len(process.text())
        os.kill(victim, signal.SIGKILL)
        yield process.wait_for(
            rf"worker \d \(pid {victim}\) ended \(killed by SIGKILL\); starting it again",
            start=mark,
        )
        match = yield process.wait_for(r"worker \d \(pid (\d+)\) is ready", start=mark)
        new = int(match.group(1))
        self.pids.add(new)
        self.assertNotIn(new, pids)
        yield wait_until(lambda: not alive(victim), 10, "the killed worker to be reaped")
        seen: dict[int, int] = {}
        for _ in range(10):  # fresh connections until the new worker gets some
            answered = yield self.blast(port, 64, 32)
            for pid, n in answered.items():
                seen[pid] = seen.get(pid, 0) + n
            if new in seen:
                break
        self.assertEqual(set(seen), {new, pids[1]}, seen)

        yield self.stop(process, [new, pids[1]])

    @defer.inlineCallbacks
    def test_workers_from_the_file_stop_with_a_killed_parent(self) -> Any:
        process, pids = yield self.start(
            "--config", self.config(workers=2), "--handler", "tests.test_workers:make_pid_handler"
        )
        self.assertEqual(len(pids), 2)
        answered = yield self.blast(self.port(process), 64, 32)
        self.assertEqual(sum(answered.values()), 64)
        process.kill()  # SIGKILL: no chance to stop its workers
        yield process.ended
        yield wait_until(
            lambda: not any(alive(pid) for pid in pids), 30, "the orphaned workers to stop"
        )

    @defer.inlineCallbacks
    def test_a_worker_that_cannot_start_stops_the_node(self) -> Any:
        process, _ = yield self.start(
            "--config",
            self.config(),
            "--workers",
            "2",
            "--handler",
            "tests.test_workers:make_failing_handler",
            ready=False,
        )
        yield process.wait_for(r"worker \d could not start \(exit status 1\); stopping the node")
        yield process.ended
        log = process.text()
        self.assertIn("this handler factory always fails", log)
        self.assertNotIn("workers are ready", log)
        for pid in re.findall(r"worker \d started \(pid (\d+)\)", log):
            self.assertFalse(alive(int(pid)))

    @defer.inlineCallbacks
    def test_port_in_use_is_one_line(self) -> Any:
        port = hold_a_port(self)
        process, _ = yield self.start(
            "--config",
            self.config(port),
            "--workers",
            "2",
            "--handler",
            "tests.test_workers:make_pid_handler",
            ready=False,
        )
        yield process.ended
        reason = process.reason
        assert reason is not None
        log = process.text()
        self.assertEqual(getattr(reason.value, "exitCode", None), 1, log)
        self.assertIn(
            f"#critical] cannot start account 'a': cannot listen on 127.0.0.1:{port}"
            " (address in use)",
            log,
        )
        self.assertNotIn("worker 1 started", log)
        self.assertNotIn("Traceback", log)
        self.assertEqual(log.count("cannot start account 'a'"), 1, "said once, not echoed")


class _RefusingReactor(MemoryReactorClock):
    """A reactor whose TCP listens fail with ``error``; ``run`` runs the start-up calls."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def listenTCP(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class WorkerStartFailureTests(SynchronousTestCase):
    """A worker whose node fails to start ends with status 1 and says why, in one line."""

    def setUp(self) -> None:
        # run_worker makes stdin non-blocking and installs signal handlers: put them back.
        try:
            blocking = os.get_blocking(0)
        except OSError:
            raise self.skipTest("no stdin to watch") from None
        self.addCleanup(os.set_blocking, 0, blocking)
        for number in (signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, number, signal.getsignal(number))

    def test_table(self) -> None:
        cases = [
            # NodeService logs the listen error itself (critical), then stops start-up
            (CannotListenError("127.0.0.1", 0, OSError("in use")), LogLevel.critical, 0),
            (RuntimeError("listen exploded"), LogLevel.critical, 1),
        ]
        for error, level, tracebacks in cases:
            logged: list[dict[str, Any]] = []
            globalLogPublisher.addObserver(logged.append)
            try:
                fake = _RefusingReactor(error)
                status = worker_process.run_worker(WorkerSetup(1, node(), None, ()), fake)
            finally:
                globalLogPublisher.removeObserver(logged.append)
            self.assertEqual(status, 1, error)
            self.assertTrue(fake.hasStopped)
            lines = [formatEvent(e) for e in logged]
            self.assertEqual(len([e for e in logged if e["log_level"] == level]), 1, lines)
            self.assertIn("the node could not start; stopping", lines)
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), tracebacks)
            # the watch on the parent's pipe was set up, and shutting down stops the node
            self.assertEqual([r.logPrefix() for r in fake.readers], ["parent-watch"])
            [(before_shutdown, args, kwargs)] = fake.triggers["before"]["shutdown"]
            before_shutdown(*args, **kwargs)
            self.assertEqual(before_shutdown(*args, **kwargs), None, "stopped already")

    def test_a_parent_pipe_that_fails_counts_as_gone(self) -> None:
        directory = os.open(self.mktemp().rsplit("/", 1)[0] or ".", os.O_RDONLY)
        self.addCleanup(os.close, directory)
        watch = worker_process._ParentWatch(directory, lambda: None)
        self.assertIs(watch.doRead(), CONNECTION_DONE)  # reading a directory: EISDIR
