"""Reload without a restart: ilphttp.nodediff (pure), ilphttp.reload on real loopback sockets,
and ``twistd -n ilphttp --config`` receiving SIGHUP."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp.errors import OptionError
from ilphttp.nodeconfig import parse_node
from ilphttp.nodediff import diff_nodes
from ilphttp.packet import Fulfill, Reject, deserialize
from ilphttp.reload import DoorSwitch, ReloadOnHangup
from tests.support.clients import http_agent, request
from tests.support.fakes import CaptureServer
from tests.support.reload import (
    TOKENS,
    Holding,
    ReloadCase,
    account,
    node_data,
    prepare,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the pure diff --------------------------------------------------------------------------


class DiffTests(SynchronousTestCase):
    def node(self, accounts: dict[str, Any], **top: Any) -> Any:
        return parse_node(node_data(accounts, **top), ".", {})

    def test_added_removed_changed(self) -> None:
        old = self.node(
            {
                "a": account("peer", token=TOKENS["a1"]),
                "b": account(token=TOKENS["b1"], endpoint="tcp:9001"),
                "c": account(token=TOKENS["c1"], endpoint="tcp:9002"),
            }
        )
        new = self.node(
            {
                "a": account("peer", token=TOKENS["a2"]),
                "b": account(token=TOKENS["b1"], endpoint="tcp:9003"),
                "d": account(token=TOKENS["c1"], endpoint="tcp:9002"),
            }
        )
        changes = diff_nodes(old, new)
        self.assertEqual(changes.added, ("d",))
        self.assertEqual(changes.removed, ("c",))
        self.assertEqual(changes.changed, ("a", "b"))
        self.assertEqual(changes.moved, ("b",))
        self.assertTrue(changes.routing)
        self.assertEqual(
            changes.summary(),
            "added d; removed c; changed a, b; new listener for b; routing changed",
        )
        self.assertTrue(diff_nodes(old, old).empty)
        self.assertEqual(diff_nodes(old, old).summary(), "nothing changed")

    def test_routes_alone_are_a_routing_change(self) -> None:
        accounts = {"a": account("peer", token=TOKENS["a1"]), "b": account(token=TOKENS["b1"])}
        old = self.node(accounts)
        new = self.node(accounts, routes=[{"targetPrefix": "g.elsewhere", "peerId": "a"}])
        changes = diff_nodes(old, new)
        self.assertEqual((changes.added, changes.removed, changes.changed), ((), (), ()))
        self.assertTrue(changes.routing)

    def test_what_cannot_change(self) -> None:
        accounts = {"a": account("peer", token=TOKENS["a1"]), "b": account(token=TOKENS["b1"])}
        shared = {"a": account("peer", token=TOKENS["a1"], endpoint=None)}
        old = self.node(accounts)
        cases = [
            (self.node(accounts, ilpAddress="test.other"), "ilpAddress cannot change"),
            (self.node(accounts, assetScale=6), "assetScale cannot change"),
            (self.node(accounts, workers=2), "workers cannot change"),
            (self.node({**accounts, **shared}, listen="tcp:9009"), "listen (the node's own"),
        ]
        for new, words in cases:
            with self.assertRaises(OptionError) as caught:
                diff_nodes(old, new)
            self.assertIn(words, str(caught.exception))
            self.assertIn("restart", str(caught.exception))

    def test_workers_keep_their_sockets(self) -> None:
        old = self.node(
            {"a": account("peer", token=TOKENS["a1"]), "b": account(token=TOKENS["b1"])}
        )
        new = self.node({"a": account("peer", token=TOKENS["a2"])})
        # removing b, which has its own port: refused with workers, fine without
        self.assertEqual(diff_nodes(old, new).removed, ("b",))
        with self.assertRaises(OptionError) as caught:
            diff_nodes(old, new, listeners_fixed=True)
        self.assertIn("accounts.b: with --workers", str(caught.exception))
        # a token change on the same port is fine with workers too
        same = self.node(
            {"a": account("peer", token=TOKENS["a2"]), "b": account(token=TOKENS["b1"])}
        )
        self.assertEqual(diff_nodes(old, same, listeners_fixed=True).changed, ("a",))


class DoorSwitchTests(SynchronousTestCase):
    def test_without_a_door_it_is_starting(self) -> None:
        answer = DoorSwitch().answer(b"POST", b"/", lambda name: None, b"", lambda: None)
        assert not isinstance(answer, defer.Deferred)
        self.assertEqual(answer.status, 503)


# -- a running node on loopback ----------------------------------------------------------------


class ReloadTests(ReloadCase):
    """A node from a file on 127.0.0.1, its file rewritten, ``NodeService.reload()``."""

    @defer.inlineCallbacks
    def test_token_rotation_with_a_packet_in_flight(self) -> Any:
        service = self.start(self.accounts())
        alice = self.url(service, "alice")
        old_alice, old_bob = service.plugins["alice"], service.plugins["bob"]
        arrived = self.bob.resource.next_request()
        in_flight = self.send(alice, TOKENS["a1"], prepare("test.hub.bob.one"))
        captured = yield arrived
        self.assertEqual(captured.header(b"authorization"), b"Bearer " + TOKENS["b1"].encode())

        self.write(self.accounts(a="a2", b="b2"))
        summary = yield service.reload()
        self.assertEqual(summary.changes.changed, ("alice", "bob"))
        self.assertEqual(str(summary), "changed alice, bob")
        self.assertIsNot(service.plugins["alice"], old_alice)
        # the same port, taken over, not reopened
        self.assertEqual(self.url(service, "alice"), alice)
        self.assertNoResult(summary.drained)

        # the packet in flight finishes on the old plugins
        self.bob_peer.hold = False
        self.bob_peer.release()
        result = yield in_flight
        self.assertEqual(result.code, 200)
        self.assertIsInstance(deserialize(result.body), Fulfill)
        yield summary.drained
        self.assertFalse(old_alice.is_connected() or old_bob.is_connected())

        # the old token is refused, on the kept-alive connection too; the new one is served
        refused = yield self.send(alice, TOKENS["a1"], prepare("test.hub.bob.two"))
        self.assertEqual(refused.code, 401)
        served = yield self.send(alice, TOKENS["a2"], prepare("test.hub.bob.three"))
        self.assertEqual(served.code, 200)
        self.assertIsInstance(deserialize(served.body), Fulfill)
        # bob's new outgoing token is on what it sends now
        self.assertEqual(
            self.bob.requests[-1].header(b"authorization"), b"Bearer " + TOKENS["b2"].encode()
        )
        self.assertTrue(any("reloaded: changed alice, bob" in _text(e) for e in self.logs.events))
        self.assertFalse(any(t in _text(e) for e in self.logs.events for t in TOKENS.values()))

    @defer.inlineCallbacks
    def test_the_summary_line_comes_before_the_drained_ones(self) -> Any:
        # Nothing in flight: the old links drain at once, still after the summary.
        service = self.start(self.accounts())
        mark = len(self.logs.events)
        accounts = self.accounts(a="a2")
        del accounts["bob"]
        self.write(accounts)
        summary = yield service.reload()
        yield summary.drained
        lines = [_text(e) for e in self.logs.events[mark:]]
        summary_line, *drained = [t for t in lines if "reloaded:" in t or "drained" in t]
        self.assertEqual(summary_line, "reloaded: removed bob; changed alice; routing changed")
        self.assertEqual(
            sorted(drained),
            ["account alice: the previous link drained", "account bob: the previous link drained"],
        )

    @defer.inlineCallbacks
    def test_metrics_go_on_after_a_reload(self) -> Any:
        """A changed account's new plugin records into the node's registry: its
        series continue (not reset, not lost in a registry nobody serves)."""
        service = self.start(self.accounts())
        registry = service.registry
        assert registry is not None
        series = {"account": "alice", "direction": "incoming", "result": "reject", "code": "F02"}

        def count() -> float | None:
            return registry.get_sample_value("ilp_packets_total", series)

        alice = self.url(service, "alice")
        for expected in (1.0, 2.0):
            answer = yield self.send(alice, TOKENS["a1"], prepare("test.nowhere.x"))
            self.assertEqual(deserialize(answer.body).code, "F02")
            self.assertEqual(count(), expected)
        self.write(self.accounts(a="a2"))
        summary = yield service.reload()
        self.assertEqual(summary.changes.changed, ("alice",))
        self.assertIs(service.plugins["alice"].registry, registry)
        answer = yield self.send(alice, TOKENS["a2"], prepare("test.nowhere.y"))
        self.assertEqual(deserialize(answer.body).code, "F02")
        self.assertEqual(count(), 3.0)
        # an added account's series are there from the start, in the same registry
        self.write(self.accounts(a="a2", carol=account(token=TOKENS["c1"])))
        yield service.reload()
        self.assertEqual(
            registry.get_sample_value(
                "ilp_packets_total",
                {"account": "carol", "direction": "incoming", "result": "fulfill", "code": ""},
            ),
            0.0,
        )

    @defer.inlineCallbacks
    def test_removed_account_drains(self) -> Any:
        service = self.start(self.accounts())
        alice, bob = self.url(service, "alice"), self.url(service, "bob")
        arrived = self.bob.resource.next_request()
        in_flight = self.send(alice, TOKENS["a1"], prepare("test.hub.bob.one"))
        yield arrived

        accounts = self.accounts()
        del accounts["bob"]
        self.write(accounts)
        summary = yield service.reload()
        self.assertEqual(summary.changes.removed, ("bob",))
        self.assertNotIn("bob", service.plugins)
        # no route to bob any more: the router's usual Reject, at once
        after = yield self.send(alice, TOKENS["a1"], prepare("test.hub.bob.two"))
        reject = deserialize(after.body)
        assert isinstance(reject, Reject)
        self.assertEqual(reject.code, "F02")
        # bob's port is closed
        with self.assertRaises(ConnectionRefusedError):
            yield self.send(bob, TOKENS["b1"], prepare("test.hub.alice"))
        # what bob had in flight finishes
        self.assertNoResult(summary.drained)
        self.bob_peer.release()
        result = yield in_flight
        self.assertIsInstance(deserialize(result.body), Fulfill)
        yield summary.drained

    @defer.inlineCallbacks
    def test_added_account_is_routed(self) -> Any:
        service = self.start(self.accounts())
        carol_peer = yield CaptureServer(self).start()
        holding = Holding()
        holding.hold = False
        carol_peer.resource.responder = holding
        self.write(self.accounts(carol=account(token=TOKENS["c1"], url=carol_peer.url())))
        summary = yield service.reload()
        self.assertEqual(summary.changes.added, ("carol",))
        # alice -> carol, through the router
        result = yield self.send(
            self.url(service, "alice"), TOKENS["a1"], prepare("test.hub.carol.x")
        )
        self.assertIsInstance(deserialize(result.body), Fulfill)
        self.assertEqual(len(carol_peer.requests), 1)
        # carol's own new port takes her token
        self.bob_peer.hold = False
        result = yield self.send(
            self.url(service, "carol"), TOKENS["c1"], prepare("test.hub.bob.y")
        )
        self.assertEqual(result.code, 200)
        self.assertIsInstance(deserialize(result.body), Fulfill)  # carol -> bob

    @defer.inlineCallbacks
    def test_invalid_config_keeps_the_old_one(self) -> Any:
        service = self.start(self.accounts())
        before = service.node
        busy = self.bob.port.getHost().port  # a port in use
        bad: list[tuple[Any, str]] = [
            ("{not json", "is not valid JSON"),
            (node_data(self.accounts(), colour="blue"), "colour"),
            (node_data(self.accounts(), ilpAddress="test.else"), "ilpAddress cannot change"),
            (
                node_data(self.accounts(carol=account(token=TOKENS["c1"], endpoint=f"tcp:{busy}"))),
                "account carol",
            ),
            (
                node_data(self.accounts(carol=account(token=TOKENS["c1"], url="not a url"))),
                "accounts.carol",
            ),
            (  # two accounts on one port: the file's error, before anything is bound
                node_data(
                    self.accounts(
                        carol=account(token=TOKENS["c1"], endpoint=f"tcp:{busy}"),
                        dave=account(token=TOKENS["c1"] + "d", endpoint=f"tcp:{busy}"),
                    )
                ),
                f"accounts.carol.options.incoming.endpoint 'tcp:{busy}' and"
                f" accounts.dave.options.incoming.endpoint 'tcp:{busy}' would both listen"
                f" on port {busy}",
            ),
        ]
        for content, words in bad:
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(content if isinstance(content, str) else json.dumps(content))
            mark = len(self.logs.events)
            [failure] = yield service.reload().addCallbacks(lambda _: [None], lambda f: [f])
            assert isinstance(failure, Failure)
            failure.trap(OptionError)
            self.assertIn(words, str(failure.value))
            [line] = [e for e in self.logs.errors() if self.logs.events.index(e) >= mark]
            text = _text(line)
            self.assertIn("reload refused, the running configuration stays", text)
            self.assertIn(words, text)
            self.assertNotIn("\n", text)
            self.assertIs(service.node, before)
            self.assertEqual(sorted(service.plugins), ["alice", "bob"])
            self.bob_peer.hold = False
            result = yield self.send(
                self.url(service, "alice"), TOKENS["a1"], prepare("test.hub.bob.z")
            )
            self.assertIsInstance(deserialize(result.body), Fulfill)

    @defer.inlineCallbacks
    def test_sighup(self) -> Any:
        if not hasattr(signal, "SIGHUP"):
            raise self.skipTest("no SIGHUP here")
        reloads: list[defer.Deferred[Any]] = []

        class Target:
            def reload(self) -> defer.Deferred[Any]:
                d: defer.Deferred[Any] = defer.fail(OptionError("refused, and logged"))
                reloads.append(d)
                return d

        hangup = ReloadOnHangup(Target())
        hangup.startService()
        self.addCleanup(hangup.stopService)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(50):
            if reloads:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(reloads), 1)
        hangup.stopService()
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), hangup)


def _text(event: dict[str, Any]) -> str:
    from twisted.logger import formatEvent

    return formatEvent(event)


# -- twistd -n ilphttp --config, and SIGHUP ---------------------------------------------------

TWISTD = "from twisted.scripts.twistd import run; run()"


class _Twistd(ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.done = False

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.done = True
        self.ended.callback(None)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def wait_for(self, pattern: str, start: int = 0, timeout: float = 30.0) -> Any:
        for _ in range(int(timeout * 10)):
            match = re.compile(pattern).search(self.text(), start)
            if match is not None:
                return match
            if self.done:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"{pattern!r} never logged; the log:\n{self.text()[-4000:]}")


class TwistdReloadTests(TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_sighup_rotates_a_token(self) -> Any:
        if os.name != "posix":
            raise self.skipTest("SIGHUP is POSIX")
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        path = os.path.join(workdir, "node.json")
        bob = yield CaptureServer(self).start()
        holding = Holding()
        bob.resource.responder = holding

        def write(token: str) -> None:
            accounts = {
                "alice": account("peer", token=token),
                "bob": account(url=bob.url(), token=TOKENS["b1"]),
            }
            with open(path, "w", encoding="utf-8") as f:
                json.dump(node_data(accounts), f)

        write(TOKENS["a1"])
        process = _Twistd()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "ilphttp", "--config", path]
        transport = reactor.spawnProcess(process, sys.executable, argv, env=env, path=workdir)  # type: ignore[attr-defined]

        def kill() -> Any:
            if not process.done:
                transport.signalProcess("KILL")
            return process.ended

        self.addCleanup(kill)
        match = yield process.wait_for(r"account alice: peer, listening on port (\d+)")
        url = f"http://127.0.0.1:{match.group(1)}/"
        agent = http_agent(self)

        def send(token: str, destination: str) -> defer.Deferred[Any]:
            made = prepare(destination)
            return request(agent, url, made.packet, {b"authorization": b"Bearer " + token.encode()})

        arrived = bob.resource.next_request()
        in_flight = send(TOKENS["a1"], "test.hub.bob.held")
        yield arrived
        write(TOKENS["a2"])
        mark = len(process.text())
        transport.signalProcess("HUP")
        yield process.wait_for(r"reloaded: changed alice", start=mark)
        holding.hold = False
        holding.release()
        held = yield in_flight
        self.assertIsInstance(deserialize(held.body), Fulfill)  # nothing in flight lost
        old = yield send(TOKENS["a1"], "test.hub.bob.old")
        self.assertEqual(old.code, 401)
        new = yield send(TOKENS["a2"], "test.hub.bob.new")
        self.assertIsInstance(deserialize(new.body), Fulfill)
        # a broken file: one line, and the node goes on with the last good one
        with open(path, "w", encoding="utf-8") as f:
            f.write("{")
        mark = len(process.text())
        transport.signalProcess("HUP")
        yield process.wait_for(
            r"reload refused, the running configuration stays: .*not valid JSON", start=mark
        )
        again = yield send(TOKENS["a2"], "test.hub.bob.again")
        self.assertIsInstance(deserialize(again.body), Fulfill)
        transport.signalProcess("TERM")
        yield process.ended
        log = process.text()
        self.assertNotIn("Traceback", log)
        for token in TOKENS.values():
            self.assertNotIn(token, log)
