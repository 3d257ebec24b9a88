"""Ports across a reload: ``--metrics`` over the file's ``metrics`` (the listeners are
checked once the flags are applied, at start and at each reload), and a port handed
from one account to another, which a reload refuses (it binds before it releases)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from ilphttp.config_file import OperationFlags
from ilphttp.errors import OptionError
from ilphttp.node import NodeService
from tests.support.ports import free_port
from tests.support.reload import TOKENS, ReloadCase, account


def _loopback(port: int) -> str:
    return f"tcp:{port}:interface=127.0.0.1"


class MetricsFlagReloadTests(ReloadCase):
    @defer.inlineCallbacks
    def refused(self, service: NodeService, accounts: dict[str, Any], **top: Any) -> Any:
        """Reload ``accounts``; it is refused in one log line, the old node kept:
        the refusal's text."""
        before = service.node
        self.write(accounts, **top)
        mark = len(self.logs.events)
        [failure] = yield service.reload().addCallbacks(lambda _: [None], lambda f: [f])
        assert isinstance(failure, Failure)
        failure.trap(OptionError)
        [line] = [e for e in self.logs.errors() if self.logs.events.index(e) >= mark]
        text = formatEvent(line)
        self.assertIn("reload refused, the running configuration stays", text)
        self.assertNotIn("\n", text)
        self.assertIs(service.node, before)
        return str(failure.value)

    @defer.inlineCallbacks
    def test_the_flag_frees_the_files_metrics_port(self) -> Any:
        port = free_port()
        accounts = self.accounts(carol=account(token=TOKENS["c1"], endpoint=_loopback(port)))
        flags = OperationFlags(metrics="tcp:0:interface=127.0.0.1")
        service = self.start(accounts, flags, metrics=_loopback(port))
        self.assertEqual(service.node.metrics, "tcp:0:interface=127.0.0.1")
        self.assertEqual(service.plugins["carol"].port.getHost().port, port)
        # a reload reads the file with the flag again: not "would both listen on port"
        self.write(self.accounts(a="a2", carol=accounts["carol"]), metrics=_loopback(port))
        summary = yield service.reload()
        self.assertEqual(summary.changes.changed, ("alice",))
        self.assertEqual(service.node.metrics, "tcp:0:interface=127.0.0.1")

    @defer.inlineCallbacks
    def test_an_account_on_the_flags_port_is_refused(self) -> Any:
        metrics = free_port()
        service = self.start(self.accounts(), OperationFlags(metrics=_loopback(metrics)))
        carol = account(token=TOKENS["c1"], endpoint=f"tcp:{metrics}")
        text = yield self.refused(service, self.accounts(carol=carol))
        self.assertEqual(
            text,
            f"accounts.carol.options.incoming.endpoint 'tcp:{metrics}' and --metrics"
            f" {_loopback(metrics)!r} would both listen on port {metrics}"
            f" (0.0.0.0 and 127.0.0.1): give each its own port (accounts without a port"
            " or endpoint of their own share the node's listen)",
        )
        self.assertNotIn(self.path, text)  # the flag's error, not the file's

    @defer.inlineCallbacks
    def test_a_port_handed_to_another_account_is_refused(self) -> Any:
        one, two = free_port(), free_port()
        carol = account(token=TOKENS["c1"], endpoint=_loopback(one))
        dave = account(token=TOKENS["c1"] + "d", endpoint=_loopback(two))
        service = self.start(self.accounts(carol=carol, dave=dave))
        swapped = self.accounts(
            carol=account(token=TOKENS["c1"], endpoint=_loopback(two)),
            dave=account(token=TOKENS["c1"] + "d", endpoint=_loopback(one)),
        )
        text = yield self.refused(service, swapped)
        self.assertEqual(
            text,
            f"account carol: accounts.carol.options.incoming.endpoint {_loopback(two)!r} would"
            f" listen on port {two} of 127.0.0.1, which the running configuration's"
            f" accounts.dave.options.incoming.endpoint {_loopback(two)!r} still holds: a"
            " reload binds new ports before it releases old ones, so free the port in one"
            " reload and take it in the next (or restart)",
        )
        self.assertEqual(service.plugins["carol"].port.getHost().port, one)
        self.assertEqual(service.plugins["dave"].port.getHost().port, two)
        # widening one account's port to every interface is the same case
        wide = self.accounts(carol=account(token=TOKENS["c1"], endpoint=f"tcp:{one}"), dave=dave)
        text = yield self.refused(service, wide)
        self.assertIn(f"would listen on port {one} (127.0.0.1 and 0.0.0.0)", text)
        # in two reloads: dave leaves, then carol takes his port
        self.write(self.accounts(carol=carol))
        first = yield service.reload()
        yield first.drained  # dave's port is closed
        self.write(self.accounts(carol=swapped["carol"]))
        summary = yield service.reload()
        self.assertEqual(summary.changes.moved, ("carol",))
        self.assertEqual(service.plugins["carol"].port.getHost().port, two)
