"""``twistd -n ilphttp --config FILE`` between an RFC 35 asynchronous peer and a synchronous one.

A real twistd process (this checkout on its PYTHONPATH) runs the node file of
:mod:`tests.support.async_hub`: the account ``async`` sends to the independent
``interop/peers/rfc35.js`` with ``"mode": "async"``, the account ``sync`` to
the rafiki emulator.  Packets are forwarded both ways through the process.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

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
from tests.support.twistd import start_twistd


class TwistdHubTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_forwarding_both_ways_through_twistd(self) -> Any:
        rfc35 = yield start_emulated_peer(
            self, "rfc35", {"incomingToken": HUB_TO_RFC35, "outgoingToken": RFC35_TO_HUB}
        )
        rafiki = yield start_emulated_peer(
            self, "rafiki", {"peers": {"hub": {"incomingTokens": [HUB_TO_RAFIKI]}}}
        )
        port = free_port()
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        config = os.path.join(workdir, "hub.json")
        with open(config, "w", encoding="utf-8") as f:
            json.dump(hub_file(port, rfc35, rafiki), f)
        node = start_twistd(self, workdir, "--config", config)
        self.addCleanup(node.stop)
        yield node.wait_for(r"account sync: peer, on the node's listeners")
        hub = f"http://127.0.0.1:{port}"

        # async -> twistd -> sync: 202 at once, the rafiki's Fulfill POSTed back
        for i in range(3):
            payload = b"from rfc35 %d" % i
            _, raw, fulfillment = data_prepare("test.rafiki.bob", payload=payload)
            sent = yield within(rfc35.send(raw, url=f"{hub}/accounts/async/ilp"), 20)
            self.assertEqual((sent.stage, sent.response["status"]), ("callback", 202))
            expect_fulfill(self, sent.reply, fulfillment)
        forwarded = yield rafiki.received()
        self.assertEqual(len(forwarded), 3)

        # sync -> twistd -> async: the hub's Prepare leg gets 202, the Fulfill
        # comes to its callback URL, the rafiki has it in its response
        for i in range(3):
            _, raw, fulfillment = data_prepare("test.rfc35.alice", payload=b"from rafiki %d" % i)
            sent = yield within(rafiki.send(raw, endpoint=f"{hub}/", authToken=RAFIKI_TO_HUB), 20)
            self.assertEqual((sent.stage, sent.response["status"]), ("peer", 200))
            expect_fulfill(self, sent.reply, fulfillment)
        requests = yield rfc35.requests()
        legs = [r for r in requests if r["url"] == "/ilp"]
        self.assertEqual([leg["status"] for leg in legs], [202] * 3)
        self.assertEqual(
            {leg["headers"]["callback-url"] for leg in legs}, {f"{hub}/accounts/async/ilp"}
        )
        deliveries = (yield rfc35.command("deliveries"))["deliveries"]
        self.assertEqual([d["outcome"] for d in deliveries], ["delivered"] * 3)
        yield node.stop()
        self.assertNotIn("Traceback", node.text())
