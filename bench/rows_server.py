"""The server rows: each receiver alone under wrk (bench/wrk_prepare.lua).

Implementations: the JS plugin's server (js_server.js), ilphttp's
(server_ilphttp.py), and two ceilings that do no ILP work: a bare node ``http``
server (node_bare.js) and a bare twisted.web Resource (bare_twisted.py).
Every sample carries ``cpu_us``: the server process's CPU microseconds per
request over the measured wrk run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import time
from typing import NamedTuple

import benchlib
from harness import BENCH, BenchError, Impl, Server, python_env, warmup_for
from rows_pair import receiver_options

WRK_SCRIPT = os.path.join(BENCH, "wrk_prepare.lua")


class ServerCfg(NamedTuple):
    size: int
    concurrency: int
    jwt: bool


def auth_header(jwt: bool) -> str:
    if jwt:
        return "Bearer " + benchlib.hs256_jwt(benchlib.JWT_SECRET, 3600)
    return "Bearer " + benchlib.DEFAULT_TOKEN


def check_server(port: int, size: int, jwt: bool, name: str) -> None:
    """One POST by hand before the load generator: the reply must be a Fulfill."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/",
            body=benchlib.bench_prepare(size, 600),
            headers={
                "Authorization": auth_header(jwt),
                "Content-Type": "application/octet-stream",
            },
        )
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200 or body[:1] != bytes([benchlib.TYPE_FULFILL]):
        raise BenchError(f"{name} answered {resp.status} {body[:60]!r}, not a Fulfill")


def server_argv(impl: Impl, jwt: bool, opts: argparse.Namespace) -> list[str]:
    config = json.dumps(receiver_options(jwt))
    if impl.family == "js":
        return [opts.node, os.path.join(BENCH, "js_server.js"), config]
    if impl.family == "node":
        return [opts.node, os.path.join(BENCH, "node_bare.js"), config]
    assert impl.python is not None
    script = "server_ilphttp.py" if impl.family == "ilphttp" else "bare_twisted.py"
    return [impl.python, os.path.join(BENCH, script), config]


def run_wrk(port: int, cfg: ServerCfg, seconds: int, opts: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env["ILPBENCH_BODY_HEX"] = benchlib.bench_prepare(cfg.size, 3600).hex()
    env["ILPBENCH_AUTH"] = auth_header(cfg.jwt)
    argv = [
        opts.wrk,
        "-t1",
        f"-c{cfg.concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        WRK_SCRIPT,
        f"http://127.0.0.1:{port}/",
    ]
    try:
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=seconds + 30
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk ran over {seconds + 30} s") from None
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("ILPBENCH "):
            return dict(json.loads(line[len("ILPBENCH ") :]))
    raise BenchError(f"wrk printed no summary: {done.stderr.decode('utf-8', 'replace')[-400:]}")


def warm_up(port: int, cfg: ServerCfg, impl: Impl, opts: argparse.Namespace) -> float:
    """wrk runs until the warm-up is over (and, with a stable bucket, until two
    consecutive one-bucket runs are within the tolerance, or ``--max-extra-warmup``
    later); the seconds it took."""
    seconds, bucket = warmup_for(impl, opts, opts.wrk_warmup)
    began = time.monotonic()
    if bucket <= 0:
        if seconds > 0:
            run_wrk(port, cfg, max(1, round(seconds)), opts)
        return time.monotonic() - began
    step = max(1, round(bucket))
    last: float | None = None
    while True:
        w = run_wrk(port, cfg, step, opts)
        rate = w["requests"] / max(w["duration_us"] / 1e6, 1e-9)
        elapsed = time.monotonic() - began
        stable = last is not None and abs(rate - last) <= opts.stable_tolerance * max(rate, last)
        if (elapsed >= seconds and stable) or elapsed >= seconds + opts.max_extra_warmup:
            return elapsed
        last = rate


def server_sample(impl: Impl, cfg: ServerCfg, opts: argparse.Namespace) -> dict:
    """One server alone under wrk: start it, check one POST, warm up, measure, stop."""
    env = None if impl.python is None else python_env()
    with Server(server_argv(impl, cfg.jwt, opts), env, impl.key) as srv:
        check_server(srv.port, cfg.size, cfg.jwt, impl.key)
        warmup_s = warm_up(srv.port, cfg, impl, opts)
        cpu0 = benchlib.proc_cpu_seconds(srv.pid)
        w = run_wrk(srv.port, cfg, opts.wrk_duration, opts)
        cpu1 = benchlib.proc_cpu_seconds(srv.pid)
    seconds = w["duration_us"] / 1e6
    errors = sum(int(v) for v in w["errors"].values())
    requests = int(w["requests"])
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {
        "impl": impl.key,
        "packets": requests,
        "errors": errors,
        "seconds": seconds,
        "pps": requests / seconds if seconds else 0.0,
        "p50_ms": w["latency_us"]["p50"] / 1000.0,
        "p99_ms": w["latency_us"]["p99"] / 1000.0,
        "mean_ms": w["latency_us"]["mean"] / 1000.0,
        "wrk_errors": w["errors"],
        "warmup_s": warmup_s,
        "cpu_s": {"receiver": cpu},
        "cpu_us": {"receiver": cpu * 1e6 / requests if cpu is not None and requests else None},
    }
