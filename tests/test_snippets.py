"""Every code block of ``docs/*.rst`` and ``README.md`` runs as written.

The blocks are extracted from the files as they are (no Sphinx needed) and
checked by language, from the repository root as the current directory:

``python`` (``.. code-block:: python``, and a ``::`` literal block that
    compiles as Python, which Sphinx highlights as Python too): run in a
    fresh interpreter (this one, so with the package installed); it must exit
    0 within its timeout and write no traceback.
``console``: each ``$ `` command (``\\`` continues it) runs in ``bash``; the
    lines up to the next ``$ `` are its documented output, compared line by
    line with numbers and 64-digit hex values as wildcards (a version, a
    time, a random condition); a command without output lines must exit 0.
    ``ilphttp ping`` and friends talk to a live hub,
    ``twistd -n --pidfile= ilphttp --config examples/hub.json``, started
    for the test.
``sh``/``bash``: the block runs as one ``bash -e`` script.
``json``: parsed; an object with ``accounts`` is a node config and goes
    through :func:`ilphttp.nodeconfig.parse_node` (secret files relative to
    ``examples/``, so ``secrets/...`` are the example tokens; every
    environment variable it names is set, to a placeholder).
Any other language (``text``, ``js``, ``toml``...) is not run.

A comment just before a block (rst ``.. snippet: WORD — reason``, Markdown
``<!-- snippet: WORD — reason -->``) changes how it is checked:

``skip``
    not run at all; the reason says why (a real remote peer, ...).
``server``
    every command (console) or the script starts a long-running process: it
    must still be running once its listening port answers a health ``GET``
    (the ports are given after the word: ``.. snippet: server 8000``), and
    then stop on SIGTERM.  The live hub is stopped meanwhile, so a block may
    use its ports.
``tac``
    a Python block that is a ``.tac`` file: it runs under
    ``twistd -n --pidfile= -y``, like ``server`` (ports after the word).
``trial``
    a Python block that is a test module: ``python -m twisted.trial`` runs it
    and it must pass.
``file NAME``
    the block is also the file ``NAME`` that the page's Python blocks open:
    they then run in a directory that holds it (not the repository root).

``walkthrough``
    a step of the README's walk-through or of ``docs/tutorial.rst``: those run
    in order, with the nodes they start, in ``test_twistd_e2e.WalkThroughTests``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Callable

from twisted.trial import unittest

from ilphttp.nodeconfig import parse_node

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
HUB_PORTS = (7770, 7771, 7772)
TWISTD = os.path.join(BIN, "twistd")
HUB_COMMAND = (
    TWISTD,
    "-n",
    "--pidfile=",
    "ilphttp",
    "--config",
    "examples/hub.json",
)
RUN_TIMEOUT = 20.0
START_TIMEOUT = 15.0

_MARK_RST = re.compile(r"^\s*\.\. snippet:\s*(.*?)\s*$")
_MARK_MD = re.compile(r"^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$")
_DIRECTIVE = re.compile(r"^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)\s*$")
_FENCE = re.compile(r"^(\s*)```\s*(\S*)\s*$")
_WILDCARD = re.compile(r"[0-9a-f]{64}|\d+(?:\.\d+)*")
_RUN = {"python", "py", "console", "sh", "bash", "json"}
_KINDS = {"", "skip", "walkthrough", "server", "tac", "trial", "file"}


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language, its text and its mark."""

    path: str  # relative to ROOT
    line: int  # 1-based, the block's first line of code
    language: str
    text: str
    mark: str  # "" or the comment's words: "skip — reason", "server 8000", ...

    @property
    def kind(self) -> str:
        return self.mark.split()[0] if self.mark else ""

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(int(w) for w in self.mark.split()[1:] if w.isdigit())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _body(lines: list[str], start: int, parent_indent: int) -> tuple[int, list[str]]:
    """The indented block that starts at or after ``lines[start]``: (index, lines)."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or _indent(lines[i]) <= parent_indent:
        return i, []
    first = i
    body: list[str] = []
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > parent_indent):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    return first, body


def _python_compiles(text: str) -> bool:
    try:
        compile(text, "<snippet>", "exec")
    except SyntaxError:
        return False
    return True


def rst_blocks(path: str, text: str) -> Iterator[Block]:
    """The code blocks of an rst file: code-block directives and ``::`` blocks."""
    lines = text.splitlines()
    mark = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        found = _MARK_RST.match(line)
        if found:
            mark = found.group(1)
            i += 1
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            indent = len(directive.group(1))
            j = i + 1
            while (
                j < len(lines) and lines[j].strip().startswith(":") and _indent(lines[j]) > indent
            ):
                j += 1  # the directive's options
            first, body = _body(lines, j, indent)
            code = textwrap.dedent("\n".join(body)) + "\n"
            yield Block(path, first + 1, directive.group(2) or "python", code, mark)
            mark = ""
            i = first + len(body)
            continue
        stripped = line.strip()
        if stripped.endswith("::") and not stripped.startswith(".."):
            first, body = _body(lines, i + 1, _indent(line))
            if body:
                code = textwrap.dedent("\n".join(body)) + "\n"
                # Sphinx's highlight_language is python: it highlights a
                # literal block as Python when it is Python.
                language = "python" if _python_compiles(code) else "text"
                yield Block(path, first + 1, language, code, mark)
                mark = ""
                i = first + len(body)
                continue
        i += 1


def markdown_blocks(path: str, text: str) -> Iterator[Block]:
    """The fenced code blocks of a Markdown file."""
    lines = text.splitlines()
    mark = ""
    i = 0
    while i < len(lines):
        found = _MARK_MD.match(lines[i])
        if found:
            mark = found.group(1)
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if fence:
            indent = len(fence.group(1))
            j = i + 1
            while j < len(lines) and not _FENCE.match(lines[j]):
                j += 1
            code = "\n".join(line[indent:] for line in lines[i + 1 : j]) + "\n"
            yield Block(path, i + 2, fence.group(2) or "text", code, mark)
            mark = ""
            i = j + 1
            continue
        i += 1


def all_blocks() -> list[Block]:
    """Every block of ``docs/*.rst``, ``docs/peering/*.rst`` and ``README.md``."""
    blocks: list[Block] = []
    docs = os.path.join(ROOT, "docs")
    for folder in ("", "peering"):
        here = os.path.join(docs, folder)
        for name in sorted(os.listdir(here)):
            if name.endswith(".rst"):
                path = os.path.join(folder, name) if folder else name
                with open(os.path.join(here, name), encoding="utf-8") as f:
                    blocks.extend(rst_blocks(f"docs/{path}", f.read()))
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks.extend(markdown_blocks("README.md", f.read()))
    return blocks


# -- running them -------------------------------------------------------------


def _environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILPHTTP_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "80"  # twistd --help wraps to the terminal's width
    return env


def _answers(port: int) -> bool:
    """Whether an HTTP server answers a GET on this loopback port, whatever its status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class _AnyVariable(Mapping[str, str]):
    """An environment in which every variable is set (to a placeholder)."""

    def __getitem__(self, name: str) -> str:
        return f"placeholder-for-{name}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _Process:
    """A long-running process group, stopped by SIGTERM."""

    def __init__(self, argv: list[str] | str, cwd: str = ROOT, shell: bool = False) -> None:
        self.output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=_environ(),
            shell=shell,
            executable="/bin/bash" if shell else None,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_answering(self, ports: tuple[int, ...]) -> str | None:
        """``None`` once every port answers, else why not."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode} before answering"
            if all(_answers(port) for port in ports):
                return None
            time.sleep(0.1)
        return f"ports {ports} did not answer within {START_TIMEOUT} s"

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def text(self) -> str:
        self.output.seek(0)
        return self.output.read().decode("utf-8", "replace")


class _Hub:
    """``examples/hub.json`` running, for the console blocks that talk to it."""

    process: _Process | None = None

    def start(self) -> None:
        if self.process is None:
            self.process = _Process(list(HUB_COMMAND))
            failure = self.process.wait_answering(HUB_PORTS)
            if failure:
                text = self.process.text()
                self.stop()
                raise AssertionError(f"the hub did not start: {failure}\n{text}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


HUB = _Hub()
atexit.register(HUB.stop)


def _normalized(line: str) -> str:
    return _WILDCARD.sub("N", line.rstrip())


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(command, documented output lines)`` for each ``$ `` line."""
    commands: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        while output and not output[-1].strip():
            output.pop()
        commands.append((command, output))
    return commands


class SnippetTests(unittest.TestCase):
    """Table-driven: one test per block, added below from :func:`all_blocks`."""

    def live_hub(self) -> None:
        """The hub runs until this test ends (it leaves the ports to the rest of the suite)."""
        if HUB.process is None:
            HUB.start()
            self.addCleanup(HUB.stop)

    def run_block(self, block: Block) -> None:
        self.assertIn(block.kind, _KINDS, f"{block.path}:{block.line}: unknown snippet mark")
        if block.kind == "skip":
            raise unittest.SkipTest(block.mark)
        if block.kind == "walkthrough":
            raise unittest.SkipTest(
                "run in order, with the nodes it starts, by test_twistd_e2e.WalkThroughTests"
            )
        check = _CHECKS.get(block.language)
        if check is None:
            raise unittest.SkipTest(f"{block.language} blocks are not run")
        check(self, block)

    # python

    def check_python(self, block: Block) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            if block.kind == "tac":
                tac = os.path.join(tmp, "app.tac")
                with open(tac, "w", encoding="utf-8") as f:
                    f.write(block.text)
                argv = [TWISTD, "-n", "--pidfile="]
                self.run_server(block, [*argv, "-y", tac])
                return
            if block.kind == "trial":
                module = os.path.join(tmp, "test_snippet.py")
                with open(module, "w", encoding="utf-8") as f:
                    f.write(block.text)
                argv = [sys.executable, "-m", "twisted.trial", "test_snippet"]
                self.run_to_end(block, argv, cwd=tmp, env_path=tmp)
                return
            script = os.path.join(tmp, "snippet.py")
            with open(script, "w", encoding="utf-8") as f:
                f.write(block.text)
            files = {
                b.mark.split()[1]: b.text
                for b in BLOCKS
                if b.path == block.path and b.kind == "file"
            }
            for name, text in files.items():
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                    f.write(text)
            self.run_to_end(block, [sys.executable, script], cwd=tmp if files else ROOT)

    def run_to_end(
        self, block: Block, argv: list[str], cwd: str = ROOT, env_path: str | None = None
    ) -> str:
        env = _environ()
        if env_path:
            env["PYTHONPATH"] = env_path
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            self.fail(f"{block.path}:{block.line}: still running after {e.timeout} s")
        output = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0 or "Traceback (most recent call last)" in output:
            self.fail(f"{block.path}:{block.line}: exit status {done.returncode}\n{output}")
        return output

    def run_server(self, block: Block, argv: list[str] | str) -> None:
        self.assertTrue(block.ports, f"{block.path}:{block.line}: give the ports to wait for")
        HUB.stop()
        process = _Process(argv, shell=isinstance(argv, str))
        failure = process.wait_answering(block.ports)
        status = process.stop()
        output = process.text()
        if failure:
            self.fail(f"{block.path}:{block.line}: {failure}\n{output}")
        # twistd stops cleanly, then re-raises SIGTERM (see docs/twistd.rst, Stopping)
        self.assertIn(status, (0, -signal.SIGTERM), f"{block.path}:{block.line}\n{output}")
        self.assertNotIn("Traceback (most recent call last)", output, output)

    # console and sh

    def check_console(self, block: Block) -> None:
        exports: list[str] = []
        for command, documented in console_commands(block.text):
            where = f"{block.path}:{block.line}: $ {command}"
            if command.startswith("export "):
                exports.append(command)
                continue
            script = "; ".join([*exports, command])
            if block.kind == "server":
                self.run_server(block, script)
                continue
            if "ilphttp ping" in command:
                self.live_hub()
            done = subprocess.run(
                ["/bin/bash", "-c", script],
                cwd=ROOT,
                env=_environ(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT,
            )
            output = done.stdout.decode("utf-8", "replace").splitlines()
            while output and not output[-1].strip():
                output.pop()
            if documented:
                self.assertEqual(
                    [_normalized(line) for line in documented],
                    [_normalized(line) for line in output],
                    where,
                )
            else:
                self.assertEqual(done.returncode, 0, f"{where}\n" + "\n".join(output))

    def check_sh(self, block: Block) -> None:
        if block.kind == "server":
            self.run_server(block, block.text)
            return
        if "ilphttp ping" in block.text:
            self.live_hub()
        self.run_to_end(block, ["/bin/bash", "-e", "-c", block.text])

    # json

    def check_json(self, block: Block) -> None:
        value = json.loads(block.text)
        if isinstance(value, dict) and "accounts" in value:
            parse_node(value, base_dir=os.path.join(ROOT, "examples"), environ=_AnyVariable())


_CHECKS: dict[str, Callable[[SnippetTests, Block], None]] = {
    "python": SnippetTests.check_python,
    "py": SnippetTests.check_python,
    "console": SnippetTests.check_console,
    "sh": SnippetTests.check_sh,
    "bash": SnippetTests.check_sh,
    "json": SnippetTests.check_json,
}


def _test_name(block: Block) -> str:
    stem = re.sub(r"\W", "_", os.path.splitext(block.path)[0])
    return f"test_{stem}_{block.line:04d}_{block.language}"


class ExtractorTests(unittest.SynchronousTestCase):
    """What the extractor finds in rst, Markdown and console text."""

    RST = textwrap.dedent(
        """\
        Title
        =====

        .. code-block:: python
           :caption: ignored option

           print("a")

        Text::

            x = 1

        A log line::

            [ilphttp.node#info] started

        .. snippet: server 8000 8001

        .. code-block:: console

            $ twistd -n ilphttp \\
                  --port 8000
            output
        .. list-table::

           * - not code
        """
    )

    def test_rst(self) -> None:
        found = [(b.line, b.language, b.text, b.mark, b.ports) for b in rst_blocks("x", self.RST)]
        self.assertEqual(
            [
                (7, "python", 'print("a")\n', "", ()),
                (11, "python", "x = 1\n", "", ()),
                (15, "text", "[ilphttp.node#info] started\n", "", ()),
                (
                    21,
                    "console",
                    "$ twistd -n ilphttp \\\n      --port 8000\noutput\n",
                    "server 8000 8001",
                    (8000, 8001),
                ),
            ],
            found,
        )

    def test_markdown(self) -> None:
        text = (
            "1. step\n\n   <!-- snippet: skip — why -->\n   ```sh\n   ls\n   ```\n```\nplain\n```\n"
        )
        found = [(b.line, b.language, b.text, b.kind) for b in markdown_blocks("x", text)]
        self.assertEqual([(5, "sh", "ls\n", "skip"), (8, "text", "plain\n", "")], found)

    def test_console(self) -> None:
        text = "$ a \\\n    b\none\n\n$ c\n$ d\ntwo\n"
        self.assertEqual([("a  b", ["one"]), ("c", []), ("d", ["two"])], console_commands(text))

    def test_wildcards(self) -> None:
        self.assertEqual(
            _normalized("after 3.5 ms, ilphttp 0.1.0, " + "ab" * 32 + "  "),
            _normalized("after 12 ms, ilphttp 1.2.0, " + "0f" * 32),
        )


BLOCKS = all_blocks()


def _add_tests() -> None:
    for block in BLOCKS:
        if block.language not in _RUN and not block.kind:
            continue  # a diagram, a log excerpt, JavaScript...

        def test(self: SnippetTests, block: Block = block) -> None:
            self.run_block(block)

        test.__doc__ = f"{block.path}:{block.line} ({block.language}) runs as written."
        setattr(SnippetTests, _test_name(block), test)


_add_tests()
