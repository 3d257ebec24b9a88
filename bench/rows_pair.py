"""The pair and h2c rows: a sender plugin in a closed loop against a receiver plugin.

``pair``: ilphttp -> ilphttp (ilphttp_pair.py, server_ilphttp.py) or JS -> JS
(js_pair.js, js_server.js), over HTTP/1.1, in one process or two; and the
RFC 35 asynchronous row (``mode="async"``, ilphttp only, two processes): the
sender's Prepares are answered ``202`` and their replies POSTed back to its
callback listener.
``h2c``: two processes over cleartext HTTP/2 into an ilphttp receiver, from
ilphttp's sender (``http2: true``) or the JS plugin's (``http2: true``); the JS
plugin's own server speaks HTTP/1.1 only, so there is no JS -> JS h2c row, and
these rows are compared with the JS pair over HTTP/1.1.

Every sample carries ``cpu_us``: CPU microseconds per packet of the sender and
receiver processes over the measuring window (one process: ``sender`` is both).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, NamedTuple

import benchlib
from harness import BENCH, BenchError, Impl, Server, python_env, run_sender, warmup_for


class PairCfg(NamedTuple):
    size: int
    concurrency: int
    procs: int
    jwt: bool
    #: "sync", or "async": RFC 35 (the sender's outgoing.mode; ilphttp, 2 processes)
    mode: str = "sync"


class H2cCfg(NamedTuple):
    size: int
    concurrency: int
    jwt: bool

    def http1_pair(self) -> PairCfg:
        """The JS pair row these h2c rows are compared with (HTTP/1.1, two processes)."""
        return PairCfg(self.size, self.concurrency, 2, self.jwt)


def sender_options(
    impl: Impl, size: int, concurrency: int, jwt: bool, opts: argparse.Namespace
) -> dict[str, Any]:
    warmup, bucket = warmup_for(impl, opts, opts.warmup)
    o: dict[str, Any] = {
        "token": benchlib.DEFAULT_TOKEN,
        "size": size,
        "concurrency": concurrency,
        "duration": opts.duration,
        "warmup": warmup,
        "expiresIn": 600,
        "stableBucket": bucket,
        "stableTolerance": opts.stable_tolerance,
        "maxExtraWarmup": opts.max_extra_warmup,
    }
    if jwt:
        o["jwtSecret"] = benchlib.JWT_SECRET
    return o


def receiver_options(jwt: bool, hold_seconds: float = 0.0) -> dict[str, Any]:
    o: dict[str, Any] = {"token": benchlib.DEFAULT_TOKEN}
    if jwt:
        o["jwtSecret"] = benchlib.JWT_SECRET
    if hold_seconds > 0:
        o["holdSeconds"] = hold_seconds
        o["holdMs"] = hold_seconds * 1000
    return o


def receiver_argv(impl: Impl, jwt: bool, opts: argparse.Namespace, hold: float = 0.0) -> list[str]:
    """A fulfilling receiver: the JS plugin's for ``js``, else ilphttp's under impl.python."""
    config = json.dumps(receiver_options(jwt, hold))
    if impl.family == "js":
        return [opts.node, os.path.join(BENCH, "js_server.js"), config]
    assert impl.python is not None
    return [impl.python, os.path.join(BENCH, "server_ilphttp.py"), config]


def _sample(
    sender: list[str],
    sender_env: dict[str, str] | None,
    options: dict[str, Any],
    receiver: tuple[list[str], dict[str, str] | None] | None,
    name: str,
) -> dict:
    """Run the sender (against a fresh receiver child, if any); its result with ``cpu_us``."""
    timeout = options["warmup"] + options["duration"] + options["maxExtraWarmup"] + 40
    if receiver is None:
        result = run_sender([*sender, json.dumps(options)], sender_env, timeout, name)
    else:
        with Server(receiver[0], receiver[1], f"{name} receiver") as srv:
            options = dict(options, url=f"http://127.0.0.1:{srv.port}/", receiverPid=srv.pid)
            result = run_sender([*sender, json.dumps(options)], sender_env, timeout, name)
    cpu = result.get("cpu_s") or {}
    packets = int(result.get("packets") or 0)
    result["cpu_us"] = {
        side: (cpu[side] * 1e6 / packets if packets and cpu.get(side) is not None else None)
        for side in ("sender", "receiver")
    }
    return result


def pair_sample(impl: Impl, cfg: PairCfg, opts: argparse.Namespace) -> dict:
    """JS -> JS or ilphttp -> ilphttp over HTTP/1.1, in ``cfg.procs`` processes."""
    options = sender_options(impl, cfg.size, cfg.concurrency, cfg.jwt, opts)
    if impl.family == "js":
        if cfg.mode != "sync":
            raise BenchError(f"{impl.key}: the JS plugin has no RFC 35 asynchronous mode")
        sender, env = [opts.node, os.path.join(BENCH, "js_pair.js")], None
    else:
        assert impl.python is not None
        sender, env = [impl.python, os.path.join(BENCH, "ilphttp_pair.py")], python_env()
    if cfg.mode == "async":
        if cfg.procs != 2 or impl.python is None:
            raise BenchError(f"{impl.key}: the async row is ilphttp in two processes")
        # The sender's callback listener; the receiver POSTs its replies there.
        callback_port = benchlib.free_port()
        options["callbackPort"] = callback_port
        argv = [impl.python, os.path.join(BENCH, "server_ilphttp.py")]
        argv.append(
            json.dumps(
                dict(receiver_options(cfg.jwt), replyUrl=f"http://127.0.0.1:{callback_port}/")
            )
        )
        return _sample(sender, env, options, (argv, env), impl.key)
    receiver = None if cfg.procs == 1 else (receiver_argv(impl, cfg.jwt, opts), env)
    return _sample(sender, env, options, receiver, impl.key)


def h2c_sample(impl: Impl, cfg: H2cCfg, opts: argparse.Namespace) -> dict:
    """ilphttp's or the JS plugin's h2c sender -> an ilphttp receiver under impl.python."""
    if impl.python is None:
        raise BenchError(f"{impl.key}: the h2c rows need an ilphttp receiver")
    options = sender_options(impl, cfg.size, cfg.concurrency, cfg.jwt, opts)
    options["http2"] = True
    env = python_env()
    if impl.family == "js-h2c":
        sender, sender_env = [opts.node, os.path.join(BENCH, "js_pair.js")], None
    else:
        sender, sender_env = [impl.python, os.path.join(BENCH, "ilphttp_pair.py")], env
    receiver = ([impl.python, os.path.join(BENCH, "server_ilphttp.py")], env)
    receiver[0].append(json.dumps(receiver_options(cfg.jwt)))
    return _sample(sender, sender_env, options, receiver, impl.key)
