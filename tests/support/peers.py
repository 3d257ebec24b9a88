"""Drive the emulated peers (``interop/peers/{rafiki,java,rust}.js``) from trial tests.

Each script applies one implementation's ILP-over-HTTP rules, server and
client side, as read from its sources (``docs/peering/rules.md``); the line
protocol is :mod:`tests.support.jsinterop`'s (``docs/peering/peers.md``)::

    rafiki = yield start_emulated_peer(self, "rafiki", {"peers": {"us": {"incomingTokens": ["t"]}}})
    reply = yield plugin.send_data(prepare)            # ilphttp -> rafiki's server
    [request] = yield rafiki.requests()                # what rafiki saw, and the rule that decided
    sent = yield rafiki.send(prepare, endpoint=url, authToken="t")   # rafiki's client -> us
    sent.reply                                         # what rafiki passes upstream

The processes are stopped in the test's cleanups.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.jsinterop import JsProcess, require_node, spawn

#: implementation name -> script under ``interop/``
SCRIPTS = {
    "rafiki": "peers/rafiki.js",
    "java": "peers/java.js",
    "rust": "peers/rust.js",
    "rfc35": "peers/rfc35.js",
}


#: the node configs that docs/peering/*.rst include
DOCUMENTED = Path(__file__).resolve().parents[2] / "docs" / "peering" / "configs"

#: ``docs/peering/configs/shared.json``: one ``listen``, the three peers on it
SHARED_CONFIG = DOCUMENTED / "shared.json"

#: the secrets that config reads from the environment (JWT secrets: 32 bytes or more)
SHARED_ENV = {
    "RAFIKI_TO_US_TOKEN": "rafiki-to-us-token",
    "US_TO_RAFIKI_TOKEN": "us-to-rafiki-token",
    "JAVA_TO_US_JWT_SECRET": "java-to-us-hs256-secret-0123456789abcdef",
    "US_TO_JAVA_JWT_SECRET": "us-to-java-hs256-secret-0123456789abcdef",
    "RUST_TO_US_TOKEN": "rust-to-us-token",
    "US_TO_RUST_TOKEN": "us-to-rust-token",
}

#: the Java account's token subjects: ``sub`` of what it sends us (our
#: ``incoming.subject``) and of what it expects from us (our ``jwtSubject``)
JAVA_SUBJECT_OF_JAVA = "java"
JAVA_SUBJECT_OF_US = "ilphttp"


def shared_peer_config(impl: str) -> dict[str, Any]:
    """The emulated peer's config that knows our shared node as its account
    ``ilphttp``, with the credentials of :data:`SHARED_ENV` (``docs/peering/*.rst``)."""
    if impl == "rafiki":
        return {"peers": {"ilphttp": {"incomingTokens": [SHARED_ENV["US_TO_RAFIKI_TOKEN"]]}}}
    if impl == "java":
        account = {
            "authType": "JWT_HS_256",
            "secret": SHARED_ENV["US_TO_JAVA_JWT_SECRET"],
            "subject": JAVA_SUBJECT_OF_US,
        }
        return {"accounts": {"ilphttp": account}}
    return {"accounts": {"ilphttp": {"token": SHARED_ENV["US_TO_RUST_TOKEN"]}}}


def shared_client(impl: str, base: str) -> dict[str, Any]:
    """The peer's outgoing settings toward our shared listener at ``base``
    (``http://host:port``): rafiki ``/`` and its token, the Java connector
    ``/accounts/java/ilp`` and a JWT with ``sub``, interledger-rs
    ``/accounts/rust/ilp`` and its token."""
    if impl == "rafiki":
        return {"endpoint": base + "/", "authToken": SHARED_ENV["RAFIKI_TO_US_TOKEN"]}
    if impl == "java":
        return {
            "url": base + "/accounts/java/ilp",
            "authType": "JWT_HS_256",
            "secret": SHARED_ENV["JAVA_TO_US_JWT_SECRET"],
            "subject": JAVA_SUBJECT_OF_JAVA,
        }
    return {"url": base + "/accounts/rust/ilp", "token": SHARED_ENV["RUST_TO_US_TOKEN"]}


def shared_node_file(listen: str, peer_ports: dict[str, int]) -> dict[str, Any]:
    """``shared.json`` as an operator would deploy it here: its ``listen``
    replaced by ``listen``, each account's ``outgoing.url`` pointed at the
    emulated peer's port on 127.0.0.1, path unchanged."""
    data: dict[str, Any] = json.loads(SHARED_CONFIG.read_text(encoding="utf-8"))
    data["listen"] = [listen]
    for name, account in data["accounts"].items():
        outgoing = account["options"]["outgoing"]
        path = urlsplit(outgoing["url"]).path
        outgoing["url"] = f"http://127.0.0.1:{peer_ports[name]}{path}"
    return data


def require_peers() -> str:
    """``node`` with ``ilp-packet`` and the emulated peers' scripts; else skip
    (or fail when ``CI=true``, as :func:`~tests.support.jsinterop.require_node`)."""
    return require_node(packages=("ilp-packet",), scripts=("peers/common.js", *SCRIPTS.values()))


class Sent(NamedTuple):
    """The outcome of an emulated client's ``send``."""

    #: what the implementation hands upstream: the peer's reply, or its own Reject
    reply: bytes
    #: the rule that produced it: ``peer``, ``http-status``, ``http-error``, ...
    stage: str
    #: the request it made: ``{"url": ..., "headers": {...}}`` (names as sent)
    request: dict[str, Any]
    #: the answer it got: ``{"status", "headers", "body" (hex)}``, or None
    response: dict[str, Any] | None


class EmulatedPeer(JsProcess):
    """One emulated implementation: its server on 127.0.0.1 and its client."""

    @property
    def impl(self) -> str:
        return str(self.info["impl"])

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def address(self) -> str:
        """Its ILP address (``triggeredBy`` of the Rejects it makes)."""
        return str(self.info["address"])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def send(self, prepare: bytes, **overrides: Any) -> defer.Deferred[Sent]:
        """Send ``prepare`` as the implementation's client does; ``overrides``
        are its outgoing settings (rafiki: ``endpoint``, ``authToken``; java:
        ``url``, ``authType``, ``token``; rust: ``url``, ``token``)."""
        d = self.command("send", prepare=prepare.hex(), **overrides)

        def sent(r: dict[str, Any]) -> Sent:
            return Sent(bytes.fromhex(r["reply"]), r["stage"], r["request"], r["response"])

        return d.addCallback(sent)

    def set_handler(self, mode: str, **spec: Any) -> defer.Deferred[dict[str, Any]]:
        """What its server answers to a Prepare that passed its HTTP rules:
        ``fulfill`` (the first 32 bytes of the data; the Fulfill carries the
        Prepare's data), ``reject``, ``echo``, ``garbage``, ``hang``."""
        return self.command("handler", mode=mode, **spec)

    def received(self) -> defer.Deferred[list[bytes]]:
        """The Prepares its server handed to its handler, as received."""
        d = self.command("received")
        return d.addCallback(lambda r: [bytes.fromhex(h) for h in r["received"]])

    def requests(self) -> defer.Deferred[list[dict[str, Any]]]:
        """Every HTTP request its server got: ``method``, ``url``, ``headers``
        (lower-case names), ``body`` (bytes), ``status`` and ``rule`` (the
        implementation's rule that decided the answer; ``ok`` when served)."""

        def decode(r: dict[str, Any]) -> list[dict[str, Any]]:
            return [dict(q, body=bytes.fromhex(q["body"])) for q in r["requests"]]

        return self.command("requests").addCallback(decode)


def start_emulated_peer(
    testcase: unittest.TestCase, impl: str, config: dict[str, Any]
) -> defer.Deferred[EmulatedPeer]:
    """Start ``interop/peers/<impl>.js`` with this config (see ``docs/peering/peers.md``);
    ``impl`` is ``rafiki``, ``java`` or ``rust``."""
    require_peers()
    return spawn(testcase, EmulatedPeer, SCRIPTS[impl], [json.dumps(config)])
