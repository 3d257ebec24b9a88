"""What run.py's row modules share: child processes, the implementations, warm-up rules.

Standard library only; every measurement runs in child processes.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

import benchlib  # noqa: E402

NODE_MODULES = os.path.join(ROOT, "interop", "node_modules")
READY_TIMEOUT = 30.0


class Impl(NamedTuple):
    key: str  # "js", "node", "ilphttp@cpython3.11", "bare@pypy3.9", "js-h2c>ilphttp@..."
    family: str  # "js" | "node" | "ilphttp" | "bare" | "js-h2c"
    python: str | None


class BenchError(Exception):
    """One measurement failed (a child crashed, timed out or printed no result)."""


def is_pypy(impl: Impl) -> bool:
    return "@pypy" in impl.key


def warmup_for(impl: Impl, opts: argparse.Namespace, base: float) -> tuple[float, float]:
    """(warm-up seconds, stable-bucket seconds or 0) for a row run under ``impl``.

    Under PyPy the warm-up is at least ``--pypy-warmup`` and then lasts until two
    consecutive ``--stable-bucket`` windows of throughput are within
    ``--stable-tolerance`` (the JIT is warm).  ``--quick`` applies the
    stability rule to every Python row, so that CI runs that code too.
    """
    if impl.python is None:
        return base, 0.0
    if is_pypy(impl):
        return max(base, opts.pypy_warmup), opts.stable_bucket
    return base, opts.stable_bucket if opts.quick else 0.0


def python_env() -> dict[str, str]:
    """The environment for Python children: the working tree's ilphttp first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def _more_files() -> None:
    """In the child before exec: room for the memory rows' 10,000 connections."""
    benchlib.raise_nofile(1 << 16)


class Server:
    """A child that prints a JSON ``ready`` line (with a ``port``) and exits when stdin closes."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str] | None,
        name: str,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            preexec_fn=_more_files if os.name == "posix" else None,
        )
        self._buf = b""
        self.ready = self.wait_event("ready", ready_timeout)
        self.port = int(self.ready.get("port", 0))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_event(self, event: str, timeout: float) -> dict[str, Any]:
        """The next JSON line on stdout whose ``event`` is ``event``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = self._buf
        deadline = time.monotonic() + timeout
        while True:
            lines = buf.split(b"\n")
            for i, line in enumerate(lines[:-1]):
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("event") == event:
                    self._buf = b"\n".join(lines[i + 1 :])
                    return msg
            if time.monotonic() >= deadline:
                break
            readable, _, _ = select.select([fd], [], [], 0.2)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise BenchError(f"{self.name}: no {event!r} line: {self.stderr_tail()}")

    def stderr_tail(self, n: int = 600) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-n:].strip()

    def close_stdin(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass

    def stop(self) -> None:
        """Close stdin (the child exits), then SIGTERM, then SIGKILL: always bounded."""
        proc = self.proc
        self.close_stdin()
        for action, wait in ((None, 5.0), (proc.terminate, 3.0), (proc.kill, 3.0)):
            if proc.poll() is not None:
                break
            if action is not None:
                action()
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sender(argv: list[str], env: dict[str, str] | None, timeout: float, name: str) -> dict:
    """Run a sender child to completion; its last JSON ``result`` line."""
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name} ran over {timeout:.0f} s") from None
    for line in reversed(done.stdout.decode("utf-8", "replace").splitlines()):
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("event") == "result":
            if done.returncode != 0:
                raise BenchError(f"{name} exited {done.returncode}")
            return msg
    tail = done.stderr.decode("utf-8", "replace")[-600:].strip()
    raise BenchError(f"{name} printed no result (exit {done.returncode}): {tail}")


def cpu_us_per_packet(cpu_s: float | None, packets: int) -> float | None:
    """Microseconds of CPU per packet, or None when unknown."""
    if cpu_s is None or not packets:
        return None
    return cpu_s * 1e6 / packets
