"""The router: pure routing decisions (table-driven), and its Twisted glue."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import ildcp
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    Prepare,
    Reject,
    Reply,
    deserialize_prepare,
    deserialize_reject,
    envelope_length,
    serialize,
    serialize_prepare,
    serialize_reject,
)
from ilphttp.plugin import NotConnectedError, PluginHttp
from ilphttp.router import Router
from ilphttp.routing import (
    CHILD,
    PARENT,
    PEER,
    Account,
    AnswerIldcp,
    Forward,
    Refuse,
    RouterConfig,
    RoutingError,
    RoutingTable,
)
from ilphttp.testing import Conditions, MemoryLink, expect_fulfill, expect_reject
from tests.support.clients import request
from tests.support.fakes import FakeAgent, FakeResponse, LogCapture
from tests.support.packets import CLOCK_START, make_prepare

NOW = 1_800_000_000.0
UTC = _dt.timezone.utc
CONDITION = bytes(range(32))


def prepare(destination: str, expires_in: float = 30.0, now: float = NOW) -> Prepare:
    return Prepare(
        5,
        _dt.datetime.fromtimestamp(now + expires_in, UTC),
        CONDITION,
        destination,
        b"hello",
    )


HUB_ACCOUNTS = (
    Account("up", PARENT),
    Account("bob", CHILD),
    Account("kids", CHILD, multi=True),
    Account("carol", CHILD, segment="c"),
    Account("other", PEER),
    Account("mute", CHILD, can_send=False),
)


def hub(**kwargs: Any) -> RoutingTable:
    options: dict[str, Any] = {
        "address": "test.hub",
        "asset_code": "XRP",
        "asset_scale": 9,
        "accounts": HUB_ACCOUNTS,
        "routes": {"test.far": "other", "test.hub.bob.special": "other"},
    }
    options.update(kwargs)
    return RoutingTable(**options)


class RoutingTableTests(SynchronousTestCase):
    """RoutingTable.decide, case by case."""

    def test_forwarding(self) -> None:
        table = hub()
        cases = [
            # (source, destination, target)
            ("up", "test.hub.bob", "bob"),
            ("up", "test.hub.bob.wallet.7", "bob"),
            ("bob", "test.hub.kids.alice", "kids"),
            ("kids", "test.hub.kids.alice", "kids"),  # child to child through a hub
            ("kids", "test.hub.bob", "bob"),
            ("bob", "test.hub.c.x", "carol"),  # ilpAddressSegment
            ("bob", "test.far.away", "other"),  # a static route
            ("bob", "test.hub.bob.special.x", "other"),  # the longest prefix wins
            ("bob", "test.hub.bobby", "up"),  # segment boundaries, not string prefixes
            ("bob", "g.anything", "up"),  # the parent is the default route
            ("other", "test.hub.carol", "up"),  # not a child: the account name is no segment
        ]
        for source, destination, target in cases:
            decision = table.decide(source, prepare(destination), NOW)
            self.assertIsInstance(decision, Forward, (source, destination))
            assert isinstance(decision, Forward)
            self.assertEqual(decision.account, target, (source, destination))
            self.assertEqual(decision.prepare.destination, destination)
            self.assertEqual(decision.prepare.amount, 5)
            self.assertEqual(decision.prepare.data, b"hello")
            self.assertEqual(decision.prepare.execution_condition, CONDITION)

    def test_never_back_to_the_sending_child(self) -> None:
        """Through a multi account, a child reaches its siblings but not itself."""
        table = hub()
        for destination, sender, forwarded in [
            ("test.hub.kids.alice.wallet", "alice", False),
            ("test.hub.kids.alice", "alice", False),
            ("test.hub.kids.bob", "alice", True),
            ("test.hub.kids.alicex", "alice", True),  # segment boundaries
            ("test.hub.kids.alice", None, True),  # sender unknown: as before
        ]:
            decision = table.decide("kids", prepare(destination), NOW, sender)
            if forwarded:
                self.assertIsInstance(decision, Forward, (destination, sender))
            else:
                self.assertEqual(
                    decision,
                    Refuse("F02", f"no route to {destination} other than back to its sender"),
                )

    def test_refusals(self) -> None:
        table = hub()
        cases = [
            # (source, destination, code, words in the message)
            ("up", "g.somewhere", "F02", "back to up"),
            ("bob", "test.hub.bob.x", "F02", "back to bob"),
            ("other", "test.far.x", "F02", "back to other"),
            ("bob", "test.hub", "F02", "receives none"),
            ("bob", "test.hub.mute", "F02", "no outgoing"),
            ("bob", "peer.route.control", "F02", "not served"),
        ]
        for source, destination, code, words in cases:
            decision = table.decide(source, prepare(destination), NOW)
            self.assertIsInstance(decision, Refuse, (source, destination))
            assert isinstance(decision, Refuse)
            self.assertEqual(decision.code, code, (source, destination))
            self.assertIn(words, decision.message)

    def test_no_parent(self) -> None:
        """Without a parent nor defaultRoute, unknown destinations are F02."""
        table = RoutingTable("test.hub", "XRP", 9, (Account("a", CHILD), Account("b", CHILD)))
        decision = table.decide("a", prepare("test.elsewhere"), NOW)
        self.assertEqual(decision, Refuse("F02", "no route to test.elsewhere"))
        self.assertEqual(table.decide("a", prepare("test.hub.b.1"), NOW).account, "b")  # type: ignore[union-attr]

    def test_default_route(self) -> None:
        table = hub(default_route="other")
        decision = table.decide("bob", prepare("g.x"), NOW)
        assert isinstance(decision, Forward)
        self.assertEqual(decision.account, "other")

    def test_ildcp(self) -> None:
        table = hub()
        request = ildcp.request_prepare(_dt.datetime.fromtimestamp(NOW + 60, UTC))
        cases = [
            ("bob", "test.hub.bob"),
            ("kids", "test.hub.kids"),
            ("carol", "test.hub.c"),
        ]
        for source, address in cases:
            decision = table.decide(source, request, NOW)
            self.assertEqual(decision, AnswerIldcp(ildcp.IldcpResponse(address, 9, "XRP")))
        for source in ("up", "other"):
            decision = table.decide(source, request, NOW)
            assert isinstance(decision, Refuse)
            self.assertEqual(decision.code, "F02")
        wrong = request._replace(execution_condition=CONDITION)
        self.assertEqual(table.decide("bob", wrong, NOW).code, "F00")  # type: ignore[union-attr]

    def test_single_link_hub(self) -> None:
        """A single multi link serves its children directly under our address."""
        table = RoutingTable(
            "test.hub", "XRP", 9, (Account("link", CHILD, multi=True, address="test.hub"),)
        )
        decision = table.decide("link", prepare("test.hub.alice"), NOW)
        assert isinstance(decision, Forward)
        self.assertEqual(decision.account, "link")
        self.assertEqual(table.decide("link", prepare("test.other"), NOW).code, "F02")  # type: ignore[union-attr]
        self.assertEqual(table.decide("link", prepare("test.hub"), NOW).code, "F02")  # type: ignore[union-attr]

    def test_expiry(self) -> None:
        """The forwarded expiry: one window earlier, capped at maxHoldTime; R02/R00."""
        table = hub(min_message_window=1.0, max_hold_time=30.0)
        cases = [
            # (seconds left, forwarded seconds left, or the refusal code)
            (10.0, 9.0),
            (2.5, 1.5),
            (2.0, 1.0),
            (45.0, 30.0),
            (1.999, "R02"),
            (0.5, "R02"),
            (0.0, "R00"),
            (-3.0, "R00"),
        ]
        for left, expected in cases:
            decision = table.decide("bob", prepare("g.x", left), NOW)
            if isinstance(expected, str):
                assert isinstance(decision, Refuse), left
                self.assertEqual(decision.code, expected, left)
            else:
                assert isinstance(decision, Forward), left
                forwarded = decision.prepare.expires_at.timestamp() - NOW
                self.assertAlmostEqual(forwarded, expected, places=3)

    def test_zero_window(self) -> None:
        """With no window the expiry is kept as it is."""
        table = hub(min_message_window=0.0)
        original = prepare("g.x", 5.0)
        decision = table.decide("bob", original, NOW)
        assert isinstance(decision, Forward)
        self.assertEqual(decision.prepare, original)

    def test_reject(self) -> None:
        table = hub()
        self.assertEqual(
            table.reject(Refuse("F02", "no route")), Reject("F02", "test.hub", "no route")
        )

    def test_lookup(self) -> None:
        table = hub()
        self.assertEqual(table.lookup("test.hub.kids"), "kids")
        self.assertEqual(table.lookup("test.far"), "other")
        self.assertEqual(table.lookup("private.x"), "up")
        self.assertEqual(table.child_address("carol"), "test.hub.c")
        self.assertRaises(RoutingError, table.child_address, "up")

    def test_configuration_errors(self) -> None:
        cases = [
            ({"address": "nope"}, "not a valid ILP address"),
            ({"accounts": (Account("a", PARENT), Account("b", PARENT))}, "both parents"),
            ({"accounts": (Account("a", CHILD), Account("a", PEER))}, "listed twice"),
            ({"accounts": (Account("a", "sibling"),)}, "relation must be"),
            ({"accounts": (Account("a", PARENT, multi=True),)}, "must have relation child"),
            ({"accounts": (Account("a b", CHILD),)}, "not a valid address segment"),
            (
                {"accounts": (Account("a", CHILD), Account("b", CHILD, segment="a"))},
                "both have the address test.hub.a",
            ),
            ({"default_route": "nobody"}, "defaultRoute"),
            ({"routes": {"test.x": "nobody"}}, "no account named"),
            ({"routes": {"bad prefix": "up"}}, "not a valid ILP address prefix"),
            ({"min_message_window": -1.0}, "minMessageWindow"),
        ]
        for change, words in cases:
            with self.assertRaises(RoutingError, msg=repr(change)) as caught:
                hub(**change)
            self.assertIn(words, str(caught.exception))


# -- the glue ---------------------------------------------------------------------------


class FakePlugin:
    """Records what the router sends; answers with what the test queued.

    Speaks the plugin's internal seam: the router registers a prepare handler
    and forwards with ``send_prepare`` (the Prepare parsed, with its bytes when
    unchanged); :meth:`handler` plays the plugin's side for a serialized Prepare.
    """

    def __init__(self) -> None:
        self.prepare_handler: Any = None
        self.sent: list[bytes] = []
        #: True where the router passed the incoming bytes on unchanged
        self.forwarded_as_received: list[bool] = []
        self.replies: list[Deferred[bytes]] = []
        self.address: str | None = None
        self.connected = True

    def register_prepare_handler(self, handler: Any) -> None:
        self.prepare_handler = handler

    def handler(self, data: bytes) -> Any:
        """What the plugin answers for ``data``: bytes, or a Deferred of bytes."""
        result = self.prepare_handler(deserialize_prepare(data), data, None)
        if isinstance(result, Deferred):
            return result.addCallback(as_bytes)
        return as_bytes(result)

    def send_data(self, data: bytes) -> Deferred[bytes]:
        """The JS-shaped API, which the router uses only to ask its parent over IL-DCP."""
        return self.send_prepare(deserialize_prepare(data), data)

    def send_prepare(self, prepare: Prepare, data: bytes | None = None) -> Deferred[bytes]:
        if not self.connected:
            raise NotConnectedError("plugin is not connected")
        self.forwarded_as_received.append(data is not None)
        self.sent.append(serialize_prepare(prepare) if data is None else data)
        d: Deferred[bytes] = Deferred()
        self.replies.append(d)
        return d


def as_bytes(result: Any) -> bytes:
    if isinstance(result, Reply):
        return result.data
    if isinstance(result, (Fulfill, Reject)):
        return serialize(result)
    assert isinstance(result, bytes), result
    return result


def fulfill_bytes() -> bytes:
    return ildcp.serialize_response(ildcp.IldcpResponse("test.parent.hub", 6, "USD"))


class RouterTests(SynchronousTestCase):
    """Router: handler closures, forwarding, IL-DCP from the parent."""

    def make(self, **config: Any) -> tuple[Router, dict[str, FakePlugin], Clock]:
        clock = Clock()
        clock.advance(NOW)
        accounts = (Account("up", PARENT), Account("a", CHILD), Account("b", CHILD))
        plugins = {a.name: FakePlugin() for a in accounts}
        options: dict[str, Any] = {"accounts": accounts}
        options.update(config)
        router = Router(RouterConfig(**options), plugins, clock)  # type: ignore[arg-type]
        return router, plugins, clock

    def test_forwards_with_shorter_expiry(self) -> None:
        router, plugins, _ = self.make(address="test.hub", asset_code="XRP", asset_scale=9)
        router.startService()
        reply = plugins["a"].handler(serialize_prepare(prepare("test.hub.b.x", 10.0)))
        self.assertIsInstance(reply, Deferred)
        [sent] = plugins["b"].sent
        forwarded = deserialize_prepare(sent)
        self.assertEqual(forwarded.destination, "test.hub.b.x")
        self.assertAlmostEqual(forwarded.expires_at.timestamp(), NOW + 9.0, places=3)
        self.assertEqual(plugins["b"].forwarded_as_received, [False])  # expiry changed
        answer = serialize_reject(Reject("F99", "test.hub.b.x", "from b"))
        plugins["b"].replies[0].callback(answer)
        self.assertEqual(self.successResultOf(reply), answer)
        self.assertEqual([plugins[n].address for n in ("up", "a", "b")], ["test.hub"] * 3)

    def test_unchanged_prepare_is_forwarded_as_received(self) -> None:
        """No window and no hold limit in reach: the incoming bytes go out as they came."""
        _, plugins, _ = self.make(
            address="test.hub", asset_code="XRP", asset_scale=9, min_message_window=0.0
        )
        packet = serialize_prepare(prepare("test.hub.b.x", 10.0))
        plugins["a"].handler(packet)
        self.assertEqual(plugins["b"].sent, [packet])
        self.assertEqual(plugins["b"].forwarded_as_received, [True])

    def test_each_account_has_its_own_closure(self) -> None:
        """The same packet is routed differently depending on where it came from."""
        _, plugins, _ = self.make(address="test.hub", asset_code="XRP", asset_scale=9)
        packet = serialize_prepare(prepare("test.hub.b"))
        plugins["a"].handler(packet)
        self.assertEqual(len(plugins["b"].sent), 1)
        reply = plugins["b"].handler(packet)
        self.assertEqual(deserialize_reject(reply).code, "F02")
        self.assertEqual(deserialize_reject(reply).triggered_by, "test.hub")

    def test_answers_ildcp(self) -> None:
        _, plugins, _ = self.make(address="test.hub", asset_code="XRP", asset_scale=9)
        reply = plugins["b"].handler(ildcp.serialize_request())
        self.assertEqual(
            ildcp.deserialize_response(reply), ildcp.IldcpResponse("test.hub.b", 9, "XRP")
        )

    def test_not_connected(self) -> None:
        _, plugins, _ = self.make(address="test.hub", asset_code="XRP", asset_scale=9)
        plugins["b"].connected = False
        reply = plugins["a"].handler(serialize_prepare(prepare("test.hub.b")))
        rejected = deserialize_reject(reply)
        self.assertEqual((rejected.code, rejected.triggered_by), ("T01", "test.hub"))
        self.assertIn("account b is not connected", rejected.message)

    def test_address_from_parent(self) -> None:
        """No ilpAddress: packets wait for the parent's IL-DCP answer."""
        router, plugins, _ = self.make()
        early = plugins["a"].handler(serialize_prepare(prepare("test.parent.hub.b")))
        self.assertNoResult(early)
        router.startService()
        [request] = plugins["up"].sent
        self.assertTrue(ildcp.is_ildcp_request(deserialize_prepare(request)))
        plugins["up"].replies[0].callback(fulfill_bytes())
        assert router.table is not None
        self.assertEqual(router.table.address, "test.parent.hub")
        self.assertEqual((router.table.asset_code, router.table.asset_scale), ("USD", 6))
        self.assertEqual(plugins["a"].address, "test.parent.hub")
        # the early packet went on to b
        self.assertEqual(len(plugins["b"].sent), 1)
        # and children learn addresses under the parent's answer
        reply = plugins["a"].handler(ildcp.serialize_request())
        self.assertEqual(
            ildcp.deserialize_response(reply), ildcp.IldcpResponse("test.parent.hub.a", 6, "USD")
        )

    def test_configured_asset_wins(self) -> None:
        router, plugins, _ = self.make(asset_code="XRP", asset_scale=9)
        router.startService()
        plugins["up"].replies[0].callback(fulfill_bytes())
        assert router.table is not None
        self.assertEqual(
            (router.table.address, router.table.asset_code, router.table.asset_scale),
            ("test.parent.hub", "XRP", 9),
        )

    def test_ildcp_retry(self) -> None:
        """A failed IL-DCP request is retried after 1, 2, 4 ... seconds."""
        router, plugins, clock = self.make()
        router.startService()
        up = plugins["up"]
        up.replies[0].callback(serialize_reject(Reject("T01", "", "down")))
        self.assertIsNone(router.table)
        clock.advance(0.9)
        self.assertEqual(len(up.sent), 1)
        clock.advance(0.1)
        self.assertEqual(len(up.sent), 2)
        up.replies[1].callback(b"garbage")
        clock.advance(1.9)
        self.assertEqual(len(up.sent), 2)
        clock.advance(0.1)
        self.assertEqual(len(up.sent), 3)
        up.replies[2].callback(fulfill_bytes())
        self.assertIsNotNone(router.table)
        clock.advance(100)
        self.assertEqual(len(up.sent), 3)

    def test_parent_answer_too_long_for_a_child(self) -> None:
        """An IL-DCP answer that would make a child's address longer than 1,023
        bytes (RFC 15): one clear log line, retried with backoff, and children
        asking for IL-DCP get F00 saying why; other packets keep waiting."""
        logs = LogCapture(self)
        router, plugins, clock = self.make()
        up = plugins["up"]
        early_ildcp = plugins["a"].handler(ildcp.serialize_request())
        waiting = plugins["b"].handler(serialize_prepare(prepare("test.x", 60)))
        router.startService()
        too_long = "test." + "p" * 1017  # 1,022 bytes: "<it>.a" would be 1,024
        for attempt, (delay, address) in enumerate(
            [(1.0, too_long), (2.0, too_long), (4.0, "test.parent.hub")]
        ):
            up.replies[attempt].callback(
                ildcp.serialize_response(ildcp.IldcpResponse(address, 6, "USD"))
            )
            if address is not too_long:
                break
            self.assertIsNone(router.table)
            errors = logs.errors()
            self.assertEqual(len(errors), attempt + 1)
            text = formatEvent(errors[-1])
            for part in (
                "1,022 bytes",
                "child a's address 1,024",
                "1,023 bytes RFC 15",
                "again in",
            ):
                self.assertIn(part, text)
            self.assertNotIn(too_long, text)  # one clear line, not a 1 KB address
            # children asking for IL-DCP: F00 with the reason, at once
            asked = [plugins["b"].handler(ildcp.serialize_request())]
            if attempt == 0:  # the request that waited for the answer
                asked.append(self.successResultOf(early_ildcp))
            for raw in asked:
                rejected = deserialize_reject(raw)
                self.assertEqual(rejected.code, ErrorCode.F00_BAD_REQUEST)
                self.assertIn("1,023 bytes RFC 15 allows", rejected.message)
            self.assertNoResult(waiting)
            # asked again after the backoff
            clock.advance(delay - 0.01)
            self.assertEqual(len(up.sent), attempt + 1)
            clock.advance(0.01)
            self.assertEqual(len(up.sent), attempt + 2)
        assert router.table is not None
        self.assertIsNone(router.unusable)
        self.assertEqual(len(plugins["up"].sent), 4)  # the waiting packet went to the parent
        reply = plugins["a"].handler(ildcp.serialize_request())
        self.assertEqual(ildcp.deserialize_response(reply).client_address, "test.parent.hub.a")
        self.assertEqual([e for e in logs.at_least(LogLevel.critical)], [])
        clock.advance(100)
        self.assertEqual(len(up.sent), 4)

    def test_non_children_asking_for_ildcp_keep_waiting(self) -> None:
        """Only children are told IL-DCP: the parent's own request waits, then F02."""
        router, plugins, clock = self.make()
        router.startService()
        too_long = ildcp.IldcpResponse("test." + "p" * 1017, 6, "USD")
        plugins["up"].replies[0].callback(ildcp.serialize_response(too_long))
        from_parent = plugins["up"].handler(ildcp.serialize_request())
        self.assertNoResult(from_parent)
        clock.advance(1)
        plugins["up"].replies[1].callback(fulfill_bytes())
        self.assertEqual(deserialize_reject(self.successResultOf(from_parent)).code, "F02")

    def test_parent_not_connected_yet(self) -> None:
        router, plugins, clock = self.make()
        plugins["up"].connected = False
        router.startService()
        self.assertEqual(plugins["up"].sent, [])
        plugins["up"].connected = True
        clock.advance(1)
        self.assertEqual(len(plugins["up"].sent), 1)

    def test_stop_releases_waiting_packets(self) -> None:
        router, plugins, clock = self.make()
        router.startService()
        waiting = plugins["a"].handler(serialize_prepare(prepare("test.x")))
        router.stopService()
        self.failureResultOf(waiting, CancelledError)
        plugins["up"].replies[0].callback(serialize_reject(Reject("T01", "", "down")))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancelled_packet_stops_waiting(self) -> None:
        """The plugin cancels a handler at the Prepare's expiry; the router lets go."""
        router, plugins, _ = self.make()
        router.startService()
        waiting = plugins["a"].handler(serialize_prepare(prepare("test.x")))
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        plugins["up"].replies[0].callback(fulfill_bytes())
        self.assertEqual(plugins["up"].sent[1:], [])

    def test_unknown_inherit_from(self) -> None:
        with self.assertRaises(RoutingError):
            self.make(inherit_from="nobody")

    def test_no_address_no_parent(self) -> None:
        accounts = (Account("a", CHILD),)
        with self.assertRaises(RoutingError) as caught:
            Router(RouterConfig(accounts), {"a": FakePlugin()}, Clock())  # type: ignore[dict-item]
        self.assertIn("ilpAddress", str(caught.exception))

    def test_plugins_must_match_accounts(self) -> None:
        accounts = (Account("a", CHILD),)
        with self.assertRaises(RoutingError):
            Router(
                RouterConfig(accounts, "test.hub", "XRP", 9),
                {"b": FakePlugin()},  # type: ignore[dict-item]
                Clock(),
            )


class RouterOverHttpTests(SynchronousTestCase):
    """Real PluginHttp accounts (in memory, the whole HTTP path) behind the router."""

    def setUp(self) -> None:
        # IL-DCP requests expire 60 s after the wall clock's now.
        self.clock = Clock()
        self.clock.advance(time.time())
        self.conditions = {name: Conditions(name) for name in ("up", "bob", "kid")}
        self.links = {
            "up": MemoryLink(clock=self.clock),
            "bob": MemoryLink(clock=self.clock),
            # a multi account: its one child here is the MemoryLink's remote, "sender"
            "kids": MemoryLink(
                clock=self.clock,
                receiver_options={"multi": True, "outgoing": {"url": "http://%.invalid/"}},
            ),
        }
        # In a MemoryLink the "receiver" is our side: the hub's account plugin;
        # the "sender" is the remote peer.  The remote's handler answers what
        # the hub forwards to it.
        for name, link in self.links.items():
            link.sender.register_data_handler(self.conditions[_remote(name)].handler)
        self.plugins = {name: link.receiver for name, link in self.links.items()}
        accounts = (
            Account("up", PARENT),
            Account("bob", CHILD),
            Account("kids", CHILD, multi=True),
        )
        self.router = Router(RouterConfig(accounts), self.plugins, self.clock)  # type: ignore[arg-type]
        self.router.startService()
        self.flush()

    def flush(self) -> None:
        for _ in range(6):
            for link in self.links.values():
                link.flush()

    def send(self, link: str, packet: bytes) -> bytes:
        d = self.links[link].sender.send_data(packet)
        self.flush()
        return self.successResultOf(d)

    def test_address_over_ildcp_then_routing(self) -> None:
        # The parent's remote is a Conditions handler: it rejected our first
        # IL-DCP request (F06), so the router has no address yet and retries
        # in 1 s; meanwhile packets wait.
        self.assertIsNone(self.router.table)
        bob = self.conditions["bob"]
        early = self.links["up"].sender.send_data(
            bob.prepare(destination="test.p.hub.bob.early", now=self.clock.seconds())
        )
        self.flush()
        self.assertNoResult(early)
        up_handler = self.conditions["up"].handler

        def parent(data: bytes) -> bytes:
            request = deserialize_prepare(data)
            if ildcp.is_ildcp_request(request):
                return ildcp.serve(request, ildcp.IldcpResponse("test.p.hub", 9, "XRP"))
            return up_handler(data)

        self.links["up"].sender.register_data_handler(parent)
        self.clock.advance(1)
        self.flush()
        assert self.router.table is not None
        self.assertEqual(self.router.table.address, "test.p.hub")
        self.flush()
        expect_fulfill(self.successResultOf(early))
        self.assertEqual(bob.received[-1].destination, "test.p.hub.bob.early")

        # bob asks for its address
        info = ildcp.deserialize_response(self.send("bob", ildcp.serialize_request()))
        self.assertEqual(info, ildcp.IldcpResponse("test.p.hub.bob", 9, "XRP"))
        # the kid behind the multi account (ILP-Peer-Name "sender")
        info = ildcp.deserialize_response(self.send("kids", ildcp.serialize_request()))
        self.assertEqual(info.client_address, "test.p.hub.kids.sender")

        # bob -> the kid: fulfilled by the kid's remote
        kid = self.conditions["kid"]
        packet = kid.prepare(destination="test.p.hub.kids.sender.x", now=self.clock.seconds())
        fulfilled = expect_fulfill(self.send("bob", packet))
        self.assertEqual(fulfilled.data, b"")
        [received] = kid.received
        self.assertEqual(received.destination, "test.p.hub.kids.sender.x")
        self.assertAlmostEqual(received.expires_at.timestamp(), self.clock.seconds() + 29, 2)

        # the kid -> the parent
        up = self.conditions["up"]
        packet = up.prepare(destination="test.elsewhere", data=b"d", now=self.clock.seconds())
        self.assertEqual(expect_fulfill(self.send("kids", packet)).data, b"d")
        # the kid -> another child of the same multi account: forwarded back
        # through it (to "other"; in memory, the same remote answers)
        packet = kid.prepare(destination="test.p.hub.kids.other", now=self.clock.seconds())
        expect_fulfill(self.send("kids", packet))
        self.assertEqual(kid.received[-1].destination, "test.p.hub.kids.other")
        # the parent -> bob
        packet = self.conditions["bob"].prepare(
            destination="test.p.hub.bob", now=self.clock.seconds()
        )
        expect_fulfill(self.send("up", packet))
        # bob -> bob: a loop
        rejected = expect_reject(self.send("bob", packet), ErrorCode.F02_UNREACHABLE)
        self.assertEqual(rejected.triggered_by, "test.p.hub")

    def parent_answers(self, address: str) -> None:
        up_handler = self.conditions["up"].handler

        def parent(data: bytes) -> bytes:
            request = deserialize_prepare(data)
            if ildcp.is_ildcp_request(request):
                return ildcp.serve(request, ildcp.IldcpResponse(address, 9, "XRP"))
            return up_handler(data)

        self.links["up"].sender.register_data_handler(parent)

    def test_expired_ildcp_request_is_r00_on_both_paths(self) -> None:
        """bob's request reaches the router; the kid's is answered by the multi plugin."""
        self.parent_answers("test.p.hub")
        self.clock.advance(1)
        self.flush()
        self.assertIsNotNone(self.router.table)
        expired = ildcp.serialize_request(
            _dt.datetime.fromtimestamp(self.clock.seconds() - 0.5, UTC)
        )
        headers = {
            b"authorization": b"Bearer " + MemoryLink.RECEIVER_TOKEN.encode(),
            b"ilp-peer-name": b"sender",
        }
        for link in ("bob", "kids"):
            # straight to the hub's account (a plugin would not send it expired)
            resource = self.plugins[link].resource
            assert resource is not None
            to_hub = RequestTraversalAgent(resource)
            d = request(to_hub, "http://hub.invalid/", expired, headers)
            to_hub.flush()
            rejected = expect_reject(self.successResultOf(d).body, ErrorCode.R00_TRANSFER_TIMED_OUT)
            self.assertEqual(rejected.triggered_by, "test.p.hub", link)

    def test_parent_answer_too_long_for_children(self) -> None:
        """Children asking for IL-DCP get F00 saying why, bilateral or multi;
        the router asks again and gives addresses once the answer fits."""
        logs = LogCapture(self)
        self.parent_answers("test." + "p" * 1015)  # "<it>.bob" is 1,024 bytes
        self.clock.advance(1)
        self.flush()
        self.assertIsNone(self.router.table)
        self.assertEqual(len(logs.errors()), 1)
        for link in ("bob", "kids"):
            rejected = expect_reject(self.send(link, ildcp.serialize_request()), "F00")
            self.assertIn("1,023 bytes RFC 15 allows", rejected.message)
        self.parent_answers("test.p.hub")
        self.clock.advance(2)
        self.flush()
        info = ildcp.deserialize_response(self.send("bob", ildcp.serialize_request()))
        self.assertEqual(info.client_address, "test.p.hub.bob")
        info = ildcp.deserialize_response(self.send("kids", ildcp.serialize_request()))
        self.assertEqual(info.client_address, "test.p.hub.kids.sender")

    def tearDown(self) -> None:
        self.router.stopService()
        for link in self.links.values():
            link.close()


class RouterForwardsEnvelopesTests(SynchronousTestCase):
    """Liberal reader, strict writer through the router: a Prepare (and a reply)
    followed by extra bytes is passed on without them."""

    def test_bytes_after_the_envelope_are_not_forwarded(self) -> None:
        for window in (0.0, 1.0):  # forwarded as received / with a shorter expiry
            clock = Clock()
            clock.advance(CLOCK_START)
            agent = FakeAgent()
            a = PluginHttp(incoming={"static_token": "in"}, reactor=clock)
            b = PluginHttp(
                outgoing={"url": "http://b.invalid/", "static_token": "t"},
                reactor=clock,
                agent=agent,
            )
            config = RouterConfig(
                (Account("a", CHILD), Account("b", PEER)),
                "test.hub",
                "XRP",
                9,
                routes={"test.b": "b"},
                min_message_window=window,
            )
            router = Router(config, {"a": a, "b": b}, clock)
            for service in (a, b, router):
                service.startService()
            assert a.resource is not None
            to_a = RequestTraversalAgent(a.resource)
            made = make_prepare(clock.seconds(), 10.0, "test.b.x", data=b"hello")
            for extra in (b"\0", b"trailer", made.packet):
                d = request(
                    to_a,
                    "http://a.invalid/",
                    made.packet + extra,
                    {b"authorization": b"Bearer in"},
                )
                to_a.flush()
                body = agent.requests[-1][3]
                if window == 0.0:
                    self.assertEqual(body, made.packet)
                else:
                    self.assertEqual(deserialize_prepare(body).data, b"hello")
                    self.assertEqual(envelope_length(body), len(body))
                agent.pending[-1].callback(FakeResponse(200, made.fulfill(b"f") + extra))
                to_a.flush()
                result = self.successResultOf(d)
                self.assertEqual((result.code, result.body), (200, made.fulfill(b"f")), extra)
            router.stopService()
            for plugin in (a, b):
                self.successResultOf(plugin.disconnect())


def _remote(account: str) -> str:
    return {"up": "up", "bob": "bob", "kids": "kid"}[account]
