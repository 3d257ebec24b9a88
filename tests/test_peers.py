"""ilphttp against the emulated rafiki, Java connector and interledger-rs.

``interop/peers/*.js`` apply each implementation's ILP-over-HTTP rules, read
from its sources (``docs/peering/rules.md``).  Both directions: our client to
each peer's server (the Fulfill comes back, and the peer's rules accepted our
headers), and each peer's client to our listener (the reply it would pass
upstream is our Fulfill).  With static tokens and a port per account
(PluginHttp), with HS256 JWTs carrying ``sub`` toward and from the Java
connector, and as one node with one shared port for all three peers
(``docs/peering/configs/shared.json`` through :func:`ilphttp.node.make_node`;
``tests/test_twistd_e2e.py`` runs the same file through ``twistd``).  These
tests are the proof behind ``docs/peering/*.rst``.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

import jwt
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from ilphttp import ErrorCode, PluginHttp
from ilphttp.config import PluginOptions
from ilphttp.node import HandlerContext, NodeService, make_node
from ilphttp.nodeconfig import NodeConfig, load_file, parse_node
from ilphttp.packet import Fulfill, Reject, deserialize, serialize
from tests.support.fronts import OverSite
from tests.support.jsinterop import plugin_options, require_node, start_peer
from tests.support.packets import data_prepare, fulfil_from_data
from tests.support.peers import (
    DOCUMENTED,
    JAVA_SUBJECT_OF_JAVA,
    JAVA_SUBJECT_OF_US,
    SHARED_ENV,
    EmulatedPeer,
    require_peers,
    shared_client,
    shared_node_file,
    shared_peer_config,
    start_emulated_peer,
)
from tests.support.plugins import connected_plugin
from tests.support.ports import LOOPBACK_ENDPOINT, free_port, plugin_url

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

    def plugin(self, handler: Any = fulfil_from_data, **options: Any) -> Any:
        return connected_plugin(self, handler, **options)

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

    @defer.inlineCallbacks
    def test_on_the_nodes_shared_listener(self) -> Any:
        """js.json with the account's endpoint removed and a node ``listen``:
        the JS plugin is found by its token, whatever the path."""
        js_port, node_port = free_port(), free_port()
        data = load_file(str(DOCUMENTED / "js.json"))
        del data["accounts"]["js"]["options"]["incoming"]["endpoint"]
        data["listen"] = [f"tcp:{node_port}:interface=127.0.0.1"]
        data["accounts"]["js"]["options"]["outgoing"]["url"] = f"http://127.0.0.1:{js_port}/"
        environ = {"JS_TO_US_TOKEN": FROM_PEER, "US_TO_JS_TOKEN": TO_PEER}
        node = make_node(parse_node(data, str(DOCUMENTED), environ), lambda _: fulfil_from_data)
        node.startService()
        self.addCleanup(node.stopService)
        js = yield start_peer(
            self,
            plugin_options(
                js_port,
                f"http://127.0.0.1:{node_port}/",
                incoming_token=TO_PEER,
                outgoing_token=FROM_PEER,
            ),
        )
        _, raw, fulfillment = data_prepare("test.ours.x", payload=b"from js")
        reply = yield js.send(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, b"from js"))
        prepare, raw, fulfillment = data_prepare("test.js.x")
        reply = yield node.plugins["js"].send_data(raw)
        self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data))


class JavaJwtTests(_Case):
    """HS256 JWTs both ways with the Java connector's ``JWT_HS_256`` profile:
    ``sub`` required and equal to the account's token subject, ``exp`` checked
    when present, ``iss``/``aud`` never looked at (``rules.md``, Java)."""

    @defer.inlineCallbacks
    def test_java_accepts_our_jwt_when_its_sub_is_the_accounts_subject(self) -> Any:
        java: EmulatedPeer = yield start_emulated_peer(self, "java", shared_peer_config("java"))
        secret = SHARED_ENV["US_TO_JAVA_JWT_SECRET"]
        cases: list[tuple[dict[str, Any], str]] = [
            # (our outgoing claims, the connector's rule: "ok" = served)
            ({"jwt_subject": JAVA_SUBJECT_OF_US}, "ok"),
            # java-jwt's withSubject(): a missing sub fails like a wrong one.
            ({}, "auth:jwt-invalid"),
            ({"jwt_subject": "someone-else"}, "auth:jwt-invalid"),
            # iss and aud are ignored for HS256.
            (
                {
                    "jwt_subject": JAVA_SUBJECT_OF_US,
                    "jwt_issuer": "https://ours.example",
                    "jwt_audience": "https://java.example",
                },
                "ok",
            ),
        ]
        for claims, rule in cases:
            plugin = yield self.plugin(
                handler=None,
                outgoing=dict(
                    {"url": java.url("/accounts/ilphttp/ilp"), "jwt_secret": secret}, **claims
                ),
            )
            prepare, raw, fulfillment = data_prepare("test.java.x")
            reply = deserialize((yield plugin.send_data(raw)))
            request = (yield java.requests())[-1]
            label = f"{claims}"
            self.assertEqual(request["rule"], rule, label)
            if rule == "ok":
                self.assertEqual(reply, Fulfill(fulfillment, prepare.data), label)
            else:
                assert isinstance(reply, Reject), label
                # The connector's 401: our client's credentials were refused.
                self.assertEqual((reply.code, request["status"]), ("T00", 401), label)
            scheme, token = request["headers"]["authorization"].split(" ")
            self.assertEqual(scheme, "Bearer", label)
            sent = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
            self.assertEqual(sent.get("sub"), claims.get("jwt_subject"), label)
            self.assertIn("exp", sent, label)

    @defer.inlineCallbacks
    def test_we_accept_javas_jwt_when_its_sub_is_our_subject(self) -> Any:
        java: EmulatedPeer = yield start_emulated_peer(self, "java", shared_peer_config("java"))
        secret = SHARED_ENV["JAVA_TO_US_JWT_SECRET"]
        cases: list[tuple[dict[str, Any], str, int]] = [
            # (our incoming checks, the sub the connector signs, our HTTP status)
            ({"subject": JAVA_SUBJECT_OF_JAVA}, JAVA_SUBJECT_OF_JAVA, 200),
            ({"subject": JAVA_SUBJECT_OF_JAVA}, "someone-else", 401),
            # sub is checked only when configured.
            ({}, "anyone", 200),
            # The connector's JWT has no aud: requiring one refuses it.
            ({"subject": JAVA_SUBJECT_OF_JAVA, "audience": "https://ours.example"}, "java", 401),
        ]
        for checks, subject, status in cases:
            plugin = yield self.plugin(
                incoming=dict({"endpoint": LOOPBACK_ENDPOINT, "jwt_secret": secret}, **checks)
            )
            url = plugin_url(plugin, "/accounts/java/ilp")
            _, raw, fulfillment = data_prepare("test.ilphttp.x", payload=b"from java")
            sent = yield java.send(
                raw, url=url, authType="JWT_HS_256", secret=secret, subject=subject
            )
            label = f"{checks} sub={subject}"
            assert sent.response is not None, label
            self.assertEqual(sent.response["status"], status, label)
            reply = deserialize(sent.reply)
            if status == 200:
                self.assertEqual(sent.stage, "peer", label)
                self.assertEqual(reply, Fulfill(fulfillment, b"from java"), label)
            else:
                # quilt's link: 401 -> F00 "Invalid Bearer Token", from the connector.
                assert isinstance(reply, Reject), label
                self.assertEqual((reply.code, reply.triggered_by), ("F00", java.address), label)

    @defer.inlineCallbacks
    def test_a_token_expiry_under_a_minute_signs_a_fresh_jwt_per_request(self) -> Any:
        """java.rst's ``token_expiry`` ``PT50S`` (here 3 s, to outlive it): quilt's
        cache is off, so the second request, after the first token's ``exp``,
        carries a new token that we accept (leeway 0).  Not 1 s: ``exp`` is in
        whole seconds, so a 1 s token may have only milliseconds left when it
        arrives on a loaded machine."""
        java: EmulatedPeer = yield start_emulated_peer(self, "java", shared_peer_config("java"))
        secret = SHARED_ENV["JAVA_TO_US_JWT_SECRET"]
        plugin = yield self.plugin(
            incoming={
                "endpoint": LOOPBACK_ENDPOINT,
                "jwt_secret": secret,
                "subject": JAVA_SUBJECT_OF_JAVA,
            }
        )
        java_client = {
            "url": plugin_url(plugin, "/accounts/java/ilp"),
            "authType": "JWT_HS_256",
            "secret": secret,
            "subject": JAVA_SUBJECT_OF_JAVA,
            "tokenExpirySeconds": 3,
        }
        tokens = []
        for i in range(2):
            if i:
                yield task.deferLater(reactor, 3.5, lambda: None)
            _, raw, fulfillment = data_prepare("test.ilphttp.x", payload=b"java")
            sent = yield java.send(raw, **java_client)
            self.assertEqual(deserialize(sent.reply), Fulfill(fulfillment, b"java"), i)
            tokens.append(sent.request["headers"]["Authorization"])
        self.assertNotEqual(tokens[0], tokens[1])

    @defer.inlineCallbacks
    def test_a_jwt_without_sub_is_refused_where_a_subject_is_set(self) -> Any:
        """The Java client always signs a ``sub``; a JWT without one (ours,
        without ``jwt_subject``) is refused by an account that sets ``subject``."""
        secret = SHARED_ENV["JAVA_TO_US_JWT_SECRET"]
        receiver = yield self.plugin(
            incoming={
                "endpoint": LOOPBACK_ENDPOINT,
                "jwt_secret": secret,
                "subject": JAVA_SUBJECT_OF_JAVA,
            }
        )
        for subject, expected in ((None, Reject), (JAVA_SUBJECT_OF_JAVA, Fulfill)):
            outgoing: dict[str, Any] = {"url": plugin_url(receiver), "jwt_secret": secret}
            if subject is not None:
                outgoing["jwt_subject"] = subject
            sender = yield self.plugin(handler=None, outgoing=outgoing)
            reply = deserialize((yield sender.send_data(data_prepare("test.ours.x")[1])))
            self.assertIsInstance(reply, expected, subject)


#: the emulated peers of the shared node, named as its accounts
SHARED_PEERS = ("rafiki", "java", "rust")


class SharedListenerTests(_Case):
    """One node, one port for all three peers: ``docs/peering/configs/shared.json``
    through :func:`ilphttp.node.make_node`, as ``twistd ilphttp --config`` builds it.

    rafiki's client posts to ``/`` and is found by its token; the Java
    connector's to ``/accounts/java/ilp`` with a JWT; interledger-rs's to
    ``/accounts/rust/ilp``.  The node sends to each peer's server.
    """

    @defer.inlineCallbacks
    def node(self, handler_factory: Any = None) -> Any:
        """The three peers, the node (started), and its listener's base URL."""
        peers: dict[str, EmulatedPeer] = {}
        for impl in SHARED_PEERS:
            peers[impl] = yield start_emulated_peer(self, impl, shared_peer_config(impl))
        data = shared_node_file(LOOPBACK_ENDPOINT, {n: p.port for n, p in peers.items()})
        config: NodeConfig = parse_node(data, str(DOCUMENTED), SHARED_ENV)
        self.assertEqual([a.name for a in config.shared_accounts()], list(SHARED_PEERS))
        node: NodeService = make_node(config, handler_factory)
        node.startService()
        self.addCleanup(node.stopService)
        port = node.getServiceNamed("listen-1").port.getHost().port
        return peers, node, f"http://127.0.0.1:{port}"

    def handlers(self) -> tuple[Any, list[tuple[str, bytes]]]:
        """A handler factory that fulfils (``fulfil_from_data``) and records
        (account, Prepare) for each packet it answers."""
        handled: list[tuple[str, bytes]] = []

        def factory(context: HandlerContext) -> Any:
            def handle(data: bytes) -> bytes:
                handled.append((context.account, data))
                return fulfil_from_data(data)

            return handle

        return factory, handled

    @defer.inlineCallbacks
    def test_each_peer_and_the_node_send_both_ways_through_one_port(self) -> Any:
        factory, handled = self.handlers()
        peers, node, base = yield self.node(factory)
        for impl, peer in peers.items():
            # peer -> our one port: the account it is found as answers.
            _, raw, fulfillment = data_prepare("test.ours.x", payload=impl.encode())
            sent = yield peer.send(raw, **shared_client(impl, base))
            self.assertEqual(sent.stage, "peer", impl)
            self.assertEqual(deserialize(sent.reply), Fulfill(fulfillment, impl.encode()), impl)
            self.assertEqual(handled[-1], (impl, raw), impl)
            # the node -> the peer's server
            prepare, raw, fulfillment = data_prepare(f"test.{impl}.x")
            reply = yield node.plugins[impl].send_data(raw)
            self.assertEqual(deserialize(reply), Fulfill(fulfillment, prepare.data), impl)
            [request] = yield peer.requests()
            self.assertEqual((request["url"], request["rule"]), (peer_path(impl, "ilphttp"), "ok"))
        self.assertEqual([account for account, _ in handled], list(SHARED_PEERS))

    @defer.inlineCallbacks
    def test_the_router_forwards_between_the_peers(self) -> Any:
        """Each peer pays the next one through the node's router (``routes`` of
        the file): every peer's client and every peer's server, one port."""
        peers, _, base = yield self.node()
        for sender, receiver in (("rafiki", "java"), ("java", "rust"), ("rust", "rafiki")):
            label = f"{sender} -> {receiver}"
            prepare, raw, fulfillment = data_prepare(f"test.{receiver}.bob", payload=label.encode())
            sent = yield peers[sender].send(raw, **shared_client(sender, base))
            self.assertEqual(sent.stage, "peer", label)
            self.assertEqual(deserialize(sent.reply), Fulfill(fulfillment, prepare.data), label)
            [forwarded] = yield peers[receiver].received()
            self.assertEqual(deserialize(forwarded).destination, f"test.{receiver}.bob", label)  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def test_wrong_credentials_are_401_as_each_peer_maps_it(self) -> Any:
        factory, handled = self.handlers()
        peers, _, base = yield self.node(factory)
        cases: list[tuple[str, dict[str, Any], str]] = [
            # (peer, changes to its settings, its Reject for our 401)
            ("rafiki", {"authToken": "not-a-token"}, "T00"),
            ("java", {"subject": "someone-else"}, "F00"),
            # a valid credential on another account's path
            ("java", {"url": base + "/accounts/rust/ilp"}, "F00"),
            ("rust", {"token": "not-a-token"}, "F02"),
            ("rust", {"url": base + "/accounts/java/ilp"}, "F02"),
            # an account that does not exist: the same 401
            ("rust", {"url": base + "/accounts/nobody/ilp"}, "F02"),
        ]
        for impl, changes, code in cases:
            overrides = dict(shared_client(impl, base), **changes)
            sent = yield peers[impl].send(data_prepare("test.ours.x")[1], **overrides)
            label = f"{impl} {changes}"
            assert sent.response is not None, label
            self.assertEqual((sent.stage, sent.response["status"]), ("http-status", 401), label)
            reply = deserialize(sent.reply)
            assert isinstance(reply, Reject), label
            self.assertEqual((reply.code, reply.triggered_by), (code, peers[impl].address), label)
        self.assertEqual(handled, [])


# -- the same tests over twisted.web's Site (the classes above run the lean listener) -----


class IncomingOverSiteTests(OverSite, IncomingTests):
    pass


class SharedListenerOverSiteTests(OverSite, SharedListenerTests):
    pass
