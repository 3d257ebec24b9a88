"""What a reload does for the operator: a removed account's metrics, TLS files whose
content changed, the log level (ilphttp.reload with ilphttp.node_metrics, ilphttp.tls_files,
ilphttp.node_logs) on real loopback sockets."""

from __future__ import annotations

import io
import os
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.link_ops import LinkOps
from ilphttp.logformat import text_observer
from ilphttp.metrics import IlpMetrics
from ilphttp.node_logs import LogFormatService
from ilphttp.packet import Fulfill, deserialize
from tests.support.reload import TOKENS, ReloadCase, account, node_data, prepare

#: bob's own listener: a description no other listener has, so its ilp_connections
#: series is his alone
BOB_LISTEN = "tcp:0:interface=127.0.0.1:backlog=49"


def _accounts_labelled(registry: CollectorRegistry, name: str) -> list[str]:
    """The families with a sample labelled ``account=name``."""
    return sorted(
        {
            metric.name
            for metric in registry.collect()
            for sample in metric.samples
            if sample.labels.get("account") == name
        }
    )


class ForgetTests(SynchronousTestCase):
    """IlpMetrics.forget_account/forget_listener on a registry of their own."""

    def test_one_account_goes_the_others_stay(self) -> None:
        metrics = IlpMetrics()
        for name in ("alice", "bob"):
            link = metrics.link(name)
            timing = link.packet_started("incoming", 1.0)
            link.packet_finished(timing, "reject", "F02", 5, 1.5)
            link.http_status(200)
            link.auth_failure()
        metrics.set_connections("tcp:1", 2)
        metrics.set_connections("tcp:2", 1)
        self.assertTrue(metrics.forget_account("bob"))
        self.assertTrue(metrics.forget_listener("tcp:1"))
        self.assertEqual(_accounts_labelled(metrics.registry, "bob"), [])
        self.assertEqual(
            _accounts_labelled(metrics.registry, "alice"),
            [
                "ilp_amount",
                "ilp_auth_failures",
                "ilp_http_requests",
                "ilp_packet_duration_seconds",
                "ilp_packets",
                "ilp_packets_in_flight",
            ],
        )
        get = metrics.registry.get_sample_value
        self.assertIsNone(get("ilp_connections", {"listener": "tcp:1"}))
        self.assertEqual(get("ilp_connections", {"listener": "tcp:2"}), 1.0)
        # a name seen again starts at zero
        metrics.link("bob").auth_failure()
        self.assertEqual(get("ilp_auth_failures_total", {"account": "bob"}), 1.0)

    def test_multiprocess_mode_removes_nothing(self) -> None:
        metrics = IlpMetrics()
        metrics.link("bob").auth_failure()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = "/nonexistent"
        self.addCleanup(os.environ.pop, "PROMETHEUS_MULTIPROC_DIR")
        self.assertFalse(metrics.forget_account("bob"))
        self.assertFalse(metrics.forget_listener("tcp:1"))
        self.assertEqual(
            metrics.registry.get_sample_value("ilp_auth_failures_total", {"account": "bob"}), 1.0
        )


class RemovedAccountMetricsTests(ReloadCase):
    def bob_series(self, registry: CollectorRegistry) -> list[str]:
        return _accounts_labelled(registry, "bob")

    @defer.inlineCallbacks
    def test_series_go_once_drained(self) -> Any:
        accounts = self.accounts()
        accounts["bob"]["options"]["incoming"]["endpoint"] = BOB_LISTEN
        service = self.start(accounts)
        registry = service.registry
        assert registry is not None
        alice = self.url(service, "alice")
        arrived = self.bob.resource.next_request()
        in_flight = self.send(alice, TOKENS["a1"], prepare("test.hub.bob.one"))
        yield arrived
        yield deferLater(reactor, 0, lambda: None)  # the peer holds it (after the arrival)
        self.assertEqual(len(self.bob_peer.held), 1)
        self.assertIsNotNone(registry.get_sample_value("ilp_connections", {"listener": BOB_LISTEN}))

        remaining = self.accounts()
        del remaining["bob"]
        self.write(remaining)
        summary = yield service.reload()
        self.assertEqual(summary.changes.removed, ("bob",))
        # still draining: what bob has in flight is still counted
        self.assertNoResult(summary.drained)
        in_flight_now = registry.get_sample_value(
            "ilp_packets_in_flight", {"account": "bob", "direction": "outgoing"}
        )
        self.assertEqual(in_flight_now, 1.0)
        self.bob_peer.release()
        result = yield in_flight
        self.assertIsInstance(deserialize(result.body), Fulfill)
        yield summary.drained
        self.assertEqual(self.bob_series(registry), [])
        self.assertIsNone(registry.get_sample_value("ilp_connections", {"listener": BOB_LISTEN}))
        # alice's stay, with what she counted
        self.assertEqual(
            registry.get_sample_value(
                "ilp_packets_total",
                {"account": "alice", "direction": "incoming", "result": "fulfill", "code": ""},
            ),
            1.0,
        )

    @defer.inlineCallbacks
    def test_added_again_before_drained_keeps_them(self) -> Any:
        service = self.start(self.accounts())
        registry = service.registry
        assert registry is not None
        alice = self.url(service, "alice")
        arrived = self.bob.resource.next_request()
        in_flight = self.send(alice, TOKENS["a1"], prepare("test.hub.bob.one"))
        yield arrived
        yield deferLater(reactor, 0, lambda: None)  # the peer holds it (after the arrival)
        self.assertEqual(len(self.bob_peer.held), 1)
        remaining = self.accounts()
        del remaining["bob"]
        self.write(remaining)
        removed = yield service.reload()
        self.write(self.accounts(carol=account(token=TOKENS["c1"])))
        added = yield service.reload()
        self.assertEqual(added.changes.added, ("bob", "carol"))
        self.bob_peer.release()
        first = yield in_flight
        self.assertIsInstance(deserialize(first.body), Fulfill)
        yield removed.drained
        # the bob of now records into series that are still served
        self.assertIn("ilp_packets", self.bob_series(registry))
        self.bob_peer.hold = False
        yield self.send(alice, TOKENS["a1"], prepare("test.hub.bob.two"))
        self.assertEqual(
            registry.get_sample_value(
                "ilp_packets_total",
                {"account": "bob", "direction": "outgoing", "result": "fulfill", "code": ""},
            ),
            2.0,
        )


class WorkersHideTests(SynchronousTestCase):
    """--workers N: the parent hides a removed account's samples (the workers'
    multiprocess files keep them)."""

    def test_hidden_once_every_worker_applied_it(self) -> None:
        from ilphttp.nodeconfig import parse_node
        from ilphttp.nodediff import NodeChanges
        from ilphttp.worker_metrics import HidingCollector, WorkerMetrics
        from ilphttp.worker_supervisor import WorkersService
        from tests.support.spawning import FakeReactor

        data = node_data({"alice": account("peer", token=TOKENS["a1"])})
        workers = WorkersService(parse_node(data, ".", {}), None, 2, reactor=FakeReactor())
        parent = WorkerMetrics("tcp:0:interface=127.0.0.1", workers)
        self.addCleanup(parent._remove)
        # the workers' sum, here from a registry of this process
        sums = IlpMetrics()
        for name in ("alice", "bob"):
            sums.link(name).auth_failure()
        parent.collector = HidingCollector(sums.registry)
        assert workers.on_reloaded is not None

        def shown() -> list[str]:
            return sorted(
                {
                    sample.labels["account"]
                    for metric in parent.collector.collect()
                    for sample in metric.samples
                    if "account" in sample.labels
                }
            )

        self.assertEqual(shown(), ["alice", "bob"])
        workers.on_reloaded(NodeChanges(removed=("bob",)), False)
        self.assertEqual(shown(), ["alice", "bob"], "a worker that kept it still serves bob")
        workers.on_reloaded(NodeChanges(removed=("bob",)), True)
        self.assertEqual(shown(), ["alice"])
        workers.on_reloaded(NodeChanges(added=("bob",)), False)
        self.assertEqual(shown(), ["alice", "bob"], "bob is back: his counters go on")


class LogSettingsTests(ReloadCase):
    """``logLevel`` takes effect on reload; ``logFormat`` stays, and says so."""

    def lines(self, words: str) -> list[str]:
        return [text for e in self.logs.events if words in (text := formatEvent(e))]

    @defer.inlineCallbacks
    def test_log_level_and_format(self) -> Any:
        self.addCleanup(setattr, LinkOps, "log_packets", LinkOps.log_packets)
        service = self.start(self.accounts())
        self.assertFalse(LinkOps.log_packets)
        out = io.StringIO()
        LogFormatService(service, text_observer(out, LogLevel.info))  # as --log-format text does

        def debug_line(text: str) -> None:
            observer = service.parent.observer  # type: ignore[union-attr]
            observer({"log_level": LogLevel.debug, "log_namespace": "t", "log_format": text})

        debug_line("before the reload")
        self.write(self.accounts(), logLevel="debug")
        summary = yield service.reload()
        self.assertEqual(str(summary), "logLevel debug")
        self.assertEqual(service.node.log_level, "debug")
        self.assertTrue(LinkOps.log_packets)
        debug_line("after the reload")
        self.assertNotIn("before the reload", out.getvalue())
        self.assertIn("after the reload", out.getvalue())
        # packets are logged now
        alice = self.url(service, "alice")
        yield self.send(alice, TOKENS["a1"], prepare("test.nowhere.x"))
        self.assertTrue(any(e.get("event") == "packet" for e in self.logs.events))

        # logFormat cannot change: one warning per reload, the rest applies
        self.write(self.accounts(a="a2"), logLevel="debug", logFormat="json")
        summary = yield service.reload()
        self.assertEqual(str(summary), "changed alice")
        self.assertIsNone(service.node.log_format)
        [line] = self.lines("logFormat stays")
        self.assertEqual(
            line,
            "logFormat stays twistd's own until a restart (the file asks for json): the log"
            " observer is chosen when the node starts",
        )
        self.write(self.accounts(a="a2"), logFormat="json")
        summary = yield service.reload()
        self.assertEqual(str(summary), "logLevel info")
        self.assertEqual(len(self.lines("logFormat stays")), 2)
        self.assertFalse(LinkOps.log_packets)
        debug_line("back at info")
        self.assertNotIn("back at info", out.getvalue())
