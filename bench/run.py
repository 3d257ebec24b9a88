"""ilphttp vs the JS ilp-plugin-http@1.6.1, side by side, in one run.

    python bench/run.py [--quick] [--json out.json] [--repeat N] [--python PATH ...]

Runs with the dev venv's python or PyPy (standard library only here; every
measurement runs in child processes).  Everything is on 127.0.0.1 and the
receiver fulfils every Prepare.  Sections (``--sections``, all by default):

``pair``    a sender plugin -> a receiver plugin over HTTP/1.1 keep-alive:
            ilphttp -> ilphttp or JS -> JS (rows_pair.py); 100-byte and 1 KB
            Prepare data, concurrency 1/16/64/256 (closed loop), sender and
            receiver in one process or two, static token or HS256 JWT.
``h2c``     two processes over cleartext HTTP/2 into an ilphttp receiver: from
            ilphttp's sender, and from the JS plugin's ``http2: true`` sender;
            compared with the JS pair over HTTP/1.1 (added to ``pair`` if needed).
``server``  each server alone under ``wrk -t1 -cC`` (rows_server.py): the JS
            plugin's, ilphttp's, a bare node ``http`` server (the ceiling of any
            node server) and, with ``--servers ...,bare``, a bare twisted.web one.
``memory``  a receiver's RSS holding ``--idle-conns`` idle keep-alive connections,
            and with ``--inflight`` Prepares held by its handler (rows_memory.py).

Each row runs ``--repeat`` times, interleaved (every row once, then again), and
reports packets/s and p50/p99 latency (median [min-max] over the repetitions),
CPU microseconds per packet of the sender and receiver processes, and ilphttp's
ratio to the JS row (and, for servers, to bare node) per repetition, median
[min-max].  Under PyPy the warm-up is at least ``--pypy-warmup`` and lasts until
the throughput is stable (see harness.warmup_for).  A summary checks issue 11's
targets.  ``--python`` (repeatable) picks the interpreters that run ilphttp.

``--quick`` runs one small row of each kind (under 40 s); it is what CI runs,
and it only checks that every part works: the exit status is 1 when a run
failed, a reply was not a Fulfill, or a section produced no row.  Missing tools
are skipped with a line saying so, except node under ``CI=true`` (the project's
rule for JS peers) and anything named by ``--require``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import NODE_MODULES, ROOT, BenchError, Impl, python_env, warmup_for
from report import build_rows, describe, print_table, targets
from rows_memory import MemCfg, memory_sample
from rows_pair import H2cCfg, PairCfg, h2c_sample, pair_sample
from rows_server import ServerCfg, server_sample

SECTIONS = ("pair", "h2c", "server", "memory")
#: the JS plugin's h2c sender into an ilphttp receiver before issue 11 (bench/README.md)
H2C_BEFORE = 700.0

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
    have_node = False
    if wanted & {"js", "node"}:
        node = opts.node and shutil.which(opts.node)
        if not node:
            missing("node", "JS and bare node rows: node not found (install Node.js >= 18)")
        else:
            opts.node = node
            have_node = True
            if "node" in opts.servers:
                impls.append(Impl("node", "node", None))
    if have_node and "js" in wanted:
        if not os.path.isdir(os.path.join(NODE_MODULES, "ilp-plugin-http")):
            missing(
                "node",
                "JS rows: interop/node_modules has no ilp-plugin-http"
                " (run: npm ci --prefix interop)",
            )
        else:
            impls.append(Impl("js", "js", None))
    js = any(i.family == "js" for i in impls)
    for python in opts.python:
        label, error = python_label(python)
        if label is None:
            missing("ilphttp", f"rows for {python}: it does not run: {error}")
            continue
        if "ilphttp" in wanted:
            why = can_import(python, "import ilphttp; ilphttp.PluginHttp; import twisted.web")
            if why is None:
                impls.append(Impl(f"ilphttp@{label}", "ilphttp", python))
                if js and "h2c" in opts.sections:
                    impls.append(Impl(f"js-h2c>ilphttp@{label}", "js-h2c", python))
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
    if "memory" in opts.sections and not os.path.exists("/proc/self/status"):
        missing("proc", "memory rows: no /proc (Linux only)")
        opts.sections = [s for s in opts.sections if s != "memory"]
    return impls


# -- the run ---------------------------------------------------------------------------


#: RFC 35 asynchronous mode: ilphttp -> ilphttp, two processes, beside the sync pair
ASYNC_PAIR = PairCfg(100, 64, 2, False, "async")


def pair_configs(opts: argparse.Namespace) -> list[PairCfg]:
    if opts.quick:
        # 2proc C=16 is also the h2c row's baseline; C=1 shows the p99 column
        return [PairCfg(100, 16, 2, False), PairCfg(1024, 1, 1, True), ASYNC_PAIR]
    return [
        PairCfg(size, c, procs, jwt)
        for jwt in opts.jwt
        for procs in opts.procs
        for size in opts.sizes
        for c in opts.concurrency
    ] + [ASYNC_PAIR]


def h2c_configs(opts: argparse.Namespace) -> list[H2cCfg]:
    if opts.quick:
        return [H2cCfg(100, 16, False)]
    return [H2cCfg(size, c, jwt) for jwt in opts.jwt for size in opts.sizes for c in opts.h2c_c]


def server_configs(opts: argparse.Namespace) -> list[ServerCfg]:
    if opts.quick:
        return [ServerCfg(100, 64, False)]
    return [
        ServerCfg(size, c, jwt) for jwt in opts.jwt for size in opts.sizes for c in opts.server_c
    ]


def memory_configs(opts: argparse.Namespace) -> list[MemCfg]:
    return [
        MemCfg("idle", opts.idle_conns, 0.0),
        MemCfg("inflight", opts.inflight, opts.hold),
    ]


def make_plan(opts: argparse.Namespace, impls: list[Impl]) -> list[tuple[str, Any, Impl]]:
    """Every (section, config, implementation) to run, in table order."""
    by_family: dict[str, list[Impl]] = {}
    for impl in impls:
        by_family.setdefault(impl.family, []).append(impl)
    pairs = [i for i in impls if i.family in ("js", "ilphttp") and i.family in opts.impls]
    plan: list[tuple[str, Any, Impl]] = []
    if "pair" in opts.sections or "h2c" in opts.sections:
        cfgs = pair_configs(opts) if "pair" in opts.sections else []
        if "h2c" in opts.sections:  # the JS pair over HTTP/1.1 that h2c rows compare with
            cfgs += [c.http1_pair() for c in h2c_configs(opts) if c.http1_pair() not in cfgs]
        plan += [
            ("pair", cfg, impl)
            for cfg in cfgs
            for impl in pairs
            if cfg.mode == "sync" or impl.family == "ilphttp"
        ]
    if "h2c" in opts.sections:
        h2c = [i for i in impls if i.family in ("ilphttp", "js-h2c")]
        plan += [("h2c", cfg, impl) for cfg in h2c_configs(opts) for impl in h2c]
    if "server" in opts.sections and opts.wrk:
        servers = [i for i in impls if i.family in opts.servers]
        plan += [("server", cfg, impl) for cfg in server_configs(opts) for impl in servers]
    if "memory" in opts.sections:
        plan += [("memory", cfg, impl) for cfg in memory_configs(opts) for impl in pairs]
    return plan


def estimate_seconds(opts: argparse.Namespace, plan: list[tuple[str, Any, Impl]]) -> float:
    """A rough duration: warm-ups (PyPy's at their least), windows, start-up."""
    total = 0.0
    for section, cfg, impl in plan:
        if section in ("pair", "h2c"):
            total += warmup_for(impl, opts, opts.warmup)[0] + opts.duration + 1.5
        elif section == "server":
            total += warmup_for(impl, opts, opts.wrk_warmup)[0] + opts.wrk_duration + 1.5
        else:
            total += 3.0 + (cfg.hold if cfg.kind == "inflight" else cfg.connections / 3000)
    return opts.repeat * total


def run_one(section: str, cfg: Any, impl: Impl, opts: argparse.Namespace) -> dict:
    if section == "pair":
        return pair_sample(impl, cfg, opts)
    if section == "h2c":
        return h2c_sample(impl, cfg, opts)
    if section == "server":
        return server_sample(impl, cfg, opts)
    return memory_sample(impl, cfg, opts)


def measure(opts: argparse.Namespace, impls: list[Impl]) -> tuple[list[dict], list[str]]:
    plan = make_plan(opts, impls)
    print(
        f"# {len(plan)} rows x {opts.repeat} repetitions,"
        f" about {estimate_seconds(opts, plan) / 60:.1f} min",
        flush=True,
    )
    samples: dict[tuple, list[dict]] = {}
    failures: list[str] = []
    for rep in range(opts.repeat):
        for section, cfg, impl in plan:
            label = f"{section} {describe(section, cfg)} {impl.key} #{rep + 1}"
            try:
                sample = run_one(section, cfg, impl, opts)
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
                print(f"  {label}: {sample.get('pps') or 0:.0f} pkt/s", flush=True)
    rows = build_rows(plan, samples)
    for section in opts.sections:
        planned = any(s == section for s, _, _ in plan)
        if opts.quick and planned and not any(r["section"] == section for r in rows):
            failures.append(f"{section}: no row was measured")
    return rows, failures


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
    add = p.add_argument
    add("--quick", action="store_true", help="one small row of each kind (CI)")
    add("--json", metavar="PATH", help="write the results as JSON here")
    add("--repeat", type=int, default=3, help="repetitions of each row (default 3)")
    add("--sections", type=csv_words, default=list(SECTIONS), help=",".join(SECTIONS))
    add("--duration", type=float, default=3.0, help="pair/h2c: measured seconds")
    add("--warmup", type=float, default=1.0, help="pair/h2c: seconds before measuring")
    add("--wrk-duration", type=int, default=3, help="server: measured seconds (wrk)")
    add("--wrk-warmup", type=int, default=1, help="server: wrk warm-up seconds")
    add("--pypy-warmup", type=float, default=10.0, help="least warm-up under PyPy (s)")
    add("--stable-bucket", type=float, default=1.0, help="PyPy: throughput window (s)")
    add("--stable-tolerance", type=float, default=0.1, help="PyPy: stable within (0.1)")
    add("--max-extra-warmup", type=float, default=20.0, help="warm-up cap beyond the least")
    add("--sizes", type=csv_ints, default=[100, 1024], help="data bytes: 100,1024")
    add("--concurrency", type=csv_ints, default=[1, 16, 64, 256], help="pair: 1,16,64,256")
    add("--h2c-c", type=csv_ints, default=[64], help="h2c rows' concurrency (64)")
    add("--server-c", type=csv_ints, default=None, help="server rows (default --concurrency)")
    add("--procs", type=csv_ints, default=[1, 2], help="pair: 1, 2 or 1,2")
    add("--jwt", type=onoff, default=[False, True], help="off, on or off,on")
    add("--impls", type=csv_words, default=["js", "ilphttp"], help="js,ilphttp")
    add("--servers", type=csv_words, default=["js", "ilphttp", "node"], help="js,ilphttp,node,bare")
    add("--idle-conns", type=int, default=10000, help="memory: idle connections (10000)")
    add("--inflight", type=int, default=1000, help="memory: Prepares in flight (1000)")
    add("--hold", type=float, default=2.0, help="memory: seconds each Prepare is held (2)")
    add("--h2c-before", type=float, default=H2C_BEFORE, help="JS h2c pkt/s before issue 11")
    add(
        "--python",
        action="append",
        default=None,
        help="interpreter for the ilphttp rows (repeatable; default: this one)",
    )
    add("--node", default="node", help="node executable (default: node on PATH)")
    add("--wrk", default="wrk", help="wrk executable (default: wrk on PATH)")
    add(
        "--require",
        type=csv_words,
        default=[],
        help="node,wrk,ilphttp: fail instead of skipping when missing (CI=true implies node)",
    )
    add("-v", "--verbose", action="store_true", help="print every sample")
    opts = p.parse_args(argv)
    if opts.python is None:
        opts.python = [sys.executable]
    if opts.server_c is None:
        opts.server_c = opts.concurrency
    unknown = set(opts.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if opts.quick:
        opts.repeat = 1
        opts.duration, opts.warmup = 0.8, 0.3
        opts.wrk_duration, opts.wrk_warmup = 1, 0
        opts.pypy_warmup, opts.stable_bucket, opts.max_extra_warmup = 0.5, 0.2, 2.0
        opts.idle_conns, opts.inflight, opts.hold = 200, 50, 0.5
    if opts.repeat < 1 or opts.duration <= 0 or opts.wrk_duration < 1:
        p.error("--repeat and --wrk-duration are at least 1, --duration above 0")
    if opts.idle_conns < 1 or opts.inflight < 1 or opts.hold <= 0:
        p.error("--idle-conns and --inflight are at least 1, --hold above 0")
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
    goals = targets(rows, opts.h2c_before)
    if goals:
        print(
            "\n# issue 11 targets (medians)" + (" - --quick: not meaningful" if opts.quick else "")
        )
        for line in goals:
            print(f"  {line}")
    elapsed = time.monotonic() - started
    print(f"\n# {elapsed:.1f} s; {os.cpu_count()} CPUs; load average {info['loadavg']}")
    if opts.json:
        info["elapsed_s"] = elapsed
        for r in rows:
            del r["key"]
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "meta": info,
                    "skipped": skipped,
                    "failures": failures,
                    "rows": rows,
                    "targets": goals,
                },
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
