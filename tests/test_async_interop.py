"""RFC 35 asynchronous mode against an independent peer (``interop/peers/rfc35.js``), both roles.

The node peer is written from the RFC's text alone; ilphttp must work with it
as the sender of Prepares (its replies come to our callback URL) and as the
receiver (we answer ``202`` and POST our replies to its callback URL).
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from ilphttp.packet import ErrorCode, Fulfill, serialize
from ilphttp.plugin import PluginHttp
from tests.support.packets import data_prepare, expect_fulfill, expect_reject
from tests.support.peers import EmulatedPeer, start_emulated_peer
from tests.support.ports import free_port
from tests.support.reactor import global_reactor, within

TO_US = "rfc35-to-ilphttp-token"
TO_PEER = "ilphttp-to-rfc35-token"


def _sleep(seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(global_reactor(), seconds, lambda: None)


class NodePeerTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.peer: EmulatedPeer = yield start_emulated_peer(
            self, "rfc35", {"incomingToken": TO_PEER, "outgoingToken": TO_US}
        )
        port = free_port()
        self.our_url = f"http://127.0.0.1:{port}/ilp"
        self.plugin = PluginHttp(
            incoming={"endpoint": f"tcp:{port}:interface=127.0.0.1", "static_token": TO_US},
            outgoing={
                "url": self.peer.url("/ilp"),
                "static_token": TO_PEER,
                "mode": "async",
                "callback_url": self.our_url,
            },
            address="test.ilphttp",
        )
        self.calls: list[bytes] = []

        def handler(data: bytes) -> bytes:
            from tests.support.packets import fulfil_from_data

            self.calls.append(data)
            return fulfil_from_data(data)

        self.plugin.register_data_handler(handler)
        self.addCleanup(self.plugin.disconnect)
        yield self.plugin.connect()

    def deliveries(self) -> Any:
        return self.peer.command("deliveries").addCallback(lambda r: r["deliveries"])

    # -- ilphttp sends, the node peer receives ---------------------------------------

    @inlineCallbacks
    def test_we_send_it_replies_on_our_callback(self) -> Any:
        _, raw, fulfillment = data_prepare("test.rfc35")
        reply = yield within(self.plugin.send_data(raw), 10)
        expect_fulfill(self, reply, fulfillment)
        [seen] = yield self.peer.requests()
        self.assertEqual((seen["status"], seen["rule"]), (202, "accepted"))
        self.assertEqual(seen["headers"]["callback-url"], self.our_url)
        self.assertEqual(uuid.UUID(seen["headers"]["request-id"]).version, 4)
        [delivery] = yield self.deliveries()
        self.assertEqual(delivery["outcome"], "delivered")
        self.assertEqual([a.get("status") for a in delivery["attempts"]], [200])
        self.assertEqual(delivery["requestId"], seen["headers"]["request-id"])

    @inlineCallbacks
    def test_a_duplicate_reply_is_400(self) -> Any:
        _, raw, fulfillment = data_prepare("test.rfc35")
        reply = yield within(self.plugin.send_data(raw), 10)
        expect_fulfill(self, reply, fulfillment)
        [delivery] = yield self.deliveries()
        again = yield self.peer.command(
            "post",
            url=self.our_url,
            headers={
                "authorization": "Bearer " + TO_US,
                "content-type": "application/octet-stream",
                "request-id": delivery["requestId"],
            },
            body=serialize(Fulfill(fulfillment)).hex(),
        )
        self.assertEqual(again["status"], 400)
        self.assertIn(b"already answered", bytes.fromhex(again["body"]))

    @inlineCallbacks
    def test_a_reply_after_expiry_is_400_and_we_had_r00(self) -> Any:
        yield self.peer.set_handler("fulfill", delayMs=1500)
        _, raw, _ = data_prepare("test.rfc35", seconds=0.8)
        reply = yield within(self.plugin.send_data(raw), 10)
        expect_reject(self, reply, ErrorCode.R00_TRANSFER_TIMED_OUT)
        yield _sleep(1.2)
        [delivery] = yield self.deliveries()
        self.assertEqual(delivery["outcome"], "refused")
        self.assertEqual([a.get("status") for a in delivery["attempts"]], [400])

    @inlineCallbacks
    def test_its_reject_comes_back(self) -> Any:
        yield self.peer.set_handler("reject", code="F02", message="no route")
        _, raw, _ = data_prepare("test.rfc35")
        reply = yield within(self.plugin.send_data(raw), 10)
        self.assertEqual(expect_reject(self, reply, "F02").message, "no route")

    # -- the node peer sends, ilphttp receives -----------------------------------------

    @inlineCallbacks
    def test_it_sends_we_reply_on_its_callback(self) -> Any:
        _, raw, fulfillment = data_prepare("test.ilphttp")
        sent = yield self.peer.send(raw, url=self.our_url)
        self.assertEqual((sent.stage, sent.response["status"]), ("callback", 202))
        self.assertEqual(sent.response["body"], "")
        expect_fulfill(self, sent.reply, fulfillment)
        self.assertEqual(self.calls, [raw])

    @inlineCallbacks
    def test_its_callback_answering_503_twice_then_200_gets_three_attempts(self) -> Any:
        yield self.peer.command("callback", failFirst=2, status=503)
        _, raw, fulfillment = data_prepare("test.ilphttp")
        sent = yield self.peer.send(raw, url=self.our_url)
        expect_fulfill(self, sent.reply, fulfillment)
        requests = yield self.peer.requests()
        replies = [r for r in requests if r["url"] == "/incoming/ilp"]
        self.assertEqual([r["status"] for r in replies], [503, 503, 200])
        for r in replies:
            self.assertEqual(r["headers"]["request-id"], sent.request["headers"]["request-id"])
            self.assertEqual(r["headers"]["authorization"], "Bearer " + TO_PEER)
            self.assertEqual(r["headers"]["content-type"], "application/octet-stream")

    @inlineCallbacks
    def test_a_foreign_callback_url_is_400(self) -> Any:
        _, raw, _ = data_prepare("test.ilphttp")
        sent = yield self.peer.send(raw, url=self.our_url, callbackUrl="http://evil.example/cb")
        self.assertEqual((sent.stage, sent.response["status"]), ("http-status", 400))
        expect_reject(self, sent.reply, "F00")
        self.assertEqual(self.calls, [])

    @inlineCallbacks
    def test_a_bad_request_id_is_400(self) -> Any:
        _, raw, _ = data_prepare("test.ilphttp")
        sent = yield self.peer.send(raw, url=self.our_url, requestId="not-a-uuid")
        self.assertEqual(sent.response["status"], 400)
        self.assertEqual(self.calls, [])

    @inlineCallbacks
    def test_a_wrong_token_on_the_prepare_is_401(self) -> Any:
        _, raw, _ = data_prepare("test.ilphttp")
        sent = yield self.peer.send(raw, url=self.our_url, token="wrong")
        self.assertEqual(sent.response["status"], 401)
        self.assertEqual(self.calls, [])
