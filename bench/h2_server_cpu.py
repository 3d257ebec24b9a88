"""CPU per request of ilphttp's HTTP/2 server (ilphttp.h2_server), in memory.

    python bench/h2_server_cpu.py [--rounds N] [--batch C] [--profile]

An h2 client (not timed) sends ``C`` Prepares (100 bytes of data, static
token) per read to an ``H2ServerProtocol`` on a StringTransport, whose door is
the plugin's ``AccountDoor`` with a receiver that answers a Fulfill built
once; only the server's ``dataReceived`` (h2, the session, the door, the
answer) is timed, in process CPU time.  Prints one JSON line with ``us`` (µs
of server CPU per request) for a batch of C and for one request per read.
Free of network and scheduler noise, so it is comparable across runs on a
busy machine; the two-process numbers live in run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

import benchlib
import h2.config
import h2.connection
import h2.events
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ilphttp.auth import IncomingAuth
from ilphttp.front import AccountDoor
from ilphttp.h2_server import H2ServerProtocol
from ilphttp.packet import Fulfill, serialize

FULFILL = serialize(Fulfill(benchlib.FULFILLMENT, b""))


class _Receiver:
    def receive_prepare(self, body: bytes, prepare: Any, peer_name: Any) -> Any:
        return succeed(FULFILL)


def measure(rounds: int, batch: int, profiler: Any = None) -> float:
    """µs of server CPU per request over ``rounds`` reads of ``batch`` requests."""
    door = AccountDoor(IncomingAuth(benchlib.DEFAULT_TOKEN, None, time.time), _Receiver())
    server = H2ServerProtocol(door, Clock())
    transport = StringTransport()
    server.makeConnection(transport)
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    prepare = benchlib.bench_prepare(100, 3600.0)
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", b"/"),
        (b"authorization", b"Bearer " + benchlib.DEFAULT_TOKEN.encode()),
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"%d" % len(prepare)),
    ]
    stream_id, spent = 1, 0.0
    for _ in range(rounds):
        for _ in range(batch):
            client.send_headers(stream_id, headers)
            client.send_data(stream_id, prepare, end_stream=True)
            stream_id += 2
        data = client.data_to_send()
        if profiler is not None:
            profiler.enable()
        t0 = time.process_time()
        server.dataReceived(data)
        spent += time.process_time() - t0
        if profiler is not None:
            profiler.disable()
        out = transport.value()
        transport.clear()
        for event in client.receive_data(out):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
    return spent / (rounds * batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    opts = parser.parse_args()
    warm = 2000 if sys.implementation.name == "pypy" else 50
    measure(warm, opts.batch)  # warm-up (PyPy's JIT)
    result = {
        "python": sys.implementation.name,
        "us": round(measure(opts.rounds, opts.batch), 1),
        "batch": opts.batch,
        "us_one_per_read": round(measure(opts.rounds * 5, 1), 1),
    }
    print(json.dumps(result))
    if opts.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        measure(opts.rounds, opts.batch, profiler)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
