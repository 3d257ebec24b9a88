"""ilphttp's PluginHttp as a receiver that fulfils every Prepare (the twin of js_server.js).

    python bench/server_ilphttp.py '{"token": "...", "jwtSecret": "..."}'

Options (all optional): ``token`` (static token), ``jwtSecret`` (JWTs are then
accepted, and the static token too, as the JS plugin does), ``port`` (default
0: any free port), ``maxSeconds`` (exit after this long; default 3600),
``holdSeconds`` (the handler holds every Prepare this long before it fulfils:
the packets-in-flight memory row), ``replyUrl`` (RFC 35: the sender's
callback origin; the receiver then has an outgoing side toward it, with the
same token, to POST the replies of asynchronous Prepares: the async pair row).  It
listens on 127.0.0.1 only, prints ``{"event":"ready","port":N}`` and runs until
stdin closes, SIGTERM, or ``maxSeconds``.  Used alone (under wrk) and as the
receiver of the two-process pair; ilphttp_pair.py imports :func:`make_receiver`
for the one-process pair.

The data handler parses the Prepare (as js_server.js does) and answers a
Fulfill built once: every bench Prepare uses :data:`benchlib.FULFILLMENT`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

import benchlib

from ilphttp import PluginHttp
from ilphttp.packet import Fulfill, deserialize_prepare, serialize

FULFILL = serialize(Fulfill(benchlib.FULFILLMENT, b""))


def handler(data: bytes) -> bytes:
    deserialize_prepare(data)
    return FULFILL


def holding_handler(reactor: Any, seconds: float) -> Any:
    """A handler that answers the Fulfill ``seconds`` after each Prepare arrives."""
    from twisted.internet import task

    def hold(data: bytes) -> Any:
        deserialize_prepare(data)
        return task.deferLater(reactor, seconds, lambda: FULFILL)

    return hold


def make_receiver(
    token: str = benchlib.DEFAULT_TOKEN,
    jwt_secret: str | None = None,
    port: int = 0,
    reactor: Any = None,
    hold_seconds: float = 0.0,
    reply_url: str | None = None,
) -> PluginHttp:
    """A receive-only PluginHttp on 127.0.0.1 with the fulfilling handler (not yet connected)."""
    incoming: dict[str, Any] = {
        "endpoint": f"tcp:{port}:interface=127.0.0.1",
        "static_token": token,
    }
    if jwt_secret:
        incoming["jwt_secret"] = jwt_secret
    outgoing = None
    if reply_url is not None:  # RFC 35: replies go out with the outgoing credential
        outgoing = {"url": reply_url, "static_token": token}
    plugin = PluginHttp(incoming=incoming, outgoing=outgoing, reactor=reactor)
    if hold_seconds > 0:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        plugin.register_data_handler(holding_handler(reactor, hold_seconds))
    else:
        plugin.register_data_handler(handler)
    return plugin


def listening_port(plugin: PluginHttp) -> int:
    assert plugin.port is not None
    host: Any = plugin.port.getHost()
    return int(host.port)


def watch_stdin(reactor: Any, on_close: Any) -> Any:
    """Call ``on_close()`` when stdin closes (the harness went away); returns the transport."""
    from twisted.internet import protocol, stdio

    class Watcher(protocol.Protocol):
        def connectionLost(self, reason: object = None) -> None:
            on_close()

    return stdio.StandardIO(Watcher(), reactor=reactor)


def main() -> None:
    from twisted.internet import reactor

    opts = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    plugin = make_receiver(
        opts.get("token", benchlib.DEFAULT_TOKEN),
        opts.get("jwtSecret"),
        int(opts.get("port", 0)),
        hold_seconds=float(opts.get("holdSeconds", 0)),
        reply_url=opts.get("replyUrl"),
    )
    stopping: list[bool] = []

    def stop() -> None:
        if not stopping:
            stopping.append(True)
            plugin.disconnect().addBoth(lambda _: reactor.stop())

    def ready(_: object) -> None:
        line = json.dumps({"event": "ready", "port": listening_port(plugin)})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        watch_stdin(reactor, stop)

    def failed(failure: Any) -> None:
        sys.stderr.write(f"server_ilphttp: {failure.getErrorMessage()}\n")
        reactor.stop()

    plugin.connect().addCallbacks(ready, failed)
    reactor.callLater(float(opts.get("maxSeconds", 3600)), stop)
    reactor.run()


if __name__ == "__main__":
    main()
