"""Workers under faults (issue 13): ``kill -9`` of one worker under load, and SIGTERM drains.

Real ``twistd ilphttp --workers 2`` processes on loopback, with a handler that
answers after :data:`~tests.support.twistd.SLOW_HANDLER_DELAY` seconds so that
packets are in flight when a worker is killed or the node is stopped.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from ilphttp.packet import Fulfill, Reject, deserialize
from ilphttp.plugin import PluginHttp
from tests.support.clients import http_agent, request
from tests.support.packets import make_prepare
from tests.support.ports import free_port
from tests.support.reactor import global_reactor, within
from tests.support.twistd import HELD_HANDLER_DELAY, PREIMAGE, start_twistd

TOKEN = "worker-faults-token"
SENDERS = 6  # concurrent senders, each with its own connection pool


def _node(path: str) -> None:
    data = {
        "ilpAddress": "test.ops",
        "assetCode": "XRP",
        "assetScale": 9,
        "accounts": {
            "bob": {
                "relation": "child",
                "options": {
                    "incoming": {"endpoint": "tcp:0:interface=127.0.0.1", "staticToken": TOKEN}
                },
            }
        },
    }
    with open(path, "w") as f:
        json.dump(data, f)


class _Load:
    """``SENDERS`` loops sending Prepares one after the other; counts what they see."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        self.in_flight = 0
        self.results: list[Any] = []  # pid (a Fulfill) or the Reject
        self.running = True
        self.loops: list[defer.Deferred[None]] = []

    def start(self) -> None:
        self.loops = [self._loop() for _ in range(SENDERS)]

    def add_sender(self) -> None:
        """One more sender, on a new connection (the workers share one socket,
        so which worker accepts a connection is up to the kernel)."""
        self.loops.append(self._loop())

    @defer.inlineCallbacks
    def until_every_worker_answered(self, pids: list[int]) -> Any:
        """Wait until each worker in ``pids`` has fulfilled a Prepare; add a sender
        every 0.5 s until then (one worker may accept every first connection)."""
        for step in range(400):
            if set(self.fulfilled()) >= set(pids):
                return
            if step % 10 == 9 and len(self.loops) < 8 * SENDERS:
                self.add_sender()
            yield _sleep(0.05)

    @defer.inlineCallbacks
    def _loop(self) -> Any:
        sender = PluginHttp(outgoing={"url": self.url, "static_token": TOKEN})
        yield sender.connect()
        try:
            while self.running:
                made = make_prepare(
                    global_reactor().seconds(), 10, destination="test.ops.x", fulfillment=PREIMAGE
                )
                self.in_flight += 1
                try:
                    reply = deserialize((yield within(sender.send_data(made.packet), 15)))
                finally:
                    self.in_flight -= 1
                self.results.append(int(reply.data) if isinstance(reply, Fulfill) else reply)
        finally:
            yield sender.disconnect()

    def stop(self) -> defer.Deferred[Any]:
        self.running = False
        return defer.gatherResults(self.loops)

    def fulfilled(self) -> list[int]:
        return [r for r in self.results if isinstance(r, int)]

    def rejected(self) -> list[Reject]:
        return [r for r in self.results if not isinstance(r, int)]


def _refused(port: int) -> bool:
    """Whether a new connection to ``port`` is refused now (one that is made is closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError as exc:
            return exc.errno == errno.ECONNREFUSED
        return False


def _sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(global_reactor(), seconds, lambda: None)


class WorkerFaultTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="ilphttp-workers-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.config = os.path.join(self.workdir, "node.json")
        _node(self.config)

    @defer.inlineCallbacks
    def start(self, handler: str = "tests.support.twistd:make_slow_pid_handler", *more: str) -> Any:
        node = start_twistd(
            self,
            self.workdir,
            "--config",
            self.config,
            "--workers",
            "2",
            "--handler",
            handler,
            *more,
        )
        ready = yield node.wait_for(r"all 2 workers are ready \(pids ([\d, ]+)\)")
        port = int((yield node.wait_for(r"account bob: \S+ on port (\d+)")).group(1))
        pids = [int(p) for p in ready.group(1).replace(",", " ").split()]
        return node, port, pids

    @defer.inlineCallbacks
    def test_kill_9_of_one_worker_under_load(self) -> Any:
        node, port, pids = yield self.start()
        load = _Load(port)
        load.start()
        self.addCleanup(load.stop)  # a failed assertion leaves no sender running
        yield load.until_every_worker_answered(pids)
        self.assertEqual(set(load.fulfilled()), set(pids))
        victim = pids[0]
        in_flight = load.in_flight  # on both workers: at least those on the victim
        os.kill(victim, 9)
        restarted = yield node.wait_for(
            rf"worker \d \(pid {victim}\) ended \(killed by SIGKILL\); starting it again"
        )
        self.assertIsNotNone(restarted)
        new_pid = int((yield node.wait_for(r"worker \d \(pid (\d+)\) is ready", 45)).group(1))
        # Keep the load on for a while after the restart: nothing else may fail.
        served_before = len(load.fulfilled())
        for _ in range(200):
            if len(load.fulfilled()) > served_before + 4 * SENDERS:
                break
            yield _sleep(0.05)
        yield within(load.stop(), 30)
        rejected = load.rejected()
        self.assertLessEqual(len(rejected), in_flight, rejected)
        for reject in rejected:
            self.assertEqual(reject.code, "T01", reject)  # the connection died with the worker
        self.assertIn(pids[1], load.fulfilled())  # the other kept serving
        self.assertNotEqual(new_pid, victim)
        yield node.stop()

    @defer.inlineCallbacks
    def test_sigterm_drains_every_worker(self) -> Any:
        node, port, pids = yield self.start()
        load = _Load(port)
        load.start()
        self.addCleanup(load.stop)  # a failed assertion leaves no sender running
        yield load.until_every_worker_answered(pids)
        self.assertGreater(load.in_flight, 0)
        stopping = node.stop()  # SIGTERM to the supervisor, forwarded to each worker
        yield within(node.wait_for(r"stopping 2 workers"), 10)
        load.running = False
        yield within(load.stop(), 30)
        yield within(stopping, 30)
        # The packets in flight at SIGTERM were answered: not one was lost.
        self.assertEqual(load.rejected(), [])
        self.assertEqual(set(load.fulfilled()), set(pids))

    @defer.inlineCallbacks
    def test_sigterm_refuses_new_connections_while_the_workers_drain(self) -> Any:
        # A balancer retries a refused connection elsewhere (haproxy.cfg,
        # docs/deployment.rst); one the kernel accepted for nobody is reset later.
        metrics_port = free_port()
        node, port, pids = yield self.start(
            "tests.support.twistd:make_held_pid_handler",
            "--metrics",
            f"tcp:{metrics_port}:interface=127.0.0.1",
        )
        sender = PluginHttp(outgoing={"url": f"http://127.0.0.1:{port}/", "static_token": TOKEN})
        yield sender.connect()
        self.addCleanup(sender.disconnect)
        made = make_prepare(
            global_reactor().seconds(), 60, destination="test.ops.x", fulfillment=PREIMAGE
        )
        answered = within(sender.send_data(made.packet), 60)
        yield node.wait_for(r"holding a Prepare")
        held = global_reactor().seconds()  # it is answered HELD_HANDLER_DELAY s from here
        self.assertFalse(_refused(port))
        stopping = node.stop()  # SIGTERM to the supervisor, forwarded to each worker
        yield within(node.wait_for(r"stopping 2 workers"), 10)
        while not _refused(port):
            yield _sleep(0.05)
            waited = global_reactor().seconds() - held
            self.assertLess(waited, HELD_HANDLER_DELAY / 2, "new connections are still accepted")
        self.assertFalse(answered.called, "refused only once the drain was over")
        # /metrics is still served while the workers drain (docs/monitoring.rst)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        scraped = yield within(request(http_agent(self), url, method=b"GET"), 10)
        self.assertEqual(scraped.code, 200)
        self.assertIn(b"ilp_packets_in_flight", scraped.body)
        reply = deserialize((yield answered))
        self.assertIsInstance(reply, Fulfill)  # the packet in flight was answered
        self.assertIn(int(reply.data), pids)
        yield within(stopping, 60)
