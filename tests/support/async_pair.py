"""Two PluginHttp peers on loopback that know each other, for RFC 35 tests.

``alice`` and ``bob`` each listen on 127.0.0.1 and send to the other's
listener with the other's token; either may send asynchronously
(``outgoing.mode = "async"``, ``callback_url`` its own listener).  Both fulfil
with the first 32 bytes of the data (:func:`~tests.support.packets.fulfil_from_data`)
unless given a handler.  Disconnected at cleanup.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.plugin import PluginHttp
from tests.support.packets import fulfil_from_data
from tests.support.ports import free_port

ALICE_TOKEN = "alice-to-bob-token"
BOB_TOKEN = "bob-to-alice-token"


class Pair(NamedTuple):
    alice: PluginHttp
    bob: PluginHttp
    alice_url: str
    bob_url: str


def side(
    port: int,
    token_in: str,
    peer_port: int,
    token_out: str,
    mode: str,
    http2: bool = False,
    path: str = "/ilp",
    **incoming: Any,
) -> dict[str, Any]:
    """``PluginHttp`` keyword options of one side."""
    outgoing: dict[str, Any] = {
        "url": f"http://127.0.0.1:{peer_port}/ilp",
        "static_token": token_out,
        "http2": http2,
    }
    if mode == "async":
        outgoing.update(mode="async", callback_url=f"http://127.0.0.1:{port}{path}")
    return {
        "incoming": {
            "endpoint": f"tcp:{port}:interface=127.0.0.1",
            "static_token": token_in,
            **incoming,
        },
        "outgoing": outgoing,
    }


def async_pair(
    case: SynchronousTestCase,
    alice_mode: str = "async",
    bob_mode: str = "sync",
    http2: bool = False,
    alice_handler: Any = fulfil_from_data,
    bob_handler: Any = fulfil_from_data,
    **top: Any,
) -> Deferred[Pair]:
    """Alice and Bob, connected; fires with the :class:`Pair`."""
    a, b = free_port(), free_port()
    alice = PluginHttp(**side(a, BOB_TOKEN, b, ALICE_TOKEN, alice_mode, http2), **top)
    bob = PluginHttp(**side(b, ALICE_TOKEN, a, BOB_TOKEN, bob_mode, http2), **top)
    for plugin, handler in ((alice, alice_handler), (bob, bob_handler)):
        if handler is not None:
            plugin.register_data_handler(handler)
        case.addCleanup(plugin.disconnect)
    pair = Pair(alice, bob, f"http://127.0.0.1:{a}/ilp", f"http://127.0.0.1:{b}/ilp")
    d = gatherResults([alice.connect(), bob.connect()], consumeErrors=True)
    return d.addCallback(lambda _: pair)
