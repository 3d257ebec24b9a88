"""Micro-benchmark of the ILPv4 packet codec: encode and decode of a typical Prepare.

Run it from the repository root on any interpreter (CPython 3.9+, PyPy 3.9+)::

    python bench/bench_codec.py [--seconds 0.5] [--repeat 5]

It times ``serialize_prepare``, ``deserialize_prepare`` and the two together
(the work one forwarded packet costs) on a Prepare with 100 bytes of data, plus
the Fulfill and Reject that answer it (cycling through 64 packets of that shape
so that no JIT folds a constant input away), and prints the best of ``--repeat`` runs
as operations per second and microseconds per operation.  On PyPy the first
repeats warm the JIT; the best run is the steady state.

Time is the process's CPU time (``time.process_time``), so that other work on a
shared machine, which takes the CPU away, does not count; ``--wall`` measures
wall-clock time instead.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
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
# Each case cycles through this many different packets of the same shape, so that
# a JIT cannot fold the work on one constant input away.
VARIANTS = 64


def _variants() -> tuple[list[Prepare], list[bytes]]:
    prepares = []
    replies = []
    for i in range(VARIANTS):
        fulfillment = i.to_bytes(32, "big")
        prepares.append(
            PREPARE._replace(
                amount=PREPARE.amount + i,
                expires_at=PREPARE.expires_at + _dt.timedelta(milliseconds=i * 1001),
                execution_condition=condition_from_fulfillment(fulfillment),
                destination=f"{PREPARE.destination}{i:02x}",
                data=bytes((i + j) % 256 for j in range(100)),
            )
        )
        replies.append(serialize(FULFILL._replace(fulfillment=fulfillment)))
        replies.append(serialize(REJECT._replace(message=f"{REJECT.message} ({i})")))
    return prepares, replies


def _cases() -> list[tuple[str, Callable[[], object]]]:
    prepares, replies = _variants()
    next_prepare = itertools.cycle(prepares).__next__
    next_wire = itertools.cycle([serialize_prepare(p) for p in prepares]).__next__
    next_reply = itertools.cycle(replies).__next__

    def encode() -> object:
        return serialize_prepare(next_prepare())

    def decode() -> object:
        return deserialize_prepare(next_wire())

    def round_trip() -> object:
        return deserialize_prepare(serialize_prepare(next_prepare()))

    def reply_round_trip() -> object:
        deserialize(next_reply())
        return deserialize(next_reply())

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

    for prepare in _variants()[0]:
        assert deserialize_prepare(serialize_prepare(prepare)) == prepare
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
