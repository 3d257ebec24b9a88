"""Drive real JavaScript Interledger peers from trial tests.

The scripts in ``interop/`` (next to ``tests/``) each run one real npm peer:

- ``peer.js``: one ``ilp-plugin-http@1.6.1`` instance (or, with
  ``{"mode": "capture-server"}``, a plain recording HTTP server);
- ``connector.js``: an ``ilp-connector@23`` with ``ilp-plugin-http`` accounts;
- ``stream.js``: an ``ilp-protocol-stream`` server or client over a JS plugin.

Every script speaks the same line protocol: its config is JSON on argv; it
prints ``{"event": "ready", ...}`` on stdout when it listens (or
``{"event": "fatal", "error": ...}`` and exits); it then reads commands, one
JSON object per line, ``{"id": n, "cmd": "...", ...}``, and answers each with
``{"id": n, ...}`` or ``{"id": n, "error": "<message>"}``.  ``stop`` (or
closing stdin) makes it exit 0.  stderr is free-form diagnostics, kept here
and quoted in every failure.  Every server binds 127.0.0.1 only.

Usage in a test (``free_port`` is from :mod:`tests.support.ports`)::

    @defer.inlineCallbacks
    def test_something(self):
        a_port, b_port = free_port(), free_port()
        b = yield start_peer(self, plugin_options(b_port, a_port, "b-in", "a-in"))
        a = yield start_peer(self, plugin_options(a_port, b_port, "a-in", "b-in"))
        reply = yield a.send(prepare_bytes)       # bytes, or JsCommandError
        received = yield b.received()             # list[bytes]

All processes are stopped (killed if they do not exit) by ``addCleanup``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable, TypeVar, cast

from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial import unittest

INTEROP_DIR = Path(__file__).resolve().parents[2] / "interop"
NODE_MODULES = INTEROP_DIR / "node_modules"
REQUIRED_PACKAGES = (
    "ilp-plugin-http",
    "ilp-connector",
    "ilp-packet",
    "ilp-protocol-ildcp",
    "ilp-protocol-stream",
)

READY_TIMEOUT = 20.0
COMMAND_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_STDERR_LIMIT = 256 * 1024

T = TypeVar("T", bound="JsProcess")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


# -- environment --------------------------------------------------------------


def in_ci() -> bool:
    """True when the environment variable CI says we run in CI."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_node(packages: Iterable[str] = REQUIRED_PACKAGES, scripts: Iterable[str] = ()) -> str:
    """The path of ``node``, with ``packages`` installed under ``interop/node_modules``
    and ``scripts`` present in ``interop/``.

    Otherwise the calling test is skipped, or fails when ``CI=true``: in CI a
    missing JS peer is a broken environment, not a reason to pass.
    """
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "node is not on PATH"
    else:
        missing = [p for p in packages if not (NODE_MODULES / p / "package.json").exists()]
        absent = [s for s in scripts if not (INTEROP_DIR / s).exists()]
        if missing:
            problem = "npm packages missing under {}: {} (run `npm ci` in {})".format(
                NODE_MODULES, ", ".join(missing), INTEROP_DIR
            )
        elif absent:
            problem = "scripts missing under {}: {}".format(INTEROP_DIR, ", ".join(absent))
    if problem is None:
        assert node is not None
        return node
    if in_ci():
        raise unittest.FailTest("JS interop environment missing with CI=true: " + problem)
    raise unittest.SkipTest(problem)


# -- errors --------------------------------------------------------------------


class JsProcessError(Exception):
    """A JS script failed: it died, failed to start, or a command timed out."""


class JsCommandError(Exception):
    """A command was answered with ``{"error": message}``.

    ``message`` is the script's message verbatim, e.g. the JS plugin's
    ``failed to fetch. code=500``.
    """

    def __init__(self, message: str, reply: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.reply = reply


# -- the process protocol ----------------------------------------------------------


class JsProcess(ProcessProtocol):
    """One node process speaking the interop line protocol."""

    def __init__(self, label: str, reactor: Any = None) -> None:
        self.label = label
        self.reactor: Any = reactor if reactor is not None else _reactor()
        self.ready: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.info: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.exit_code: int | None = None
        self.ended = False
        self._out = b""
        self._err = bytearray()
        self._next_id = 0
        self._pending: dict[int, defer.Deferred[dict[str, Any]]] = {}
        self._end_waiters: list[defer.Deferred[None]] = []

    # diagnostics
    def stderr_text(self) -> str:
        return self._err.decode("utf-8", "replace")

    def _describe(self, what: str) -> str:
        tail = self.stderr_text()[-4000:]
        return f"{self.label}: {what}\n--- stderr of {self.label} (tail) ---\n{tail}"

    # ProcessProtocol
    def outReceived(self, data: bytes) -> None:
        self._out += data
        while b"\n" in self._out:
            line, self._out = self._out.split(b"\n", 1)
            self._line(line)

    def errReceived(self, data: bytes) -> None:
        self._err += data
        if len(self._err) > _STDERR_LIMIT:
            del self._err[: len(self._err) - _STDERR_LIMIT]

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self.errReceived(b"[stdout, not protocol] " + raw + b"\n")
            return
        event = msg.get("event")
        if event is not None:
            self.events.append(msg)
            if event == "ready" and not self.ready.called:
                self.info = msg
                self.ready.callback(msg)
            elif event == "fatal" and not self.ready.called:
                self.ready.errback(JsProcessError(self._describe(f"fatal: {msg.get('error')}")))
            return
        d = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
        if d is None:
            self.errReceived(b"[stdout, unmatched reply] " + raw + b"\n")
            return
        if "error" in msg:
            d.errback(JsCommandError(str(msg["error"]), msg))
        else:
            d.callback(msg)

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        value = reason.value
        self.exit_code = getattr(value, "exitCode", None)
        why = self._describe(f"process ended (exit code {self.exit_code}, {value})")
        if not self.ready.called:
            self.ready.errback(JsProcessError(why))
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(JsProcessError(why))
        waiters, self._end_waiters = self._end_waiters, []
        for w in waiters:
            w.callback(None)

    # commands
    def command(
        self, cmd: str, timeout: float = COMMAND_TIMEOUT, **fields: Any
    ) -> defer.Deferred[dict[str, Any]]:
        """Send ``{"cmd": cmd, **fields}``; fires with the reply dict.

        Errbacks with :class:`JsCommandError` when the reply carries
        ``error``, with :class:`JsProcessError` if the process dies or no
        reply comes within ``timeout`` seconds.
        """
        if self.ended or self.transport is None:
            return defer.fail(JsProcessError(self._describe(f"not running; cannot send {cmd}")))
        self._next_id += 1
        cid = self._next_id
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._pending[cid] = d
        line = json.dumps(dict(fields, id=cid, cmd=cmd)) + "\n"
        self.transport.write(line.encode("utf-8"))

        def expire() -> None:
            waiting = self._pending.pop(cid, None)
            if waiting is not None:
                waiting.errback(
                    JsProcessError(self._describe(f"no reply to {cmd!r} within {timeout} s"))
                )

        call = self.reactor.callLater(timeout, expire)

        def done(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        d.addBoth(done)
        return d

    def wait_ended(self, timeout: float) -> defer.Deferred[None]:
        """Fires when the process has ended, or after ``timeout`` seconds."""
        if self.ended:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._end_waiters.append(d)

        def give_up() -> None:
            if d in self._end_waiters:
                self._end_waiters.remove(d)
                d.callback(None)

        call = self.reactor.callLater(timeout, give_up)
        d.addBoth(lambda r: call.cancel() if call.active() else None)
        return d

    def kill(self) -> None:
        if self.ended or self.transport is None:
            return
        try:
            self.transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    @defer.inlineCallbacks
    def stop(self, timeout: float = STOP_TIMEOUT) -> Any:
        """Ask the script to stop; kill it if it has not exited in time."""
        if self.ended:
            return
        if self.transport is not None:
            try:
                self.transport.write(b'{"id": 0, "cmd": "stop"}\n')
                self.transport.closeStdin()
            except Exception:
                pass
        yield self.wait_ended(timeout)
        if not self.ended:
            self.kill()
            yield self.wait_ended(timeout)


def spawn(
    testcase: unittest.TestCase,
    factory: Callable[[str], T],
    script: str,
    args: list[str],
    ready_timeout: float = READY_TIMEOUT,
    env: dict[str, str] | None = None,
) -> defer.Deferred[T]:
    """Start ``node interop/<script> <args>``; fires with the protocol once ready.

    The process is stopped in ``testcase``'s cleanups.  If it is not ready
    within ``ready_timeout`` seconds it is killed and the Deferred fails with
    :class:`JsProcessError` quoting its stderr.
    """
    node = require_node()
    proto = factory(script)
    reactor = proto.reactor
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    cast(IReactorProcess, reactor).spawnProcess(
        proto,
        node,
        [node, str(INTEROP_DIR / script), *args],
        env=child_env,
        path=str(INTEROP_DIR),
    )
    testcase.addCleanup(proto.stop)

    def expire() -> None:
        if not proto.ready.called:
            proto.ready.errback(
                JsProcessError(proto._describe(f"not ready within {ready_timeout} s"))
            )
            proto.kill()

    call = cast(IReactorTime, reactor).callLater(ready_timeout, expire)

    def on_ready(_: dict[str, Any]) -> T:
        return proto

    def always(result: Any) -> Any:
        if call.active():
            call.cancel()
        return result

    proto.ready.addBoth(always)
    return proto.ready.addCallback(on_ready)


# -- peer.js ----------------------------------------------------------------------


class JsPeer(JsProcess):
    """A real JS ``ilp-plugin-http`` (``interop/peer.js``)."""

    @property
    def port(self) -> int:
        """The incoming port it listens on (127.0.0.1)."""
        return int(self.info["port"])

    @property
    def name(self) -> str:
        """The ``ILP-Peer-Name`` it sends."""
        return str(self.info["name"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def send(
        self, prepare: bytes, timeout: float = COMMAND_TIMEOUT, js_timeout_ms: int | None = None
    ) -> defer.Deferred[bytes]:
        """``plugin.sendData(prepare)``: the reply bytes, or :class:`JsCommandError`
        with the JS plugin's message (``failed to fetch. code=<status>``).

        The JS plugin itself never times out; with ``js_timeout_ms`` the script
        gives up after that long with the error ``timeout: sendData took over
        <n> ms`` (the HTTP request is left running).
        """
        fields: dict[str, Any] = {"prepare": prepare.hex()}
        if js_timeout_ms is not None:
            fields["timeoutMs"] = js_timeout_ms
        d = self.command("send", timeout=timeout, **fields)
        return d.addCallback(lambda r: bytes.fromhex(r["reply"]))

    def set_handler(self, mode: str, **spec: Any) -> defer.Deferred[dict[str, Any]]:
        """Set the data handler: see ``interop/peer.js`` for modes and fields."""
        return self.command("handler", mode=mode, **spec)

    def received(self) -> defer.Deferred[list[bytes]]:
        """Every packet its data handler was given, in order."""
        d = self.command("received")
        return d.addCallback(lambda r: [bytes.fromhex(h) for h in r["received"]])

    def requests(self) -> defer.Deferred[list[dict[str, Any]]]:
        """Every HTTP request its server got: method, url, httpVersion,
        headers (lower-case names), localPort, remotePort."""
        return self.command("requests").addCallback(lambda r: list(r["requests"]))

    def clear(self) -> defer.Deferred[dict[str, Any]]:
        return self.command("clear")


class JsCaptureServer(JsProcess):
    """A plain node HTTP server that records requests (``peer.js`` capture-server mode)."""

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def requests(self) -> defer.Deferred[list[dict[str, Any]]]:
        """Recorded requests: method, url, httpVersion, headers, body (bytes)."""

        def decode(r: dict[str, Any]) -> list[dict[str, Any]]:
            return [dict(q, body=bytes.fromhex(q["body"])) for q in r["requests"]]

        return self.command("requests").addCallback(decode)

    def respond(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        delay_ms: int = 0,
    ) -> defer.Deferred[dict[str, Any]]:
        return self.command(
            "respond",
            status=status,
            body=body.hex(),
            headers=headers or {"content-type": "application/octet-stream"},
            delayMs=delay_ms,
        )


def plugin_options(
    port: int,
    peer: int | str,
    incoming_token: str | None = None,
    outgoing_token: str | None = None,
    *,
    incoming_jwt: str | None = None,
    outgoing_jwt: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """JS ``ilp-plugin-http`` options: listen on ``port``, send to ``peer``
    (a port on 127.0.0.1 or a full URL).  ``extra`` is merged at the top level
    (``multi``, ``ildcp``, ...)."""
    url = peer if isinstance(peer, str) else f"http://127.0.0.1:{peer}/"
    incoming: dict[str, Any] = {"port": port}
    outgoing: dict[str, Any] = {"url": url}
    if incoming_token is not None:
        incoming["staticToken"] = incoming_token
    if incoming_jwt is not None:
        incoming["jwtSecret"] = incoming_jwt
    if outgoing_token is not None:
        outgoing["staticToken"] = outgoing_token
    if outgoing_jwt is not None:
        outgoing["jwtSecret"] = outgoing_jwt
    return dict({"incoming": incoming, "outgoing": outgoing}, **extra)


def start_peer(
    testcase: unittest.TestCase,
    options: dict[str, Any],
    handler: dict[str, Any] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> defer.Deferred[JsPeer]:
    """Start a JS ``ilp-plugin-http`` with these constructor options.

    ``handler`` is a handler spec (``{"mode": "reject", "message": ...}``);
    the default is ``fulfill``.
    """
    config: dict[str, Any] = {"options": options}
    if handler is not None:
        config["handler"] = handler
    return spawn(testcase, JsPeer, "peer.js", [json.dumps(config)], ready_timeout)


def start_capture_server(
    testcase: unittest.TestCase,
    port: int = 0,
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> defer.Deferred[JsCaptureServer]:
    """Start a recording HTTP server on 127.0.0.1 (``port`` 0: any free port)."""
    config: dict[str, Any] = {
        "mode": "capture-server",
        "port": port,
        "status": status,
        "body": body.hex(),
    }
    if headers is not None:
        config["headers"] = headers
    return spawn(testcase, JsCaptureServer, "peer.js", [json.dumps(config)])


# -- connector.js --------------------------------------------------------------------


class JsConnector(JsProcess):
    """A real ``ilp-connector`` 23 (``interop/connector.js``)."""

    @property
    def address(self) -> str:
        return str(self.info["address"])

    def port(self, account: str) -> int:
        """The incoming port of an account's ``ilp-plugin-http``."""
        return int(self.info["accounts"][account]["port"])

    def url(self, account: str) -> str:
        return f"http://127.0.0.1:{self.port(account)}/"

    def get_info(self) -> defer.Deferred[dict[str, Any]]:
        return self.command("info")

    def add_account(self, account_id: str, info: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        return self.command("addAccount", accountId=account_id, info=info)

    def remove_account(self, account_id: str) -> defer.Deferred[dict[str, Any]]:
        return self.command("removeAccount", accountId=account_id)


def http_account(
    options: dict[str, Any],
    relation: str = "child",
    asset_code: str = "USD",
    asset_scale: int = 9,
    **extra: Any,
) -> dict[str, Any]:
    """An ``ilp-connector`` account using ``ilp-plugin-http`` with ``options``."""
    return dict(
        {
            "relation": relation,
            "plugin": "ilp-plugin-http",
            "assetCode": asset_code,
            "assetScale": asset_scale,
            "options": options,
        },
        **extra,
    )


def start_connector(
    testcase: unittest.TestCase,
    accounts: dict[str, dict[str, Any]],
    ilp_address: str = "test.conn",
    ready_timeout: float = READY_TIMEOUT,
    **config: Any,
) -> defer.Deferred[JsConnector]:
    """Start an ``ilp-connector`` with these accounts (see :func:`http_account`).

    ``config`` adds ilp-connector options (camelCase); the script defaults to
    backend one-to-one, spread 0, memory store, no admin API.
    """
    full = dict({"ilpAddress": ilp_address, "accounts": accounts}, **config)
    return spawn(
        testcase,
        JsConnector,
        "connector.js",
        [json.dumps(full)],
        ready_timeout,
    )


# -- stream.js -----------------------------------------------------------------------


class StreamServer(JsProcess):
    """A real ``ilp-protocol-stream`` server (``interop/stream.js server``)."""

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def destination_account(self) -> str:
        return str(self.info["destinationAccount"])

    @property
    def shared_secret(self) -> bytes:
        import base64

        return base64.b64decode(self.info["sharedSecret"])

    def total(self) -> defer.Deferred[int]:
        """Units received so far over all connections."""
        return self.command("total").addCallback(lambda r: int(r["total"]))

    def generate(self, connection_tag: str | None = None) -> defer.Deferred[tuple[str, bytes]]:
        import base64

        fields: dict[str, Any] = {}
        if connection_tag is not None:
            fields["connectionTag"] = connection_tag
        d = self.command("generate", **fields)
        return d.addCallback(
            lambda r: (str(r["destinationAccount"]), base64.b64decode(r["sharedSecret"]))
        )


class StreamClient(JsProcess):
    """A real ``ilp-protocol-stream`` client (``interop/stream.js client``)."""

    @property
    def port(self) -> int:
        return int(self.info["port"])

    def pay(
        self, destination_account: str, shared_secret: bytes, amount: int, timeout: float = 20.0
    ) -> defer.Deferred[dict[str, Any]]:
        """Send ``amount`` source units over STREAM; fires with
        ``{"sent": int, "delivered": int, "sourceAccount", "destinationAccount"}``."""
        import base64

        d = self.command(
            "pay",
            timeout=timeout + 5.0,
            destinationAccount=destination_account,
            sharedSecret=base64.b64encode(shared_secret).decode("ascii"),
            amount=str(amount),
            timeoutMs=int(timeout * 1000),
        )

        def ints(r: dict[str, Any]) -> dict[str, Any]:
            return dict(r, sent=int(r["sent"]), delivered=int(r["delivered"]))

        return d.addCallback(ints)


def _stream_config(
    plugin: dict[str, Any], serve_ildcp: dict[str, Any] | None, receive_max: int | None
) -> str:
    config: dict[str, Any] = {"plugin": plugin}
    if serve_ildcp is not None:
        config["serveIldcp"] = serve_ildcp
    if receive_max is not None:
        config["receiveMax"] = str(receive_max)
    return json.dumps(config)


def start_stream_server(
    testcase: unittest.TestCase,
    plugin: dict[str, Any],
    serve_ildcp: dict[str, Any] | None = None,
    receive_max: int | None = None,
) -> defer.Deferred[StreamServer]:
    """Start a STREAM server over a JS plugin with these options.  Its peer must
    answer IL-DCP (a connector's child account does)."""
    return spawn(
        testcase,
        StreamServer,
        "stream.js",
        ["server", _stream_config(plugin, serve_ildcp, receive_max)],
    )


def start_stream_client(
    testcase: unittest.TestCase,
    plugin: dict[str, Any],
    serve_ildcp: dict[str, Any] | None = None,
) -> defer.Deferred[StreamClient]:
    """Start a STREAM client over a JS plugin with these options."""
    return spawn(
        testcase,
        StreamClient,
        "stream.js",
        ["client", _stream_config(plugin, serve_ildcp, None)],
    )
