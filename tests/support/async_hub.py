"""A node file with an RFC 35 asynchronous account and a synchronous one (hub tests).

``async`` is toward the independent ``interop/peers/rfc35.js``, ``sync``
toward the rafiki emulator (``interop/peers/rafiki.js``); both are on the
node's one shared listener, the asynchronous account's callback URL its
``/accounts/async/ilp`` path there.
"""

from __future__ import annotations

from typing import Any

from tests.support.peers import EmulatedPeer

RFC35_TO_HUB = "rfc35-to-hub-token"
HUB_TO_RFC35 = "hub-to-rfc35-token"
RAFIKI_TO_HUB = "rafiki-to-hub-token"
HUB_TO_RAFIKI = "hub-to-rafiki-token"


def hub_file(listen_port: int, rfc35: EmulatedPeer, rafiki: EmulatedPeer) -> dict[str, Any]:
    """The node file: one shared listener; ``async`` speaks RFC 35, ``sync`` does not."""
    hub = f"http://127.0.0.1:{listen_port}"
    return {
        "ilpAddress": "test.hub",
        "assetCode": "USD",
        "assetScale": 2,
        "listen": [f"tcp:{listen_port}:interface=127.0.0.1"],
        "routes": [
            {"targetPrefix": "test.rfc35", "peerId": "async"},
            {"targetPrefix": "test.rafiki", "peerId": "sync"},
        ],
        "accounts": {
            "async": {
                "relation": "peer",
                "plugin": "ilp-plugin-http",
                "options": {
                    "incoming": {"staticToken": RFC35_TO_HUB},
                    "outgoing": {
                        "url": rfc35.url("/ilp"),
                        "staticToken": HUB_TO_RFC35,
                        "mode": "async",
                        "callbackUrl": f"{hub}/accounts/async/ilp",
                    },
                },
            },
            "sync": {
                "relation": "peer",
                "plugin": "ilp-plugin-http",
                "options": {
                    "incoming": {"staticToken": RAFIKI_TO_HUB},
                    "outgoing": {"url": rafiki.url("/"), "staticToken": HUB_TO_RAFIKI},
                },
            },
        },
    }
