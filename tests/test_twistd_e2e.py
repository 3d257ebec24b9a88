"""End to end: the installed package, ``twistd -n ilphttp``, real JS peers around it.

The package is installed NON-editable into a fresh virtualenv (``python -m
venv`` + ``pip install``), once per test run, with its dependencies pinned
to the versions the test run itself uses; :class:`EditableInstallTests`
checks ``pip install -e`` in a second one.  Then ``twistd -n ilphttp
--config hub.json`` runs as a subprocess with three accounts:

- ``up``: the parent, a real JS ``ilp-plugin-http`` (interop/peer.js) that
  answers IL-DCP, so the hub learns its address from it;
- ``alice``: a bilateral child, a JS peer;
- ``kids``: a multi account with one JS child, ``carol``, named (as the JS
  plugin names itself by default) by its port.

Packets go child -> child (both ways), child -> parent and parent -> child;
IL-DCP is answered to each child; the node stops on SIGTERM.

It needs node and the npm packages (skipped without them, failed with
CI=true) and pip's usual index (or its configured mirror / cache).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any, NamedTuple

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest

from ilphttp import ildcp
from ilphttp.packet import (
    Fulfill,
    Reject,
    deserialize,
    deserialize_prepare,
)
from tests.support.jsinterop import in_ci, plugin_options, require_node, start_peer
from tests.support.packets import data_prepare
from tests.support.peers import (
    SHARED_ENV,
    require_peers,
    shared_client,
    shared_node_file,
    shared_peer_config,
    start_emulated_peer,
)
from tests.support.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: what a source distribution of the project holds (the rest is tests, docs, interop)
_PACKAGE_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "ilphttp", "twisted")
INSTALL_TIMEOUT = 900

TOKENS = {
    "up-in": "e2e-parent-to-hub-0123456789",
    "up-out": "e2e-hub-to-parent-0123456789",
    "alice-in": "e2e-alice-to-hub-0123456789",
    "alice-out": "e2e-hub-to-alice-0123456789",
    "kids-in": "e2e-kids-to-hub-0123456789",
    "kids-out": "e2e-hub-to-kids-0123456789",
}
PARENT_ADDRESS = "test.parent.hub"

#: the fresh virtualenvs, by mode ("install", "editable"): their path or why they failed
_venvs: dict[str, dict[str, Any]] = {}


def installed_venv(editable: bool = False) -> str:
    """A fresh virtualenv with the package installed from a copy of the source; once.

    ``editable``: ``pip install -e`` (the copy stays the package's home).
    Under ``coverage`` (``tox -e coverage``), coverage is installed too: its
    ``.pth`` then measures the venv's processes, whose data lands beside ours.
    """
    _venv = _venvs.setdefault("editable" if editable else "install", {})
    if "path" in _venv:
        return str(_venv["path"])
    if "error" in _venv:
        raise unittest.FailTest(_venv["error"])
    base = tempfile.mkdtemp(prefix="ilphttp-e2e-")
    atexit.register(shutil.rmtree, base, True)
    source = os.path.join(base, "src")
    os.makedirs(source)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
    for name in _PACKAGE_FILES:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(source, name), ignore=ignore)
        else:
            shutil.copy2(src, source)
    venv = os.path.join(base, "venv")
    python = os.path.join(venv, "bin", "python")
    constraints = os.path.join(base, "constraints.txt")
    with open(constraints, "w", encoding="utf-8") as f:
        f.write("\n".join(_installed_versions()) + "\n")
    install = ["-e", source] if editable else [source]
    if _measuring_coverage():
        install.append("coverage")
    steps = [
        [sys.executable, "-m", "venv", venv],
        [python, "-m", "pip", "install", "-q", "-c", constraints, *install],
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for step in steps:
        result = subprocess.run(
            step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env, cwd=base
        )
        if result.returncode != 0:
            _venv["error"] = (
                f"{' '.join(step)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
            raise unittest.FailTest(_venv["error"])
    _venv["path"] = venv
    return venv


def _measuring_coverage() -> bool:
    """Whether coverage asks subprocesses to measure themselves (``[run] patch``)."""
    return any(v in os.environ for v in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"))


def _installed_versions() -> list[str]:
    """``name==version`` of what the running interpreter has installed.

    The fresh virtualenv gets the same versions of the dependencies the test
    suite itself runs with: pip resolves no newer release that would need
    building from source (on PyPy: Rust crates, no network), and the wheels
    come from pip's cache or the configured index.
    """
    from importlib import metadata

    skip = {"ilphttp", "pip", "setuptools", "wheel"}
    pins = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in skip:
            pins.add(f"{name}=={dist.version}")
    return sorted(pins)


class TwistdProcess(ProcessProtocol):
    """``twistd -n ilphttp ...``: its output, and when it ends."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def wait_for(self, words: str, timeout: float = 30.0) -> Any:
        """Wait until ``words`` appear in the log; fail if the process ends first."""
        for _ in range(int(timeout * 10)):
            if words in self.text():
                return
            if self.reason is not None:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        raise unittest.FailTest(f"{words!r} never logged; the log:\n{self.text()[-5000:]}")

    def kill(self) -> None:
        if self.reason is None and self.transport is not None:
            self.transport.signalProcess("KILL")


class TwistdEndToEndTests(unittest.TestCase):
    timeout = INSTALL_TIMEOUT + 120

    def setUp(self) -> None:
        require_node()
        self.venv = installed_venv()
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def bin(self, name: str) -> str:
        return os.path.join(self.venv, "bin", name)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(extra)
        return env

    def run_sync(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env(),
            cwd=self.workdir,
        )

    def test_twistd_lists_the_plugin(self) -> None:
        result = self.run_sync(self.bin("twistd"), "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("ilphttp", result.stdout)
        self.assertIn("An Interledger (ILPv4) over HTTP node", result.stdout)

    def test_installs_the_plugin_module_and_no_package_init(self) -> None:
        """The wheel puts one module into Twisted's twisted/plugins and no
        __init__.py in twisted/ or twisted/plugins/, which would shadow Twisted's."""
        result = self.run_sync(
            self.bin("python"),
            "-c",
            "from importlib.metadata import files;"
            " print('\\n'.join(str(f) for f in files('ilphttp') or ()))",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        shipped = {
            name
            for name in result.stdout.splitlines()
            if name.startswith("twisted/") and "__pycache__" not in name
        }
        self.assertEqual(shipped, {"twisted/plugins/ilphttp_plugin.py"})

    def test_bad_options_are_one_line(self) -> None:
        result = self.run_sync(
            self.bin("twistd"),
            "-n",
            "--pidfile=",
            "ilphttp",
            "--port",
            "0",
            "--multi",
            "--ildcp-address",
            "test.hub",
            "--asset-code",
            "XRP",
            "--asset-scale",
            "9",
            "--outgoing-url",
            "http://127.0.0.1:%/",
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 2, output)
        self.assertNotIn("starting up", output)
        # The error first and alone, then a hint; no usage text.
        self.assertEqual(result.stdout, "")
        self.assertEqual(
            result.stderr.splitlines(),
            [
                "twistd ilphttp: incoming authentication is missing: give"
                " --incoming-token-file or --incoming-jwt-secret-file,"
                " or set ILPHTTP_INCOMING_TOKEN or ILPHTTP_INCOMING_JWT_SECRET",
                "twistd ilphttp: see 'twistd ilphttp --help'",
            ],
        )
        self.assertNotIn("Traceback", output)

    def write_config(self, ports: dict[str, int]) -> str:
        for name, token in TOKENS.items():
            with open(os.path.join(self.workdir, f"{name}.token"), "w", encoding="utf-8") as f:
                f.write(token + "\n")

        def incoming(name: str, token_key: str) -> dict[str, Any]:
            return {
                "endpoint": f"tcp:{ports[name]}:interface=127.0.0.1",
                "staticTokenFile": f"{token_key}.token",
            }

        config = {
            "_comment": "no ilpAddress: the parent tells us over IL-DCP",
            "assetCode": "XRP",
            "assetScale": 9,
            "accounts": {
                "up": {
                    "relation": "parent",
                    "plugin": "ilp-plugin-http",
                    "options": {
                        "incoming": incoming("hub-up", "up-in"),
                        "outgoing": {
                            "url": f"http://127.0.0.1:{ports['parent']}/",
                            "staticTokenFile": "up-out.token",
                        },
                    },
                },
                "alice": {
                    "relation": "child",
                    "options": {
                        "incoming": incoming("hub-alice", "alice-in"),
                        "outgoing": {
                            "url": f"http://127.0.0.1:{ports['alice']}/",
                            "staticTokenFile": "alice-out.token",
                        },
                    },
                },
                "kids": {
                    "relation": "child",
                    "options": {
                        "multi": True,
                        "incoming": {
                            "endpoint": f"tcp:{ports['hub-kids']}:interface=127.0.0.1",
                            "staticTokenEnv": "E2E_KIDS_IN",
                        },
                        "outgoing": {
                            "url": "http://127.0.0.1:%/",
                            "staticTokenFile": "kids-out.token",
                        },
                    },
                },
            },
        }
        path = os.path.join(self.workdir, "hub.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        return path

    @defer.inlineCallbacks
    def start_twistd(self, config: str) -> Any:
        process = TwistdProcess()
        argv = [self.bin("twistd"), "-n", "--pidfile=", "ilphttp", "--config", config]
        reactor.spawnProcess(  # type: ignore[attr-defined]
            process,
            argv[0],
            argv,
            env=self.env(E2E_KIDS_IN=TOKENS["kids-in"]),
            path=self.workdir,
        )
        self.addCleanup(process.kill)
        yield process.wait_for(f"our address is {PARENT_ADDRESS} (IL-DCP from up)")
        return process

    @defer.inlineCallbacks
    def test_hub_between_js_peers(self) -> Any:
        ports = {name: free_port() for name in ("hub-up", "hub-alice", "hub-kids")}
        ports.update({name: free_port() for name in ("parent", "alice", "carol")})
        ildcp_answer = {"clientAddress": PARENT_ADDRESS, "assetScale": 9, "assetCode": "XRP"}
        parent = yield start_peer(
            self,
            plugin_options(ports["parent"], ports["hub-up"], TOKENS["up-out"], TOKENS["up-in"]),
            handler={"mode": "fulfill", "ildcp": ildcp_answer},
        )
        alice = yield start_peer(
            self,
            plugin_options(
                ports["alice"], ports["hub-alice"], TOKENS["alice-out"], TOKENS["alice-in"]
            ),
        )
        carol = yield start_peer(
            self,
            plugin_options(
                ports["carol"], ports["hub-kids"], TOKENS["kids-out"], TOKENS["kids-in"]
            ),
        )
        self.assertEqual(carol.name, str(ports["carol"]))
        hub = yield self.start_twistd(self.write_config(ports))

        # IL-DCP: each child learns its address from the hub
        reply = yield alice.send(ildcp.serialize_request())
        alice_address = ildcp.deserialize_response(reply).client_address
        self.assertEqual(alice_address, f"{PARENT_ADDRESS}.alice")
        reply = yield carol.send(ildcp.serialize_request())
        carol_info = ildcp.deserialize_response(reply)
        carol_address = carol_info.client_address
        self.assertEqual(carol_address, f"{PARENT_ADDRESS}.kids.{ports['carol']}")
        self.assertEqual((carol_info.asset_code, carol_info.asset_scale), ("XRP", 9))

        # child -> child, both ways, through the hub
        _, packet, fulfillment = data_prepare(carol_address + ".wallet", 42, b"to carol", 20)
        reply = yield alice.send(packet)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, deserialize_prepare(packet).data))
        received = yield carol.received()
        forwarded = deserialize_prepare(received[-1])
        original = deserialize_prepare(packet)
        self.assertEqual(forwarded.destination, carol_address + ".wallet")
        self.assertEqual(forwarded.amount, 42)
        self.assertEqual(forwarded.data, original.data)
        self.assertLess(forwarded.expires_at, original.expires_at)

        _, packet, fulfillment = data_prepare(alice_address, 42, b"to alice", 20)
        reply = yield carol.send(packet)
        self.assertEqual(deserialize(reply).fulfillment, fulfillment)  # type: ignore[union-attr]

        # child -> parent (the default route), and parent -> child
        _, packet, fulfillment = data_prepare("test.parent.elsewhere", 42, b"upstream", 20)
        reply = yield carol.send(packet)
        self.assertEqual(deserialize(reply).fulfillment, fulfillment)  # type: ignore[union-attr]
        received = yield parent.received()
        self.assertEqual(deserialize_prepare(received[-1]).destination, "test.parent.elsewhere")
        _, packet, fulfillment = data_prepare(alice_address + ".x", 42, b"downstream", 20)
        reply = yield parent.send(packet)
        self.assertEqual(deserialize(reply).fulfillment, fulfillment)  # type: ignore[union-attr]

        # nowhere to go but back: F02 from the hub
        _, packet, _ = data_prepare(f"{PARENT_ADDRESS}.nobody", 42, b"e2e", 20)
        reject = deserialize((yield parent.send(packet)))
        self.assertIsInstance(reject, Reject)
        self.assertEqual((reject.code, reject.triggered_by), ("F02", PARENT_ADDRESS))  # type: ignore[union-attr]

        # the installed console script talks to the running hub
        ping = yield deferToProcess(
            [self.bin("ilphttp"), "ping", "--url", f"http://127.0.0.1:{ports['hub-alice']}/"],
            self.env(ILPHTTP_OUTGOING_TOKEN=TOKENS["alice-in"]),
            self.workdir,
        )
        out, err, code = ping
        self.assertEqual(code, 0, out + err)
        self.assertIn(f"address:      {alice_address}", out)

        # SIGTERM: a clean shutdown
        hub.transport.signalProcess("TERM")
        yield hub.ended
        reason = hub.reason
        assert reason is not None
        log = hub.text()
        # twistd re-raises the signal that stopped it after its clean shutdown
        # (so supervisors see it), hence "killed by SIGTERM" rather than 0.
        self.assertIsInstance(reason.value, ProcessTerminated, log)
        self.assertEqual(reason.value.signal, signal.SIGTERM, log)
        self.assertIn("Received SIGTERM, shutting down.", log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)
        for token in TOKENS.values():
            self.assertNotIn(token, log, "a secret was logged")


class SharedListenerTwistdTests(unittest.TestCase):
    """``twistd -n ilphttp --config shared.json``: one port for the emulated
    rafiki, Java connector and interledger-rs (``docs/peering/configs/shared.json``,
    its listen and peers' URLs moved to free loopback ports, secrets from the
    environment as the page says)."""

    timeout = INSTALL_TIMEOUT + 120

    def setUp(self) -> None:
        require_peers()
        self.venv = installed_venv()
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    @defer.inlineCallbacks
    def test_each_peer_pays_the_next_through_one_port(self) -> Any:
        peers = {}
        for impl in ("rafiki", "java", "rust"):
            peers[impl] = yield start_emulated_peer(self, impl, shared_peer_config(impl))
        port = free_port()
        config = os.path.join(self.workdir, "shared.json")
        with open(config, "w", encoding="utf-8") as f:
            listen = f"tcp:{port}:interface=127.0.0.1"
            json.dump(shared_node_file(listen, {n: p.port for n, p in peers.items()}), f)
        node = TwistdProcess()
        twistd = os.path.join(self.venv, "bin", "twistd")
        argv = [twistd, "-n", "--pidfile=", "ilphttp", "--config", config]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(SHARED_ENV)
        reactor.spawnProcess(node, twistd, argv, env=env, path=self.workdir)  # type: ignore[attr-defined]
        self.addCleanup(node.kill)
        yield node.wait_for("our address is test.ours")
        for impl in peers:
            # Logged one line after another: wait for each (PyPy is slow to start).
            yield node.wait_for(f"account {impl}: peer, on the node's listeners")

        # rafiki -> /, Java -> /accounts/java/ilp (JWT), rust -> /accounts/rust/ilp;
        # the router forwards to the next peer's server.
        base = f"http://127.0.0.1:{port}"
        for sender, receiver in (("rafiki", "java"), ("java", "rust"), ("rust", "rafiki")):
            label = f"{sender} -> {receiver}"
            _, raw, fulfillment = data_prepare(f"test.{receiver}.bob", 42, label.encode(), 20)
            sent = yield peers[sender].send(raw, **shared_client(sender, base))
            self.assertEqual(sent.stage, "peer", label)
            self.assertEqual(
                deserialize(sent.reply), Fulfill(fulfillment, deserialize_prepare(raw).data), label
            )
            [forwarded] = yield peers[receiver].received()
            self.assertEqual(deserialize_prepare(forwarded).destination, f"test.{receiver}.bob")
            [request] = yield peers[receiver].requests()
            self.assertEqual(request["rule"], "ok", label)

        node.transport.signalProcess("TERM")
        yield node.ended
        log = node.text()
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        for secret in SHARED_ENV.values():
            self.assertNotIn(secret, log, "a secret was logged")


class EditableInstallTests(unittest.TestCase):
    """``pip install -e .``: twistd finds the plugin and ilphttp is the checkout.

    setup.py maps the root explicitly (``package_dir={"": "."}``), so
    setuptools writes a plain ``.pth`` with the checkout's path instead of an
    import hook; Twisted's plugin loader only scans ``sys.path`` directories.
    """

    timeout = INSTALL_TIMEOUT + 60

    def setUp(self) -> None:
        self.venv = installed_venv(editable=True)
        self.source = os.path.join(os.path.dirname(self.venv), "src")

    def run_in_venv(self, program: str, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        # run beside the copy, not in it: the current directory must not be on sys.path
        return subprocess.run(
            [os.path.join(self.venv, "bin", program), *argv],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=os.path.dirname(self.venv),
        )

    def test_twistd_lists_the_plugin(self) -> None:
        result = self.run_in_venv("twistd", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("An Interledger (ILPv4) over HTTP node", result.stdout)

    def test_imports_resolve_to_the_checkout(self) -> None:
        result = self.run_in_venv(
            "python",
            "-c",
            "import ilphttp, twisted, twisted.plugins.ilphttp_plugin as p;"
            " print(ilphttp.__file__); print(p.__file__); print(twisted.__file__)",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        package, plugin, twisted_init = map(os.path.realpath, result.stdout.splitlines())
        source = os.path.realpath(self.source)
        self.assertEqual(package, os.path.join(source, "ilphttp", "__init__.py"))
        self.assertEqual(plugin, os.path.join(source, "twisted", "plugins", "ilphttp_plugin.py"))
        # the checkout's twisted/ (no __init__.py) must not shadow Twisted itself
        self.assertIn("site-packages", twisted_init)


#: the walk-through's fixed ports (examples/hub.json, examples/peers.json, examples/js-child.js)
WALKTHROUGH_PORTS = (7770, 7771, 7772, 7780, 7782, 7790)
#: commands of the walk-through that the test environment has done already
_DONE_BEFORE = (("python3", "-m", "pip", "install"), ("npm", "ci"))
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+ ")
_ELAPSED = re.compile(r"after \d+(\.\d+)? ms")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class Step(NamedTuple):
    """One ``$ command`` of a console block, and the lines shown after it."""

    document: str
    command: str
    expected: tuple[str, ...]


def _normalized(line: str) -> str:
    """A line without what changes from run to run: the log's timestamp, the elapsed time."""
    return _ELAPSED.sub("after N ms", _TIMESTAMP.sub("", line.rstrip()))


def _console_steps(document: str, lines: list[str]) -> list[Step]:
    """The ``$ command`` lines (``\\``-continued) of one console block and their output."""
    steps: list[Step] = []
    command: list[str] = []
    expected: list[str] = []
    continued = False
    for line in lines:
        if continued or line.startswith("$ "):
            if not continued and command:
                steps.append(Step(document, " ".join(command), tuple(expected)))
                command, expected = [], []
            part = line[2:] if line.startswith("$ ") and not continued else line
            continued = part.rstrip().endswith("\\")
            command.append(part.rstrip().rstrip("\\").strip())
        elif command and line.strip():
            expected.append(line.rstrip())
    if command:
        steps.append(Step(document, " ".join(command), tuple(expected)))
    return steps


def readme_walkthrough() -> list[Step]:
    """The console blocks of README.md's "Five minutes with a hub", in order."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Five minutes with a hub", 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    block: list[str] | None = None
    indent = 0
    for line in section.splitlines():
        if block is None and line.strip() == "```console":
            block, indent = [], len(line) - len(line.lstrip())
        elif block is not None and line.strip() == "```":
            steps += _console_steps("README.md", block)
            block = None
        elif block is not None:
            block.append(line[indent:])
    return steps


def tutorial_walkthrough() -> list[Step]:
    """The ``.. code-block:: console`` blocks of docs/tutorial.rst, in order."""
    with open(os.path.join(ROOT, "docs", "tutorial.rst"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != ".. code-block:: console":
            i += 1
            continue
        directive = len(lines[i]) - len(lines[i].lstrip())
        i += 1
        block: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > directive
        ):
            block.append(lines[i])
            i += 1
        body = [line for line in block if line.strip()]
        indent = min(len(line) - len(line.lstrip()) for line in body) if body else 0
        steps += _console_steps("docs/tutorial.rst", [line[indent:] for line in block])
    return steps


def _require_walkthrough_ports() -> None:
    """Skip (fail with CI=true) when a port of the walk-through is taken."""
    taken = []
    for port in WALKTHROUGH_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As Twisted's listen does: a port whose last connections linger
            # in TIME_WAIT (an earlier test's hub) is free to listen on.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(str(port))
    if taken:
        problem = (
            f"the walk-through's fixed ports are taken on 127.0.0.1: {', '.join(taken)}"
            " (is a hub from README.md still running?)"
        )
        if in_ci():
            raise unittest.FailTest(problem + " with CI=true")
        raise unittest.SkipTest(problem)


def _stopped(process: TwistdProcess) -> defer.Deferred[None]:
    """Kill ``process`` if it still runs; fires when it has ended."""
    process.kill()
    return process.ended


class WalkThroughTests(unittest.TestCase):
    """README.md's "Five minutes with a hub" and docs/tutorial.rst, run as written.

    Every ``$ command`` of their console blocks runs from the repository root,
    with the installed package's ``twistd`` and ``ilphttp`` first on PATH and
    the example ports (7770-7790, fixed by ``examples/``). A node (``twistd``)
    or a child kept running (``--stay``) is started and must log each line
    shown after it; any other command must print exactly the lines shown
    (timestamps and elapsed milliseconds aside) and exit with 1 after a
    Reject, else 0. ``pip install`` and ``npm ci`` are what the test
    environment did already.
    """

    timeout = INSTALL_TIMEOUT + 120

    def setUp(self) -> None:
        self.node = require_node(("ilp-plugin-http", "ilp-packet", "ilp-protocol-ildcp", "koa"))
        _require_walkthrough_ports()
        self.venv = installed_venv()
        self.running: dict[str, TwistdProcess] = {}

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PATH"] = os.path.join(self.venv, "bin") + os.pathsep + env.get("PATH", "")
        env.update(extra)
        return env

    def argv(self, step: Step) -> tuple[list[str], dict[str, str]] | None:
        """The command's argv (its program resolved) and its ``NAME=value`` prefix.

        None for a command the test environment has run already.
        """
        self.assertFalse(
            set(step.command) & set("|;&<>`$()*?"),
            f"{step.document}: a walk-through command must run without a shell: {step.command}",
        )
        words = shlex.split(step.command)
        extra = {}
        while words and _ASSIGNMENT.match(words[0]):
            name, value = words.pop(0).split("=", 1)
            extra[name] = value
        if any(tuple(words[: len(done)]) == done for done in _DONE_BEFORE):
            return None
        programs = {"twistd": self.bin("twistd"), "ilphttp": self.bin("ilphttp"), "node": self.node}
        self.assertIn(words[0], programs, f"{step.document}: unexpected program in {step.command}")
        return [programs[words[0]], *words[1:]], extra

    def bin(self, name: str) -> str:
        return os.path.join(self.venv, "bin", name)

    @defer.inlineCallbacks
    def run_step(self, step: Step) -> Any:
        resolved = self.argv(step)
        if resolved is None:
            return
        argv, extra = resolved
        where = f"{step.document}: $ {step.command}"
        expected = [_normalized(line) for line in step.expected]
        if argv[0] == self.bin("twistd") or "--stay" in argv:
            process = self.running.get(step.command)
            if process is None:
                process = TwistdProcess()
                reactor.spawnProcess(  # type: ignore[attr-defined]
                    process, argv[0], argv, env=self.env(extra), path=ROOT
                )
                self.addCleanup(_stopped, process)
                self.running[step.command] = process
            for line in expected:
                yield process.wait_for(line.strip(), timeout=20)
            return
        out, err, code = yield deferToProcess(argv, self.env(extra), ROOT)
        self.assertEqual([_normalized(line) for line in out.splitlines()], expected, where + err)
        rejected = any(line.lstrip().startswith("Reject ") for line in expected)
        self.assertEqual(code, 1 if rejected else 0, where + "\n" + out + err)

    @defer.inlineCallbacks
    def test_walkthrough_as_written(self) -> Any:
        readme = readme_walkthrough()
        tutorial = tutorial_walkthrough()
        for name, steps in (("README.md", readme), ("docs/tutorial.rst", tutorial)):
            shown = "\n".join(line for step in steps for line in step.expected)
            # the walk-through's promise: a Fulfill, a Reject on purpose, and an F02
            for words in ("Fulfill after", "Reject F05 Wrong Condition", "Reject F02 Unreachable"):
                self.assertIn(words, shown, f"{name} no longer shows {words!r}")
            self.assertIn("node examples/js-child.js", [s.command for s in steps], name)
        # README first: the tutorial's nodes are the same commands, still running.
        for step in readme + tutorial:
            yield self.run_step(step)
        for command, process in self.running.items():
            process.transport.signalProcess("TERM")
            yield process.ended
            self.assertNotIn("Traceback", process.text(), command)
            self.assertNotIn("Unhandled", process.text(), command)


class _Collect(ProcessProtocol):
    def __init__(self, done: defer.Deferred[tuple[str, str, int]]) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.done = done

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        self.done.callback(
            (self.out.decode("utf-8", "replace"), self.err.decode("utf-8", "replace"), code)
        )


def deferToProcess(
    argv: list[str], env: dict[str, str], path: str
) -> defer.Deferred[tuple[str, str, int]]:
    """Run a process without blocking the reactor; (stdout, stderr, exit code)."""
    done: defer.Deferred[tuple[str, str, int]] = defer.Deferred()
    reactor.spawnProcess(_Collect(done), argv[0], argv, env=env, path=path)  # type: ignore[attr-defined]
    return done
