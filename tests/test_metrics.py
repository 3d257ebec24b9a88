"""Prometheus metrics: what a link records, read back; the exposition and example rules
checked by promtool; the /metrics resource over a real socket."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from ilphttp.metrics import DURATION_BUCKETS, IlpMetrics
from tests.support.clients import http_agent, request
from tests.support.prometheus import promtool
from tests.support.reactor import global_reactor, within

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAMILIES = {
    # name: (type, labels)
    "ilp_packets": ("counter", {"account", "direction", "result", "code"}),
    "ilp_packet_duration_seconds": ("histogram", {"account", "direction"}),
    "ilp_amount": ("counter", {"account", "direction", "result"}),
    "ilp_http_requests": ("counter", {"account", "status"}),
    "ilp_packets_in_flight": ("gauge", {"account", "direction"}),
    "ilp_connections": ("gauge", {"listener"}),
    "ilp_auth_failures": ("counter", {"account"}),
}


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def _traffic(metrics: IlpMetrics) -> None:
    """Some packets both ways on two accounts, as a plugin would record them."""
    bob, carl = metrics.link("bob"), metrics.link("carl")
    t = bob.packet_started("incoming", 10.0)
    bob.packet_finished(t, "fulfill", "", 100, 10.003)
    t = bob.packet_started("incoming", 11.0)
    bob.packet_finished(t, "reject", "T05", 7, 11.0001)
    t = bob.packet_started("incoming", 12.0)
    bob.packet_finished(t, "reject", "T05", 8, 12.2)
    t = carl.packet_started("outgoing", 12.0)
    carl.packet_finished(t, "reject", "T01", 50, 12.5)
    carl.packet_started("outgoing", 13.0)  # still in flight
    bob.http_status(200)
    bob.http_status(200)
    bob.http_status(401)
    bob.auth_failure()
    metrics.set_connections("tcp:8000:interface=127.0.0.1", 4)


class RecordingTests(SynchronousTestCase):
    def test_families_names_types_labels(self) -> None:
        metrics = IlpMetrics()
        _traffic(metrics)
        found = {m.name: (m.type, m.samples) for m in metrics.registry.collect()}
        self.assertEqual(set(found), set(FAMILIES))
        for name, (kind, labels) in FAMILIES.items():
            got_kind, samples = found[name]
            self.assertEqual(got_kind, kind, name)
            for sample in samples:
                self.assertEqual(set(sample.labels) - {"le"}, labels, sample.name)

    def test_values_read_back(self) -> None:
        metrics = IlpMetrics()
        _traffic(metrics)
        r = metrics.registry
        packets = "ilp_packets_total"
        self.assertEqual(
            _value(r, packets, account="bob", direction="incoming", result="fulfill", code=""),
            1,
        )
        self.assertEqual(
            _value(r, packets, account="bob", direction="incoming", result="reject", code="T05"),
            2,
        )
        self.assertEqual(
            _value(r, packets, account="carl", direction="outgoing", result="reject", code="T01"),
            1,
        )
        amount = "ilp_amount_total"
        self.assertEqual(
            _value(r, amount, account="bob", direction="incoming", result="fulfill"), 100
        )
        self.assertEqual(
            _value(r, amount, account="bob", direction="incoming", result="reject"), 15
        )
        self.assertEqual(
            _value(r, amount, account="carl", direction="outgoing", result="fulfill"), 0
        )
        duration = "ilp_packet_duration_seconds"
        self.assertEqual(_value(r, duration + "_count", account="bob", direction="incoming"), 3)
        self.assertAlmostEqual(
            _value(r, duration + "_sum", account="bob", direction="incoming") or 0, 0.2031, 6
        )
        self.assertEqual(
            _value(r, duration + "_bucket", account="bob", direction="incoming", le="0.005"), 2
        )
        self.assertEqual(
            _value(r, duration + "_bucket", account="bob", direction="incoming", le="0.0005"), 1
        )
        in_flight = "ilp_packets_in_flight"
        self.assertEqual(_value(r, in_flight, account="carl", direction="outgoing"), 1)
        self.assertEqual(_value(r, in_flight, account="bob", direction="incoming"), 0)
        self.assertEqual(_value(r, "ilp_http_requests_total", account="bob", status="200"), 2)
        self.assertEqual(_value(r, "ilp_http_requests_total", account="bob", status="401"), 1)
        self.assertEqual(_value(r, "ilp_auth_failures_total", account="bob"), 1)
        self.assertEqual(_value(r, "ilp_auth_failures_total", account="carl"), 0)
        self.assertEqual(_value(r, "ilp_connections", listener="tcp:8000:interface=127.0.0.1"), 4)

    def test_finishing_twice_counts_once(self) -> None:
        metrics = IlpMetrics()
        link = metrics.link("bob")
        t = link.packet_started("outgoing", 1.0)
        link.packet_finished(t, "fulfill", "", 5, 2.0)
        link.packet_finished(t, "reject", "R00", 5, 3.0)
        r = metrics.registry
        self.assertEqual(_value(r, "ilp_packets_in_flight", account="bob", direction="outgoing"), 0)
        self.assertEqual(
            _value(r, "ilp_packet_duration_seconds_count", account="bob", direction="outgoing"), 1
        )
        self.assertIsNone(
            _value(
                r,
                "ilp_packets_total",
                account="bob",
                direction="outgoing",
                result="reject",
                code="R00",
            )
        )

    def test_a_fulfill_has_no_code(self) -> None:
        metrics = IlpMetrics()
        link = metrics.link("bob")
        link.packet_finished(link.packet_started("incoming", 0.0), "fulfill", "F99", 1, 0.0)
        self.assertEqual(
            _value(
                metrics.registry,
                "ilp_packets_total",
                account="bob",
                direction="incoming",
                result="fulfill",
                code="",
            ),
            1,
        )

    def test_bad_direction_or_result(self) -> None:
        link = IlpMetrics().link("bob")
        self.assertRaises(ValueError, link.packet_started, "sideways", 0.0)
        timing = link.packet_started("incoming", 0.0)
        self.assertRaises(ValueError, link.packet_finished, timing, "maybe", "", 1, 0.0)

    def test_shared_registry(self) -> None:
        registry = CollectorRegistry()
        metrics = IlpMetrics(registry)
        self.assertIs(metrics.registry, registry)
        self.assertRaises(ValueError, IlpMetrics, registry)  # one set of families per registry
        self.assertIsNot(IlpMetrics().registry, IlpMetrics().registry)

    def test_buckets_rise_and_span_ms_to_expiry(self) -> None:
        self.assertEqual(list(DURATION_BUCKETS), sorted(DURATION_BUCKETS))
        self.assertLessEqual(DURATION_BUCKETS[0], 0.001)
        self.assertGreaterEqual(DURATION_BUCKETS[-1], 30)


class PromtoolTests(SynchronousTestCase):
    def test_exposition_passes_promtool_check_metrics(self) -> None:
        metrics = IlpMetrics()
        _traffic(metrics)
        # a peer-chosen account name with quotes, a backslash and a newline
        metrics.link('we"ird\\\nname').http_status(200)
        result = promtool("check", "metrics", stdin=generate_latest(metrics.registry))
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))

    def test_example_alert_rules_pass_promtool_check_rules(self) -> None:
        path = os.path.join(ROOT, "examples", "alerts.yml")
        result = promtool("check", "rules", path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout)


class ResourceTests(TestCase):
    @inlineCallbacks
    def test_metrics_served_at_metrics(self) -> Any:
        metrics = IlpMetrics()
        _traffic(metrics)
        reactor = global_reactor()
        port = reactor.listenTCP(0, Site(metrics.root()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        agent = http_agent(self)
        reply = yield within(request(agent, base + "/metrics", method=b"GET"), 10)
        self.assertEqual(reply.code, 200)
        self.assertTrue((reply.header(b"content-type") or b"").startswith(b"text/plain"))
        self.assertIn(
            b'ilp_packets_total{account="bob",code="T05",direction="incoming",result="reject"} 2.0',
            reply.body,
        )
        check = promtool("check", "metrics", stdin=reply.body)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        missing = yield within(request(agent, base + "/other", method=b"GET"), 10)
        self.assertEqual(missing.code, 404)
