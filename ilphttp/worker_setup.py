"""What the parent of ``--workers N`` tells each worker: plain data, no Twisted.

The parent (:mod:`ilphttp.worker_supervisor`) pickles one
:class:`WorkerSetup` per worker and writes it, length-prefixed, to the
worker's stdin; the worker (:mod:`ilphttp.worker_process`) reads it back with
:func:`read_setup` before it starts its reactor.  The setup holds the parsed
node configuration, secrets included, so it never goes through argv or the
environment.

Nothing here imports Twisted: the wire format, the descriptor numbers both
sides agree on, and :func:`parse_workers` can be used and tested without a
reactor.  Turning endpoint strings into :class:`Listener` values needs the
TLS endpoint parser and lives in :mod:`ilphttp.worker_sockets`.

After the setup, the same pipe carries the parent's :class:`Reload` messages
(a reload of ``--workers N``, docs/reload.rst), framed the same way; a
running worker splits them out of what it reads with :class:`FrameReader` and
answers each one on :data:`CONTROL_FD` with the line :func:`answer_line`
makes (:func:`parse_answer` reads it back).
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Any

from ilphttp import validate
from ilphttp.errors import OptionError
from ilphttp.nodeconfig import MAX_WORKERS, NodeConfig

__all__ = [
    "CONTROL_FD",
    "FIRST_LISTEN_FD",
    "MAX_FRAME",
    "MAX_WORKERS",
    "SETUP_LENGTH",
    "FrameReader",
    "Listener",
    "Reload",
    "WorkerSetup",
    "answer_line",
    "frame_reload",
    "frame_setup",
    "parse_answer",
    "parse_workers",
    "read_setup",
    "refuse_async_senders",
]

#: in a worker: the parent reads "ready" on this descriptor...
CONTROL_FD = 3
#: ...and the listening sockets start at this one
FIRST_LISTEN_FD = 4
#: the length prefix of a pickled :class:`WorkerSetup`: 8 bytes, big-endian
SETUP_LENGTH = struct.Struct(">Q")
#: the longest :class:`Reload` a worker accepts, in bytes (a node file is far smaller)
MAX_FRAME = 64 * 1024 * 1024


def refuse_async_senders(node: NodeConfig, count: int) -> None:
    """Refuse ``outgoing.mode = "async"`` when ``count`` (> 1) processes share the ports.

    RFC 35's reply comes back in a new request to the callback URL, and the
    Prepares it answers are pending in the one process that sent them
    (:class:`ilphttp.pending.PendingPrepares`, nothing shared).  Workers
    share one port, so the kernel would hand the reply to any of them; the
    others answer ``400`` (unknown id), the peer stops retrying, and our
    sender would take R00 for a Prepare the peer fulfilled.  Run one process
    per callback URL instead (several nodes behind a load balancer,
    ``docs/async.rst``).  Receiving asynchronous Prepares needs no state and
    works with workers.

    :raises OptionError: naming the first such account, in one line.
    """
    if count <= 1:
        return
    for spec in node.accounts:
        out = spec.options.outgoing
        if out is not None and out.mode == "async":
            raise OptionError(
                f'account {spec.name}: outgoing mode "async" needs its replies to reach the'
                f" process that sent the Prepare, but {count} workers share the port: use"
                " --workers 1 (one node per callbackUrl; see the cluster deployment in"
                " docs/async.rst)"
            )


def parse_workers(value: Any, where: str = "--workers") -> int:
    """The number of worker processes: an integer from 1 to :data:`MAX_WORKERS`.

    :param value: the option's text (``--workers 3``) or a config file's value.
    :param where: names the option in the error.
    :raises OptionError: naming ``where``.
    """
    if isinstance(value, str):
        return validate.integer_text(where, value, 1, MAX_WORKERS)
    return validate.integer(where, value, 1, MAX_WORKERS)


@dataclass(frozen=True)
class Listener:
    """One listening endpoint of one account, as the parent opens it."""

    account: str
    #: 0: the account's incoming endpoint; 1, 2, ...: its extra ``--listen``
    index: int
    description: str
    #: ``tcp``, ``tcp6`` or ``ssl``
    kind: str
    #: the TCP port; 0 lets the parent's first bind pick one
    port: int
    #: the address to bind, ``""`` for every IPv4 (or, for ``tcp6``, IPv6) address
    interface: str
    #: the listen queue's length, in connections
    backlog: int

    @property
    def family(self) -> int:
        """``AF_INET6`` for ``tcp6`` or an IPv6 interface, else ``AF_INET``."""
        if self.kind == "tcp6" or ":" in self.interface:
            return socket.AF_INET6
        return socket.AF_INET

    @property
    def bind_address(self) -> tuple[str, int]:
        """(host, port) for ``socket.bind``."""
        host = self.interface or ("::" if self.family == socket.AF_INET6 else "")
        return host, self.port


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs, pickled to its stdin (secrets stay out of argv)."""

    #: the worker's number, from 1
    worker: int
    node: NodeConfig
    #: ``--handler pkg.module:callable``, or None for the router
    handler: str | None
    #: each listener and the descriptor its socket has in the worker
    listeners: tuple[tuple[Listener, int], ...]


@dataclass(frozen=True)
class Reload:
    """A new node configuration for a running worker: apply it (``NodeService.apply``).

    The parent read and checked the file (:mod:`ilphttp.worker_reload`); the
    worker answers ``generation`` on :data:`CONTROL_FD` (:func:`answer_line`).
    """

    #: counts the parent's reloads, from 1 (the setup's configuration is 0)
    generation: int
    node: NodeConfig


def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return SETUP_LENGTH.pack(len(payload)) + payload


def frame_setup(setup: WorkerSetup) -> bytes:
    """``setup`` pickled, after its length (:data:`SETUP_LENGTH`), for the worker's stdin."""
    return _frame(setup)


def frame_reload(reload: Reload) -> bytes:
    """``reload`` framed as :func:`frame_setup` frames a setup (read by :class:`FrameReader`)."""
    return _frame(reload)


class FrameReader:
    """Splits what a worker reads on stdin after its setup into :class:`Reload` messages.

    Sans-IO: :meth:`feed` takes bytes as they come (a frame may arrive in
    pieces, or several in one read) and returns the messages completed.
    The pipe comes from the parent, which is trusted; a frame that is not a
    :class:`Reload` or is longer than :data:`MAX_FRAME` means the stream
    cannot be followed any more, and raises :class:`ValueError`.
    """

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[Reload]:
        """The messages that ``data`` completes, oldest first.

        :raises ValueError: a frame too long, or not a pickled :class:`Reload`.
        """
        self._buffer += data
        messages = []
        while len(self._buffer) >= SETUP_LENGTH.size:
            (length,) = SETUP_LENGTH.unpack_from(self._buffer)
            if length > self._limit:
                raise ValueError(f"a frame of {length} bytes (at most {self._limit})")
            end = SETUP_LENGTH.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[SETUP_LENGTH.size : end])
            del self._buffer[:end]
            try:
                message = pickle.loads(payload)
            except Exception as exc:  # whatever unpickling raises: the stream is lost
                raise ValueError(f"a frame that does not unpickle: {exc!r}") from None
            if not isinstance(message, Reload):
                raise ValueError(f"expected a Reload, got {type(message).__name__}")
            messages.append(message)
        return messages


def answer_line(generation: int, applied: bool) -> bytes:
    """A worker's answer to :class:`Reload` ``generation``: ``reloaded 3`` or ``refused 3``."""
    return f"{'reloaded' if applied else 'refused'} {generation}\n".encode("ascii")


def parse_answer(line: bytes) -> tuple[int, bool] | None:
    """(generation, applied) from an :func:`answer_line` (without its newline), else None."""
    word, _, number = line.partition(b" ")
    if word not in (b"reloaded", b"refused") or not number.isdigit():
        return None
    return int(number), word == b"reloaded"


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("the parent closed the pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_setup(fd: int = 0) -> WorkerSetup:
    """The setup the parent wrote to ``fd`` with :func:`frame_setup` (blocking).

    :raises EOFError: if the pipe closes before the whole setup came.
    :raises TypeError: if what came is not a :class:`WorkerSetup`.
    """
    (length,) = SETUP_LENGTH.unpack(_read_exactly(fd, SETUP_LENGTH.size))
    setup = pickle.loads(_read_exactly(fd, length))
    if not isinstance(setup, WorkerSetup):
        raise TypeError(f"expected a WorkerSetup, got {type(setup).__name__}")
    return setup
