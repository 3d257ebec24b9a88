"""CPU per packet of ilphttp's HTTP/1.1 hot paths on one side each, in memory.

    python bench/hot_path_cpu.py [--packets N] [--rounds R] [--profile receiver|sender]

**receiver**: a ``PluginHttp`` (static token, the fulfilling handler of
server_ilphttp.py: it parses the Prepare, as js_server.js does) behind an
``Http1ServerProtocol`` whose transport only collects the answers; each packet
is one ``dataReceived`` of a whole POST (head and 100-byte-data Prepare).

**sender**: a ``PluginHttp`` sending through its own ``Http1Client`` over one
pooled connection whose transport discards the request; each packet is one
``send_data`` of fresh Prepare bytes and the ``dataReceived`` of the Fulfill's
response.

Timed in process CPU time, best and median of ``R`` rounds of ``N`` packets;
prints one JSON line with µs per packet.  Free of the kernel, the reactor and
the scheduler (which run.py's two-process rows include), so it is comparable
across runs on a busy machine; ``--profile`` prints cProfile's top entries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from server_ilphttp import FULFILL, handler
from twisted.internet.task import Clock

from ilphttp import PluginHttp
from ilphttp.http1_client import _Connection, _Peer
from ilphttp.http1_server import Http1ServerProtocol


class Sink:
    """A connected TCP-like transport that keeps the last bytes written."""

    connected = 1
    disconnecting = 0
    last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def loseConnection(self) -> None:
        pass

    abortConnection = loseConnection
    pauseProducing = loseConnection
    resumeProducing = loseConnection

    def getPeer(self) -> None:
        return None

    getHost = getPeer


def clock() -> Clock:
    c = Clock()
    c.advance(time.time())  # the Prepares expire in an hour of wall-clock time
    return c


def receiver() -> Callable[[], None]:
    plugin = PluginHttp(incoming={"static_token": benchlib.DEFAULT_TOKEN}, reactor=clock())
    plugin.register_data_handler(handler)
    plugin.connect()
    assert plugin.resource is not None
    body = benchlib.bench_prepare(100, 3600)
    request = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s"
        % (benchlib.DEFAULT_TOKEN.encode(), len(body), body)
    )
    protocol = Http1ServerProtocol(plugin.resource.door, plugin._reactor)
    sink = Sink()
    protocol.makeConnection(sink)  # type: ignore[arg-type]

    def one() -> None:
        protocol.dataReceived(request)

    one()
    assert sink.last.endswith(FULFILL), sink.last
    return one


def sender() -> Callable[[], None]:
    outgoing = {"url": "http://127.0.0.1:9/", "static_token": benchlib.DEFAULT_TOKEN, "name": "s"}
    plugin = PluginHttp(outgoing=outgoing, reactor=clock())
    plugin.connect()
    client: Any = plugin._client._sender  # type: ignore[union-attr]
    # One idle pooled connection to the peer, on a transport that discards (private API).
    key = (b"http", b"127.0.0.1", 9)
    peer = client._peers[key] = _Peer(key, None)  # type: ignore[arg-type]
    connection = _Connection(client, peer, client._reader(client.max_body))
    connection.makeConnection(Sink())  # type: ignore[arg-type]
    peer.count = 1
    client.release(connection)
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(FULFILL), FULFILL)
    )
    prepare = benchlib.bench_prepare(100, 3600)
    got: list[Any] = []

    def one() -> None:
        # Fresh bytes each time, as a sender that did not parse them itself has.
        d = plugin.send_data(bytes(bytearray(prepare)))
        connection.dataReceived(response)
        d.addBoth(got.append)

    one()
    assert got == [FULFILL], got
    return one


def measure(one: Callable[[], None], packets: int, rounds: int) -> dict[str, float]:
    for _ in range(packets // 10):
        one()  # warm
    samples = []
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(packets):
            one()
        samples.append((time.process_time() - began) / packets * 1e6)
    samples.sort()
    return {"best": round(samples[0], 2), "median": round(samples[len(samples) // 2], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", choices=("receiver", "sender"))
    opts = parser.parse_args()
    sides = {"receiver": receiver(), "sender": sender()}
    if opts.profile:
        import cProfile
        import pstats

        one = sides[opts.profile]
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [one() for _ in range(opts.packets)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    result = {side: measure(one, opts.packets, opts.rounds) for side, one in sides.items()}
    print(json.dumps({"event": "result", "us_per_packet": result, "packets": opts.packets}))


if __name__ == "__main__":
    main()
