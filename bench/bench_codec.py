"""Micro-benchmark of the ILPv4 packet codec: encode and decode of a typical Prepare.

Run it from the repository root on any interpreter (CPython 3.9+, PyPy 3.9+)::

    python bench/bench_codec.py [--seconds 0.5] [--repeat 5]

It times ``serialize_prepare``, ``deserialize_prepare`` and the two together
(the work one forwarded packet costs) on a Prepare with 100 bytes of data, plus
the Fulfill and Reject that answer it, and prints the best of ``--repeat`` runs
as operations per second and microseconds per operation.  On PyPy the first
repeats warm the JIT; the best run is the steady state.

Time is the process's CPU time (``time.process_time``), so that other work on a
shared machine, which takes the CPU away, does not count; ``--wall`` measures
wall-clock time instead.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
import timeit
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from ilphttp.packet import (
    Fulfill,
    Prepare,
    Reject,
    condition_from_fulfillment,
    deserialize,
    deserialize_prepare,
    serialize,
    serialize_prepare,
)

FULFILLMENT = bytes(range(32))
PREPARE = Prepare(
    amount=1_000_000,
    expires_at=_dt.datetime(2026, 5, 9, 12, 30, 15, 123000, tzinfo=_dt.timezone.utc),
    execution_condition=condition_from_fulfillment(FULFILLMENT),
    destination="g.us.acme-bank.alice.0a1b2c3d",
    data=bytes(range(100)),
)
FULFILL = Fulfill(FULFILLMENT, bytes(range(100)))
REJECT = Reject("F02", "g.us.acme-bank", "no route to g.us.acme-bank.alice", b"")


def _cases() -> list[tuple[str, Callable[[], object]]]:
    wire = serialize_prepare(PREPARE)
    fulfill_wire = serialize(FULFILL)
    reject_wire = serialize(REJECT)

    def encode() -> object:
        return serialize_prepare(PREPARE)

    def decode() -> object:
        return deserialize_prepare(wire)

    def round_trip() -> object:
        return deserialize_prepare(serialize_prepare(PREPARE))

    def reply_round_trip() -> object:
        deserialize(fulfill_wire)
        return deserialize(reject_wire)

    return [
        ("encode Prepare (100 B data)", encode),
        ("decode Prepare (100 B data)", decode),
        ("encode+decode Prepare", round_trip),
        ("decode Fulfill + Reject", reply_round_trip),
    ]


def _measure(
    func: Callable[[], object], seconds: float, repeat: int, clock: Callable[[], float]
) -> float:
    """Best seconds per call over ``repeat`` runs of about ``seconds`` each."""
    timer = timeit.Timer(func, timer=clock)
    number, elapsed = timer.autorange()
    number = max(1, int(number * seconds / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; best is shown")
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.wall else time.process_time

    assert deserialize_prepare(serialize_prepare(PREPARE)) == PREPARE
    print(
        f"{platform.python_implementation()} {platform.python_version()}"
        f" on {platform.machine()}; Prepare is {len(serialize_prepare(PREPARE))} bytes;"
        f" {'wall-clock' if args.wall else 'CPU'} time"
    )
    for name, func in _cases():
        per_op = _measure(func, args.seconds, args.repeat, clock)
        print(f"{name:30s} {1 / per_op:12,.0f} ops/s {per_op * 1e6:9.2f} µs/op")
    return 0


if __name__ == "__main__":
    sys.exit(main())
