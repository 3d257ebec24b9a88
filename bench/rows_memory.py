"""The memory rows: a receiver's RSS with many idle connections, and with Prepares in flight.

``idle``: conn_holder.py opens ``count`` keep-alive connections, each sends one
Prepare, reads the Fulfill and stays open; the receiver's RSS is read (VmRSS,
/proc/<pid>/status) before and right after.  ``inflight``: the receiver's
handler holds every Prepare ``hold`` seconds, and ``count`` connections each
keep one Prepare in flight (a closed loop); RSS is read while they are held
(the highest of a few readings).  Both report the RSS delta per 1,000 (KiB).

The JS receiver is node's ``http`` server under koa, which closes keep-alive
connections idle for 5 s (node's ``keepAliveTimeout``); the row's ``open``
count says how many were still open after the reading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import NamedTuple

import benchlib
from harness import BENCH, BenchError, Impl, Server, python_env
from rows_pair import receiver_argv
from rows_server import check_server


class MemCfg(NamedTuple):
    kind: str  # "idle" | "inflight"
    connections: int
    hold: float  # seconds the handler holds each Prepare (inflight)


def _rss(pid: int, name: str) -> int:
    rss = benchlib.proc_rss_kb(pid)
    if rss is None:
        raise BenchError(f"{name}: no /proc/{pid}/status (the memory rows need Linux)")
    return rss


def memory_sample(impl: Impl, cfg: MemCfg, opts: argparse.Namespace) -> dict:
    """Receiver RSS before and with ``cfg.connections`` connections (idle, or holding a Prepare)."""
    hold = cfg.hold if cfg.kind == "inflight" else 0.0
    env = None if impl.python is None else python_env()
    holder_opts = {"count": cfg.connections, "mode": cfg.kind}
    with Server(receiver_argv(impl, False, opts, hold), env, f"{impl.key} receiver") as srv:
        for _ in range(3):  # the first requests allocate what every request needs
            check_server(srv.port, 100, False, impl.key)
        time.sleep(0.3)
        before = _rss(srv.pid, impl.key)
        holder_argv = [
            sys.executable,
            os.path.join(BENCH, "conn_holder.py"),
            json.dumps(dict(holder_opts, port=srv.port)),
        ]
        began = time.monotonic()
        holder = Server(holder_argv, None, "conn_holder", ready_timeout=120.0 + hold)
        try:
            readings = [_rss(srv.pid, impl.key)]
            if hold > 0:
                # every connection has had one answer: now each has a Prepare held
                deadline = time.monotonic() + hold
                while time.monotonic() < deadline:
                    time.sleep(min(0.25, hold / 4))
                    readings.append(_rss(srv.pid, impl.key))
            holder.close_stdin()
            done = holder.wait_event("done", 30.0)
        finally:
            holder.stop()
        elapsed = time.monotonic() - began
    after = max(readings)
    ready = holder.ready
    answers = int(done.get("answers", 0))
    return {
        "impl": impl.key,
        "packets": answers,
        "errors": int(ready.get("errors", 0)) + int(done.get("errors", 0)),
        "pps": answers / elapsed if hold > 0 and elapsed else None,
        "rss_before_kb": before,
        "rss_kb": after,
        "delta_kb": after - before,
        "per_1000_kb": (after - before) * 1000 / cfg.connections,
        "opened": int(ready.get("open", 0)),
        "open_after": int(done.get("open", 0)),
        "open_s": float(ready.get("seconds", 0.0)),
    }
