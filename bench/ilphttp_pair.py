"""ilphttp's PluginHttp as a sender in a closed loop (the twin of js_pair.js), for run.py.

    python bench/ilphttp_pair.py '<json options>'

Options: ``url`` (the receiver; without it a receiver from server_ilphttp.py
runs in this same process and reactor: the one-process pair), ``token``,
``jwtSecret`` (the sender signs HS256 JWTs instead of the static token),
``size`` (bytes of Prepare data), ``concurrency``, ``duration`` and ``warmup``
(seconds), ``expiresIn`` (seconds), ``http2`` (send over h2c), ``receiverPid``
(the receiver's process: its CPU time over the window is read from
/proc/<pid>/stat and reported beside this process's own), ``stableBucket``
(seconds, 0 = off) and ``stableTolerance`` (for a JIT: see :class:`Window`),
``maxExtraWarmup`` (seconds, default 20), ``callbackPort`` (RFC 35: send
asynchronously, ``outgoing.mode = "async"``, with a callback listener on this
port of 127.0.0.1 that takes the replies with ``token``).

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
    """The measuring window: it opens when the warm-up is over, every worker has
    had a reply (opening C connections at once can take a while) and, with
    ``stable_bucket``, the throughput of two consecutive buckets of that many
    seconds differs by less than ``tolerance`` (PyPy's JIT is warm); or
    ``max_extra`` seconds after the warm-up.  Replies that arrive inside it count."""

    def __init__(
        self,
        concurrency: int,
        warmup: float,
        duration: float,
        stable_bucket: float = 0.0,
        tolerance: float = 0.1,
        max_extra: float = MAX_EXTRA_WARMUP,
    ) -> None:
        self.concurrency = concurrency
        self.duration = duration
        self.stable_bucket = stable_bucket
        self.tolerance = tolerance
        self.max_extra = max_extra
        self.stable = stable_bucket <= 0
        self.bucket_start = 0.0
        self.bucket_count = 0
        self.last_rate: float | None = None
        #: called once, when the window opens
        self.on_open: Any = None
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
        if self.t_start is None:
            self._track_stability(t1)
        if self.t_start is None and t1 >= self.warm_end:
            ready = self.warmed == self.concurrency and self.stable
            if ready or t1 >= self.warm_end + self.max_extra:
                self.t_start = t1
                self.t_end = t1 + self.duration
                if self.on_open is not None:
                    self.on_open()
        if self.t_start is not None and self.t_start <= t1 <= self.t_end:
            if ok:
                self.latencies.append((t1 - t0) * 1000.0)
            else:
                self.errors += 1

    def _track_stability(self, t1: float) -> None:
        """Replies per bucket; stable once two consecutive buckets' rates are close."""
        if self.stable:
            return
        if not self.bucket_start:
            self.bucket_start = t1
        self.bucket_count += 1
        elapsed = t1 - self.bucket_start
        if elapsed < self.stable_bucket:
            return
        rate = self.bucket_count / elapsed
        last = self.last_rate
        if last is not None and abs(rate - last) <= self.tolerance * max(rate, last):
            self.stable = True
        self.last_rate, self.bucket_start, self.bucket_count = rate, t1, 0

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
    receiver_pid = int(opts.get("receiverPid") or 0)
    max_extra = float(opts.get("maxExtraWarmup", MAX_EXTRA_WARMUP))
    exit_code = [0]

    def hard_limit() -> None:
        sys.stderr.write("ilphttp_pair: time limit reached\n")
        sys.stderr.flush()
        os._exit(3)

    reactor.callLater(warmup + duration + max_extra + 15, hard_limit)

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
        incoming = None
        callback_port = opts.get("callbackPort")
        if callback_port:
            callback = f"http://127.0.0.1:{int(callback_port)}/"
            outgoing.update(mode="async", callback_url=callback)
            incoming = {"endpoint": f"tcp:{int(callback_port)}:interface=127.0.0.1"}
            incoming["static_token"] = token
        sender = PluginHttp(incoming=incoming, outgoing=outgoing)
        yield sender.connect()
        prepare = benchlib.bench_prepare(size, expires_in)

        # One packet first, as js_pair.js does (and it opens a connection).
        first = yield sender.send_data(prepare)
        if first[:1] != bytes([benchlib.TYPE_FULFILL]):
            raise RuntimeError(f"first reply is not a Fulfill: {first[:40]!r}")

        window = Window(
            concurrency,
            warmup,
            duration,
            float(opts.get("stableBucket", 0)),
            float(opts.get("stableTolerance", 0.1)),
            max_extra,
        )
        cpu: list[dict[str, float | None]] = []

        def cpu_now() -> None:
            other = benchlib.proc_cpu_seconds(receiver_pid) if receiver_pid else None
            cpu.append({"sender": time.process_time(), "receiver": other})

        def window_opened() -> None:
            cpu_now()
            reactor.callLater(duration, cpu_now)

        window.on_open = window_opened
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
        if len(cpu) == 1:
            cpu_now()
        result["cpu_s"] = {
            k: None if not cpu or cpu[0][k] is None or cpu[1][k] is None else cpu[1][k] - cpu[0][k]  # type: ignore[operator]
            for k in ("sender", "receiver")
        }
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
