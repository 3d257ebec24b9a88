"""The package's shape: a Twisted-free core, one-way arrows between layers, no cycles.

See docs/architecture.rst.  The layers are listed here once; a new module must
be put in one, or this test fails.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "ilphttp")

#: pure: no Twisted, h2 or OpenSSL, not even inside a function
CORE = {
    "ilphttp",
    "ilphttp._option_fields",
    "ilphttp._version",
    "ilphttp.auth",
    "ilphttp.callbacks",
    "ilphttp.config",
    "ilphttp.credentials",
    "ilphttp.http1_parse",
    "ilphttp.endpoint_check",
    "ilphttp.errors",
    "ilphttp.ildcp",
    "ilphttp.json_keys",
    "ilphttp.limits",
    "ilphttp.logtext",
    "ilphttp.multi",
    "ilphttp.node_file",
    "ilphttp.node_listeners",
    "ilphttp.nodeconfig",
    "ilphttp.nodediff",
    "ilphttp.packet",
    "ilphttp.pending",
    "ilphttp.replies",
    "ilphttp.rfc35",
    "ilphttp.routing",
    "ilphttp.secrets",
    "ilphttp.server_limits",
    "ilphttp.validate",
}
#: the Twisted edge of one link
LINK = {
    "ilphttp._compat",
    "ilphttp._h2_pool",
    "ilphttp._h2_protocol",
    "ilphttp._h2_response",
    "ilphttp._http1_response",
    "ilphttp.agent_sender",
    "ilphttp.async_link",
    "ilphttp.handlers",
    "ilphttp.http2_connection",
    "ilphttp.http2_events",
    "ilphttp.http2_session",
    "ilphttp.client",
    "ilphttp.front",
    "ilphttp.h2_guard",
    "ilphttp.h2_server",
    "ilphttp.h2_server_core",
    "ilphttp.h2_server_events",
    "ilphttp.h2_server_stream",
    "ilphttp.h2c",
    "ilphttp.http1_client",
    "ilphttp.http1_server",
    "ilphttp.http2",
    "ilphttp.link_ops",
    "ilphttp.listener",
    "ilphttp._http1_wire",
    "ilphttp.drain",
    "ilphttp.metrics",
    "ilphttp.peer_endpoints",
    "ilphttp.plugin",
    "ilphttp.plugin_events",
    "ilphttp.plugin_ildcp",
    "ilphttp.plugin_incoming",
    "ilphttp.reply_delivery",
    "ilphttp.server",
    "ilphttp.shared",
    "ilphttp.testing",
    "ilphttp.tls",
    "ilphttp.tls_identity",
}
#: a node of many links, and the command line
NODE = {
    "ilphttp.__main__",
    "ilphttp.cli",
    "ilphttp.config_file",
    "ilphttp.logformat",
    "ilphttp.node",
    "ilphttp.node_logs",
    "ilphttp.node_metrics",
    "ilphttp.worker_metrics",
    "ilphttp.reload",
    "ilphttp.router",
    "ilphttp.tap",
    "ilphttp.tls_files",
    "ilphttp.worker_process",
    "ilphttp.worker_reload",
    "ilphttp.worker_setup",
    "ilphttp.worker_sockets",
    "ilphttp.worker_supervisor",
    "ilphttp.workers",
}
RANK = {**{m: 0 for m in CORE}, **{m: 1 for m in LINK}, **{m: 2 for m in NODE}}
#: third-party packages the core may not import
FORBIDDEN_IN_CORE = ("twisted", "h2", "hyperframe", "hpack", "OpenSSL", "treq", "zope")


def _modules() -> dict[str, str]:
    """Every module of the package (including subpackages): name -> file."""
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
            if relative[-1] == "__init__":
                relative.pop()
            found[".".join(relative)] = path
    return found


def _imports(path: str, module: str, *, typing_too: bool = True) -> set[str]:
    """Every module named by an import anywhere in ``path`` (functions included).

    ``typing_too=False`` leaves out imports under ``if TYPE_CHECKING:``, which
    never run and so cannot make a load-time cycle.
    """
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and not typing_too:
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                for child in node.orelse:
                    visit(child)
                return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            # "from ilphttp import ildcp" names a module too
            names.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _graph(*, typing_too: bool = True) -> dict[str, set[str]]:
    modules = _modules()
    return {
        m: {n for n in _imports(p, m, typing_too=typing_too) if n in modules and n != m}
        for m, p in modules.items()
    }


class LayerTests(SynchronousTestCase):
    def test_every_module_has_a_layer(self) -> None:
        self.assertEqual(sorted(set(_modules()) - set(RANK)), [])
        self.assertEqual(sorted(set(RANK) - set(_modules())), [])

    def test_arrows_point_down(self) -> None:
        wrong = [
            f"{m} ({RANK[m]}) imports {n} ({RANK[n]})"
            for m, targets in _graph().items()
            for n in targets
            if RANK[n] > RANK[m] and not (m == "ilphttp" and n == "ilphttp.plugin")
        ]
        # The one exception: ilphttp.PluginHttp, imported lazily on first use (PEP 562).
        self.assertEqual(wrong, [])

    def test_core_names_no_twisted_anywhere(self) -> None:
        modules = _modules()
        wrong = []
        for name in sorted(CORE):
            for imported in _imports(modules[name], name):
                if imported.split(".")[0] in FORBIDDEN_IN_CORE:
                    wrong.append(f"{name} imports {imported}")
        self.assertEqual(wrong, [])

    def test_no_import_cycles(self) -> None:
        graph = _graph(typing_too=False)
        # PEP 562's lazy PluginHttp is not a load-time edge.
        graph["ilphttp"].discard("ilphttp.plugin")
        cycles: list[list[str]] = []
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> None:
            state[node] = 1
            stack.append(node)
            for target in sorted(graph[node]):
                if state.get(target) == 1:
                    cycles.append([*stack[stack.index(target) :], target])
                elif target not in state:
                    visit(target)
            stack.pop()
            state[node] = 2

        for node in sorted(graph):
            if node not in state:
                visit(node)
        self.assertEqual(cycles, [])


class FreshInterpreterTests(SynchronousTestCase):
    """Importing a core module in a new interpreter loads no Twisted, h2 or OpenSSL."""

    def test_core_modules_load_no_twisted(self) -> None:
        script = (
            "import importlib, json, sys\n"
            "out = {}\n"
            "for name in sys.argv[1:]:\n"
            "    before = set(sys.modules)\n"
            "    importlib.import_module(name)\n"
            "    out[name] = sorted({m.split('.')[0] for m in set(sys.modules) - before})\n"
            "print(json.dumps(out))\n"
        )
        loaded: dict[str, list[str]] = {}
        # One interpreter per module, so that none hides another's imports.
        for name in sorted(CORE):
            output = subprocess.run(
                [sys.executable, "-c", script, name],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": ROOT},
            ).stdout
            loaded.update(json.loads(output))
        wrong = {
            name: [top for top in tops if top in FORBIDDEN_IN_CORE] for name, tops in loaded.items()
        }
        self.assertEqual({k: v for k, v in wrong.items() if v}, {})
        self.assertEqual(sorted(loaded), sorted(CORE))
