"""Soak: ilphttp nodes under a steady load for a long time; memory, descriptors, speed.

    python bench/soak.py [--duration 1800] [--interval 10] [--rate 200] [--out DIR]
    python bench/soak.py --smoke                 # ~15 s: what tox -e bench runs
    python bench/soak.py --plot DIR/soak.csv     # draw the PNG again from a CSV

Two set-ups run side by side on 127.0.0.1, each fed ``--rate`` Prepares a
second (open loop, soak_sender.py; 30 s expiry):

``pair``  the sender's PluginHttp -> a fulfilling PluginHttp receiver
          (server_ilphttp.py), each in its own process;
``hub``   a child's PluginHttp -> ``twistd -n ilphttp`` with two child accounts
          (``alice`` and ``bob``, the router between them) -> bob's fulfilling
          receiver: the Prepare to ``test.hub.bob.soak`` crosses the hub.

Every ``--interval`` seconds one CSV row per process: its RSS (VmRSS, KiB) and
open descriptors (``/proc/<pid>/fd``), beside its set-up's Prepares sent,
fulfilled and failed in the interval, the throughput and p99 latency.  At the
end: ``soak-summary.csv`` (per process: RSS and descriptors at the start and
the end, and growth in %, where *start* is the mean of the first minute after
``--warmup`` and *end* the mean of the last minute), and ``soak.png`` when
matplotlib is installed (``pip install matplotlib``; an optional bench
dependency: without it the CSVs are written and a line says so).

The exit status is 1 when a set-up did not start or a Prepare was not
fulfilled, 2 when RSS or descriptors of a process grew by more than
``--max-growth`` % (5; not checked with ``--smoke``: ten seconds say nothing
about growth).  Linux only (``/proc``).  Standard library only here; the
ilphttp processes run under ``--python`` (default: this interpreter).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from harness import BENCH, ROOT, BenchError, Server, python_env

TWISTD = "from twisted.scripts.twistd import run; run()"
HUB_DESTINATION = "test.hub.bob.soak"
FIELDS = (
    "elapsed_s",
    "setup",
    "process",
    "pid",
    "rss_kb",
    "fds",
    "sent",
    "fulfilled",
    "failed",
    "pps",
    "p99_ms",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 45.0) -> None:
    """Until ``GET url`` answers 200 (the node listens), or BenchError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the hub exited {proc.returncode} before it listened")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"the hub did not answer GET {url} within {timeout:.0f} s")


class Setup:
    """One set-up: its processes by name, and the sender whose ticks pace the samples."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.processes: dict[str, int] = {}
        self.sender: Server | None = None
        self.servers: list[Server] = []
        self.popens: list[subprocess.Popen[bytes]] = []
        self.totals = {"sent": 0, "fulfilled": 0, "failed": 0}
        self.last_error: str | None = None

    def stop(self) -> None:
        for server in reversed(([self.sender] if self.sender else []) + self.servers):
            server.stop()
        for proc in self.popens:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_sender(setup: Setup, python: str, url: str, destination: str, opts: Any) -> None:
    spec = {
        "url": url,
        "token": benchlib.DEFAULT_TOKEN,
        "destination": destination,
        "rate": opts.rate,
        "interval": opts.interval,
    }
    argv = [python, os.path.join(BENCH, "soak_sender.py"), json.dumps(spec)]
    setup.sender = Server(argv, python_env(), f"{setup.name} sender")
    setup.processes["sender"] = setup.sender.pid


def start_receiver(setup: Setup, python: str) -> int:
    argv = [python, os.path.join(BENCH, "server_ilphttp.py"), json.dumps({"maxSeconds": 1e7})]
    receiver = Server(argv, python_env(), f"{setup.name} receiver")
    setup.servers.append(receiver)
    setup.processes["receiver"] = receiver.pid
    return receiver.port


def start_pair(python: str, opts: Any) -> Setup:
    setup = Setup("pair")
    port = start_receiver(setup, python)
    start_sender(setup, python, f"http://127.0.0.1:{port}/", benchlib.DESTINATION, opts)
    return setup


def hub_config(alice_port: int, bob_port: int, bob_url: str) -> dict[str, Any]:
    """The hub's node file: two bilateral children, the router between them."""

    def child(port: int, url: str) -> dict[str, Any]:
        token = benchlib.DEFAULT_TOKEN
        return {
            "relation": "child",
            "plugin": "ilp-plugin-http",
            "options": {
                "incoming": {
                    "endpoint": f"tcp:{port}:interface=127.0.0.1",
                    "staticToken": token,
                },
                "outgoing": {"url": url, "staticToken": token},
            },
        }

    # alice only sends here; her URL is never used (nothing is routed to her)
    return {
        "ilpAddress": "test.hub",
        "assetCode": "XRP",
        "assetScale": 9,
        "accounts": {
            "alice": child(alice_port, f"http://127.0.0.1:{free_port()}/"),
            "bob": child(bob_port, bob_url),
        },
    }


def start_hub(python: str, opts: Any, workdir: str) -> Setup:
    setup = Setup("hub")
    bob_url = f"http://127.0.0.1:{start_receiver(setup, python)}/"
    alice_port, bob_port = free_port(), free_port()
    config = os.path.join(workdir, "hub.json")
    with open(config, "w") as f:
        json.dump(hub_config(alice_port, bob_port, bob_url), f, indent=2)
    log = open(os.path.join(workdir, "hub.log"), "wb")
    argv = [python, "-c", TWISTD, "-n", "--pidfile=", "ilphttp", "--config", config]
    hub = subprocess.Popen(
        argv, cwd=workdir, env=python_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    setup.popens.append(hub)
    setup.processes["hub"] = hub.pid
    alice_url = f"http://127.0.0.1:{alice_port}/"
    wait_healthy(alice_url, hub)
    start_sender(setup, python, alice_url, HUB_DESTINATION, opts)
    return setup


def window_mean(rows: list[dict[str, Any]], key: str, lo: float, hi: float) -> float | None:
    values = [float(r[key]) for r in rows if lo <= float(r["elapsed_s"]) < hi and r[key] != ""]
    return sum(values) / len(values) if values else None


def growth(start: float | None, end: float | None) -> float | None:
    if start is None or end is None or start == 0:
        return None
    return (end - start) * 100.0 / start


def summarize(rows: list[dict[str, Any]], warmup: float, window: float) -> list[dict[str, Any]]:
    """Per process: RSS and descriptors at the start (after warm-up) and the end, growth in %."""
    out = []
    last = max((float(r["elapsed_s"]) for r in rows), default=0.0)
    keys = sorted({(r["setup"], r["process"]) for r in rows})
    for setup, process in keys:
        mine = [r for r in rows if r["setup"] == setup and r["process"] == process]
        line: dict[str, Any] = {"setup": setup, "process": process}
        for key, label in (("rss_kb", "rss_kb"), ("fds", "fds")):
            start = window_mean(mine, key, warmup, warmup + window)
            end = window_mean(mine, key, last - window + 1e-9, last + 1)
            line[f"{label}_start"] = None if start is None else round(start, 1)
            line[f"{label}_end"] = None if end is None else round(end, 1)
            pct = growth(start, end)
            line[f"{label}_growth_pct"] = None if pct is None else round(pct, 2)
        line["fulfilled"] = sum(int(r["fulfilled"] or 0) for r in mine)
        line["failed"] = sum(int(r["failed"] or 0) for r in mine)
        out.append(line)
    return out


def read_csv(path: str) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot(rows: list[dict[str, Any]], png: str, warmup: float) -> bool:
    """Four panels (RSS, descriptors, throughput, p99) over time; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    series = sorted({(r["setup"], r["process"]) for r in rows})
    for setup, process in series:
        mine = [r for r in rows if r["setup"] == setup and r["process"] == process]
        t = [float(r["elapsed_s"]) / 60 for r in mine]
        label = f"{setup} {process}"
        axes[0].plot(t, [float(r["rss_kb"] or "nan") / 1024 for r in mine], label=label)
        axes[1].plot(t, [float(r["fds"] or "nan") for r in mine], label=label)
        if process == "sender":
            axes[2].plot(t, [float(r["pps"] or "nan") for r in mine], label=setup)
            axes[3].plot(t, [float(r["p99_ms"] or "nan") for r in mine], label=setup)
    titles = ("RSS (MiB)", "open descriptors", "Fulfills per second", "p99 latency (ms)")
    for ax, title in zip(axes, titles):
        ax.set_ylabel(title)
        ax.axvline(warmup / 60, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
        ax.set_ylim(bottom=0)
    axes[-1].set_xlabel("minutes (dotted: end of warm-up)")
    fig.suptitle("ilphttp soak: steady load, CPython")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return True


def sample(setup: Setup, elapsed: float, interval: float, writer: Any) -> list[dict[str, Any]]:
    """Wait for the sender's next tick; one row per process of the set-up."""
    assert setup.sender is not None
    tick = setup.sender.wait_event("tick", interval * 3 + 10)
    setup.totals["sent"] += tick["sent"]
    setup.totals["fulfilled"] += tick["ok"]
    setup.totals["failed"] += tick["errors"]
    if tick.get("last_error"):
        setup.last_error = tick["last_error"]
    rows = []
    for process, pid in setup.processes.items():
        row = {
            "elapsed_s": round(elapsed, 1),
            "setup": setup.name,
            "process": process,
            "pid": pid,
            "rss_kb": benchlib.proc_rss_kb(pid) or "",
            "fds": fd_count(pid) or "",
            "sent": tick["sent"] if process == "sender" else "",
            "fulfilled": tick["ok"] if process == "sender" else "",
            "failed": tick["errors"] if process == "sender" else "",
            "pps": round(tick["ok"] / interval, 1),
            "p99_ms": "" if tick["p99_ms"] is None else round(tick["p99_ms"], 2),
        }
        writer.writerow(row)
        rows.append(row)
    return rows


def run(opts: argparse.Namespace) -> int:
    os.makedirs(opts.out, exist_ok=True)
    csv_path = os.path.join(opts.out, "soak.csv")
    setups: list[Setup] = []
    rows: list[dict[str, Any]] = []
    status = 0
    with tempfile.TemporaryDirectory(prefix="ilphttp-soak-") as workdir:
        try:
            if "pair" in opts.setups:
                setups.append(start_pair(opts.python, opts))
            if "hub" in opts.setups:
                setups.append(start_hub(opts.python, opts, workdir))
            print(
                f"# soak: {opts.duration:.0f} s at {opts.rate:g} Prepares/s per set-up;"
                f" CSV: {csv_path}",
                flush=True,
            )
            began = time.monotonic()
            with open(csv_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                writer.writeheader()
                while time.monotonic() - began < opts.duration:
                    for setup in setups:
                        rows += sample(setup, time.monotonic() - began, opts.interval, writer)
                    f.flush()
        except BenchError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            status = 1
        finally:
            for setup in setups:
                setup.stop()
            if status and os.path.exists(os.path.join(workdir, "hub.log")):
                with open(os.path.join(workdir, "hub.log"), "rb") as log:
                    tail = log.read()[-2000:].decode("utf-8", "replace")
                print(f"soak: the hub's log ends:\n{tail}", file=sys.stderr)
    for setup in setups:
        t = setup.totals
        print(
            f"{setup.name}: {t['sent']} sent, {t['fulfilled']} fulfilled, {t['failed']} failed"
            + (f" (last: {setup.last_error})" if setup.last_error else "")
        )
        if t["failed"] or not t["fulfilled"]:
            status = status or 1
    return finish(rows, opts, status)


def finish(rows: list[dict[str, Any]], opts: argparse.Namespace, status: int) -> int:
    """The summary CSV, the table, the growth check and the PNG."""
    window = max(opts.interval, min(60.0, (opts.duration - opts.warmup) / 3))
    summary = summarize(rows, opts.warmup, window)
    summary_path = os.path.join(opts.out, "soak-summary.csv")
    if summary:
        with open(summary_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(summary[0]))
            writer.writeheader()
            writer.writerows(summary)
    print(
        f"{'process':<14} {'RSS KiB start':>13} {'end':>9} {'growth':>7}"
        f" {'fds start':>9} {'end':>6} {'growth':>7}"
    )
    for line in summary:
        print(
            f"{line['setup'] + ' ' + line['process']:<14} {line['rss_kb_start']!s:>13}"
            f" {line['rss_kb_end']!s:>9} {line['rss_kb_growth_pct']!s:>6}%"
            f" {line['fds_start']!s:>9} {line['fds_end']!s:>6} {line['fds_growth_pct']!s:>6}%"
        )
        worst = max(abs(line["rss_kb_growth_pct"] or 0), abs(line["fds_growth_pct"] or 0))
        if not opts.smoke and worst > opts.max_growth:
            print(
                f"soak: {line['setup']} {line['process']} grew by more than {opts.max_growth:g} %",
                file=sys.stderr,
            )
            status = status or 2
    png = os.path.join(opts.out, "soak.png")
    if rows and plot(rows, png, opts.warmup):
        print(f"plot: {png}")
    elif rows:
        print("no plot: matplotlib is not installed (pip install matplotlib); the CSVs are written")
    print(f"summary: {summary_path}")
    return status


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=1800.0, help="seconds (default 1800: 30 min)")
    add("--interval", type=float, default=10.0, help="seconds between samples (10)")
    add("--rate", type=float, default=200.0, help="Prepares per second per set-up (200)")
    add("--warmup", type=float, default=120.0, help="seconds left out of the growth (120)")
    add("--max-growth", type=float, default=5.0, help="%% of RSS/fds growth allowed (5)")
    add("--setups", default="pair,hub", help="comma-separated: pair, hub")
    add("--python", default=sys.executable, help="the interpreter of the ilphttp processes")
    add("--out", default=os.path.join(ROOT, "bench", "results", "soak"), help="output directory")
    add("--smoke", action="store_true", help="10 s, a sample a second, 50/s (CI)")
    add("--plot", metavar="CSV", help="only draw the PNG (and summary) from this soak.csv")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.duration, opts.interval, opts.warmup, opts.rate = 10.0, 1.0, 3.0, 50.0
    opts.setups = [s.strip() for s in opts.setups.split(",") if s.strip()]
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.plot:
        opts.out = os.path.dirname(os.path.abspath(opts.plot))
        rows = read_csv(opts.plot)
        opts.duration = max((float(r["elapsed_s"]) for r in rows), default=0.0)
        return finish(rows, opts, 0)
    return run(opts)


if __name__ == "__main__":
    sys.exit(main())
