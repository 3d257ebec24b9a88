"""Reload of ``--workers N``: the framing on the worker's stdin, the parent's reload with a
fake reactor, and real ``twistd -n ilphttp --config FILE --workers 2`` processes on SIGHUP.

The end-to-end tests tell the workers apart by the handler of
:mod:`tests.support.twistd`, which puts its process id in every Fulfill's
data; a keep-alive HTTP/1.1 connection stays with the worker that accepted
it, so a Fulfill and then a ``401`` on one connection come from one worker.
"""

from __future__ import annotations

import http.client
import json
import os
import pickle
import re
import signal
import urllib.request
from typing import Any

from twisted.internet import defer
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp import worker_process
from ilphttp.errors import ConfigError
from ilphttp.nodeconfig import parse_node
from ilphttp.nodediff import diff_nodes
from ilphttp.packet import Fulfill, deserialize
from ilphttp.reload import ConfigFile
from ilphttp.testing import make_prepare
from ilphttp.worker_reload import RELOAD_TIMEOUT
from ilphttp.worker_setup import (
    CONTROL_FD,
    MAX_FRAME,
    SETUP_LENGTH,
    FrameReader,
    Reload,
    WorkerSetup,
    answer_line,
    frame_reload,
    frame_setup,
    parse_answer,
    read_setup,
)
from ilphttp.worker_supervisor import WorkersService
from tests.support.ports import free_port
from tests.support.reactor import global_reactor
from tests.support.spawning import FakeReactor
from tests.support.twistd import PREIMAGE, Twistd, start_twistd

OLD = "worker-reload-old-token-0123456789"
NEW = "worker-reload-new-token-0123456789"
HANDLER = "tests.support.twistd:make_pid_handler"


def node_data(token: str, port: int = 0, **top: Any) -> dict[str, Any]:
    return {
        "ilpAddress": "test.workers",
        "assetCode": "XRP",
        "assetScale": 9,
        "accounts": {
            "a": {
                "relation": "peer",
                "options": {
                    "incoming": {
                        "endpoint": f"tcp:{port}:interface=127.0.0.1",
                        "staticToken": token,
                    }
                },
            }
        },
        **top,
    }


def write(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(data, str):
            f.write(data)
        else:
            json.dump(data, f)


# -- the framing ------------------------------------------------------------------------


class FramingTests(SynchronousTestCase):
    def reloads(self) -> list[Reload]:
        return [
            Reload(1, parse_node(node_data(OLD), ".", {})),
            Reload(2, parse_node(node_data(NEW), ".", {})),
        ]

    def test_in_pieces_and_together(self) -> None:
        first, second = self.reloads()
        wire = frame_reload(first) + frame_reload(second)
        reader = FrameReader()
        got: list[Reload] = []
        for i in range(len(wire)):  # one byte at a time
            got += reader.feed(wire[i : i + 1])
        self.assertEqual(got, [first, second])
        self.assertEqual(FrameReader().feed(wire), [first, second])
        incoming = got[1].node.accounts[0].options.incoming
        assert incoming is not None
        self.assertEqual(incoming.static_token, NEW)
        self.assertNotIn(NEW, repr(got[1]), "no secret in the repr")

    def test_what_cannot_be_followed(self) -> None:
        junk = pickle.dumps({"not": "a reload"})
        for wire, why in (
            (SETUP_LENGTH.pack(MAX_FRAME + 1), "a frame of"),
            (SETUP_LENGTH.pack(len(junk)) + junk, "expected a Reload, got dict"),
            (SETUP_LENGTH.pack(3) + b"\x80\x05x", "does not unpickle"),
        ):
            with self.assertRaises(ValueError) as caught:
                FrameReader().feed(wire)
            self.assertIn(why, str(caught.exception))
        # a setup on the stream after the setup is not a reload either
        setup = frame_setup(WorkerSetup(1, self.reloads()[0].node, None, ()))
        self.assertRaises(ValueError, FrameReader().feed, setup)

    def test_answers(self) -> None:
        self.assertEqual(answer_line(3, True), b"reloaded 3\n")
        self.assertEqual(answer_line(12, False), b"refused 12\n")
        for line, parsed in (
            (b"reloaded 3", (3, True)),
            (b"refused 12", (12, False)),
            (b"ready", None),
            (b"reloaded", None),
            (b"reloaded x", None),
            (b"refused -1", None),
        ):
            self.assertEqual(parse_answer(line), parsed, line)

    def test_the_parent_watch_hands_reloads_on(self) -> None:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        os.set_blocking(r, False)
        got: list[Reload] = []
        watch = worker_process._ParentWatch(r, lambda: None, got.append)
        first, second = self.reloads()
        wire = frame_reload(first) + frame_reload(second)
        os.write(w, wire[:10])
        self.assertIsNone(watch.doRead())
        self.assertEqual(got, [])
        os.write(w, wire[10:])
        for _ in range(len(wire) // 4096 + 2):
            self.assertIsNone(watch.doRead())
        self.assertEqual(got, [first, second])
        # a stream that cannot be followed ends the watch (and so the worker), logged
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        os.write(w, SETUP_LENGTH.pack(MAX_FRAME + 1))
        os.close(w)
        self.assertIs(watch.doRead(), CONNECTION_DONE)
        self.assertIn("the parent's pipe could not be read", formatEvent(logged[-1]))


# -- the parent, with a fake reactor ----------------------------------------------------


class ParentReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        write(self.path, node_data(OLD, metrics="tcp:0:interface=127.0.0.1"))
        self.config = ConfigFile(self.path, {})
        self.reactor = FakeReactor()
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.service = WorkersService(
            self.config.read(), HANDLER, 2, reactor=self.reactor, publisher=lambda e: None
        )
        self.service.config_file = self.config
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service._close)
        for proto, _, _ in self.reactor.spawned:
            proto.childDataReceived(CONTROL_FD, b"ready\n")

    def proto(self, n: int) -> Any:
        return self.reactor.spawned[n][0]

    def sent(self, n: int) -> list[Reload]:
        """The reloads written to the n-th process spawned, after its setup."""
        written = bytes(self.proto(n).transport.written)
        (length,) = SETUP_LENGTH.unpack_from(written)
        return FrameReader().feed(written[SETUP_LENGTH.size + length :])

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.logged if e.get("log_namespace") == "ilphttp.reload"]

    def outcome(self, d: defer.Deferred[Any]) -> Any:
        got: list[Any] = []
        d.addBoth(got.append)
        self.assertEqual(len(got), 1, "the reload has not finished")
        return got[0]

    def test_every_worker_gets_the_file_and_answers(self) -> None:
        write(self.path, node_data(NEW, metrics="tcp:0:interface=127.0.0.1"))
        told: list[tuple[Any, bool]] = []
        self.service.on_reloaded = lambda changes, everywhere: told.append((changes, everywhere))
        d = self.service.reload()
        self.assertTrue(self.service.reloading)
        for n in (0, 1):
            [reload] = self.sent(n)
            self.assertEqual(reload.generation, 1)
            self.assertEqual(reload.node, self.service.for_workers(self.config.read()))
            self.assertIsNone(reload.node.metrics, "the parent serves the metrics")
        self.assertEqual(self.service.generation, 0, "kept only once a worker applied it")
        self.proto(0).childDataReceived(CONTROL_FD, b"reloaded 1\n")
        self.proto(1).childDataReceived(CONTROL_FD, b"refu")
        self.proto(1).childDataReceived(CONTROL_FD, b"sed 1\n")
        result = self.outcome(d)
        self.assertEqual((result.applied, result.refused, str(result)), ((1,), (2,), "changed a"))
        self.assertEqual(told, [(result.changes, False)], "worker 2 runs the old one")
        self.assertEqual(self.service.node, self.config.read())
        self.assertEqual(self.service.generation, 1)
        self.assertFalse(self.service.reloading)
        self.assertEqual(
            self.lines(),
            [
                "reloaded: changed a; applied by workers 1",
                "workers 2 keep the configuration they run until they restart"
                " (their log lines say why)",
            ],
        )
        # a worker started from now on starts with the new configuration
        self.proto(1).processEnded(Failure(ProcessLookupError()))
        self.reactor.advance(1)
        written = bytes(self.reactor.spawned[2][0].transport.written)
        r, w = os.pipe()
        with os.fdopen(w, "wb") as f:
            f.write(written)
        setup = read_setup(r)
        os.close(r)
        incoming = setup.node.accounts[0].options.incoming
        assert incoming is not None
        self.assertEqual(incoming.static_token, NEW)
        self.assertNotIn(NEW, " ".join(self.lines()))

    def test_no_worker_applies_it(self) -> None:
        write(self.path, node_data(NEW, metrics="tcp:0:interface=127.0.0.1"))
        old = self.service.node
        d = self.service.reload()
        self.proto(0).childDataReceived(CONTROL_FD, b"refused 1\n")
        self.proto(1).processEnded(Failure(ProcessLookupError()))  # ended: no answer
        failure = self.outcome(d)
        self.assertIsInstance(failure.value, ConfigError)
        self.assertIs(self.service.node, old)
        self.assertEqual(self.service.generation, 0)
        self.assertEqual(
            self.lines(),
            [
                "reload refused, the running configuration stays: no worker applied it"
                " (workers 1, 2 refused it; their log lines say why)"
            ],
        )

    def test_a_silent_worker_times_out(self) -> None:
        write(self.path, node_data(NEW, metrics="tcp:0:interface=127.0.0.1"))
        d = self.service.reload()
        self.proto(1).childDataReceived(CONTROL_FD, b"reloaded 1\n")
        self.reactor.advance(RELOAD_TIMEOUT)
        result = self.outcome(d)
        self.assertEqual((result.applied, result.refused), ((2,), (1,)))
        self.assertIn(
            f"worker 1 (pid 1000) did not answer the reload in {RELOAD_TIMEOUT} s", self.lines()
        )
        # a late answer changes nothing
        self.proto(0).childDataReceived(CONTROL_FD, b"reloaded 1\n")

    def test_refused_in_the_parent_reaches_no_worker(self) -> None:
        moved = node_data(OLD, port=free_port(), metrics="tcp:0:interface=127.0.0.1")
        asynchronous = node_data(OLD, metrics="tcp:0:interface=127.0.0.1")
        asynchronous["accounts"]["a"]["options"]["outgoing"] = {
            "url": "http://127.0.0.1:9/ilp",
            "staticToken": NEW,
            "mode": "async",
            "callbackUrl": "http://127.0.0.1:9/callback",
        }
        for data, reason in (
            (asynchronous, 'account a: outgoing mode "async" needs its replies'),
            ("{", "is not valid JSON"),
            (moved, "accounts.a: with --workers the parent opened every listening socket"),
            (node_data(OLD, metrics="tcp:1:interface=127.0.0.1"), "metrics (the /metrics"),
            (node_data(OLD, metrics="tcp:0:interface=127.0.0.1", workers=3), "workers cannot"),
        ):
            write(self.path, data)
            failure = self.outcome(self.service.reload())
            self.assertIsInstance(failure.value, ConfigError)
            [line] = self.lines()
            self.assertIn("reload refused, the running configuration stays: ", line)
            self.assertIn(reason, line)
            self.assertNotIn("\n", line)
            self.logged.clear()
        self.assertEqual((self.sent(0), self.sent(1)), ([], []))

    def test_one_at_a_time_and_nothing_changed(self) -> None:
        write(self.path, node_data(NEW, metrics="tcp:0:interface=127.0.0.1"))
        first = self.service.reload()
        second = self.outcome(self.service.reload())
        self.assertIn("a reload is already under way", str(second.value))
        for n in (0, 1):
            self.proto(n).childDataReceived(CONTROL_FD, b"reloaded 1\n")
        self.outcome(first)
        self.logged.clear()
        result = self.outcome(self.service.reload())  # the same file again
        self.assertEqual(str(result), "nothing changed")
        self.assertEqual(self.lines(), ["reloaded: nothing changed"])
        self.assertEqual(len(self.sent(0)), 1, "nothing sent for nothing changed")

    def test_a_worker_started_meanwhile_gets_it_too(self) -> None:
        self.proto(1).processEnded(Failure(ProcessLookupError()))
        write(self.path, node_data(NEW, metrics="tcp:0:interface=127.0.0.1"))
        d = self.service.reload()  # worker 2 is between two lives
        self.reactor.advance(1)  # ...and starts with the old configuration
        late = self.reactor.spawned[2][0]
        late.childDataReceived(CONTROL_FD, b"ready\n")
        self.proto(0).childDataReceived(CONTROL_FD, b"reloaded 1\n")
        self.outcome(d)
        [reload] = self.sent(2)
        self.assertEqual(reload.generation, 1)
        late.childDataReceived(CONTROL_FD, b"reloaded 1\n")
        self.assertIn("worker 2 applied the reload too", self.lines())
        self.assertEqual(late.generation, 1)

    def test_without_a_file(self) -> None:
        self.service.config_file = None
        failure = self.outcome(self.service.reload())
        self.assertIn("not started from a config file", str(failure.value))

    def test_a_metrics_change_needs_a_restart_in_one_process_too(self) -> None:
        old = parse_node(node_data(OLD), ".", {})
        new = parse_node(node_data(OLD, metrics="tcp:0"), ".", {})
        with self.assertRaises(ConfigError) as caught:
            diff_nodes(old, new)
        self.assertIn("metrics (the /metrics listener) cannot change", str(caught.exception))


# -- real processes ---------------------------------------------------------------------


def ask(port: int, tokens: list[str]) -> list[Any]:
    """One keep-alive connection (so one worker): a Prepare with each token in turn.

    :returns: per token, the pid in the Fulfill, or the HTTP status if not 200.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        got: list[Any] = []
        for token in tokens:
            raw, _ = make_prepare(destination="test.workers.x", fulfillment=PREIMAGE)
            connection.request(
                "POST",
                "/",
                body=raw,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/octet-stream",
                },
            )
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                got.append(response.status)
                continue
            packet = deserialize(body)
            assert isinstance(packet, Fulfill), packet
            got.append(int(packet.data))
        return got
    finally:
        connection.close()


def scrape(port: int) -> float:
    """The sum of account a's fulfilled incoming packets on ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as answer:
        assert answer.status == 200
        text = answer.read().decode("utf-8")
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("ilp_packets_total{")
            and 'account="a"' in line
            and 'direction="incoming"' in line
            and 'result="fulfill"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


class TwistdWorkersReloadTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        if os.name != "posix":
            raise self.skipTest("worker processes and SIGHUP need POSIX")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    @defer.inlineCallbacks
    def start(self, *argv: str) -> Any:
        node = start_twistd(self, self.workdir, *argv)
        match = yield node.wait_for(r"all 2 workers are ready \(pids (\d+) (\d+)\)")
        pids = {int(match.group(1)), int(match.group(2))}
        self.addCleanup(self.kill, pids)
        return node, pids

    def kill(self, pids: set[int]) -> None:
        for pid in pids:  # only if a test failed half way
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def both(self, port: int, tokens: list[str], pids: set[int]) -> list[list[Any]]:
        """Connections until each worker answered one: what every connection got."""
        every: list[list[Any]] = []
        for _ in range(200):
            got = ask(port, tokens)
            every.append(got)
            if {x for answers in every for x in answers if x in pids} == pids:
                return every
        raise AssertionError(f"one worker answered every connection: {every}")

    @defer.inlineCallbacks
    def counted(self, metrics_port: int, fulfilled: int) -> Any:
        """``/metrics`` (served by the parent) counts ``fulfilled`` (soon: a worker records
        a packet as its answer goes out)."""
        for _ in range(100):
            total = scrape(metrics_port)
            if total == fulfilled:
                return
            yield deferLater(global_reactor(), 0.1, lambda: None)
        self.assertEqual(total, fulfilled, "the workers' metrics")

    @defer.inlineCallbacks
    def hangup(self, node: Twistd, pattern: str) -> Any:
        mark = len(node.text())
        assert node.transport is not None
        node.transport.signalProcess("HUP")
        yield node.wait_for(pattern, start=mark)
        return mark

    @defer.inlineCallbacks
    def test_sighup_rotates_a_token_on_every_worker(self) -> Any:
        path = os.path.join(self.workdir, "node.json")
        metrics_port = free_port()
        metrics = f"tcp:{metrics_port}:interface=127.0.0.1"
        write(path, node_data(OLD, metrics=metrics))
        node, pids = yield self.start("--config", path, "--workers", "2", "--handler", HANDLER)
        port = int((yield node.wait_for(r"account a: \S+ on port (\d+)")).group(1))
        fulfilled = 0
        for got in self.both(port, [OLD, NEW], pids):
            self.assertEqual(got, [got[0], 401])  # the new token is not known yet
            self.assertIn(got[0], pids)
            fulfilled += 1
        write(path, node_data(NEW, metrics=metrics))
        yield self.hangup(
            node, r"\[ilphttp.reload#info\] reloaded: changed a; applied by workers 1, 2"
        )
        for got in self.both(port, [NEW, OLD], pids):
            self.assertEqual(got, [got[0], 401], "the old token still works on a worker")
            self.assertIn(got[0], pids)
            fulfilled += 1
        yield self.counted(metrics_port, fulfilled)  # the metrics count on
        # a broken file: one line, no worker hears of it, the new token works on
        write(path, "{")
        mark = yield self.hangup(node, r"reload refused, the running configuration stays: .*")
        refusals = re.findall(r"reload refused.*", node.text()[mark:])
        self.assertEqual(len(refusals), 1, refusals)
        self.assertIn("is not valid JSON", refusals[0])
        # a new port for the account: refused, with the reason
        write(path, node_data(NEW, port=free_port(), metrics=metrics))
        yield self.hangup(node, r"reload refused, .*accounts\.a: with --workers the parent opened")
        for got in self.both(port, [NEW, OLD], pids):
            self.assertEqual(got, [got[0], 401])
            self.assertIn(got[0], pids)
            fulfilled += 1
        yield self.counted(metrics_port, fulfilled)
        log = node.text()
        self.assertNotRegex(log, r"worker \d \(pid \d+\) ended", "no worker died")
        self.assertEqual(node.reason, None, "the node runs")
        yield node.stop()
        log = node.text()
        self.assertNotIn("Traceback", log)
        for token in (OLD, NEW):
            self.assertNotIn(token, log, "a secret was logged")

    @defer.inlineCallbacks
    def test_sighup_never_kills_a_workers_node(self) -> Any:
        token_file = os.path.join(self.workdir, "token")
        write(token_file, OLD)
        node, pids = yield self.start(
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--incoming-token-file",
            token_file,
            "--workers",
            "2",
            "--handler",
            HANDLER,
        )
        port = int((yield node.wait_for(r"account \S+: \S+ on port (\d+)")).group(1))
        for _ in range(2):
            yield self.hangup(
                node,
                r"reload refused, the running configuration stays: "
                r"this node was not started from a config file",
            )
        self.assertEqual(node.reason, None, "SIGHUP stopped the node")
        for got in self.both(port, [OLD], pids):
            self.assertIn(got[0], pids)
        yield node.stop()
        self.assertNotRegex(node.text(), r"worker \d \(pid \d+\) ended")
