"""Many HTTP/1.1 keep-alive connections from raw sockets, for run.py's memory rows.

    python bench/conn_holder.py '{"port": N, "count": 10000, "mode": "idle"}'

``mode`` ``idle``: each connection connects, POSTs one valid Prepare (static
token), reads the answer and then stays open and silent.  ``inflight``: each
connection sends its next Prepare as soon as the answer comes (a closed loop,
``count`` Prepares in flight while the receiver holds them).  At most
``opening`` (default 256) connections are being opened at once, so that a
listen backlog does not overflow.

Prints ``{"event":"ready",...}`` once every connection has had one answer (or
failed), then keeps going until stdin closes, and prints
``{"event":"done","open":N,"answers":N,"errors":N}`` (``open``: connections
the server had not closed) before it exits.  Standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib

#: stop waiting for the connections to be answered after this long
READY_TIMEOUT = 120.0


class Conn:
    """One client connection: request out, response in, by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = b""
        self.buf = b""
        self.answered = 0
        self.closed = False
        #: the first answer came, or the connection failed: no longer "being opened"
        self.settled = False


def request_bytes(port: int) -> bytes:
    body = benchlib.bench_prepare(100, 3600)
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {benchlib.DEFAULT_TOKEN}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def take_response(buf: bytes) -> tuple[bytes, bool] | None:
    """(the rest of ``buf``, whether the answer is a 200 Fulfill), or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").lower()
    status_ok = head.startswith("http/1.1 200")
    rest = buf[end + 4 :]
    if "transfer-encoding: chunked" in head:
        stop = rest.find(b"0\r\n\r\n")
        if stop < 0:
            return None
        # the first chunk's data follows its size line
        first = rest.split(b"\r\n", 2)
        ok = status_ok and len(first) > 1 and first[1][:1] == b"\x0d"
        return rest[stop + 5 :], ok
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            length = int(value.strip())
    if len(rest) < length:
        return None
    return rest[length:], status_ok and rest[:1] == b"\x0d"


def run(opts: dict[str, Any]) -> None:
    port = int(opts["port"])
    count = int(opts.get("count", 1000))
    inflight = opts.get("mode", "idle") == "inflight"
    opening_max = int(opts.get("opening", 256))
    benchlib.raise_nofile(count + 100)
    request = request_bytes(port)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    conns: list[Conn] = []
    opening = 0
    errors = 0
    answers = 0
    ready_sent = False
    began = time.monotonic()

    def settle(c: Conn) -> None:
        nonlocal opening
        if not c.settled:
            c.settled = True
            opening -= 1

    def close(c: Conn) -> None:
        settle(c)
        if not c.closed:
            c.closed = True
            sel.unregister(c.sock)
            c.sock.close()

    def open_one() -> None:
        nonlocal errors
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = Conn(sock)
        conns.append(c)
        code = sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            errors += 1
            sel.register(sock, selectors.EVENT_WRITE, c)
            close(c)
            return
        c.out = request
        sel.register(sock, selectors.EVENT_WRITE, c)

    while True:
        while len(conns) < count and opening < opening_max:
            opening += 1
            open_one()
        done_opening = len(conns) == count
        if not ready_sent and done_opening:
            if opening == 0 or time.monotonic() - began > READY_TIMEOUT:
                line = {
                    "event": "ready",
                    "open": sum(1 for c in conns if not c.closed),
                    "errors": errors,
                    "seconds": time.monotonic() - began,
                }
                print(json.dumps(line), flush=True)
                ready_sent = True
        stop = False
        for key, events in sel.select(0.2):
            c = key.data
            if c is None:  # stdin: closed (or anything written) means stop
                stop = True
                continue
            if events & selectors.EVENT_WRITE:
                try:
                    sent = c.sock.send(c.out)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    errors += 1
                    close(c)
                    continue
                c.out = c.out[sent:]
                if not c.out:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                chunk = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                if not c.answered:
                    errors += 1
                close(c)
                continue
            c.buf += chunk
            while True:
                got = take_response(c.buf)
                if got is None:
                    break
                c.buf, ok = got
                answers += 1
                if not ok:
                    errors += 1
                settle(c)
                c.answered += 1
                if inflight:
                    c.out = request
                    sel.modify(c.sock, selectors.EVENT_WRITE, c)
        if stop:
            break
    still_open = 0
    for c in conns:
        if c.closed:
            continue
        # a peer that closed an idle connection shows as readable with EOF
        try:
            still_open += c.sock.recv(1, socket.MSG_PEEK) != b""
        except (BlockingIOError, InterruptedError):
            still_open += 1
        except OSError:
            pass
    print(
        json.dumps({"event": "done", "open": still_open, "answers": answers, "errors": errors}),
        flush=True,
    )


if __name__ == "__main__":
    run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
