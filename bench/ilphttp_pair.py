"""ilphttp's PluginHttp as a sender in a closed loop (the twin of js_pair.js), for run.py.

    python bench/ilphttp_pair.py '<json options>'

Options: ``url`` (the receiver; without it a receiver from server_ilphttp.py
runs in this same process and reactor: the one-process pair), ``token``,
``jwtSecret`` (the sender signs HS256 JWTs instead of the static token),
``size`` (bytes of Prepare data), ``concurrency``, ``duration`` and ``warmup``
(seconds), ``expiresIn`` (seconds), ``http2`` (send over h2c).

``concurrency`` workers each send one Prepare, wait for the reply and send the
next.  The measuring window (:class:`Window`) opens when the warm-up is over and
every worker has had a reply; packets answered in it count, and latency is per
packet, send to reply.  Prints one JSON line with the same keys as js_pair.js
and exits; it bounds itself to warmup + duration + 35 s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from server_ilphttp import listening_port, make_receiver

from ilphttp import PluginHttp

#: the window opens at most this long after the warm-up, replies or not
MAX_EXTRA_WARMUP = 20.0


class Window:
    """The measuring window: it opens when the warm-up is over and every worker has
    had a reply (opening C connections at once can take a while), or
    MAX_EXTRA_WARMUP later; replies that arrive inside it count."""

    def __init__(self, concurrency: int, warmup: float, duration: float) -> None:
        self.concurrency = concurrency
        self.duration = duration
        self.began = time.perf_counter()
        self.warm_end = self.began + warmup
        self.t_start: float | None = None
        self.t_end = float("inf")
        self.warmed = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.last_error: str | None = None

    def record(self, t0: float, t1: float, ok: bool, first: bool, reply: Any) -> None:
        if not ok:
            self.last_error = repr(reply)[:200]
        if first:
            self.warmed += 1
        if self.t_start is None and t1 >= self.warm_end:
            if self.warmed == self.concurrency or t1 >= self.warm_end + MAX_EXTRA_WARMUP:
                self.t_start = t1
                self.t_end = t1 + self.duration
        if self.t_start is not None and self.t_start <= t1 <= self.t_end:
            if ok:
                self.latencies.append((t1 - t0) * 1000.0)
            else:
                self.errors += 1

    def warmup_taken(self) -> float | None:
        return None if self.t_start is None else self.t_start - self.began


def run(opts: dict[str, Any]) -> int:
    from twisted.internet import defer, reactor

    token = opts.get("token", benchlib.DEFAULT_TOKEN)
    jwt_secret = opts.get("jwtSecret")
    size = int(opts.get("size", 100))
    concurrency = int(opts.get("concurrency", 1))
    duration = float(opts.get("duration", 3))
    warmup = float(opts.get("warmup", 1))
    expires_in = float(opts.get("expiresIn", 600))
    exit_code = [0]

    def hard_limit() -> None:
        sys.stderr.write("ilphttp_pair: time limit reached\n")
        sys.stderr.flush()
        os._exit(3)

    reactor.callLater(warmup + duration + MAX_EXTRA_WARMUP + 15, hard_limit)

    @defer.inlineCallbacks
    def main() -> Any:
        receiver = None
        url = opts.get("url")
        if not url:
            receiver = make_receiver(token, jwt_secret)
            yield receiver.connect()
            url = f"http://127.0.0.1:{listening_port(receiver)}/"
        outgoing: dict[str, Any] = {"url": url, "name": "benchsender"}
        if jwt_secret:
            outgoing["jwt_secret"] = jwt_secret
        else:
            outgoing["static_token"] = token
        if opts.get("http2"):
            outgoing["http2"] = True
        sender = PluginHttp(incoming=None, outgoing=outgoing)
        yield sender.connect()
        prepare = benchlib.bench_prepare(size, expires_in)

        # One packet first, as js_pair.js does (and it opens a connection).
        first = yield sender.send_data(prepare)
        if first[:1] != bytes([benchlib.TYPE_FULFILL]):
            raise RuntimeError(f"first reply is not a Fulfill: {first[:40]!r}")

        window = Window(concurrency, warmup, duration)
        done: defer.Deferred[None] = defer.Deferred()
        running = [concurrency]

        def worker(first: bool) -> None:
            t0 = time.perf_counter()
            if t0 >= window.t_end:
                running[0] -= 1
                if running[0] == 0:
                    done.callback(None)
                return
            sender.send_data(prepare).addBoth(finished, t0, first)

        def finished(reply: Any, t0: float, first: bool) -> None:
            ok = isinstance(reply, bytes) and reply[:1] == b"\x0d"
            window.record(t0, time.perf_counter(), ok, first, reply)
            worker(False)

        for _ in range(concurrency):
            worker(True)
        yield done
        result = benchlib.summarize(window.latencies, window.errors, duration, "ilphttp")
        result["last_error"] = window.last_error
        result["warmup_s"] = window.warmup_taken()
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        yield sender.disconnect()
        if receiver is not None:
            yield receiver.disconnect()

    def failed(failure: Any) -> None:
        sys.stderr.write(f"ilphttp_pair: {failure.getTraceback()}\n")
        exit_code[0] = 1

    def start() -> None:
        d = main()
        d.addErrback(failed)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    return exit_code[0]


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
