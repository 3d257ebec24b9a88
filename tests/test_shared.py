"""ilphttp.shared: one listener for many accounts, found by path or by credential."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import jwt
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp import ildcp
from ilphttp.errors import OptionError
from ilphttp.node import HandlerContext, make_node
from ilphttp.nodeconfig import parse_node
from ilphttp.packet import ErrorCode, Reject, deserialize_prepare
from ilphttp.plugin import PluginHttp
from ilphttp.shared import AccountsResource, SharedListener, account_in_path
from tests.support.clients import http_agent, request
from tests.support.fronts import OverSite
from tests.support.packets import CLOCK_START, expect_reject, make_prepare
from tests.support.reactor import global_reactor

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789", "kids": "kids-tok-0"}
OCTETS = {b"content-type": b"application/octet-stream"}


def bearer(token: str) -> dict[bytes, bytes]:
    return {**OCTETS, b"authorization": b"Bearer " + token.encode()}


def answer_as(name: str) -> Any:
    """A data handler that says which account answered, in its Reject."""

    def handler(data: bytes) -> Reject:
        deserialize_prepare(data)
        return Reject(ErrorCode.F99_APPLICATION_ERROR, "test.hub", f"answered by {name}")

    return handler


class PathTests(SynchronousTestCase):
    def test_account_in_path(self) -> None:
        cases = [
            (b"/accounts/bob/ilp", "bob"),
            (b"/accounts/bob/ilp/", "bob"),
            (b"/accounts/b%20b/ilp", "b%20b"),
            (b"/", None),
            (b"/accounts/bob", None),
            (b"/accounts//ilp", None),
            (b"/accounts/a/b/ilp", None),
            (b"/x/accounts/bob/ilp", None),
            (b"/accounts/\xff/ilp", None),
        ]
        for path, name in cases:
            self.assertEqual(account_in_path(path), name, path)


class AccountsResourceTests(SynchronousTestCase):
    """Three accounts behind one resource, in memory (treq's RequestTraversalAgent)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        resources = {}
        for name in ("alice", "bob"):
            plugin = PluginHttp(incoming={"static_token": TOKENS[name]}, reactor=self.clock)
            plugin.register_data_handler(answer_as(name))
            self.successResultOf(plugin.connect())
            assert plugin.resource is not None
            resources[name] = plugin.resource
        kids = PluginHttp(
            incoming={"static_token": TOKENS["kids"]},
            multi=True,
            ildcp={"client_address": "test.hub.kids", "asset_scale": 9, "asset_code": "XRP"},
            reactor=self.clock,
        )
        kids.register_data_handler(answer_as("kids"))
        self.successResultOf(kids.connect())
        assert kids.resource is not None
        resources["kids"] = kids.resource
        self.agent = RequestTraversalAgent(AccountsResource(resources))

    def post(self, path: str, headers: dict[bytes, bytes], body: bytes | None = None) -> Any:
        if body is None:
            body = make_prepare(self.clock.seconds()).packet
        d = request(self.agent, "http://node.invalid" + path, body, headers)
        self.agent.flush()
        return self.successResultOf(d)

    def answered_by(self, result: Any) -> str:
        self.assertEqual(result.code, 200)
        return expect_reject(self, result.body, ErrorCode.F99_APPLICATION_ERROR).message

    def test_found_by_credential_on_any_path(self) -> None:
        for name in ("alice", "bob"):
            for path in ("/", "/ilp", "/anything/else"):
                result = self.post(path, bearer(TOKENS[name]))
                self.assertEqual(self.answered_by(result), f"answered by {name}", path)

    def test_found_by_path(self) -> None:
        result = self.post("/accounts/bob/ilp", bearer(TOKENS["bob"]))
        self.assertEqual(self.answered_by(result), "answered by bob")

    def test_refused_alike_without_a_hint(self) -> None:
        """Wrong token, another account's token on a path, unknown account: all 401."""
        cases = [
            ("/", {**OCTETS}),
            ("/", bearer("nobody's token")),
            ("/accounts/bob/ilp", bearer(TOKENS["alice"])),
            ("/accounts/carol/ilp", bearer(TOKENS["alice"])),
            ("/accounts/carol/ilp", bearer("nobody's token")),
        ]
        bodies = set()
        for path, headers in cases:
            result = self.post(path, headers)
            self.assertEqual(result.code, 401, (path, headers))
            bodies.add(result.body)
        self.assertEqual(bodies, {b"invalid authorization"})

    def test_health_without_auth(self) -> None:
        d = request(self.agent, "http://node.invalid/", None, {}, method=b"GET")
        self.agent.flush()
        result = self.successResultOf(d)
        self.assertEqual((result.code, result.body), (200, b"OK"))

    def test_the_account_checks_the_rest(self) -> None:
        """Content type and packet shape are the account's own rules, as on its port."""
        headers = {**bearer(TOKENS["alice"]), b"content-type": b"application/json"}
        self.assertEqual(self.post("/", headers).code, 415)
        self.assertEqual(self.post("/", bearer(TOKENS["alice"]), b"junk").code, 400)

    def test_multi_account_serves_ildcp_by_peer_name(self) -> None:
        headers = {**bearer(TOKENS["kids"]), b"ilp-peer-name": b"carol"}
        result = self.post("/", headers, ildcp.serialize_request())
        info = ildcp.deserialize_response(result.body)
        self.assertEqual(info.client_address, "test.hub.kids.carol")


class JwtSubjectTests(SynchronousTestCase):
    """Accounts sharing one JWT secret are told apart by the ``sub`` each is bound to."""

    def test_sub_picks_the_account(self) -> None:
        clock = Clock()
        clock.advance(CLOCK_START)
        secret = "one-secret-for-both-0123456789abc"
        resources = {}
        for name in ("alice", "bob"):
            plugin = PluginHttp(incoming={"jwt_secret": secret, "subject": name}, reactor=clock)
            plugin.register_data_handler(answer_as(name))
            self.successResultOf(plugin.connect())
            assert plugin.resource is not None
            resources[name] = plugin.resource
        agent = RequestTraversalAgent(AccountsResource(resources))
        for sub, expected in (("alice", 200), ("bob", 200), ("carol", 401), (None, 401)):
            claims: dict[str, Any] = {"exp": CLOCK_START + 60}
            if sub is not None:
                claims["sub"] = sub
            token = jwt.encode(claims, secret, algorithm="HS256")
            made = make_prepare(clock.seconds())
            d = request(agent, "http://node.invalid/", made.packet, bearer(token))
            agent.flush()
            result = self.successResultOf(d)
            self.assertEqual(result.code, expected, sub)
            if expected == 200:
                reject = expect_reject(self, result.body, ErrorCode.F99_APPLICATION_ERROR)
                self.assertEqual(reject.message, f"answered by {sub}")


def shared_node_config(**top: Any) -> dict[str, Any]:
    def account(name: str, relation: str) -> dict[str, Any]:
        return {"relation": relation, "options": {"incoming": {"staticToken": TOKENS[name]}}}

    return {
        "ilpAddress": "test.hub",
        "assetCode": "XRP",
        "assetScale": 9,
        "listen": "tcp:0:interface=127.0.0.1",
        "accounts": {"alice": account("alice", "child"), "bob": account("bob", "child")},
        **top,
    }


def echo_account(context: HandlerContext) -> Any:
    return answer_as(context.account)


class SharedNodeTests(TestCase):
    """A node whose two accounts share one real port on 127.0.0.1."""

    @inlineCallbacks
    def test_two_accounts_one_port(self) -> Any:
        node = make_node(parse_node(shared_node_config()), echo_account, global_reactor())
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        [listener] = [s for s in node if isinstance(s, SharedListener)]
        assert listener.port is not None
        url = f"http://127.0.0.1:{listener.port.getHost().port}"
        agent = http_agent(self)
        for name, path in (("alice", "/"), ("bob", "/"), ("bob", "/accounts/bob/ilp")):
            made = make_prepare(time.time())
            result = yield request(agent, url + path, made.packet, bearer(TOKENS[name]))
            self.assertEqual(result.code, 200)
            reject = expect_reject(self, result.body, ErrorCode.F99_APPLICATION_ERROR)
            self.assertEqual(reject.message, f"answered by {name}")
        result = yield request(agent, url + "/", make_prepare(time.time()).packet, bearer("x"))
        self.assertEqual(result.code, 401)

    def test_missing_certificate_file_is_one_line(self) -> None:
        missing = "ssl:0:privateKey=/nonexistent/key.pem"
        with self.assertRaises(OptionError) as refused:  # when read, before anything listens
            parse_node(shared_node_config(listen=missing))
        self.assertIn(
            "the privateKey file /nonexistent/key.pem does not exist", str(refused.exception)
        )
        # gone between reading and listening: one line still
        config = replace(parse_node(shared_node_config(listen="tcp:0")), listen=(missing,))
        node = make_node(config, echo_account, global_reactor())
        node.privilegedStartService()
        with self.assertRaises(SystemExit) as caught:
            node.startService()
        self.addCleanup(node.stopService)
        message = str(caught.exception)
        self.assertTrue(
            message.startswith("ilphttp: cannot start listener 'listen-1': listen "), message
        )
        self.assertIn("/nonexistent/key.pem", message)
        self.assertNotIn("Traceback", message)


class SharedNodeOverSiteTests(OverSite, SharedNodeTests):
    """The same over twisted.web's Site (the class above runs the lean listener)."""
