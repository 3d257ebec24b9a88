"""Issue 14 in a node: limits from the config file, ``/metrics`` on its own listener
(checked by ``promtool``, scraped by a real Prometheus), workers' metrics added up,
JSON logs without secrets, and peer text escaped in text logs."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from typing import Any

from twisted.internet import defer, error
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, textFileLogObserver
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from ilphttp.errors import OptionError
from ilphttp.limits import Limits, RateLimit
from ilphttp.metrics import IlpMetrics
from ilphttp.node import make_node
from ilphttp.nodeconfig import parse_node
from ilphttp.packet import ErrorCode, Fulfill, Reject, deserialize, serialize_reject
from ilphttp.plugin import PluginHttp
from tests.support.clients import http_agent, raw_connect, raw_request, request
from tests.support.fakes import LogCapture
from tests.support.jsinterop import in_ci
from tests.support.packets import data_prepare, expect_reject, make_prepare
from tests.support.ports import free_port, plugin_url
from tests.support.prometheus import promtool
from tests.support.reactor import global_reactor, within
from tests.support.twistd import PREIMAGE, start_twistd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "node-ops-test-token-0123456789"
AUTH = {b"authorization": b"Bearer " + TOKEN.encode(), b"content-type": b"application/octet-stream"}


def node_data(metrics: str | None = None, **account: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ilpAddress": "test.ops",
        "assetCode": "XRP",
        "assetScale": 9,
        "accounts": {
            "bob": {
                "relation": "child",
                "options": {
                    "incoming": {"endpoint": "tcp:0:interface=127.0.0.1", "staticToken": TOKEN}
                },
                **account,
            }
        },
    }
    if metrics is not None:
        data["metrics"] = metrics
    return data


class ConfigTests(SynchronousTestCase):
    def test_account_level_limits_as_ilp_connector_writes_them(self) -> None:
        node = parse_node(
            node_data(
                rateLimit={"refillPeriod": 1000, "refillCount": 5},
                maxPacketAmount="100",
            ),
            ".",
            {},
        )
        self.assertEqual(
            node.accounts[0].options.limits,
            Limits(rate_limit=RateLimit(1.0, 5, 5), max_packet_amount=100),
        )
        self.assertEqual(node.ignored, ())

    def test_limits_in_both_places_is_an_error(self) -> None:
        data = node_data(maxPacketAmount="100")
        data["accounts"]["bob"]["options"]["maxPacketAmount"] = "5"
        with self.assertRaises(OptionError) as caught:
            parse_node(data, ".", {})
        self.assertIn("accounts.bob", str(caught.exception))

    def test_bad_limit_names_the_setting(self) -> None:
        with self.assertRaises(OptionError) as caught:
            parse_node(node_data(rateLimit={"refillCount": "x"}), ".", {})
        self.assertIn("accounts.bob.rateLimit.refillCount", str(caught.exception))

    def test_operations_keys(self) -> None:
        data = node_data("tcp:9464:interface=127.0.0.1")
        data.update(logFormat="json", logLevel="debug")
        node = parse_node(data, ".", {})
        self.assertEqual(
            (node.metrics, node.log_format, node.log_level),
            ("tcp:9464:interface=127.0.0.1", "json", "debug"),
        )
        for key, value in (("logFormat", "xml"), ("logLevel", "loud"), ("metrics", 9464)):
            with self.assertRaises(OptionError) as caught:
                parse_node({**node_data(), key: value}, ".", {})
            self.assertIn(key, str(caught.exception))


class NodeMetricsTests(TestCase):
    """A node in this process: packets through the router and the limits, then /metrics."""

    @defer.inlineCallbacks
    def start(self, **account: Any) -> Any:
        self.metrics_port = free_port()
        config = parse_node(node_data(f"tcp:{self.metrics_port}:interface=127.0.0.1", **account))
        self.node = make_node(config)
        self.node.privilegedStartService()
        self.node.startService()
        self.addCleanup(self.node.stopService)
        plugin = self.node.plugins["bob"]
        self.url = f"http://127.0.0.1:{plugin.port.getHost().port}/"  # type: ignore[union-attr]
        self.agent = http_agent(self)
        yield None

    @defer.inlineCallbacks
    def post(self, amount: int, destination: str = "test.nowhere") -> Any:
        _, body, _ = data_prepare(destination, amount=amount)
        result = yield within(request(self.agent, self.url, body, AUTH), 10)
        return result

    @defer.inlineCallbacks
    def scrape(self) -> Any:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        result = yield within(request(self.agent, url, method=b"GET"), 10)
        self.assertEqual(result.code, 200)
        return result.body

    @defer.inlineCallbacks
    def test_counters_match_and_promtool_accepts(self) -> Any:
        yield self.start(maxPacketAmount="100")
        for amount in (10, 20, 30):
            expect_reject(self, (yield self.post(amount)).body, ErrorCode.F02_UNREACHABLE)
        reject = expect_reject(self, (yield self.post(500)).body, "F08")
        self.assertEqual(reject.triggered_by, "test.ops")
        wrong = yield within(
            request(self.agent, self.url, b"x", {b"authorization": b"Bearer nope"}), 10
        )
        self.assertEqual(wrong.code, 401)
        text = (yield self.scrape()).decode("utf-8")
        series = 'ilp_packets_total{{account="bob",code="{}",direction="incoming",result="reject"}}'
        self.assertIn(series.format("F02") + " 3.0", text)
        self.assertIn(series.format("F08") + " 1.0", text)
        self.assertIn(
            'ilp_amount_total{account="bob",direction="incoming",result="reject"} 560.0', text
        )
        self.assertIn('ilp_http_requests_total{account="bob",status="200"} 4.0', text)
        self.assertIn('ilp_http_requests_total{account="bob",status="401"} 1.0', text)
        self.assertIn('ilp_auth_failures_total{account="bob"} 1.0', text)
        self.assertIn(
            'ilp_packet_duration_seconds_count{account="bob",direction="incoming"} 4.0', text
        )
        self.assertIn('ilp_packets_in_flight{account="bob",direction="incoming"} 0.0', text)
        self.assertRegex(text, r'ilp_connections\{listener="tcp:0:interface=127.0.0.1"\} 1.0')
        checked = promtool("check", "metrics", stdin=text.encode("utf-8"))
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)

    @defer.inlineCallbacks
    def test_metrics_are_served_until_the_drain_ends(self) -> Any:
        held: defer.Deferred[bytes] = defer.Deferred()
        self.metrics_port = free_port()
        config = parse_node(node_data(f"tcp:{self.metrics_port}:interface=127.0.0.1"))
        self.node = make_node(config, lambda context: lambda data: held, global_reactor())
        self.node.privilegedStartService()
        self.node.startService()
        plugin = self.node.plugins["bob"]
        self.url = f"http://127.0.0.1:{plugin.port.getHost().port}/"  # type: ignore[union-attr]
        self.agent = http_agent(self)
        made = make_prepare(global_reactor().seconds(), 10, fulfillment=PREIMAGE)
        answer = request(self.agent, self.url, made.packet, AUTH)
        for _ in range(200):  # until the Prepare is in the handler
            text = (yield self.scrape()).decode("utf-8")
            if 'ilp_packets_in_flight{account="bob",direction="incoming"} 1.0' in text:
                break
            yield deferLater(global_reactor(), 0.02, lambda: None)
        stopped = self.node.stopService()
        self.agent = http_agent(self)  # a new connection: the port itself still listens
        text = (yield self.scrape()).decode("utf-8")  # draining, and still watched
        self.assertIn('ilp_packets_in_flight{account="bob",direction="incoming"} 1.0', text)
        self.assertFalse(stopped.called)
        held.callback(made.fulfill())
        self.assertEqual((yield within(answer, 10)).code, 200)
        yield within(stopped, 20)
        yield self.assertFailure(
            within(raw_connect(self, self.metrics_port), 10), error.ConnectionRefusedError
        )

    @defer.inlineCallbacks
    def test_shared_listener_counts_unknown_tokens_as_account_empty(self) -> Any:
        self.metrics_port = free_port()
        data = node_data(f"tcp:{self.metrics_port}:interface=127.0.0.1")
        del data["accounts"]["bob"]["options"]["incoming"]["endpoint"]
        shared_port = free_port()
        data["listen"] = [f"tcp:{shared_port}:interface=127.0.0.1"]
        node = make_node(parse_node(data))
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        self.agent = http_agent(self)
        self.url = f"http://127.0.0.1:{shared_port}/"
        wrong = yield within(
            request(self.agent, self.url, b"x", {b"authorization": b"Bearer nope"}), 10
        )
        self.assertEqual(wrong.code, 401)
        expect_reject(self, (yield self.post(1)).body, ErrorCode.F02_UNREACHABLE)
        text = (yield self.scrape()).decode("utf-8")
        self.assertIn('ilp_auth_failures_total{account=""} 1.0', text)
        self.assertIn('ilp_auth_failures_total{account="bob"} 0.0', text)
        self.assertIn(f'ilp_connections{{listener="tcp:{shared_port}:interface=127.0.0.1"}}', text)

    @defer.inlineCallbacks
    def refused_raw(self, port: int, data: bytes, status: bytes) -> Any:
        """Send ``data`` on a new connection; its answer's status line must say ``status``."""
        client = yield raw_connect(self, port)
        client.transport.write(data)
        received = yield within(client.closed, 10)
        self.assertTrue(received.startswith(b"HTTP/1.1 " + status), received)

    @defer.inlineCallbacks
    def start_shared(self) -> Any:
        self.metrics_port = free_port()
        data = node_data(f"tcp:{self.metrics_port}:interface=127.0.0.1")
        del data["accounts"]["bob"]["options"]["incoming"]["endpoint"]
        self.shared_port = free_port()
        data["listen"] = [f"tcp:{self.shared_port}:interface=127.0.0.1"]
        node = make_node(parse_node(data))
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        self.agent = http_agent(self)
        self.url = f"http://127.0.0.1:{self.shared_port}/"
        yield None

    @defer.inlineCallbacks
    def test_shared_listener_counts_a_named_accounts_401_as_its_own(self) -> Any:
        yield self.start_shared()
        wrong = {b"authorization": b"Bearer nope"}
        for path, code in (("accounts/bob/ilp", 401), ("accounts/nobody/ilp", 401)):
            result = yield within(request(self.agent, self.url + path, b"x", wrong), 10)
            self.assertEqual(result.code, code, path)
        text = (yield self.scrape()).decode("utf-8")
        self.assertIn('ilp_auth_failures_total{account="bob"} 1.0', text)
        self.assertIn('ilp_http_requests_total{account="bob",status="401"} 1.0', text)
        # an account that does not exist: nobody to name
        self.assertIn('ilp_auth_failures_total{account=""} 1.0', text)
        self.assertIn('ilp_http_requests_total{account="",status="401"} 1.0', text)
        self.assertNotIn('account="nobody"', text)

    @defer.inlineCallbacks
    def test_parser_refusals_are_counted(self) -> Any:
        """400 (a NUL in a header, a bad Content-Length), 413 from Content-Length and
        431 never reach a door; they are counted for the listener's account."""
        yield self.start()
        port = self.node.plugins["bob"].port.getHost().port  # type: ignore[union-attr]
        for data, status in (
            (raw_request(headers=[(b"X-A", b"a\x00b"), (b"Content-Length", b"0")]), b"400"),
            (raw_request(headers=[(b"Content-Length", b"1x")], body=b"a"), b"400"),
            (raw_request(headers=[(b"Content-Length", b"99999999")]), b"413"),
            (raw_request(headers=[(b"X-%d" % i, b"v") for i in range(200)]), b"431"),
        ):
            yield self.refused_raw(port, data, status)
        yield self.post(1)  # and the normal path still counts its 200, once
        text = (yield self.scrape()).decode("utf-8")
        for status, count in (("400", 2), ("413", 1), ("431", 1), ("200", 1)):
            self.assertIn(
                f'ilp_http_requests_total{{account="bob",status="{status}"}} {count}.0', text
            )
        self.assertNotIn('account=""', text)

    @defer.inlineCallbacks
    def test_parser_refusals_on_a_shared_listener_are_account_empty(self) -> Any:
        yield self.start_shared()
        bad = raw_request(b"/accounts/bob/ilp", [(b"Content-Length", b"1x")], b"a")
        yield self.refused_raw(self.shared_port, bad, b"400")
        text = (yield self.scrape()).decode("utf-8")
        self.assertIn('ilp_http_requests_total{account="",status="400"} 1.0', text)
        self.assertNotIn('ilp_http_requests_total{account="bob",status="400"}', text)
        self.assertIn('ilp_auth_failures_total{account=""} 0.0', text)

    def test_a_metrics_port_in_use_stops_startup_with_one_line(self) -> None:
        holder = __import__("socket").socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        node = make_node(parse_node(node_data(f"tcp:{port}:interface=127.0.0.1")))
        with self.assertRaises(SystemExit) as caught:
            node.privilegedStartService()
            node.startService()
        self.addCleanup(node.stopService)
        self.assertEqual(
            str(caught.exception),
            f"ilphttp: cannot start listener 'metrics': cannot listen on 127.0.0.1:{port}"
            " (address in use)",
        )


def require_prometheus() -> str:
    found = shutil.which("prometheus")
    if found is not None:
        return found
    problem = "prometheus is not on PATH (Debian: apt-get install prometheus)"
    if in_ci():
        raise AssertionError(problem + " with CI=true")
    raise SkipTest(problem)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read().decode("utf-8"))


class TwistdNodeTests(TestCase):
    """Real twistd nodes: a Prometheus server scrapes one; two workers add up; JSON logs."""

    timeout = 120

    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="ilphttp-ops-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def write_config(self, data: dict[str, Any]) -> str:
        path = os.path.join(self.workdir, "node.json")
        with open(path, "w") as f:
            json.dump(data, f)
        return path

    @defer.inlineCallbacks
    def send(self, port: int, count: int, amount: int = 10) -> Any:
        """``count`` Prepares the pid handler fulfils, each on a new connection; their pids."""
        pids = []
        for _ in range(count):
            sender = PluginHttp(
                outgoing={"url": f"http://127.0.0.1:{port}/", "static_token": TOKEN}
            )
            yield sender.connect()
            try:
                made = make_prepare(
                    global_reactor().seconds(),
                    destination="test.ops.x",
                    amount=amount,
                    fulfillment=PREIMAGE,
                )
                reply = deserialize((yield within(sender.send_data(made.packet), 10)))
            finally:
                yield sender.disconnect()
            self.assertIsInstance(reply, Fulfill, reply)
            assert isinstance(reply, Fulfill)
            pids.append(int(reply.data))
        return pids

    @defer.inlineCallbacks
    def test_prometheus_scrapes_a_running_node(self) -> Any:
        prometheus = require_prometheus()
        metrics_port, prometheus_port = free_port(), free_port()
        config = self.write_config(node_data(f"tcp:{metrics_port}:interface=127.0.0.1"))
        node = start_twistd(
            self,
            self.workdir,
            "--config",
            config,
            "--handler",
            "tests.support.twistd:make_pid_handler",
        )
        match = yield node.wait_for(r"account bob: child, listening on port (\d+)")
        yield self.send(int(match.group(1)), 3, amount=25)
        scrape = os.path.join(self.workdir, "prometheus.yml")
        with open(scrape, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n"
                "scrape_configs:\n  - job_name: ilphttp\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{metrics_port}']\n"
            )
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={scrape}",
                f"--storage.tsdb.path={os.path.join(self.workdir, 'tsdb')}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(server.wait)
        self.addCleanup(server.terminate)
        query = urllib.parse.quote(
            'sum(ilp_packets_total{account="bob",direction="incoming",result="fulfill"})'
        )
        url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={query}"
        value = None
        for _ in range(300):
            try:
                answer = _get_json(url)
            except OSError:
                answer = None
            results = (answer or {}).get("data", {}).get("result", [])
            if results:
                value = float(results[0]["value"][1])
                break
            yield deferLater(global_reactor(), 0.1, lambda: None)
        self.assertEqual(value, 3.0, "Prometheus never returned the counter")
        amount = _get_json(
            f"http://127.0.0.1:{prometheus_port}/api/v1/query?query="
            + urllib.parse.quote('ilp_amount_total{account="bob",result="fulfill"}')
        )
        self.assertEqual(float(amount["data"]["result"][0]["value"][1]), 75.0)
        yield node.stop()

    @defer.inlineCallbacks
    def test_two_workers_are_served_together(self) -> Any:
        metrics_port = free_port()
        config = self.write_config(node_data(f"tcp:{metrics_port}:interface=127.0.0.1"))
        node = start_twistd(
            self,
            self.workdir,
            "--config",
            config,
            "--workers",
            "2",
            "--handler",
            "tests.support.twistd:make_pid_handler",
        )
        yield node.wait_for(r"all 2 workers are ready")
        port = int((yield node.wait_for(r"account bob: \S+ on port (\d+)")).group(1))
        pids: list[int] = []
        while len(set(pids)) < 2 and len(pids) < 60:
            pids += yield self.send(port, 4)
        self.assertEqual(len(set(pids)), 2, "one worker answered every connection")
        agent = http_agent(self)
        result = yield within(
            request(agent, f"http://127.0.0.1:{metrics_port}/metrics", method=b"GET"), 10
        )
        text = result.body.decode("utf-8")
        found = re.search(
            r'ilp_packets_total\{account="bob",code="",direction="incoming",result="fulfill"\}'
            r" (\S+)",
            text,
        )
        self.assertIsNotNone(found, text)
        assert found is not None
        self.assertEqual(float(found.group(1)), len(pids))
        checked = promtool("check", "metrics", stdin=result.body)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
        directory = (yield node.wait_for(r"workers' metrics in (\S+)")).group(1)
        yield node.stop()
        self.assertFalse(os.path.exists(directory), "the metrics directory was left behind")


EVIL = "test.parent\r\x1b[2J2026-01-01T00:00:00+0000 [ilphttp.node#info] all is well"


class PeerTextInLogsTests(TestCase):
    """The issue's case: a parent's IL-DCP Reject whose triggered_by holds CR and ESC."""

    @defer.inlineCallbacks
    def test_parent_ildcp_reject_is_escaped_in_the_text_log(self) -> Any:
        parent = PluginHttp(
            incoming={"endpoint": "tcp:0:interface=127.0.0.1", "static_token": TOKEN}
        )
        parent.register_data_handler(
            lambda data: serialize_reject(Reject("F99", EVIL, "no\x1b[31m address\rfor you"))
        )
        self.addCleanup(parent.disconnect)
        yield parent.connect()
        captured = LogCapture(self)
        node = make_node(
            parse_node(
                {
                    "accounts": {
                        "up": {
                            "relation": "parent",
                            "options": {
                                "outgoing": {
                                    "url": plugin_url(parent),
                                    "staticToken": TOKEN,
                                }
                            },
                        }
                    }
                },
                ".",
                {},
            )
        )
        node.startService()
        self.addCleanup(node.stopService)
        for _ in range(100):
            if any("IL-DCP from up failed" in formatEvent(e) for e in captured.events):
                break
            yield deferLater(global_reactor(), 0.05, lambda: None)
        out = io.StringIO()
        observer = textFileLogObserver(out)
        for event in captured.events:
            observer(event)
        text = out.getvalue()
        self.assertIn("IL-DCP request rejected", text)
        self.assertNotIn("\r", text)
        self.assertNotIn("\x1b", text)
        self.assertIn("test.parent\\r\\x1b[2J2026", text)
        # one event, one line: the forged timestamp is not at the start of a line
        self.assertNotRegex(text, r"(?m)^2026-01-01T00:00:00")


class JsonLogTests(TestCase):
    """``--log-format json`` at debug: one object per line, packet events, no secret."""

    timeout = 120

    @defer.inlineCallbacks
    def test_no_token_secret_or_jwt_in_the_log(self) -> Any:
        workdir = tempfile.mkdtemp(prefix="ilphttp-logs-")
        self.addCleanup(shutil.rmtree, workdir, True)
        jwt_secret = "jwt-secret-for-the-log-test-0123456789abcdef"
        data = node_data()
        data["accounts"]["jay"] = {
            "relation": "child",
            "options": {
                "incoming": {"endpoint": "tcp:0:interface=127.0.0.1", "jwtSecret": jwt_secret}
            },
        }
        data.update(logFormat="json", logLevel="debug")
        path = os.path.join(workdir, "node.json")
        with open(path, "w") as f:
            json.dump(data, f)
        log = os.path.join(workdir, "node.log")
        node = start_twistd(
            self,
            workdir,
            "--config",
            path,
            "--handler",
            "tests.support.twistd:make_pid_handler",
            twistd=["--logfile", log],
        )
        ports = {}
        for account in ("bob", "jay"):
            for _ in range(300):
                if os.path.exists(log):
                    with open(log) as f:
                        found = re.search(
                            rf"account {account}: child, listening on port (\d+)", f.read()
                        )
                    if found:
                        ports[account] = int(found.group(1))
                        break
                yield deferLater(global_reactor(), 0.1, lambda: None)
        self.assertEqual(sorted(ports), ["bob", "jay"], node.text())
        senders = [
            ({"static_token": TOKEN}, ports["bob"], Fulfill),
            ({"static_token": "wrong-" + TOKEN}, ports["bob"], Reject),
            ({"jwt_secret": jwt_secret}, ports["jay"], Fulfill),
            ({"jwt_secret": "wrong-" + jwt_secret}, ports["jay"], Reject),
        ]
        tokens: list[bytes] = []
        for credentials, port, kind in senders:
            sender = PluginHttp(outgoing={"url": f"http://127.0.0.1:{port}/", **credentials})
            yield sender.connect()
            tokens.append(sender._outgoing_auth.header())
            made = make_prepare(
                global_reactor().seconds(), destination="test.ops.x", amount=5, fulfillment=PREIMAGE
            )
            reply = deserialize((yield within(sender.send_data(made.packet), 10)))
            yield sender.disconnect()
            self.assertIsInstance(reply, kind)
        yield node.stop()
        with open(log) as f:
            text = f.read()
        lines = [json.loads(line) for line in text.splitlines()]
        packets = [e for e in lines if e.get("event") == "packet"]
        self.assertEqual(sorted(e["account"] for e in packets), ["bob", "jay"])
        for e in packets:
            self.assertEqual(e["level"], "debug")
            self.assertEqual((e["code"], e["destination"], e["amount"]), ("", "test.ops.x", 5))
            self.assertIsInstance(e["duration_ms"], float)
            # a Fulfill has no code: "fulfill (5, ...", one space, not two
            self.assertRegex(e["message"], r"\Aincoming packet to test\.ops\.x: fulfill \(5, ")
        for secret in [TOKEN, jwt_secret, "eyJ", *(t.decode().split()[-1] for t in tokens)]:
            self.assertNotIn(secret, text)


class DashboardTests(SynchronousTestCase):
    def test_grafana_dashboard_is_json_over_our_families(self) -> None:
        with open(os.path.join(ROOT, "examples", "grafana-dashboard.json")) as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
        self.assertGreaterEqual(len(exprs), 7)
        families = {
            m.name for m in IlpMetrics().registry.collect()
        }  # names without _total, as prometheus-client keeps them
        used = set()
        for expr in exprs:
            for name in re.findall(r"\bilp_[a-z_]+", expr):
                base = re.sub(r"_(total|bucket|count|sum)$", "", name)
                self.assertIn(base, families, expr)
                used.add(base)
        self.assertEqual(used, families, "a family has no panel")


class FlagTests(SynchronousTestCase):
    def options(self, *argv: str, parent: dict[str, Any] | None = None) -> Any:
        from ilphttp.tap import Options

        path = os.path.join(self.mktemp() + ".json")
        with open(path, "w") as f:
            json.dump({**node_data("tcp:1:interface=127.0.0.1"), "logLevel": "warn"}, f)
        options = Options(environ={})
        if parent is not None:
            options.parent = parent
        options.parseOptions(["--config", path, *argv])
        return options

    def test_flags_win_over_the_file(self) -> None:
        node = self.options("--metrics", "tcp:9464:interface=127.0.0.1", "--log-format", "json")[
            "node"
        ]
        self.assertEqual(
            (node.metrics, node.log_format, node.log_level),
            ("tcp:9464:interface=127.0.0.1", "json", "warn"),
        )
        self.assertEqual(self.options("--log-level", "debug")["node"].log_level, "debug")

    def test_bad_values_and_twistds_own_observer(self) -> None:
        from twisted.python.usage import UsageError

        for argv in (["--log-format", "xml"], ["--log-level", "loud"]):
            with self.assertRaises(UsageError):
                self.options(*argv)
        for twistd in ({"logger": "x.y"}, {"syslog": True}):
            with self.assertRaises(SystemExit):  # one line on stderr under twistd
                self.options("--log-format", "json", parent=twistd)
        # without --log-format, twistd's options are left alone
        self.assertIsNone(self.options(parent={"logger": "x.y"})["node"].log_format)

    def test_make_service_sets_the_applications_observer(self) -> None:
        from twisted.application.service import Application
        from twisted.logger import ILogObserver

        from ilphttp.tap import makeService

        options = self.options("--log-format", "json", parent={"logfile": "-"})
        application = Application("test")
        makeService(options).setServiceParent(application)
        self.assertIsNotNone(application.getComponent(ILogObserver, None))
        # without it too: twistd's own lines, filtered by logLevel
        plain = Application("plain")
        makeService(self.options(parent={"logfile": "-"})).setServiceParent(plain)
        self.assertIsNotNone(plain.getComponent(ILogObserver, None))

    def test_flags_stay_in_force_at_each_reload(self) -> None:
        """--metrics/--log-format/--log-level are applied to each reading of the file,
        so a reload that changes a token is not refused for "metrics"."""
        from ilphttp.nodediff import diff_nodes

        options = self.options(
            "--metrics",
            "tcp:9464:interface=127.0.0.1",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        )
        path = options["config"]
        with open(path, "w") as f:
            data = {**node_data("tcp:1:interface=127.0.0.1"), "logLevel": "warn"}
            data["accounts"]["bob"]["options"]["incoming"]["staticToken"] = TOKEN + "-rotated"
            json.dump(data, f)
        again = options["config_file"].read()
        self.assertEqual(
            (again.metrics, again.log_format, again.log_level),
            ("tcp:9464:interface=127.0.0.1", "json", "debug"),
        )
        changes = diff_nodes(options["node"], again)
        self.assertEqual(changes.changed, ("bob",))
        # --workers reloads read the same ConfigFile (ilphttp.worker_reload)
        from ilphttp.tap import makeService

        top: Any = makeService(self.options("--workers", "2", "--metrics", "tcp:0"))
        from ilphttp.workers import WorkersService

        def walk(service: Any) -> Any:
            yield service
            for child in getattr(service, "services", ()):
                yield from walk(child)

        supervisor = next(s for s in walk(top) if isinstance(s, WorkersService))
        self.assertEqual(supervisor.config_file.operation_flags.metrics, "tcp:0")

    def test_a_bad_metrics_endpoint_is_a_usage_error(self) -> None:
        from twisted.python.usage import UsageError

        with self.assertRaises(UsageError) as raised:
            self.options("--metrics", "tcp:notaport")
        self.assertIn(
            "--metrics 'tcp:notaport': the port must be a number from 0 to 65535",
            str(raised.exception),
        )
        with self.assertRaises(UsageError) as raised:
            self.options("--metrics", "nosuchtype:1")  # Twisted's to parse
        self.assertIn("metrics 'nosuchtype:1' is invalid", str(raised.exception))
        self.assertNotIn("--handler", str(raised.exception))
        # under twistd: one line and exit status 2
        with self.assertRaises(SystemExit) as exited:
            self.options("--metrics", "tcp:notaport", parent={})
        self.assertEqual(exited.exception.code, 2)

    def usage_error(self, data: dict[str, Any], *argv: str) -> str:
        """The one line ``--config FILE *argv`` is refused with (FILE holds ``data``)."""
        from twisted.python.usage import UsageError

        from ilphttp.tap import Options

        path = os.path.join(self.mktemp() + ".json")
        with open(path, "w") as f:
            json.dump(data, f)
        with self.assertRaises(UsageError) as raised:
            Options(environ={}).parseOptions(["--config", path, *argv])
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        self.assertNotIn(path, message, "a flag's error, not the file's")
        return message

    def test_metrics_flag_is_applied_before_the_listeners_are_checked(self) -> None:
        from ilphttp.tap import Options

        loopback = "tcp:8310:interface=127.0.0.1"
        data = node_data(loopback)
        data["accounts"]["bob"]["options"]["incoming"]["endpoint"] = loopback
        path = os.path.join(self.mktemp() + ".json")
        with open(path, "w") as f:
            json.dump(data, f)
        options = Options(environ={})
        options.parseOptions(["--config", path, "--metrics", "tcp:8311:interface=127.0.0.1"])
        self.assertEqual(options["node"].metrics, "tcp:8311:interface=127.0.0.1")
        self.assertEqual(options["config_file"].read().metrics, "tcp:8311:interface=127.0.0.1")
        # without the flag the file's two listeners clash: the file's error
        from ilphttp.config_file import ConfigFile

        with self.assertRaises(OptionError) as raised:
            ConfigFile(path, {}).read()
        self.assertTrue(str(raised.exception).startswith(f"{path}: accounts.bob"))
        self.assertIn(
            "and metrics 'tcp:8310:interface=127.0.0.1' would both listen", str(raised.exception)
        )
        # a flag that takes the account's port is refused, naming --metrics
        self.assertIn(
            f"accounts.bob.options.incoming.endpoint {loopback!r} and --metrics 'tcp:8310'"
            " would both listen on port 8310 (127.0.0.1 and 0.0.0.0)",
            self.usage_error({**data, "metrics": None}, "--metrics", "tcp:8310"),
        )

    def test_flag_errors_name_the_flag_and_echo_the_value(self) -> None:
        self.assertEqual(
            self.usage_error(node_data(), "--log-level", "WARN"),
            "--log-level must be one of debug, info, warn, error, critical, got 'WARN'",
        )
        self.assertEqual(
            self.usage_error(node_data(), "--log-format", "xml"),
            "--log-format must be one of json, text, got 'xml'",
        )
        shared = node_data()
        del shared["accounts"]["bob"]["options"]["incoming"]["endpoint"]
        socket = os.path.abspath(self.mktemp()) + ".sock"
        message = self.usage_error(shared, "--workers", "2", "--listen", f"unix:{socket}")
        self.assertTrue(message.startswith(f"--listen 'unix:{socket}': several worker"), message)
        # the file's own listen is named as the file writes it
        from ilphttp.tap import Options

        path = os.path.join(self.mktemp() + ".json")
        with open(path, "w") as f:
            json.dump({**shared, "listen": f"unix:{socket}"}, f)
        with self.assertRaises(Exception) as raised:
            Options(environ={}).parseOptions(["--config", path, "--workers", "2"])
        self.assertIn(f"listen 'unix:{socket}': several worker", str(raised.exception))
        self.assertNotIn("--listen", str(raised.exception))

    def test_make_service_names_the_handler_only_for_its_faults(self) -> None:
        from dataclasses import replace

        from ilphttp.tap import make_service

        options = dict(self.options())
        options["node"] = replace(options["node"], metrics="tcp:notaport")
        with self.assertRaises(SystemExit) as exited:
            make_service(options)
        self.assertEqual(
            str(exited.exception.code),
            "ilphttp: metrics 'tcp:notaport' is invalid: "
            "invalid literal for int() with base 10: 'notaport'",
        )


class MetricsListenerTests(TestCase):
    def test_a_scrape_writes_no_access_log_line(self) -> Any:
        from prometheus_client import CollectorRegistry

        from ilphttp.node_metrics import metrics_listener

        logs = LogCapture(self)
        port = free_port()
        service = metrics_listener(f"tcp:{port}:interface=127.0.0.1", CollectorRegistry())
        service.startService()
        self.addCleanup(service.stopService)
        agent = http_agent(self)

        @defer.inlineCallbacks
        def scrape() -> Any:
            url = f"http://127.0.0.1:{port}/metrics"
            result = yield within(request(agent, url, method=b"GET"), 10)
            self.assertEqual(result.code, 200)
            return None

        d = scrape()

        def no_access_log(_: object) -> None:
            said = [formatEvent(e) for e in logs.events]
            self.assertFalse([line for line in said if "/metrics" in line], said)

        return d.addCallback(no_access_log)
