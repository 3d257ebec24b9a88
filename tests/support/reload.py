"""A node started from a file on loopback, to reload (tests of ilphttp.reload)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET

from ilphttp.config_file import ConfigFile, OperationFlags
from ilphttp.node import NodeService, make_node
from ilphttp.packet import deserialize_prepare
from tests.support.clients import http_agent, request
from tests.support.fakes import Captured, CaptureServer, LogCapture
from tests.support.packets import Made, make_prepare

LOOPBACK = "tcp:0:interface=127.0.0.1"
TOKENS = {name: f"reload-test-{name}-token-0123456789" for name in ("a1", "a2", "b1", "b2", "c1")}


def account(
    relation: str = "child",
    endpoint: str | None = LOOPBACK,
    token: str | None = None,
    url: str | None = None,
    out_token: str | None = None,
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if token is not None:
        options["incoming"] = {"staticToken": token}
        if endpoint is not None:
            options["incoming"]["endpoint"] = endpoint
    if url is not None:
        options["outgoing"] = {"url": url, "staticToken": out_token or "x" * 32}
    return {"relation": relation, "options": options}


def node_data(accounts: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "ilpAddress": "test.hub",
        "assetCode": "XRP",
        "assetScale": 9,
        **top,
        "accounts": accounts,
    }


class Holding:
    """A CaptureServer's responder that holds requests until told to answer them."""

    def __init__(self) -> None:
        self.held: list[tuple[Any, bytes]] = []
        self.hold = True

    def __call__(self, http_request: Any, captured: Captured) -> Any:
        made = FULFILMENTS.get(deserialize_prepare(captured.body).execution_condition)
        body = made.fulfill() if made is not None else b""
        if self.hold:
            self.held.append((http_request, body))
            return NOT_DONE_YET
        return body

    def release(self) -> None:
        held, self.held = self.held, []
        for http_request, body in held:
            http_request.write(body)
            http_request.finish()


#: each Prepare's condition -> how it is fulfilled (the remote peers answer from it)
FULFILMENTS: dict[bytes, Made] = {}


def prepare(destination: str) -> Made:
    made = make_prepare(time.time(), destination=destination)
    FULFILMENTS[made.prepare.execution_condition] = made
    return made


class ReloadCase(TestCase):
    """A node from a file on 127.0.0.1 (:meth:`start`), its file rewritten (:meth:`write`),
    alice (a peer that only listens) and bob (a child, with a peer that holds what it is
    sent: :attr:`bob_peer`)."""

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.path = os.path.abspath(self.mktemp()) + ".json"
        self.bob = yield CaptureServer(self).start()
        self.bob_peer = Holding()
        self.bob.resource.responder = self.bob_peer
        self.agent = http_agent(self)
        self.logs = LogCapture(self)

    def accounts(self, a: str = "a1", b: str = "b1", **more: Any) -> dict[str, Any]:
        return {
            "alice": account("peer", token=TOKENS[a]),
            "bob": account(token=TOKENS["b1"], url=self.bob.url(), out_token=TOKENS[b]),
            **more,
        }

    def write(self, accounts: dict[str, Any], **top: Any) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(node_data(accounts, **top), f)

    def start(
        self, accounts: dict[str, Any], flags: OperationFlags | None = None, **top: Any
    ) -> NodeService:
        """The node from a file of ``accounts`` and ``top`` (``metrics``...), with the
        command-line ``flags`` (``--metrics``...) over it at start and at each reload."""
        self.write(accounts, **top)
        config_file = ConfigFile(self.path, {}, operation_flags=flags or OperationFlags())
        service = make_node(config_file.read())
        service.config_file = config_file
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def url(self, service: NodeService, name: str) -> str:
        port = service.plugins[name].port
        assert port is not None
        return f"http://127.0.0.1:{port.getHost().port}/"

    def send(self, url: str, token: str, made: Made) -> defer.Deferred[Any]:
        return request(
            self.agent, url, made.packet, {b"authorization": b"Bearer " + token.encode()}
        )
