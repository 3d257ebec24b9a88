"""Zero lost Prepares through a rolling restart behind a real HAProxy.

Debian's ``haproxy`` runs ``examples/haproxy.cfg`` unchanged (its ``ILP_*``
variables point it at loopback ports) in front of two ``twistd -n ilphttp``
nodes whose handler fulfils every Prepare with its process id.  ilphttp's
PluginHttp and the JS ``ilp-plugin-http`` send Prepares through HAProxy without
pause while each node in turn gets SIGTERM, exits, starts again and is
reported UP by HAProxy.  Every Prepare must come back fulfilled: a single
T00/T01/R00/F02 (or any failure) fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from ilphttp import PluginHttp
from ilphttp.packet import Fulfill, Reject, deserialize
from tests.support.balancers import (
    haproxy_env,
    require_tool,
    start_haproxy,
    wait_server_status,
)
from tests.support.jsinterop import plugin_options, require_node, start_peer
from tests.support.packets import make_prepare
from tests.support.ports import free_port
from tests.support.reactor import global_reactor, within
from tests.support.twistd import PREIMAGE, Twistd, start_twistd

TOKEN = "rolling-restart-token"
#: ilphttp's and the JS plugin's Prepares in flight at any time
ILPHTTP_STREAMS = 4
JS_STREAMS = 2
#: a Prepare's expiry; the longest a reply may take before the test calls it lost
EXPIRES_IN = 30.0


def node_config(port: int) -> dict[str, Any]:
    """One node: an account whose listener HAProxy forwards to; the handler fulfils."""
    return {
        "ilpAddress": "test.lb",
        "assetCode": "XRP",
        "assetScale": 9,
        "accounts": {
            "peer": {
                "relation": "child",
                "options": {
                    "incoming": {
                        "endpoint": f"tcp:{port}:interface=127.0.0.1",
                        "staticToken": TOKEN,
                    }
                },
            }
        },
    }


class Outcomes:
    """Every reply, by sender: the node pid of each Fulfill, a label for anything else."""

    def __init__(self) -> None:
        self.pids: Counter[tuple[str, int]] = Counter()
        self.lost: list[tuple[str, str]] = []
        self.running = True

    def record(self, source: str, reply: Any) -> None:
        if isinstance(reply, bytes):
            packet = deserialize(reply)
            if isinstance(packet, Fulfill):
                self.pids[(source, int(packet.data))] += 1
                return
            if isinstance(packet, Reject):
                self.lost.append((source, f"{packet.code} {packet.message}"))
                return
        self.lost.append((source, repr(reply)[:300]))

    def fulfilled(self, source: str | None = None, pid: int | None = None) -> int:
        return sum(
            n
            for (s, p), n in self.pids.items()
            if (source is None or s == source) and (pid is None or p == pid)
        )


class RollingRestartTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        require_tool("haproxy", "haproxy")
        require_node()
        self.workdir = tempfile.mkdtemp(prefix="ilphttp-lb-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    @defer.inlineCallbacks
    def start_node(self, name: str, port: int) -> Any:
        """``twistd -n ilphttp`` for one node; the process once it listens."""
        config = os.path.join(self.workdir, f"{name}.json")
        with open(config, "w") as f:
            json.dump(node_config(port), f)
        node = start_twistd(
            self,
            self.workdir,
            "--config",
            config,
            "--handler",
            "tests.support.twistd:make_pid_handler",
        )
        yield node.wait_for(r"account peer: child, listening on port \d+")
        return node

    @defer.inlineCallbacks
    def stream(self, outcomes: Outcomes, source: str, send: Any) -> Any:
        """Send Prepares one after another until ``outcomes.running`` is False."""
        while outcomes.running:
            made = make_prepare(
                global_reactor().seconds(),
                expires_in=EXPIRES_IN,
                destination="test.lb.peer",
                amount=1,
                fulfillment=PREIMAGE,
            )
            try:
                reply = yield within(send(made.packet), EXPIRES_IN + 10)
            except Exception as exc:  # every failure is a lost Prepare
                reply = exc
            outcomes.record(source, reply)

    @defer.inlineCallbacks
    def wait_fulfilled_by(self, outcomes: Outcomes, pid: int, timeout: float = 30.0) -> Any:
        """Until a Fulfill came from process ``pid`` (HAProxy sends it traffic again)."""
        for _ in range(int(timeout * 10)):
            if outcomes.fulfilled(pid=pid):
                return
            yield deferLater(global_reactor(), 0.1, lambda: None)
        raise AssertionError(f"no Fulfill from the restarted node {pid} in {timeout} s")

    @defer.inlineCallbacks
    def test_every_prepare_is_fulfilled_while_each_node_restarts(self) -> Any:
        node_ports = (free_port(), free_port())
        listen = free_port()
        stats = os.path.join(self.workdir, "haproxy.sock")
        nodes: list[Twistd] = []
        for i, port in enumerate(node_ports):
            nodes.append((yield self.start_node(f"node{i + 1}", port)))
        haproxy = start_haproxy(self, haproxy_env(listen, node_ports, stats), self.workdir)
        for name in ("node1", "node2"):
            yield wait_server_status(stats, name, "UP")
        url = f"http://127.0.0.1:{listen}/"

        sender = PluginHttp(outgoing={"url": url, "static_token": TOKEN})
        yield sender.connect()
        self.addCleanup(sender.disconnect)
        js = yield start_peer(self, plugin_options(free_port(), url, TOKEN, TOKEN))

        outcomes = Outcomes()
        streams = [
            self.stream(outcomes, "ilphttp", sender.send_data) for _ in range(ILPHTTP_STREAMS)
        ]
        streams += [
            self.stream(outcomes, "js", lambda p: js.send(p, timeout=EXPIRES_IN + 5))
            for _ in range(JS_STREAMS)
        ]
        try:
            old_pids = [node.transport.pid for node in nodes]  # type: ignore[union-attr]
            for pid in old_pids:
                yield self.wait_fulfilled_by(outcomes, pid)
            for i, port in enumerate(node_ports):
                name = f"node{i + 1}"
                yield within(nodes[i].stop(), 40)
                nodes[i] = yield self.start_node(name, port)
                yield wait_server_status(stats, name, "UP")
                yield self.wait_fulfilled_by(outcomes, nodes[i].transport.pid)  # type: ignore[union-attr]
            # a little more traffic on the two new nodes
            yield deferLater(global_reactor(), 1.0, lambda: None)
        finally:
            outcomes.running = False
            yield defer.DeferredList(streams)

        unusual = [line for line in haproxy.text().splitlines() if " 200 " not in line]
        summary = (
            f"lost {len(outcomes.lost)}: {outcomes.lost[:10]}; fulfilled by (sender, pid): "
            f"{dict(outcomes.pids)}; HAProxy's log, without the 200s:\n" + "\n".join(unusual[-40:])
        )
        self.assertEqual(outcomes.lost, [], summary)
        self.assertGreater(outcomes.fulfilled("ilphttp"), 100, summary)
        self.assertGreater(outcomes.fulfilled("js"), 20, summary)
        for node in nodes:
            self.assertGreater(outcomes.fulfilled(pid=node.transport.pid), 0, summary)  # type: ignore[union-attr]
