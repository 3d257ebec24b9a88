"""RFC 35 asynchronous mode in a node that reloads or stops: the replies still get in.

A node (hub) sends asynchronously to Bob; while Bob's handler works,

* the operator changes Bob's account and reloads: the new plugin takes over
  the account's port, and Bob's reply POST must still reach the Prepare's
  sender (the old plugin), whose caller then gets the Fulfill
  (docs/reload.rst: packets in flight finish with the settings they started with);
* the node stops: its shared listener keeps taking Bob's reply (and refuses
  new Prepares) until it came.

Real loopback sockets.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from ilphttp.node import NodeService, make_node
from ilphttp.nodeconfig import parse_node
from ilphttp.packet import Fulfill, deserialize
from ilphttp.reload import ConfigFile
from tests.support.clients import http_agent, request
from tests.support.fakes import CaptureServer, answer
from tests.support.packets import make_prepare
from tests.support.ports import free_port
from tests.support.reactor import global_reactor, within

ALICE_IN = "async-reload-alice-token-0123456789"
BOB_IN = "async-reload-bob-in-token-0123456789"
BOB_OUT = ("async-reload-bob-out-token-1-0123456", "async-reload-bob-out-token-2-0123456")


class AsyncReloadTests(TestCase):
    timeout = 60

    def node_file(
        self, bob_port: int, bob_url: str, out_token: str, shared: bool = False
    ) -> dict[str, Any]:
        incoming: dict[str, Any] = {"staticToken": BOB_IN}
        callback = f"http://127.0.0.1:{bob_port}/accounts/bob/ilp"
        top: dict[str, Any] = {"listen": [f"tcp:{bob_port}:interface=127.0.0.1"]}
        if not shared:
            incoming["endpoint"] = f"tcp:{bob_port}:interface=127.0.0.1"
            callback, top = f"http://127.0.0.1:{bob_port}/", {}
        outgoing = {
            "url": bob_url,
            "staticToken": out_token,
            "mode": "async",
            "callbackUrl": callback,
        }
        alice = {"endpoint": "tcp:0:interface=127.0.0.1", "staticToken": ALICE_IN}
        return {
            "ilpAddress": "test.hub",
            "assetCode": "XRP",
            "assetScale": 9,
            **top,
            "accounts": {
                "alice": {"relation": "peer", "options": {"incoming": alice}},
                "bob": {
                    "relation": "child",
                    "options": {"incoming": incoming, "outgoing": outgoing},
                },
            },
        }

    @defer.inlineCallbacks
    def test_a_reply_after_a_reload_reaches_the_old_plugin(self) -> Any:
        bob = yield CaptureServer(self).start()
        bob.resource.responder = answer(202)
        bob_port = free_port()
        path = os.path.abspath(self.mktemp()) + ".json"

        def write(out_token: str) -> None:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.node_file(bob_port, bob.url(), out_token), f)

        write(BOB_OUT[0])
        config_file = ConfigFile(path, {})
        service: NodeService = make_node(config_file.read())
        service.config_file = config_file
        service.startService()
        self.addCleanup(service.stopService)
        old_bob = service.plugins["bob"]
        alice_port = service.plugins["alice"].port
        assert alice_port is not None
        agent = http_agent(self)

        made = make_prepare(time.time(), destination="test.hub.bob.one", expires_in=20)
        arrived = bob.resource.next_request()
        in_flight = request(
            agent,
            f"http://127.0.0.1:{alice_port.getHost().port}/",
            made.packet,
            {b"authorization": b"Bearer " + ALICE_IN.encode()},
        )
        captured = yield within(arrived, 10)
        request_id = captured.header(b"request-id")
        assert request_id is not None

        write(BOB_OUT[1])  # e.g. a rotated outgoing token
        summary = yield service.reload()
        self.assertEqual(summary.changes.changed, ("bob",))
        self.assertIsNot(service.plugins["bob"], old_bob)

        # Bob's handler answers now: his reply POST comes to the account's port
        reply = yield within(
            request(
                agent,
                f"http://127.0.0.1:{bob_port}/",
                made.fulfill(b"after reload"),
                {
                    b"authorization": b"Bearer " + BOB_IN.encode(),
                    b"content-type": b"application/octet-stream",
                    b"request-id": request_id,
                },
            ),
            10,
        )
        self.assertEqual((reply.code, reply.body), (200, b""))
        result = yield within(in_flight, 10)
        self.assertEqual(result.code, 200)
        fulfill = deserialize(result.body)
        assert isinstance(fulfill, Fulfill)
        self.assertEqual(fulfill.fulfillment, made.fulfillment)
        yield within(summary.drained, 20)
        self.assertFalse(old_bob.is_connected())

    @defer.inlineCallbacks
    def test_a_stopping_node_takes_the_reply_on_its_shared_listener(self) -> Any:
        bob = yield CaptureServer(self).start()
        bob.resource.responder = answer(202)
        bob_port = free_port()
        service = make_node(parse_node(self.node_file(bob_port, bob.url(), BOB_OUT[0], True)))
        service.startService()
        self.addCleanup(service.stopService)
        alice_port = service.plugins["alice"].port
        assert alice_port is not None
        agent = http_agent(self)
        shared_url = f"http://127.0.0.1:{bob_port}/accounts/bob/ilp"
        headers = {
            b"authorization": b"Bearer " + BOB_IN.encode(),
            b"content-type": b"application/octet-stream",
        }

        made = make_prepare(time.time(), destination="test.hub.bob.one", expires_in=20)
        arrived = bob.resource.next_request()
        in_flight = request(
            agent,
            f"http://127.0.0.1:{alice_port.getHost().port}/",
            made.packet,
            {b"authorization": b"Bearer " + ALICE_IN.encode()},
        )
        captured = yield within(arrived, 10)
        request_id = captured.header(b"request-id")
        assert request_id is not None

        stopping = service.stopService()
        yield deferLater(global_reactor(), 0.5, lambda: None)
        self.assertNoResult(stopping)
        # a new Prepare for Bob's account meanwhile: refused
        fresh = make_prepare(time.time(), destination="test.hub.alice", expires_in=20)
        refused = yield within(request(agent, shared_url, fresh.packet, headers), 10)
        self.assertEqual(refused.code, 503)
        # Bob's reply: taken, and Alice's request gets the Fulfill
        reply = yield within(
            request(
                agent,
                shared_url,
                made.fulfill(b"while stopping"),
                {**headers, b"request-id": request_id},
            ),
            10,
        )
        self.assertEqual((reply.code, reply.body), (200, b""))
        result = yield within(in_flight, 10)
        fulfill = deserialize(result.body)
        assert isinstance(fulfill, Fulfill)
        self.assertEqual(fulfill.fulfillment, made.fulfillment)
        yield within(stopping, 30)
