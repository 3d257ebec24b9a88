"""The parent of ``--workers N``: it opens the sockets, runs the workers and keeps them running.

:class:`WorkersService` is what ``twistd ilphttp --workers N`` runs instead
of the node (see :mod:`ilphttp.workers` for the whole picture).  It serves no
packets itself; it spawns ``sys.executable -c`` :data:`BOOT` once per worker,
hands each one its sockets (``childFDs``) and its
:class:`~ilphttp.worker_setup.WorkerSetup` (on stdin), restarts a worker that
dies (:data:`RESTART_DELAY` doubling up to :data:`MAX_RESTART_DELAY`), passes
``SIGTERM`` on when it stops, and re-emits the workers' JSON log events into
its own log with the system ``worker N: ...``.  :meth:`WorkersService.reload`
(``SIGHUP``) is :func:`ilphttp.worker_reload.reload_workers`.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError, ProcessExitedAlready, ReactorNotRunning
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from ilphttp.errors import StartupError
from ilphttp.node import startup_error
from ilphttp.nodeconfig import SHARED_LISTEN, NodeConfig
from ilphttp.worker_setup import (
    CONTROL_FD,
    FIRST_LISTEN_FD,
    WorkerSetup,
    frame_setup,
    parse_answer,
    refuse_async_senders,
)
from ilphttp.worker_sockets import listeners_of, open_sockets, reuse_port_available

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IProcessTransport

    from ilphttp.config_file import ConfigFile
    from ilphttp.nodediff import NodeChanges
    from ilphttp.worker_reload import WorkersReloaded

__all__ = [
    "BOOT",
    "MAX_RESTART_DELAY",
    "RESTART_DELAY",
    "STABLE_AFTER",
    "STOP_TIMEOUT",
    "WorkersService",
]

# The namespace of the log lines users read (docs/twistd.rst) stays that of
# the entry module.
_log = Logger(namespace="ilphttp.workers")

#: seconds the parent waits for its workers to stop before it kills them;
#: more than the router's default maxHoldTime (30 s), so packets in flight end
STOP_TIMEOUT = 40.0
#: restart delays, in seconds: the first, the longest, and how long a worker
#: must have run for the next restart to start again from the first
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 30.0

#: the Python code each worker process runs (``python -c``)
BOOT = "from ilphttp.worker_process import worker_main; worker_main()"


class _Slot:
    """One worker position: its sockets stay, its process may be replaced."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: _WorkerProcess | None = None
        self.ever_ready = False
        #: seconds before the next restart
        self.delay = RESTART_DELAY
        self.restart: IDelayedCall | None = None

    def next_delay(self, ran_for: float) -> float:
        """Seconds to wait before starting again a process that ran ``ran_for`` seconds.

        The delay doubles on each restart, up to :data:`MAX_RESTART_DELAY`,
        and starts again from :data:`RESTART_DELAY` after a process that ran
        for :data:`STABLE_AFTER` seconds or more.
        """
        if ran_for >= STABLE_AFTER:
            self.delay = RESTART_DELAY
        delay = self.delay
        self.delay = min(delay * 2, MAX_RESTART_DELAY)
        return delay


class _WorkerProcess(ProcessProtocol):
    """One worker process: writes its setup, reads its control and log lines.

    :param on_ready: called once, when the worker writes ``ready`` on its
        control descriptor.
    :param on_line: called with (this, fd, line) for each line on its stdout
        (fd 1) or stderr (fd 2), without the newline.
    :param on_ended: called with (this, reason) when it has ended.
    """

    def __init__(
        self,
        slot: _Slot,
        frame: bytes,
        started: float,
        generation: int,
        on_ready: Callable[[_WorkerProcess], object],
        on_line: Callable[[_WorkerProcess, int, bytes], object],
        on_ended: Callable[[_WorkerProcess, Failure], object],
    ) -> None:
        self.slot = slot
        self.frame = frame
        #: the reactor's clock when it was spawned, in seconds
        self.started = started
        self.pid: int | None = None
        self.ready = False
        #: the reload whose configuration it runs (0: the one it started with)
        self.generation = generation
        #: reload generation -> fires with True (applied), False (refused), None (ended)
        self.answers: dict[int, defer.Deferred[bool | None]] = {}
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._on_ready = on_ready
        self._on_line = on_line
        self._on_ended = on_ended
        self._partial: dict[int, bytes] = {}

    def connectionMade(self) -> None:
        transport: IProcessTransport = self.transport  # type: ignore[assignment]
        self.pid = transport.pid
        transport.writeToChild(0, self.frame)
        self.frame = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buffered = self._partial.get(childFD, b"") + data
        *lines, rest = buffered.split(b"\n")
        self._partial[childFD] = rest
        for line in lines:
            if childFD == CONTROL_FD:
                self._control(line)
            else:
                self._on_line(self, childFD, line)

    def _control(self, line: bytes) -> None:
        if line == b"ready":
            if not self.ready:
                self.ready = True
                self._on_ready(self)
            return
        answer = parse_answer(line)
        if answer is None:
            return
        generation, applied = answer
        if applied:
            self.generation = max(self.generation, generation)
        waiting = self.answers.pop(generation, None)
        if waiting is not None:
            waiting.callback(applied)

    def send(self, generation: int, frame: bytes) -> defer.Deferred[bool | None]:
        """Write a framed :class:`~ilphttp.worker_setup.Reload` to the worker's stdin.

        :returns: fires with True once the worker applied it, False if it
            refused it, None if it ended first.
        """
        waiting: defer.Deferred[bool | None] = defer.Deferred()
        self.answers[generation] = waiting
        transport: Any = self.transport
        try:
            transport.writeToChild(0, frame)
        except (KeyError, OSError):  # its stdin is closed: it is ending
            self.answers.pop(generation, None)
            waiting.callback(None)
        return waiting

    def processEnded(self, reason: Failure) -> None:
        answers, self.answers = self.answers, {}
        for waiting in answers.values():
            waiting.callback(None)
        for fd, rest in sorted(self._partial.items()):
            if rest and fd != CONTROL_FD:
                self._on_line(self, fd, rest)
        self._partial.clear()
        self._on_ended(self, reason)
        self.ended.callback(None)

    def signal(self, name: str) -> None:
        """Send the signal ``name`` (``"TERM"``, ``"KILL"``) unless the process is gone."""
        transport: Any = self.transport
        try:
            transport.signalProcess(name)
        except (ProcessExitedAlready, OSError):
            pass


def describe_end(reason: Failure) -> str:
    """How a process ended, for the log: ``exit status 1``, ``killed by SIGKILL``."""
    code = getattr(reason.value, "exitCode", None)
    number = getattr(reason.value, "signal", None)
    if number is not None:
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit status {code}"


def forward_line(
    publish: Callable[[dict[str, Any]], object], worker: int, fd: int, line: bytes
) -> None:
    """Log one line a worker wrote on ``fd`` (1: stdout, 2: stderr) as the parent's.

    A ``\\x1e{json}`` line on stdout is the worker's log event: it is given to
    ``publish`` with the system ``worker N: <theirs>``.  Any other non-blank
    line is logged as it is, at info level from stdout, warn from stderr.
    """
    text = line.decode("utf-8", "replace").rstrip("\r")
    system = f"worker {worker}"
    if fd == 1 and text.startswith("\x1e"):
        try:
            event = eventFromJSON(text[1:])
        except ValueError:
            pass
        else:
            level = event.get("log_level")
            theirs = event.get("log_system") or (
                f"{event.get('log_namespace', '-')}#{getattr(level, 'name', None) or '-'}"
            )
            event["log_system"] = f"{system}: {theirs}"
            publish(event)
            return
    if text.strip():
        level = LogLevel.info if fd == 1 else LogLevel.warn
        _log.emit(level, "{line}", line=text, log_system=f"{system}: fd {fd}")


def exit_at_end(status: int) -> None:
    """Make this process exit with ``status`` once twistd has returned.

    twistd ends with status 0 after its reactor stopped (its pid file removed,
    its log closed), whatever stopped it; this exit handler, registered late,
    runs before those registered at import, flushes the standard streams and
    ends the process with ``status``.
    """

    def leave() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or its reader gone
                pass
        os._exit(status)

    atexit.register(leave)


class WorkersService(Service):
    """The parent of ``--workers N``: opens the sockets, runs and supervises the workers.

    :param node: the parsed node (every worker runs all of it).
    :param handler: the ``--handler`` spec, or None for the router.
    :param count: how many worker processes.
    :param reactor: the reactor (default: the global one); tests pass a fake
        with ``spawnProcess`` and a clock.
    :param reuse_port: one SO_REUSEPORT socket per worker (default: where the
        platform has it), or one socket shared by all.
    :param executable: the Python interpreter the workers run.
    :param stop_timeout: seconds to wait for the workers to stop before
        ``SIGKILL``.
    :param on_fatal: called when a worker cannot start the first time
        (default: stop the reactor, and so the node).
    :param publisher: receives the workers' log events (default: the global
        log publisher).
    :raises ConfigError: if a listener cannot be shared by worker processes, or
        an account sends asynchronously (:func:`~ilphttp.worker_setup.refuse_async_senders`).
    """

    name = "workers"

    def __init__(
        self,
        node: NodeConfig,
        handler: str | None,
        count: int,
        reactor: Any = None,
        reuse_port: bool | None = None,
        executable: str = sys.executable,
        stop_timeout: float = STOP_TIMEOUT,
        on_fatal: Callable[[], object] | None = None,
        publisher: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.node = node
        self.handler = handler
        self.count = count
        self.listeners = listeners_of(node)
        refuse_async_senders(node, count)
        self.reuse_port = reuse_port_available() if reuse_port is None else reuse_port
        self.executable = executable
        self.stop_timeout = stop_timeout
        self._reactor = reactor
        self._on_fatal = on_fatal if on_fatal is not None else self._stop_reactor
        self._publish: Callable[[dict[str, Any]], object] = (
            publisher if publisher is not None else globalLogPublisher
        )
        self._sockets: list[list[socket.socket]] = []
        self._slots = [_Slot(n + 1) for n in range(count)]
        self._stopping = False
        self._all_ready_logged = False
        #: why the node stopped, if a worker could not start
        self.fatal: str | None = None
        #: the process's exit status when it stops because a worker could not
        #: start (``twistd ilphttp`` sets 1, as for its other start-up errors:
        #: twistd itself exits 0 whatever stopped its reactor); None: untouched
        self.fatal_exit_status: int | None = None
        #: added to the workers' environment (``PROMETHEUS_MULTIPROC_DIR``)
        self.extra_env: dict[str, str] = {}
        #: called with a worker's pid once it has ended (metrics: ``mark_process_dead``)
        self.on_worker_ended: Callable[[int], object] | None = None
        #: called after a reload the workers took, with its changes and whether every
        #: worker runs it now (metrics: a removed account's series are hidden)
        self.on_reloaded: Callable[[NodeChanges, bool], object] | None = None
        #: where :meth:`reload` reads the configuration again (``--config``), or None
        self.config_file: ConfigFile | None = None
        #: the reload the workers started from now on get (0: none yet)
        self.generation = 0
        #: a reload is waiting for the workers' answers
        self.reloading = False

    def reload(self) -> defer.Deferred[WorkersReloaded]:
        """Read :attr:`config_file` again, check it, have every worker apply it (``SIGHUP``).

        :func:`ilphttp.worker_reload.reload_workers` (its answer, its errors);
        docs/reload.rst.
        """
        from ilphttp.worker_reload import reload_workers

        return reload_workers(self)

    def processes(self) -> list[_WorkerProcess]:
        """The worker processes running now (started, not ended)."""
        return [s.process for s in self._slots if s.process is not None]

    def for_workers(self, node: NodeConfig) -> NodeConfig:
        """``node`` as the workers run it: the parent serves the metrics, they serve none."""
        return replace(node, metrics=None)

    # -- what tests and logs look at --

    @property
    def reactor(self) -> Any:
        """The reactor the workers are spawned and timed with."""
        return self._reactor

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers running now."""
        return [s.process.pid for s in self._slots if s.process is not None and s.process.pid]

    @property
    def ports(self) -> dict[tuple[str, int], int]:
        """(account, listener index) -> the port actually bound (port 0 resolved)."""
        return {
            (listener.account, listener.index): socks[0].getsockname()[1]
            for listener, socks in zip(self.listeners, self._sockets)
        }

    # -- start --

    def privilegedStartService(self) -> None:
        self._open()
        Service.privilegedStartService(self)

    def _open(self) -> None:
        if self._sockets:
            return
        for listener in self.listeners:
            try:
                self._sockets.append(open_sockets(listener, self.count, self.reuse_port))
            except CannotListenError as exc:
                self._close()
                what = (
                    f"account {listener.account!r}"
                    if listener.account != SHARED_LISTEN
                    else f"the node's listener {listener.description!r}"
                )
                message = startup_error(what, exc)
                _log.critical("{reason}", reason=message)
                raise StartupError(f"ilphttp: {message}") from None

    def startService(self) -> None:
        self._open()
        Service.startService(self)
        for listener, socks in zip(self.listeners, self._sockets):
            _log.info(
                "{owner}: {description} on port {port}, {how}",
                owner=f"account {listener.account}" if listener.account else "listen",
                description=listener.description,
                port=socks[0].getsockname()[1],
                how=(
                    f"one SO_REUSEPORT socket per worker ({len(socks)})"
                    if len(socks) > 1
                    else f"one socket shared by {self.count} workers"
                ),
            )
        _log.info("starting {count} worker processes", count=self.count)
        for slot in self._slots:
            self._spawn(slot)

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The worker imports this very ilphttp, whatever its sys.path would say.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = root if not path else os.pathsep.join((root, path))
        env.update(self.extra_env)
        return env

    def _spawn(self, slot: _Slot) -> None:
        slot.restart = None
        if self._stopping or not self.running:
            return
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r", CONTROL_FD: "r"}
        fds = []
        for i, (listener, socks) in enumerate(zip(self.listeners, self._sockets)):
            sock = socks[(slot.number - 1) % len(socks)]
            child_fds[FIRST_LISTEN_FD + i] = sock.fileno()
            fds.append((listener, FIRST_LISTEN_FD + i))
        setup = WorkerSetup(slot.number, self.for_workers(self.node), self.handler, tuple(fds))
        process = _WorkerProcess(
            slot,
            frame_setup(setup),
            self._reactor.seconds(),
            self.generation,
            on_ready=self._ready,
            on_line=self._forward,
            on_ended=self._ended,
        )
        slot.process = process
        argv = [self.executable, "-c", BOOT, "ilphttp-worker", str(slot.number)]
        self._reactor.spawnProcess(
            process, self.executable, argv, env=self._child_env(), childFDs=child_fds
        )
        _log.info("worker {n} started (pid {pid})", n=slot.number, pid=process.pid)

    def _ready(self, process: _WorkerProcess) -> None:
        process.slot.ever_ready = True
        if self._all_ready_logged:
            _log.info("worker {n} (pid {pid}) is ready", n=process.slot.number, pid=process.pid)
            return
        if all(s.process is not None and s.process.ready for s in self._slots):
            self._all_ready_logged = True
            _log.info(
                "all {count} workers are ready (pids {pids})",
                count=self.count,
                pids=" ".join(str(p) for p in self.pids),
            )

    def _forward(self, process: _WorkerProcess, fd: int, line: bytes) -> None:
        forward_line(self._publish, process.slot.number, fd, line)

    def _ended(self, process: _WorkerProcess, reason: Failure) -> None:
        slot = process.slot
        if slot.process is process:
            slot.process = None
        if self.on_worker_ended is not None and process.pid:
            self.on_worker_ended(process.pid)
        how = describe_end(reason)
        if self._stopping or not self.running:
            _log.info(
                "worker {n} (pid {pid}) stopped ({how})", n=slot.number, pid=process.pid, how=how
            )
            return
        if not slot.ever_ready:
            self.fatal = f"worker {slot.number} could not start ({how}); stopping the node"
            _log.critical("{reason}", reason=self.fatal)
            if self.fatal_exit_status is not None:
                exit_at_end(self.fatal_exit_status)
            self._on_fatal()
            return
        delay = slot.next_delay(self._reactor.seconds() - process.started)
        _log.warn(
            "worker {n} (pid {pid}) ended ({how}); starting it again in {delay} s",
            n=slot.number,
            pid=process.pid,
            how=how,
            delay=delay,
        )
        slot.restart = self._reactor.callLater(delay, self._spawn, slot)

    def _stop_reactor(self) -> None:
        # After the reactor's turn: a SIGTERM to the whole process group may
        # have queued twistd's own stop already (workers that were still
        # starting end at the same time), and a second stop() would raise.
        def stop() -> None:
            try:
                self._reactor.stop()
            except ReactorNotRunning:
                pass

        self._reactor.callLater(0, stop)

    # -- stop --

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        self._stopping = True
        running = []
        for slot in self._slots:
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
            slot.restart = None
            if slot.process is not None:
                running.append(slot.process)
        if running:
            _log.info("stopping {n} workers", n=len(running))
        for process in running:
            process.signal("TERM")
        # No worker will be started again: our copies of the listening sockets
        # go now, so that once the workers have closed theirs (at SIGTERM) a new
        # connection is refused (a balancer retries it elsewhere) instead of
        # waiting in a backlog nobody accepts, to be reset at our exit.
        self._close()

        def kill() -> None:
            for process in running:
                if not process.ended.called:
                    _log.warn(
                        "worker {n} (pid {pid}) did not stop in {t} s; killing it",
                        n=process.slot.number,
                        pid=process.pid,
                        t=self.stop_timeout,
                    )
                    process.signal("KILL")

        timer = self._reactor.callLater(self.stop_timeout, kill)
        done = defer.gatherResults([p.ended for p in running])

        def finished(_: object) -> None:
            if timer.active():
                timer.cancel()

        return done.addBoth(finished)

    def _close(self) -> None:
        for socks in self._sockets:
            for sock in socks:
                sock.close()
        self._sockets = []
