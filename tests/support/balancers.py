"""Debian's HAProxy and nginx for tests: find them, check a config, run HAProxy.

The example configurations live in ``examples/``; HAProxy's takes its
addresses from ``ILP_*`` environment variables (see ``examples/haproxy.cfg``),
so a test runs the shipped file unchanged.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.support.jsinterop import in_ci
from tests.support.reactor import global_reactor
from tests.support.twistd import ROOT, Twistd

EXAMPLES = os.path.join(ROOT, "examples")
HAPROXY_CFG = os.path.join(EXAMPLES, "haproxy.cfg")
NGINX_CONF = os.path.join(EXAMPLES, "nginx.conf")


def require_tool(name: str, package: str) -> str:
    """The path of ``name`` (on PATH or in /usr/sbin, where Debian puts daemons).

    Otherwise the test is skipped, or fails under ``CI=true`` (``.ci/run``
    installs ``package``).
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is not None:
        return found
    problem = f"{name} is not installed (Debian: apt-get install {package})"
    if in_ci():
        raise unittest.FailTest(problem + " with CI=true")
    raise unittest.SkipTest(problem)


def haproxy_env(listen: int, nodes: tuple[int, int], stats_socket: str) -> dict[str, str]:
    """The environment that points examples/haproxy.cfg at loopback ports."""
    env = dict(os.environ)
    env.update(
        ILP_LISTEN=f"127.0.0.1:{listen}",
        ILP_NODE1=f"127.0.0.1:{nodes[0]}",
        ILP_NODE2=f"127.0.0.1:{nodes[1]}",
        ILP_HAPROXY_SOCKET=stats_socket,
    )
    return env


def start_haproxy(case: unittest.TestCase, env: dict[str, str], workdir: str) -> Twistd:
    """``haproxy -db -f examples/haproxy.cfg`` (foreground), killed at cleanup.

    Its stdout and stderr (the log: only failed requests) are in ``.text()``.
    """
    haproxy = require_tool("haproxy", "haproxy")
    process = Twistd()
    argv = [haproxy, "-db", "-f", HAPROXY_CFG]
    global_reactor().spawnProcess(process, haproxy, argv, env=env, path=workdir)
    case.addCleanup(lambda: process.ended)
    case.addCleanup(process.kill)
    return process


def haproxy_servers(stats_socket: str) -> dict[str, str]:
    """Server name -> status (``UP``, ``DOWN``, ``UP 1/2``...) from ``show stat``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(stats_socket)
        s.sendall(b"show stat\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    lines = b"".join(chunks).decode("utf-8", "replace").splitlines()
    header = lines[0].lstrip("# ").split(",")
    servers = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
            servers[row["svname"]] = row.get("status", "")
    return servers


@defer.inlineCallbacks
def wait_server_status(stats_socket: str, server: str, status: str, timeout: float = 30.0) -> Any:
    """Until HAProxy reports ``server`` with ``status`` (``UP`` or ``DOWN``)."""
    seen = None
    for _ in range(int(timeout * 10)):
        try:
            seen = haproxy_servers(stats_socket).get(server)
        except OSError:
            seen = None  # HAProxy has not opened its socket yet
        if seen == status:
            return seen
        yield deferLater(global_reactor(), 0.1, lambda: None)
    raise AssertionError(f"HAProxy never reported {server} {status} (last: {seen})")
