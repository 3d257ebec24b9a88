"""run.py's results: rows from samples, ratios with their spread, the tables, issue 11's targets.

A ratio is computed per repetition (repetitions are interleaved, so repetition i
of ilphttp ran next to repetition i of the JS row) and reported as median
[min-max] over the repetitions.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from harness import Impl
from rows_memory import MemCfg
from rows_pair import H2cCfg, PairCfg

Stats = dict[str, float]


def stats(values: Iterable[float | None]) -> Stats | None:
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return None
    return {"min": vs[0], "median": statistics.median(vs), "max": vs[-1]}


def _cpu(samples: list[dict], side: str) -> Stats | None:
    return stats((s.get("cpu_us") or {}).get(side) for s in samples)


def build_rows(plan: Sequence[tuple[str, Any, Impl]], samples: dict[tuple, list[dict]]) -> list:
    """One row per (section, config, implementation) that has samples, in plan order."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for section, cfg, impl in plan:
        key = (section, cfg, impl.key)
        if key not in samples or key in seen:
            continue
        seen.add(key)
        got = samples[key]
        row: dict[str, Any] = {
            "key": key,
            "section": section,
            "config": dict(cfg._asdict()),
            "impl": impl.key,
            "family": impl.family,
            "repetitions": len(got),
            "pps": stats(s.get("pps") for s in got),
            "p50_ms": stats(s.get("p50_ms") for s in got),
            "p99_ms": stats(s.get("p99_ms") for s in got),
            "cpu_us_sender": _cpu(got, "sender"),
            "cpu_us_receiver": _cpu(got, "receiver"),
            "warmup_s": stats(s.get("warmup_s") for s in got),
            "packets": sum(int(s.get("packets") or 0) for s in got),
            "errors": sum(int(s.get("errors") or 0) for s in got),
            "samples": got,
        }
        if section == "memory":
            for field in ("rss_before_kb", "rss_kb", "delta_kb", "per_1000_kb", "open_after"):
                row[field] = stats(s.get(field) for s in got)
        rows.append(row)
    add_ratios(rows, samples)
    return rows


def _per_rep(mine: list[dict], base: list[dict], field: str) -> Stats | None:
    ratios = []
    for a, b in zip(mine, base):
        if a.get(field) is not None and b.get(field):
            ratios.append(a[field] / b[field])
    return stats(ratios)


def baseline_key(section: str, cfg: Any, family: str) -> tuple[str, Any, str] | None:
    """The JS row a row is compared with: same config; h2c rows with the JS pair over HTTP/1.1."""
    if family in ("js", "node"):
        return None
    if section == "h2c":
        return ("pair", cfg.http1_pair(), "js")
    if isinstance(cfg, PairCfg) and cfg.mode == "async":  # JS has none: its sync pair
        return (section, cfg._replace(mode="sync"), "js")
    return (section, cfg, "js")


def add_ratios(rows: list[dict], samples: dict[tuple, list[dict]]) -> None:
    """``vs_js`` (and, for server rows, ``vs_node``): per-repetition ratios, median [min-max]."""
    for r in rows:
        section, cfg, _ = r["key"]
        r["vs_js"] = r["vs_node"] = None
        base = baseline_key(section, cfg, r["family"])
        if base is not None and base in samples:
            fields = ("per_1000_kb",) if section == "memory" else ("pps", "p99_ms")
            r["vs_js"] = {f: _per_rep(r["samples"], samples[base], f) for f in fields}
        node = (section, cfg, "node")
        if section == "server" and r["family"] != "node" and node in samples:
            r["vs_node"] = {"pps": _per_rep(r["samples"], samples[node], "pps")}


def describe(section: str, cfg: Any) -> str:
    if isinstance(cfg, MemCfg):
        hold = f" hold {cfg.hold:g}s" if cfg.kind == "inflight" else ""
        return f"{cfg.kind} {cfg.connections}{hold}"
    size = "1KB" if cfg.size == 1024 else f"{cfg.size}B"
    text = f"{size:>5} C={cfg.concurrency:<3}"
    if isinstance(cfg, PairCfg):
        text += f" {cfg.procs}proc" + (" async" if cfg.mode == "async" else "")
    elif isinstance(cfg, H2cCfg):
        text += " 2proc"
    return text + (" jwt" if cfg.jwt else " tok")


def fmt_range(s: Stats | None, digits: int = 0) -> str:
    if s is None:
        return "-"
    if s["min"] == s["max"]:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def _median(s: Stats | None, digits: int) -> str:
    return "-" if s is None else f"{s['median']:.{digits}f}"


def _ratio(r: dict, which: str, field: str) -> str:
    got = r.get(which)
    return fmt_range(got.get(field), 2) if got else ""


def print_table(rows: Sequence[dict], out: Any = sys.stdout) -> None:
    """Throughput rows (pair, h2c, server) and then the memory rows."""
    head = (
        f"{'section':7} {'row':28} {'impl':28} {'pkt/s median [min-max]':24}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'CPU us/pkt snd/rcv':>18}"
        f"  {'x JS pkt/s':18} {'x JS p99':16} {'x node':16}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    last = None
    for r in rows:
        if r["section"] == "memory":
            continue
        row = describe(r["section"], r["key"][1])
        if last is not None and (r["section"], row) != last:
            print("", file=out)
        last = (r["section"], row)
        cpu = f"{_median(r['cpu_us_sender'], 0)}/{_median(r['cpu_us_receiver'], 0)}"
        flag = " !errors" if r["errors"] else ""
        print(
            f"{r['section']:7} {row:28} {r['impl']:28} {fmt_range(r['pps']):24}"
            f" {_median(r['p50_ms'], 2):>7} {_median(r['p99_ms'], 2):>7} {cpu:>18}"
            f"  {_ratio(r, 'vs_js', 'pps'):18} {_ratio(r, 'vs_js', 'p99_ms'):16}"
            f" {_ratio(r, 'vs_node', 'pps'):16}{flag}",
            file=out,
        )
    memory = [r for r in rows if r["section"] == "memory"]
    if not memory:
        return
    print("", file=out)
    head = (
        f"{'memory':24} {'impl':28} {'RSS before MiB':>14} {'RSS with MiB':>12}"
        f" {'KiB per 1000':>20} {'still open':>10}  {'x JS':12}"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in memory:
        mib = {
            k: _median(r[k] and {"median": r[k]["median"] / 1024}, 1)
            for k in ("rss_before_kb", "rss_kb")
        }
        flag = " !errors" if r["errors"] else ""
        print(
            f"{describe('memory', r['key'][1]):24} {r['impl']:28} {mib['rss_before_kb']:>14}"
            f" {mib['rss_kb']:>12} {fmt_range(r['per_1000_kb']):>20}"
            f" {_median(r['open_after'], 0):>10}  {_ratio(r, 'vs_js', 'per_1000_kb'):12}{flag}",
            file=out,
        )


def _verdict(value: float | None, ok: bool) -> str:
    return "n/a" if value is None else ("met" if ok else "NOT met")


def targets(rows: Sequence[dict], h2c_before: float) -> list[str]:
    """Issue 11's targets, one line per measured row: the value, the goal, met or not."""
    lines: list[str] = []

    def med(r: dict, which: str, field: str) -> float | None:
        got = r.get(which) and r[which].get(field)
        return got["median"] if got else None

    for r in rows:
        section, cfg, _ = r["key"]
        fam, name = r["family"], f"{describe(section, cfg)} {r['impl']}"
        sync_pair = section == "pair" and cfg.mode == "sync" and fam == "ilphttp"
        if sync_pair and cfg.procs == 2 and cfg.concurrency == 64:
            v = med(r, "vs_js", "pps")
            lines.append(f"pair {name}: {v or 0:.2f}x JS (>= 3x): {_verdict(v, (v or 0) >= 3)}")
        if sync_pair and cfg.procs == 2 and cfg.concurrency == 1:
            v = med(r, "vs_js", "p99_ms")
            good = v is not None and v <= 1
            lines.append(f"C=1 p99 {name}: {v or 0:.2f}x JS's p99 (<= 1x): {_verdict(v, good)}")
        if section == "server" and fam == "ilphttp" and cfg.concurrency in (64, 256):
            v, n = med(r, "vs_js", "pps"), med(r, "vs_node", "pps")
            lines.append(f"server {name}: {v or 0:.2f}x JS (>= 2x): {_verdict(v, (v or 0) >= 2)}")
            good = n is not None and n >= 1 / 1.5
            lines.append(
                f"server {name}: {n or 0:.2f}x bare node (>= 0.67x, within 1.5x):"
                f" {_verdict(n, good)}"
            )
        if section == "h2c" and fam == "ilphttp":
            v = med(r, "vs_js", "pps")
            lines.append(
                f"h2c {name}: {v or 0:.2f}x the JS pair over HTTP/1.1 (>= 1x):"
                f" {_verdict(v, (v or 0) >= 1)}"
            )
        if section == "h2c" and fam == "js-h2c":
            v = r["pps"]["median"] if r["pps"] else None
            goal = 5 * h2c_before
            lines.append(
                f"h2c {name}: {v or 0:.0f} pkt/s (>= 5 x {h2c_before:.0f} = {goal:.0f}):"
                f" {_verdict(v, (v or 0) >= goal)}"
            )
        if section == "memory" and r["per_1000_kb"]:
            unit = "connections" if cfg.kind == "idle" else "Prepares in flight"
            lines.append(
                f"memory {name}: {r['per_1000_kb']['median'] / 1024:.1f} MiB per 1000 {unit}"
                f" (RSS {r['rss_kb']['median'] / 1024:.0f} MiB with {cfg.connections})"
            )
    return lines
