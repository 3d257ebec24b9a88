"""A reactor that "spawns" processes without starting any (the parent of ``--workers N``)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock


class FakeTransport:
    """A spawned process's transport: records what was written to it and the signals."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.written = bytearray()
        self.signals: list[str] = []

    def writeToChild(self, fd: int, data: bytes) -> None:
        self.written += data

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeReactor(Clock):
    """A Clock with ``spawnProcess`` (pids from 1000) and ``stop``."""

    def __init__(self) -> None:
        Clock.__init__(self)
        self.spawned: list[tuple[Any, list[str], dict[int, Any]]] = []
        self.running = True
        self.stopped = 0

    def spawnProcess(
        self, proto: Any, executable: str, args: list[str], env: Any, childFDs: Any
    ) -> FakeTransport:
        transport = FakeTransport(1000 + len(self.spawned))
        proto.makeConnection(transport)
        self.spawned.append((proto, args, childFDs))
        return transport

    def stop(self) -> None:
        self.stopped += 1
