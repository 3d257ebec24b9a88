"""ilphttp's PluginHttp sending Prepares at a steady rate (open loop), for soak.py.

    python bench/soak_sender.py '<json options>'

Options: ``url`` (where to post), ``token`` (static token), ``destination``
(the Prepares' ILP address), ``rate`` (Prepares per second), ``interval``
(seconds between ``tick`` lines), ``expiresIn`` (seconds), ``size`` (bytes of
Prepare data).  Prints ``{"event": "ready"}`` once the first Prepare was
fulfilled, then every ``interval`` seconds one line::

    {"event": "tick", "sent": N, "ok": N, "errors": N, "inflight": N,
     "p99_ms": F, "last_error": "..."}

(counts are for that interval; ``p99_ms`` over the replies in it).  Runs until
stdin closes or SIGTERM.  Unlike ilphttp_pair.py (a closed loop, as fast as it
goes), the rate is fixed, so memory and descriptors can be compared over time.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from server_ilphttp import watch_stdin

from ilphttp import PluginHttp

#: sends happen this many times a second, rate / TICKS_PER_SECOND each time
TICKS_PER_SECOND = 50


class Counters:
    """What one interval saw; ``take()`` returns it and starts the next."""

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.errors = 0
        self.inflight = 0
        self.latencies: list[float] = []
        self.last_error: str | None = None

    def take(self) -> dict[str, Any]:
        self.latencies.sort()
        line = {
            "event": "tick",
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "inflight": self.inflight,
            "p99_ms": benchlib.percentile(self.latencies, 0.99),
            "last_error": self.last_error,
        }
        self.sent = self.ok = self.errors = 0
        self.latencies = []
        self.last_error = None
        return line


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def run(opts: dict[str, Any]) -> None:
    from twisted.internet import defer, reactor, task

    rate = float(opts.get("rate", 200))
    interval = float(opts.get("interval", 10))
    expires_in = float(opts.get("expiresIn", 30))
    size = int(opts.get("size", 100))
    destination = str(opts.get("destination", benchlib.DESTINATION))
    sender = PluginHttp(
        incoming=None,
        outgoing={
            "url": opts["url"],
            "static_token": opts.get("token", benchlib.DEFAULT_TOKEN),
            "name": "soak",
        },
    )
    counters = Counters()
    # the Prepare is rebuilt once a second: its expiry moves with the clock
    current = [b"", 0.0]

    def prepare() -> bytes:
        now = time.time()
        if now - current[1] >= 1.0:
            expires = datetime.datetime.fromtimestamp(now + expires_in, datetime.timezone.utc)
            current[0] = benchlib.encode_prepare(
                1, expires, benchlib.CONDITION, destination, b"a" * size
            )
            current[1] = now
        return current[0]  # type: ignore[return-value]

    def replied(reply: Any, t0: float) -> None:
        counters.inflight -= 1
        if isinstance(reply, bytes) and reply[:1] == bytes([benchlib.TYPE_FULFILL]):
            counters.ok += 1
            counters.latencies.append((time.perf_counter() - t0) * 1000.0)
        else:
            counters.errors += 1
            counters.last_error = repr(reply)[:200]

    def send_one() -> None:
        counters.sent += 1
        counters.inflight += 1
        sender.send_data(prepare()).addBoth(replied, time.perf_counter())

    owed = [0.0]

    def tick() -> None:
        owed[0] += rate / TICKS_PER_SECOND
        while owed[0] >= 1.0:
            owed[0] -= 1.0
            send_one()

    stopping: list[bool] = []

    def stop() -> None:
        if not stopping:
            stopping.append(True)
            sender.disconnect().addBoth(lambda _: reactor.stop())

    @defer.inlineCallbacks
    def start() -> Any:
        yield sender.connect()
        first = yield sender.send_data(prepare())
        if first[:1] != bytes([benchlib.TYPE_FULFILL]):
            raise RuntimeError(f"first reply is not a Fulfill: {first[:60]!r}")
        emit({"event": "ready", "pid": os.getpid()})
        task.LoopingCall(tick).start(1.0 / TICKS_PER_SECOND)
        task.LoopingCall(lambda: emit(counters.take())).start(interval, now=False)
        watch_stdin(reactor, stop)

    def failed(failure: Any) -> None:
        emit({"event": "fatal", "error": failure.getErrorMessage()})
        reactor.stop()

    reactor.callWhenRunning(lambda: start().addErrback(failed))
    reactor.run()


if __name__ == "__main__":
    run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
