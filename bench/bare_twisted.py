"""A bare twisted.web Resource answering POSTs: the ceiling for any Twisted HTTP/1.1 server.

    python bench/bare_twisted.py '{"port": 0}'

It reads the body and answers 200 with a fixed ILP Fulfill
(``application/octet-stream``); no auth, no parsing.  ``Site(...,
parsePOSTFormSubmission=False)`` where Twisted has that switch (25.5+), as
ilphttp's server does.  Listens on 127.0.0.1, prints ``{"event":"ready","port":N}``,
and runs until stdin closes, SIGTERM or ``maxSeconds`` (default 3600).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from twisted.internet import protocol, reactor, stdio
from twisted.web import resource, server

FULFILL = benchlib.encode_fulfill(benchlib.FULFILLMENT)


class Answer(resource.Resource):
    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        request.content.read()
        request.setHeader(b"content-type", b"application/octet-stream")
        return FULFILL

    def render_GET(self, request: Any) -> bytes:
        return b"OK"


def make_site() -> server.Site:
    try:
        site = server.Site(Answer(), parsePOSTFormSubmission=False)
    except TypeError:  # Twisted < 25.5
        site = server.Site(Answer())
    site.displayTracebacks = False
    return site


class _Watcher(protocol.Protocol):
    def connectionLost(self, reason: object = None) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    opts = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    site: Any = make_site()
    port = reactor.listenTCP(int(opts.get("port", 0)), site, interface="127.0.0.1")
    host: Any = port.getHost()
    number = host.port
    sys.stdout.write(json.dumps({"event": "ready", "port": number}) + "\n")
    sys.stdout.flush()
    stdio.StandardIO(_Watcher())
    reactor.callLater(float(opts.get("maxSeconds", 3600)), reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main()
