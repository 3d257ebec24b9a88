"""ilphttp's PluginHttp against the emulated rafiki, Java connector and interledger-rs.

``interop/peers/*.js`` apply each implementation's ILP-over-HTTP rules, read
from its sources (``docs/peering/rules.md``).  Both directions, static
tokens: our client to each peer's server (the Fulfill comes back, and the
peer's rules accepted our headers), and each peer's client to our listener
(the reply it would pass upstream is our Fulfill).  These tests are the proof
behind ``docs/peering/*.rst``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.trial import unittest

from ilphttp import ErrorCode, PluginHttp
from ilphttp.config import PluginOptions
from ilphttp.nodeconfig import load_file, parse_node
from ilphttp.packet import Fulfill, Reject, deserialize, serialize
from tests.support.jsinterop import plugin_options, require_node, start_peer
from tests.support.packets import data_prepare, fulfil_from_data
from tests.support.peers import EmulatedPeer, require_peers, start_emulated_peer
from tests.support.ports import LOOPBACK_ENDPOINT, free_port, plugin_url

#: the node configs that docs/peering/*.rst include
DOCUMENTED = Path(__file__).resolve().parents[1] / "docs" / "peering" / "configs"

#: the token each peer expects from us, and the one we expect from it
TO_PEER = "token-we-send"
FROM_PEER = "token-we-accept"
OCTET_STREAM = "application/octet-stream"


def peer_config(impl: str, account: str, strict: bool = False) -> dict[str, Any]:
    """The peer's config that knows us as ``account`` by :data:`TO_PEER`."""
    if impl == "rafiki":
        # rafiki finds the peer by its token alone; a peer may have several.
        return {"peers": {account: {"incomingTokens": ["an-older-token", TO_PEER]}}}
    if impl == "java":
        return {"accounts": {account: {"authType": "SIMPLE", "token": TO_PEER}}}
    return {"accounts": {account: {"token": TO_PEER}}, "strict": strict}


def peer_path(impl: str, account: str) -> str:
    """Where ``impl`` serves ``account``: rafiki any path, the others
    ``/accounts/{id}/ilp``."""
    return "/" if impl == "rafiki" else f"/accounts/{account}/ilp"


def client_overrides(impl: str, url: str) -> dict[str, Any]:
    """The peer's outgoing settings for our listener, named as in its sources."""
    if impl == "rafiki":
        return {"endpoint": url, "authToken": FROM_PEER}
    if impl == "java":
        return {"url": url, "authType": "SIMPLE", "token": FROM_PEER}
    return {"url": url, "token": FROM_PEER}


#: (label, implementation, interledger-rs strict); account ids are \w{2,32}
LINKS = [
    ("rafiki", "rafiki", False),
    ("java", "java", False),
    ("rust", "rust", False),
    ("rust strict", "rust", True),
]


def documented_options(name: str, peer_base: str) -> PluginOptions:
    """The one account of ``docs/peering/configs/<name>.json``, as ``twistd
    ilphttp --config`` reads it, its tokens from the environment variables the
    page names; listening on a free loopback port and sending to ``peer_base``
    (``http://127.0.0.1:<port>``) with the documented path."""
    upper = name.upper()
    environ = {f"{upper}_TO_US_TOKEN": FROM_PEER, f"US_TO_{upper}_TOKEN": TO_PEER}
    node = parse_node(load_file(str(DOCUMENTED / f"{name}.json")), str(DOCUMENTED), environ)
    [account] = node.accounts
    options = account.options
    assert options.incoming is not None and options.outgoing is not None
    url = peer_base + urlsplit(options.outgoing.url).path
    return dataclasses.replace(
        options,
        incoming=dataclasses.replace(options.incoming, endpoint=LOOPBACK_ENDPOINT, port=None),
        outgoing=dataclasses.replace(options.outgoing, url=url),
    )


class _Case(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        require_peers()

    @defer.inlineCallbacks
    def plugin(self, handler: Any = fulfil_from_data, **options: Any) -> Any:
        plugin = PluginHttp(**options)
        if handler is not None:
            plugin.register_data_handler(handler)
        yield plugin.connect()
        self.addCleanup(plugin.disconnect)
        return plugin

    @defer.inlineCallbacks
    def link(self, impl: str, strict: bool = False, **outgoing: Any) -> Any:
        """An emulated peer and a PluginHttp peered with it, static tokens both
        ways: the documented node config, or these ``outgoing`` options."""
        peer: EmulatedPeer = yield start_emulated_peer(
            self, impl, peer_config(impl, "ilphttp", strict)
        )
        if outgoing:
            plugin = yield self.plugin(
                incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": FROM_PEER},
                outgoing=dict(
                    {"url": peer.url(peer_path(impl, "ilphttp")), "static_token": TO_PEER},
                    **outgoing,
                ),
            )
        else:
            plugin = yield self.plugin(options=documented_options(impl, peer.url("")))
        return peer, plugin


class OutgoingTests(_Case):
    """PluginHttp -> each peer's server."""

    @defer.inlineCallbacks
    def test_fulfill_comes_back_with_headers_each_peer_accepts(self) -> Any:
        for label, impl, strict in LINKS:
            peer, plugin = yield self.link(impl, strict)
            prepare, raw, fulfillment = data_prepare("test.peer.bob", payload=label.encode())
            reply = yield plugin.send_data(raw)
            # The emulated handler fulfils with the first 32 bytes and returns the data.
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data), label)
            self.assertEqual((yield peer.received()), [raw], label)
            [request] = yield peer.requests()
            headers = request["headers"]
            self.assertEqual((request["method"], request["status"]), ("POST", 200), label)
            self.assertEqual(request["url"], peer_path(impl, "ilphttp"), label)
            self.assertEqual(request["rule"], "ok", label)
            self.assertEqual(request["body"], raw, label)
            # rafiki: /^Bearer$/i, one space; Java: "Bearer " exactly;
            # interledger-rs: drops 7 characters unchecked.
            self.assertEqual(headers["authorization"], f"Bearer {TO_PEER}", label)
            # rafiki: exactly application/octet-stream; RFC 35: both MUST.
            self.assertEqual(headers["content-type"], OCTET_STREAM, label)
            self.assertEqual(headers["accept"], OCTET_STREAM, label)
            # interledger-rs: 411 without a Content-Length.
            self.assertEqual(headers["content-length"], str(len(raw)), label)
            self.assertNotIn("transfer-encoding", headers, label)

    @defer.inlineCallbacks
    def test_rafiki_finds_us_by_any_of_our_tokens(self) -> Any:
        peer: EmulatedPeer = yield start_emulated_peer(
            self, "rafiki", peer_config("rafiki", "ilphttp")
        )
        for token in ("an-older-token", TO_PEER):
            plugin = yield self.plugin(
                handler=None, outgoing={"url": peer.url("/any/path"), "static_token": token}
            )
            prepare, raw, fulfillment = data_prepare("test.rafiki.x")
            reply = yield plugin.send_data(raw)
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data), token)

    @defer.inlineCallbacks
    def test_what_each_peer_makes_of_our_outgoing_options(self) -> Any:
        """The options a user may change, and which peers accept the result:
        the old content type only where the peer allows it, the raw token (JS
        legacy ``secret_token``) only toward Java."""
        ilp_type: dict[str, Any] = {"content_type": "application/ilp+octet-stream"}
        raw_token: dict[str, Any] = {"static_token": None, "secret_token": TO_PEER}
        cases = [
            # (implementation, outgoing options, expected: None = Fulfill, else
            #  (our Reject code, the peer's rule that refused us))
            ("rafiki", ilp_type, (ErrorCode.F00_BAD_REQUEST, "content-type")),
            ("java", ilp_type, None),
            ("rust", ilp_type, None),
            ("rafiki", raw_token, (ErrorCode.T00_INTERNAL_ERROR, "auth:no-bearer-token")),
            ("java", raw_token, None),
            # interledger-rs drops the first 7 characters of a raw token.
            ("rust", raw_token, (ErrorCode.T00_INTERNAL_ERROR, "auth:token-mismatch")),
        ]
        for impl, outgoing, expected in cases:
            peer, plugin = yield self.link(impl, **outgoing)
            prepare, raw, fulfillment = data_prepare("test.peer.x")
            reply = deserialize((yield plugin.send_data(raw)))
            [request] = yield peer.requests()
            label = f"{impl} {outgoing}"
            if expected is None:
                self.assertEqual(reply, Fulfill(fulfillment, prepare.data), label)
                self.assertEqual(request["rule"], "ok", label)
            else:
                assert isinstance(reply, Reject), label
                self.assertEqual((reply.code, request["rule"]), expected, label)
                self.assertEqual((yield peer.received()), [], label)


class RafikiRegressionTests(_Case):
    """Issue 10: ilphttp -> rafiki failed on every packet (HTTP 400 -> F00)."""

    @defer.inlineCallbacks
    def test_send_only_plugin_gets_rafikis_fulfill(self) -> Any:
        rafiki: EmulatedPeer = yield start_emulated_peer(
            self, "rafiki", {"peers": {"ilphttp": {"incomingTokens": ["t"]}}}
        )
        plugin = PluginHttp(outgoing={"url": rafiki.url(), "static_token": "t"})
        yield plugin.connect()
        self.addCleanup(plugin.disconnect)
        prepare, raw, fulfillment = data_prepare("test.rafiki.alice")
        reply = deserialize((yield plugin.send_data(raw)))
        self.assertEqual(reply, Fulfill(fulfillment, prepare.data))
        [request] = yield rafiki.requests()
        self.assertEqual((request["status"], request["rule"]), (200, "ok"))


class IncomingTests(_Case):
    """Each peer's client -> a PluginHttp listener."""

    @defer.inlineCallbacks
    def test_peer_passes_our_fulfill_upstream(self) -> Any:
        for label, impl, strict in LINKS:
            peer, plugin = yield self.link(impl, strict)
            url = plugin_url(plugin, peer_path(impl, impl))
            _, raw, fulfillment = data_prepare("test.ilphttp.x", payload=label.encode())
            sent = yield peer.send(raw, **client_overrides(impl, url))
            self.assertEqual(sent.stage, "peer", label)
            assert sent.response is not None, label
            self.assertEqual(sent.response["status"], 200, label)
            self.assertEqual(sent.response["headers"]["content-type"], OCTET_STREAM, label)
            # fulfil_from_data: the first 32 bytes fulfil, the rest is the Fulfill's data.
            self.assertEqual(deserialize(sent.reply), Fulfill(fulfillment, label.encode()), label)
            # What the peer sent, as its client does (rafiki's axios Accept, Java's
            # Accept octet-stream, reqwest's */*): all served.
            self.assertEqual(sent.request["url"], url, label)

    @defer.inlineCallbacks
    def test_peer_passes_our_reject_upstream(self) -> Any:
        def refuse(data: bytes) -> bytes:
            return serialize(Reject(ErrorCode.F99_APPLICATION_ERROR, "test.ilphttp", "no", b""))

        for label, impl, strict in LINKS:
            peer: EmulatedPeer = yield start_emulated_peer(
                self, impl, peer_config(impl, "ilphttp", strict)
            )
            plugin = yield self.plugin(
                handler=refuse,
                incoming={"endpoint": LOOPBACK_ENDPOINT, "static_token": FROM_PEER},
            )
            url = plugin_url(plugin, peer_path(impl, impl))
            sent = yield peer.send(data_prepare("test.ilphttp.x")[1], **client_overrides(impl, url))
            self.assertEqual(sent.stage, "peer", label)
            reply = deserialize(sent.reply)
            assert isinstance(reply, Reject), label
            self.assertEqual(
                (reply.code, reply.triggered_by, reply.message),
                (ErrorCode.F99_APPLICATION_ERROR, "test.ilphttp", "no"),
                label,
            )

    @defer.inlineCallbacks
    def test_wrong_token_is_refused_as_each_peer_maps_401(self) -> Any:
        """Our 401 as each peer's client reports it (``rules.md`` summary table)."""
        cases = [("rafiki", "T00"), ("java", "F00"), ("rust", "F02")]
        for impl, code in cases:
            peer, plugin = yield self.link(impl)
            url = plugin_url(plugin, peer_path(impl, impl))
            overrides = client_overrides(impl, url)
            overrides["authToken" if impl == "rafiki" else "token"] = "not-our-token"
            sent = yield peer.send(data_prepare("test.ilphttp.x")[1], **overrides)
            assert sent.response is not None, impl
            self.assertEqual((sent.stage, sent.response["status"]), ("http-status", 401), impl)
            reply = deserialize(sent.reply)
            assert isinstance(reply, Reject), impl
            self.assertEqual((reply.code, reply.triggered_by), (code, peer.address), impl)


class JsPluginTests(_Case):
    """The documented config toward the real JS ``ilp-plugin-http`` 1.6.1, both
    directions (ilp-connector runs the same plugin; see test_interop_plugin)."""

    def setUp(self) -> None:
        require_node()

    @defer.inlineCallbacks
    def test_documented_config_both_directions(self) -> Any:
        js_port = free_port()
        plugin = yield self.plugin(options=documented_options("js", f"http://127.0.0.1:{js_port}"))
        js = yield start_peer(
            self,
            plugin_options(
                js_port, plugin_url(plugin), incoming_token=TO_PEER, outgoing_token=FROM_PEER
            ),
        )
        prepare, raw, fulfillment = data_prepare("test.js.x")
        reply = yield plugin.send_data(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data))
        [request] = yield js.requests()
        headers = request["headers"]
        self.assertEqual(headers["authorization"], f"Bearer {TO_PEER}")
        self.assertEqual(headers["content-type"], OCTET_STREAM)
        self.assertEqual(headers["accept"], OCTET_STREAM)
        self.assertEqual(headers["ilp-peer-name"], "ours")
        _, raw, fulfillment = data_prepare("test.ours.x", payload=b"from js")
        reply = yield js.send(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"from js"))
