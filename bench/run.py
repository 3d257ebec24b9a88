"""ilphttp vs the JS ilp-plugin-http@1.6.1, side by side, in one run.

    python bench/run.py [--quick] [--json out.json] [--repeat N] [--python PATH ...]

Runs with the dev venv's python or PyPy (standard library only here; every
measurement runs in child processes).  Everything is on 127.0.0.1, HTTP/1.1
keep-alive, and the receiver fulfils every Prepare.

Sections:

``pair``    a sender plugin -> a receiver plugin: ilphttp -> ilphttp
            (bench/ilphttp_pair.py, bench/server_ilphttp.py) and JS -> JS
            (bench/js_pair.js, bench/js_server.js); 100-byte and 1 KB Prepare
            data, concurrency 1/16/64/256 (closed loop: C packets in flight),
            sender and receiver in one process or in two, static token or
            HS256 JWT.
``server``  each server alone under wrk (bench/wrk_prepare.lua POSTs a fixed
            Prepare with the Authorization header): the JS plugin's server vs
            ilphttp's (and, with ``--servers ...,bare``, a bare twisted.web
            Resource: the ceiling of any Twisted HTTP/1.1 server).

Each row is run ``--repeat`` times (interleaved: every implementation and
configuration once, then again), and reports packets/s, p50/p99 latency as
min/median/max over the repetitions, and the ratio of ilphttp's median
packets/s to the JS one's.  ``--python`` (repeatable) picks the interpreters
that run ilphttp, e.g. the dev venv's CPython and a PyPy venv: one row each.

``--quick`` runs one small row of each kind (well under a minute); it is what
CI runs, and it only checks that every part works: the exit status is 1 when a
run failed or a reply was not a Fulfill.  Missing tools are skipped with a line
saying so, except node under ``CI=true`` (the project's rule for JS peers) and
anything named by ``--require``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import benchlib  # noqa: E402

NODE_MODULES = os.path.join(ROOT, "interop", "node_modules")
WRK_SCRIPT = os.path.join(BENCH, "wrk_prepare.lua")
READY_TIMEOUT = 30.0


class PairCfg(NamedTuple):
    size: int
    concurrency: int
    procs: int
    jwt: bool


class ServerCfg(NamedTuple):
    size: int
    concurrency: int
    jwt: bool


class Impl(NamedTuple):
    key: str  # "js", "ilphttp@cpython3.11", "bare@pypy3.9"
    family: str  # "js" | "ilphttp" | "bare"
    python: str | None


class BenchError(Exception):
    """One measurement failed (a child crashed, timed out or printed no result)."""


# -- child processes ---------------------------------------------------------------


def python_env() -> dict[str, str]:
    """The environment for Python children: the working tree's ilphttp first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


class Server:
    """A receiver/server child that prints a ready line and exits when stdin closes."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, name: str) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.port = self._wait_ready()

    def _wait_ready(self) -> int:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.2)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                for line in buf.split(b"\n")[:-1]:
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(msg, dict) and msg.get("event") == "ready":
                        return int(msg["port"])
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise BenchError(f"{self.name} did not start: {self.stderr_tail()}")

    def stderr_tail(self, n: int = 600) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-n:].strip()

    def stop(self) -> None:
        """Close stdin (the child exits), then SIGTERM, then SIGKILL: always bounded."""
        proc = self.proc
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        for action, wait in ((None, 5.0), (proc.terminate, 3.0), (proc.kill, 3.0)):
            if proc.poll() is not None:
                break
            if action is not None:
                action()
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sender(argv: list[str], env: dict[str, str] | None, timeout: float, name: str) -> dict:
    """Run a sender child to completion; its last JSON ``result`` line."""
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name} ran over {timeout:.0f} s") from None
    for line in reversed(done.stdout.decode("utf-8", "replace").splitlines()):
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("event") == "result":
            if done.returncode != 0:
                raise BenchError(f"{name} exited {done.returncode}")
            return msg
    tail = done.stderr.decode("utf-8", "replace")[-600:].strip()
    raise BenchError(f"{name} printed no result (exit {done.returncode}): {tail}")


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


# -- the measurements ----------------------------------------------------------------


def sender_options(cfg: PairCfg, opts: argparse.Namespace, url: str | None) -> dict[str, Any]:
    o: dict[str, Any] = {
        "token": benchlib.DEFAULT_TOKEN,
        "size": cfg.size,
        "concurrency": cfg.concurrency,
        "duration": opts.duration,
        "warmup": opts.warmup,
        "expiresIn": 600,
    }
    if cfg.jwt:
        o["jwtSecret"] = benchlib.JWT_SECRET
    if url:
        o["url"] = url
    return o


def receiver_options(jwt: bool) -> dict[str, Any]:
    o: dict[str, Any] = {"token": benchlib.DEFAULT_TOKEN}
    if jwt:
        o["jwtSecret"] = benchlib.JWT_SECRET
    return o


def js_pair_sample(cfg: PairCfg, opts: argparse.Namespace) -> dict:
    """JS sender -> JS receiver (ilp-plugin-http@1.6.1 on both ends)."""
    timeout = opts.warmup + opts.duration + 60
    pair = [opts.node, os.path.join(BENCH, "js_pair.js")]
    if cfg.procs == 1:
        return run_sender([*pair, json.dumps(sender_options(cfg, opts, None))], None, timeout, "js")
    server_argv = [opts.node, os.path.join(BENCH, "js_server.js")]
    with Server([*server_argv, json.dumps(receiver_options(cfg.jwt))], None, "js_server") as srv:
        url = f"http://127.0.0.1:{srv.port}/"
        return run_sender([*pair, json.dumps(sender_options(cfg, opts, url))], None, timeout, "js")


def ilphttp_pair_sample(impl: Impl, cfg: PairCfg, opts: argparse.Namespace) -> dict:
    """ilphttp sender -> ilphttp receiver (PluginHttp on both ends), under ``impl.python``."""
    assert impl.python is not None
    env = python_env()
    timeout = opts.warmup + opts.duration + 60
    pair = [impl.python, os.path.join(BENCH, "ilphttp_pair.py")]
    if cfg.procs == 1:
        argv = [*pair, json.dumps(sender_options(cfg, opts, None))]
        return run_sender(argv, env, timeout, impl.key)
    server_argv = [impl.python, os.path.join(BENCH, "server_ilphttp.py")]
    with Server(
        [*server_argv, json.dumps(receiver_options(cfg.jwt))], env, "server_ilphttp"
    ) as srv:
        url = f"http://127.0.0.1:{srv.port}/"
        argv = [*pair, json.dumps(sender_options(cfg, opts, url))]
        return run_sender(argv, env, timeout, impl.key)


def server_argv(impl: Impl, jwt: bool, opts: argparse.Namespace) -> list[str]:
    config = json.dumps(receiver_options(jwt))
    if impl.family == "js":
        return [opts.node, os.path.join(BENCH, "js_server.js"), config]
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


def server_sample(impl: Impl, cfg: ServerCfg, opts: argparse.Namespace) -> dict:
    """One server alone under wrk: start it, check one POST, warm up, measure, stop."""
    env = None if impl.family == "js" else python_env()
    with Server(server_argv(impl, cfg.jwt, opts), env, impl.key) as srv:
        check_server(srv.port, cfg.size, cfg.jwt, impl.key)
        if opts.wrk_warmup > 0:
            run_wrk(srv.port, cfg, opts.wrk_warmup, opts)
        w = run_wrk(srv.port, cfg, opts.wrk_duration, opts)
    seconds = w["duration_us"] / 1e6
    errors = sum(int(v) for v in w["errors"].values())
    return {
        "impl": impl.key,
        "packets": w["requests"],
        "errors": errors,
        "seconds": seconds,
        "pps": w["requests"] / seconds if seconds else 0.0,
        "p50_ms": w["latency_us"]["p50"] / 1000.0,
        "p99_ms": w["latency_us"]["p99"] / 1000.0,
        "mean_ms": w["latency_us"]["mean"] / 1000.0,
        "wrk_errors": w["errors"],
    }


# -- what is there -------------------------------------------------------------------


def python_label(python: str) -> tuple[str | None, str]:
    """(``cpython3.11`` or ``pypy3.9``, or None) and the error text."""
    code = (
        "import platform, sys; "
        "print(platform.python_implementation().lower() + '%d.%d' % sys.version_info[:2])"
    )
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if done.returncode != 0:
        return None, done.stderr.decode("utf-8", "replace").strip()[-300:]
    return done.stdout.decode().strip(), ""


def can_import(python: str, code: str) -> str | None:
    """None if ``code`` runs under ``python`` with the working tree on the path; else why not."""
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            timeout=60,
            env=python_env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def tool_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else None


def discover(opts: argparse.Namespace, skipped: list[str], fatal: list[str]) -> list[Impl]:
    """The implementations this run can measure; a line in ``skipped`` for each that it cannot."""
    impls: list[Impl] = []
    required = set(opts.require)
    if os.environ.get("CI", "").lower() == "true":
        required.add("node")

    def missing(tool: str, why: str) -> None:
        if tool in required:
            fatal.append(f"MISSING (required): {why}")
        else:
            skipped.append(f"SKIP {why}")

    wanted = set(opts.impls) | set(opts.servers)
    if "js" in wanted:
        node = opts.node and shutil.which(opts.node)
        if not node:
            missing("node", "JS rows: node not found (install Node.js >= 18)")
        elif not os.path.isdir(os.path.join(NODE_MODULES, "ilp-plugin-http")):
            missing(
                "node",
                "JS rows: interop/node_modules has no ilp-plugin-http"
                " (run: npm ci --prefix interop)",
            )
        else:
            opts.node = node
            impls.append(Impl("js", "js", None))
    for python in opts.python:
        label, error = python_label(python)
        if label is None:
            missing("ilphttp", f"rows for {python}: it does not run: {error}")
            continue
        if "ilphttp" in wanted:
            why = can_import(python, "import ilphttp; ilphttp.PluginHttp; import twisted.web")
            if why is None:
                impls.append(Impl(f"ilphttp@{label}", "ilphttp", python))
            else:
                missing("ilphttp", f"ilphttp rows ({label}, {python}): import failed: {why}")
        if "bare" in wanted:
            why = can_import(python, "import twisted.web.server")
            if why is None:
                impls.append(Impl(f"bare@{label}", "bare", python))
            else:
                missing("ilphttp", f"bare Twisted rows ({label}): import failed: {why}")
    if "server" in opts.sections:
        wrk = opts.wrk and shutil.which(opts.wrk)
        if wrk:
            opts.wrk = wrk
        else:
            opts.wrk = None
            missing("wrk", "server rows: wrk not found (apt-get install wrk)")
    return impls


# -- the run ---------------------------------------------------------------------------


def pair_configs(opts: argparse.Namespace) -> list[PairCfg]:
    if opts.quick:
        return [PairCfg(100, 16, 1, False), PairCfg(1024, 64, 2, True)]
    return [
        PairCfg(size, c, procs, jwt)
        for jwt in opts.jwt
        for procs in opts.procs
        for size in opts.sizes
        for c in opts.concurrency
    ]


def server_configs(opts: argparse.Namespace) -> list[ServerCfg]:
    if opts.quick:
        return [ServerCfg(100, 64, False)]
    return [
        ServerCfg(size, c, jwt) for jwt in opts.jwt for size in opts.sizes for c in opts.concurrency
    ]


def stats(values: Iterable[float | None]) -> dict[str, float] | None:
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return None
    return {"min": vs[0], "median": statistics.median(vs), "max": vs[-1]}


def measure(opts: argparse.Namespace, impls: list[Impl]) -> tuple[list[dict], list[str]]:
    plan: list[tuple[str, Any, Impl]] = []
    if "pair" in opts.sections:
        for pcfg in pair_configs(opts):
            for impl in impls:
                if impl.family in ("js", "ilphttp") and impl.family in opts.impls:
                    plan.append(("pair", pcfg, impl))
    if "server" in opts.sections and opts.wrk:
        for scfg in server_configs(opts):
            for impl in impls:
                if impl.family in opts.servers:
                    plan.append(("server", scfg, impl))
    per_run = {
        "pair": opts.warmup + opts.duration + 1.5,
        "server": opts.wrk_warmup + opts.wrk_duration + 1.5,
    }
    estimate = opts.repeat * sum(per_run[section] for section, _, _ in plan)
    print(
        f"# {len(plan)} rows x {opts.repeat} repetitions, about {estimate / 60:.1f} min",
        flush=True,
    )
    samples: dict[tuple[str, Any, str], list[dict]] = {}
    failures: list[str] = []
    for rep in range(opts.repeat):
        for section, cfg, impl in plan:
            label = f"{section} {describe(cfg)} {impl.key} #{rep + 1}"
            try:
                if section == "server":
                    sample = server_sample(impl, cfg, opts)
                elif impl.family == "js":
                    sample = js_pair_sample(cfg, opts)
                else:
                    sample = ilphttp_pair_sample(impl, cfg, opts)
            except BenchError as exc:
                failures.append(f"{label}: {exc}")
                print(f"  FAILED {label}: {exc}", flush=True)
                continue
            if sample["errors"] or not sample["packets"]:
                failures.append(
                    f"{label}: {sample['packets']} packets, {sample['errors']} errors"
                    f" ({sample.get('last_error') or sample.get('wrk_errors')})"
                )
            samples.setdefault((section, cfg, impl.key), []).append(sample)
            if opts.verbose:
                print(f"  {label}: {sample['pps']:.0f} pkt/s", flush=True)
    rows: list[dict[str, Any]] = []
    for section, cfg, impl in plan:
        key = (section, cfg, impl.key)
        if key not in samples or any(r["key"] == key for r in rows):
            continue
        got = samples[key]
        rows.append(
            {
                "key": key,
                "section": section,
                "config": dict(cfg._asdict()),
                "impl": impl.key,
                "family": impl.family,
                "repetitions": len(got),
                "pps": stats(s["pps"] for s in got),
                "p50_ms": stats(s["p50_ms"] for s in got),
                "p99_ms": stats(s["p99_ms"] for s in got),
                "packets": sum(s["packets"] for s in got),
                "errors": sum(s["errors"] for s in got),
                "samples": got,
            }
        )
    add_ratios(rows)
    for r in rows:
        del r["key"]
    return rows, failures


def add_ratios(rows: list[dict]) -> None:
    """ratio_vs_js: this row's median over the JS row's median, same section and config."""
    js = {(r["section"], r["key"][1]): r for r in rows if r["family"] == "js"}
    for r in rows:
        base = js.get((r["section"], r["key"][1]))
        if r["family"] == "js" or base is None:
            r["ratio_vs_js"] = None
            continue
        ratio: dict[str, float | None] = {}
        for metric in ("pps", "p50_ms", "p99_ms"):
            mine, theirs = r[metric], base[metric]
            ok = mine is not None and theirs is not None and theirs["median"]
            ratio[metric] = mine["median"] / theirs["median"] if ok else None
        r["ratio_vs_js"] = ratio


def describe(cfg: Any) -> str:
    size = "1KB" if cfg.size == 1024 else f"{cfg.size}B"
    text = f"{size:>5} C={cfg.concurrency:<3}"
    if isinstance(cfg, PairCfg):
        text += f" {cfg.procs}proc"
    return text + (" jwt" if cfg.jwt else " tok")


def fmt_range(s: dict[str, float] | None, digits: int = 0) -> str:
    if s is None:
        return "-"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def print_table(rows: Sequence[dict], out: Any = sys.stdout) -> None:
    head = (
        f"{'section':7} {'row':22} {'impl':20} {'packets/s median [min-max]':28}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'x JS':>6}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    last = None
    for r in rows:
        cfg = r["config"]
        cls = PairCfg if r["section"] == "pair" else ServerCfg
        row = describe(cls(**cfg))
        if last is not None and (r["section"], row) != last:
            print("", file=out)
        last = (r["section"], row)
        p50 = r["p50_ms"]["median"] if r["p50_ms"] else float("nan")
        p99 = r["p99_ms"]["median"] if r["p99_ms"] else float("nan")
        ratio = r["ratio_vs_js"]["pps"] if r["ratio_vs_js"] and r["ratio_vs_js"]["pps"] else None
        flag = " !errors" if r["errors"] else ""
        print(
            f"{r['section']:7} {row:22} {r['impl']:20} {fmt_range(r['pps']):28}"
            f" {p50:7.2f} {p99:7.2f} {'' if ratio is None else f'{ratio:.2f}':>6}{flag}",
            file=out,
        )


def meta(opts: argparse.Namespace, impls: list[Impl]) -> dict[str, Any]:
    try:
        commit = (
            subprocess.run(
                ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, timeout=10
            )
            .stdout.decode()
            .strip()
        )
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "runner": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit,
        "node": tool_version([opts.node, "--version"]) if opts.node else None,
        "wrk": tool_version([opts.wrk, "--version"]) if opts.wrk else None,
        "impls": [impl._asdict() for impl in impls],
        "options": {
            k: v for k, v in vars(opts).items() if k not in ("json",) and not k.startswith("_")
        },
    }


def csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def csv_words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def onoff(text: str) -> list[bool]:
    values = {"off": False, "on": True}
    try:
        return [values[x] for x in csv_words(text)]
    except KeyError:
        raise argparse.ArgumentTypeError("use off, on or off,on") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one small row of each kind (CI)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of each row (default 3)")
    p.add_argument("--duration", type=float, default=3.0, help="pair: measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="pair: seconds before measuring")
    p.add_argument("--wrk-duration", type=int, default=3, help="server: measured seconds (wrk)")
    p.add_argument("--wrk-warmup", type=int, default=1, help="server: wrk warm-up seconds")
    p.add_argument("--sizes", type=csv_ints, default=[100, 1024], help="data bytes: 100,1024")
    p.add_argument("--concurrency", type=csv_ints, default=[1, 16, 64, 256], help="1,16,64,256")
    p.add_argument("--procs", type=csv_ints, default=[1, 2], help="pair: 1, 2 or 1,2")
    p.add_argument("--jwt", type=onoff, default=[False, True], help="off, on or off,on")
    p.add_argument("--sections", type=csv_words, default=["pair", "server"], help="pair,server")
    p.add_argument("--impls", type=csv_words, default=["js", "ilphttp"], help="js,ilphttp")
    p.add_argument(
        "--servers",
        type=csv_words,
        default=["js", "ilphttp"],
        help="server section: js,ilphttp,bare",
    )
    p.add_argument(
        "--python",
        action="append",
        default=None,
        help="interpreter for the ilphttp rows (repeatable; default: this one)",
    )
    p.add_argument("--node", default="node", help="node executable (default: node on PATH)")
    p.add_argument("--wrk", default="wrk", help="wrk executable (default: wrk on PATH)")
    p.add_argument(
        "--require",
        type=csv_words,
        default=[],
        help="node,wrk,ilphttp: fail instead of skipping when missing (CI=true implies node)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    opts = p.parse_args(argv)
    if opts.python is None:
        opts.python = [sys.executable]
    if opts.quick:
        opts.repeat = 1
        opts.duration, opts.warmup = 1.0, 0.3
        opts.wrk_duration, opts.wrk_warmup = 1, 0
    if opts.repeat < 1 or opts.duration <= 0 or opts.wrk_duration < 1:
        p.error("--repeat and --wrk-duration are at least 1, --duration above 0")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.monotonic()
    skipped: list[str] = []
    fatal: list[str] = []
    impls = discover(opts, skipped, fatal)
    for line in skipped + fatal:
        print(line, flush=True)
    if fatal:
        print("FAILED: a required tool is missing (see above)")
        return 1
    info = meta(opts, impls)
    rows, failures = measure(opts, impls)
    print("")
    print_table(rows)
    elapsed = time.monotonic() - started
    print(f"\n# {elapsed:.1f} s; {os.cpu_count()} CPUs; load average {info['loadavg']}")
    if opts.json:
        info["elapsed_s"] = elapsed
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump(
                {"meta": info, "skipped": skipped, "failures": failures, "rows": rows},
                f,
                indent=1,
            )
            f.write("\n")
        print(f"# wrote {opts.json}")
    if failures:
        print(f"FAILED: {len(failures)} run(s) failed or had errors:")
        for line in failures:
            print(f"  {line}")
        return 1
    if not rows:
        print("FAILED: nothing was measured")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
