"""Multi accounts whose children have their own credentials (``incoming.children``).

One child must not be able to take another's name, address or packets: the
name it claims (``ILP-Peer-Name``) must go with its own credential.
"""

from __future__ import annotations

from typing import Any

import jwt
from treq.testing import RequestTraversalAgent
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import ildcp
from ilphttp.packet import ErrorCode, Prepare, Reject
from ilphttp.plugin import PluginHttp
from tests.support.clients import request
from tests.support.fakes import FakeAgent
from tests.support.packets import CLOCK_START, expect_reject, make_prepare

SECRET = "the-hub-jwt-secret-0123456789abcd"
HUB = {"client_address": "test.hub", "asset_scale": 9, "asset_code": "XRP"}


class ChildrenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(CLOCK_START)
        self.agent_out = FakeAgent()
        self.plugin = PluginHttp(
            incoming={
                "jwt_secret": SECRET,
                "children": {
                    "alice": {"static_tokens": ["alice-token"]},
                    "bob": {"subject": "bob"},
                },
            },
            outgoing={"url": "http://127.0.0.1:1/children/%/", "static_token": "out"},
            multi=True,
            ildcp=HUB,
            reactor=self.clock,
            agent=self.agent_out,
        )
        self.seen: list[tuple[str, str | None]] = []

        def handler(prepare: Prepare, data: bytes, sender: str | None) -> Reject:
            self.seen.append((prepare.destination, sender))
            return Reject(ErrorCode.F99_APPLICATION_ERROR, "test.hub", f"from {sender}")

        self.plugin.register_prepare_handler(handler)
        self.successResultOf(self.plugin.connect())
        assert self.plugin.resource is not None
        self.agent = RequestTraversalAgent(self.plugin.resource)

    def post(self, name: bytes | None, token: str, body: bytes | None = None) -> Any:
        headers = {
            b"content-type": b"application/octet-stream",
            b"authorization": b"Bearer " + token.encode(),
        }
        if name is not None:
            headers[b"ilp-peer-name"] = name
        if body is None:
            body = make_prepare(self.clock.seconds(), destination="test.hub.x").packet
        d = request(self.agent, "http://hub.invalid/", body, headers)
        self.agent.flush()
        return self.successResultOf(d)

    def bob_jwt(self, sub: str = "bob") -> str:
        return jwt.encode({"sub": sub, "exp": CLOCK_START + 60}, SECRET, algorithm="HS256")

    def test_each_child_with_its_own_credential(self) -> None:
        for name, token in ((b"alice", "alice-token"), (b"bob", self.bob_jwt())):
            result = self.post(name, token)
            self.assertEqual(result.code, 200)
            reject = expect_reject(self, result.body, ErrorCode.F99_APPLICATION_ERROR)
            self.assertEqual(reject.message, f"from {name.decode()}")
        self.assertEqual(self.seen, [("test.hub.x", "alice"), ("test.hub.x", "bob")])

    def test_a_name_claimed_with_another_childs_credential(self) -> None:
        cases = [
            (b"bob", "alice-token"),  # alice claiming bob
            (b"alice", self.bob_jwt()),  # bob claiming alice
            (b"carol", "alice-token"),  # a name not in the map
            (None, "alice-token"),  # no name at all
            (b"bob", self.bob_jwt("carol")),  # a JWT for another sub
        ]
        for name, token in cases:
            self.assertEqual(self.post(name, token).code, 401, name)
            # IL-DCP too: no address for a name that is not yours
            self.assertEqual(self.post(name, token, ildcp.serialize_request()).code, 401, name)
        self.assertEqual(self.seen, [])

    def test_ildcp_for_its_own_name(self) -> None:
        result = self.post(b"alice", "alice-token", ildcp.serialize_request())
        self.assertEqual(ildcp.deserialize_response(result.body).client_address, "test.hub.alice")

    def test_only_configured_children_are_reached(self) -> None:
        for name, sent in (("alice", True), ("bob", True), ("carol", False)):
            made = make_prepare(self.clock.seconds(), destination=f"test.hub.{name}.x")
            d = self.plugin.send_data(made.packet)
            if sent:
                self.assertEqual(
                    self.agent_out.requests[-1][1], f"http://127.0.0.1:1/children/{name}/".encode()
                )
            else:
                reject = expect_reject(self, self.successResultOf(d), ErrorCode.F02_UNREACHABLE)
                self.assertIn("no child named carol", reject.message)
        self.assertEqual(len(self.agent_out.requests), 2)
