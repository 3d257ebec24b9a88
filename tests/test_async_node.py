"""A node (hub) between an RFC 35 asynchronous peer and a synchronous one, both directions.

The asynchronous peer is the independent ``interop/peers/rfc35.js``, the
synchronous one the rafiki emulator (``interop/peers/rafiki.js``); the hub is
``ilphttp.node.make_node`` from a node file, as ``twistd ilphttp --config``
builds it, with the asynchronous account on the node's shared listener.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from ilphttp.node import make_node
from ilphttp.nodeconfig import parse_node
from tests.support.async_hub import (
    HUB_TO_RAFIKI,
    HUB_TO_RFC35,
    RAFIKI_TO_HUB,
    RFC35_TO_HUB,
    hub_file,
)
from tests.support.packets import data_prepare, expect_fulfill
from tests.support.peers import start_emulated_peer
from tests.support.ports import free_port
from tests.support.reactor import within


class HubTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_async_peer_to_sync_peer_and_back(self) -> Any:
        rfc35 = yield start_emulated_peer(
            self, "rfc35", {"incomingToken": HUB_TO_RFC35, "outgoingToken": RFC35_TO_HUB}
        )
        rafiki = yield start_emulated_peer(
            self, "rafiki", {"peers": {"hub": {"incomingTokens": [HUB_TO_RAFIKI]}}}
        )
        port = free_port()
        config = parse_node(hub_file(port, rfc35, rafiki))
        [spec] = [s for s in config.accounts if s.name == "async"]
        assert spec.options.outgoing is not None
        self.assertEqual(spec.options.outgoing.mode, "async")
        node = make_node(config)
        node.startService()
        self.addCleanup(node.stopService)
        hub_url = f"http://127.0.0.1:{port}/accounts/async/ilp"

        # async -> hub -> sync: 202 at once, the rafiki's Fulfill POSTed back
        _, raw, fulfillment = data_prepare("test.rafiki.bob", payload=b"from rfc35")
        sent = yield within(rfc35.send(raw, url=hub_url), 10)
        self.assertEqual((sent.stage, sent.response["status"]), ("callback", 202))
        expect_fulfill(self, sent.reply, fulfillment)
        [forwarded] = yield rafiki.received()
        self.assertEqual(forwarded[-len(b"from rfc35") :], b"from rfc35")

        # sync -> hub -> async: the rafiki gets its Fulfill in the response,
        # the hub got it on its callback URL
        _, raw, fulfillment = data_prepare("test.rfc35.alice", payload=b"from rafiki")
        sent = yield within(
            rafiki.send(raw, endpoint=f"http://127.0.0.1:{port}/", authToken=RAFIKI_TO_HUB), 10
        )
        self.assertEqual((sent.stage, sent.response["status"]), ("peer", 200))
        expect_fulfill(self, sent.reply, fulfillment)
        requests = yield rfc35.requests()
        [prepare_leg] = [r for r in requests if r["url"] == "/ilp"]
        self.assertEqual(prepare_leg["status"], 202)
        self.assertEqual(prepare_leg["headers"]["callback-url"], hub_url)
        [delivery] = (yield rfc35.command("deliveries"))["deliveries"]
        self.assertEqual(delivery["outcome"], "delivered")
        self.assertEqual(len(node.plugins["async"]._async.pending), 0)

    @inlineCallbacks
    def test_an_async_account_toward_a_sync_only_peer(self) -> Any:
        """The rafiki ignores Callback-Url and answers 200 with the reply: that is the answer."""
        from ilphttp.plugin import PluginHttp

        rafiki = yield start_emulated_peer(
            self, "rafiki", {"peers": {"hub": {"incomingTokens": [HUB_TO_RAFIKI]}}}
        )
        port = free_port()
        plugin = PluginHttp(
            incoming={"endpoint": f"tcp:{port}:interface=127.0.0.1", "static_token": "t"},
            outgoing={
                "url": rafiki.url("/"),
                "static_token": HUB_TO_RAFIKI,
                "mode": "async",
                "callback_url": f"http://127.0.0.1:{port}/",
            },
        )
        self.addCleanup(plugin.disconnect)
        yield plugin.connect()
        _, raw, fulfillment = data_prepare("test.rafiki.bob")
        reply = yield within(plugin.send_data(raw), 10)
        expect_fulfill(self, reply, fulfillment)
        [seen] = yield rafiki.requests()
        self.assertEqual(seen["status"], 200)
        self.assertIn("callback-url", seen["headers"])
        self.assertEqual(len(plugin._async.pending), 0)
