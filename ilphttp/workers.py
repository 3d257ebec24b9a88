"""Several worker processes behind the same ports: ``twistd ilphttp --workers N``.

One Python process runs one reactor on one core.  With ``--workers N`` (or
``"workers": N`` in the config file), the twistd process becomes a small
*parent* that serves no packets itself:

1. It opens every account's listening TCP sockets (``tcp:``, ``tcp6:`` and
   ``ssl:`` endpoints), in ``privilegedStartService``, so a port below 1024
   can be bound before twistd drops privileges, and a port in use stops
   start-up with the same one line as without workers.
2. It starts N worker processes (``sys.executable -c ...``) and hands each one
   the sockets as inherited file descriptors (``childFDs``).  A worker adopts
   them (``reactor.adoptStreamPort``; TLS is added in the worker with
   ``TLSMemoryBIOFactory``, as ``listenSSL`` does) and runs the same node:
   every account and the router (or your ``--handler``).  The parsed node
   configuration, secrets included, goes to the worker over its stdin pipe,
   never through argv or the environment.
3. It supervises them: a worker that dies is started again on the same
   sockets (after 0.5 s, doubling up to 30 s while it keeps dying young); a
   worker that cannot start the first time stops the node.  ``SIGTERM`` or
   ``SIGINT`` is passed on to every worker, which stops the way one process
   does (no new packets, those in flight finish); the parent waits for them
   (at most :data:`STOP_TIMEOUT`, then ``SIGKILL``) and exits.  A worker whose
   parent is gone (its stdin pipe closes) stops by itself.
4. The workers log JSON events on stdout; the parent re-emits each one into
   its own log with the system ``worker N: ...``.  Lines on a worker's stderr
   are logged as warnings.

How the connections are spread: on Linux each worker gets its *own* socket
per listener, all bound to the same address with ``SO_REUSEPORT``, so the
kernel spreads new connections over the workers evenly (by a hash of the
client's address and port).  Where ``SO_REUSEPORT`` is missing, all workers
share one socket, and whichever worker accepts first gets the connection.
This does not depend on the Twisted version (Twisted 26.10's ``makeBinding
(reusePort=True)`` is not needed): the parent makes the sockets.

Each worker is a separate node as far as state goes: its own outgoing
connection pools, and its own IL-DCP address from the parent account (each
worker asks the parent once).  Nothing is shared between workers, so a
handler that keeps state in memory sees only its worker's packets.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError, ProcessExitedAlready
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import ILogObserver, Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from ilphttp import validate
from ilphttp._compat import ssl_context_factory
from ilphttp.errors import ConfigError, OptionError
from ilphttp.nodeconfig import MAX_WORKERS, NodeConfig
from ilphttp.tls import split_endpoint, server_endpoint_from_string

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProcessTransport
    from twisted.internet.protocol import Factory

__all__ = [
    "MAX_WORKERS",
    "STOP_TIMEOUT",
    "Listener",
    "WorkerSetup",
    "WorkersService",
    "listeners_of",
    "open_sockets",
    "parse_listener",
    "parse_workers",
    "worker_main",
]

_log = Logger()

#: seconds the parent waits for its workers to stop before it kills them;
#: more than the router's default maxHoldTime (30 s), so packets in flight end
STOP_TIMEOUT = 40.0
#: restart delays: the first, the longest, and how long a worker must have
#: run for the next restart to start again from the first
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 30.0

#: in a worker: the parent reads "ready" on this descriptor...
CONTROL_FD = 3
#: ...and the listening sockets start at this one
FIRST_LISTEN_FD = 4

_KINDS = ("tcp", "tcp6", "ssl")
_BOOT = "from ilphttp.workers import worker_main; worker_main()"
_LENGTH = struct.Struct(">Q")


def parse_workers(value: Any, where: str = "--workers") -> int:
    """The number of worker processes: an integer from 1 to :data:`MAX_WORKERS`.

    :raises OptionError: naming ``where``.
    """
    if isinstance(value, str):
        return validate.integer_text(where, value, 1, MAX_WORKERS)
    return validate.integer(where, value, 1, MAX_WORKERS)


# -- the listeners ------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """One listening endpoint of one account, as the parent opens it."""

    account: str
    #: 0: the account's incoming endpoint; 1, 2, ...: its extra ``--listen``
    index: int
    description: str
    #: ``tcp``, ``tcp6`` or ``ssl``
    kind: str
    port: int
    interface: str
    backlog: int

    @property
    def family(self) -> int:
        if self.kind == "tcp6" or ":" in self.interface:
            return socket.AF_INET6
        return socket.AF_INET

    @property
    def bind_address(self) -> tuple[str, int]:
        host = self.interface or ("::" if self.family == socket.AF_INET6 else "")
        return host, self.port


def parse_listener(account: str, index: int, description: str) -> Listener:
    """A :class:`Listener` from an endpoint string; ConfigError if workers cannot share it."""
    args, kwargs = split_endpoint(description)
    kind = args[0].strip().lower() if args else ""
    where = f"account {account}: listener {description!r}"
    if kind not in _KINDS:
        raise ConfigError(
            f"{where}: several worker processes can share tcp:, tcp6: and ssl: listeners"
            " only (use one process, --workers 1, for other endpoints)"
        )
    positional = args[1:]
    if len(positional) > 1:
        raise ConfigError(f"{where}: unexpected positional arguments")
    port_text = kwargs.pop("port", positional[0] if positional else None)
    interface = kwargs.pop("interface", "")
    backlog_text = kwargs.pop("backlog", "50")
    if kind == "ssl":
        try:
            server_endpoint_from_string(None, description)  # the certificates load
        except Exception as exc:
            raise ConfigError(f"{where} is invalid: {exc}") from None
    elif kwargs:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(kwargs))}")
    try:
        port = int(port_text or "", 10)
        backlog = int(backlog_text, 10)
    except ValueError:
        raise ConfigError(f"{where}: the port and backlog must be integers") from None
    if not 0 <= port <= 65535 or backlog < 1:
        raise ConfigError(f"{where}: port out of range or backlog below 1")
    return Listener(account, index, description, kind, port, interface, backlog)


def listeners_of(node: NodeConfig) -> list[Listener]:
    """Every listener of every account, in order; ConfigError if one cannot be shared."""
    listeners = []
    for spec in node.accounts:
        incoming = spec.options.incoming
        main = None if incoming is None else incoming.listen_description
        if main is None:
            continue
        for index, description in enumerate((main, *spec.extra_listen)):
            listeners.append(parse_listener(spec.name, index, description))
    return listeners


def reuse_port_available() -> bool:
    """True where SO_REUSEPORT spreads connections over sockets (Linux 3.9+)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _listening_socket(listener: Listener, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(listener.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's tcp.Port
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((listener.bind_address[0], port))
        sock.listen(listener.backlog)
        sock.setblocking(False)
        os.set_inheritable(sock.fileno(), True)
    except BaseException:
        sock.close()
        raise
    return sock


def open_sockets(listener: Listener, count: int, reuse_port: bool) -> list[socket.socket]:
    """The listening sockets of ``listener``: ``count`` of them with SO_REUSEPORT, else one.

    With SO_REUSEPORT, a first bind without it checks that nobody else has
    the port (a stray process with SO_REUSEPORT would otherwise silently get
    a share of the connections) and resolves port 0.  Raises
    :class:`CannotListenError`.
    """
    sockets: list[socket.socket] = []
    port = listener.port
    try:
        if reuse_port:
            probe = socket.socket(listener.family, socket.SOCK_STREAM)
            with probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(listener.bind_address)
                probe.listen(1)
                port = probe.getsockname()[1]
        for _ in range(count if reuse_port else 1):
            sock = _listening_socket(listener, port, reuse_port)
            sockets.append(sock)
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CannotListenError(listener.interface, listener.port, exc) from None
    return sockets


# -- what a worker is told ------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs, pickled to its stdin (secrets stay out of argv)."""

    worker: int
    node: NodeConfig
    #: ``--handler pkg.module:callable``, or None for the router
    handler: str | None
    #: each listener and the descriptor its socket has in the worker
    listeners: tuple[tuple[Listener, int], ...]


def _frame(setup: WorkerSetup) -> bytes:
    payload = pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


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
    """The setup the parent wrote to ``fd`` (blocking)."""
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    setup = pickle.loads(_read_exactly(fd, length))
    if not isinstance(setup, WorkerSetup):
        raise TypeError(f"expected a WorkerSetup, got {type(setup).__name__}")
    return setup


# -- the parent -----------------------------------------------------------------------


class _Slot:
    """One worker position: its sockets stay, its process may be replaced."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: _WorkerProcess | None = None
        self.ever_ready = False
        self.delay = RESTART_DELAY
        self.restart: IDelayedCall | None = None


class _WorkerProcess(ProcessProtocol):
    def __init__(self, service: WorkersService, slot: _Slot, frame: bytes, started: float) -> None:
        self.service = service
        self.slot = slot
        self.frame = frame
        self.started = started
        self.pid: int | None = None
        self.ready = False
        self.ended: defer.Deferred[None] = defer.Deferred()
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
                if line == b"ready" and not self.ready:
                    self.ready = True
                    self.service._ready(self)
            else:
                self.service._forward(self, childFD, line)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in sorted(self._partial.items()):
            if rest and fd != CONTROL_FD:
                self.service._forward(self, fd, rest)
        self._partial.clear()
        self.service._ended(self, reason)
        self.ended.callback(None)

    def signal(self, name: str) -> None:
        transport: Any = self.transport
        try:
            transport.signalProcess(name)
        except (ProcessExitedAlready, OSError):
            pass


def _describe_end(reason: Failure) -> str:
    code = getattr(reason.value, "exitCode", None)
    number = getattr(reason.value, "signal", None)
    if number is not None:
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit status {code}"


class WorkersService(Service):
    """The parent of ``--workers N``: opens the sockets, runs and supervises the workers.

    :param node: the parsed node (every worker runs all of it).
    :param handler: the ``--handler`` spec, or None for the router.
    :param count: how many worker processes.
    :param reuse_port: one SO_REUSEPORT socket per worker (default: where the
        platform has it), or one socket shared by all.
    :param on_fatal: called when a worker cannot start the first time
        (default: stop the reactor, and so the node).
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
        self.fatal: str | None = None

    # -- what tests and logs look at --

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
                message = f"cannot start {listener.account}: {exc}"
                _log.critical("{message}", message=message)
                raise SystemExit(f"ilphttp: {message}") from None

    def startService(self) -> None:
        self._open()
        Service.startService(self)
        for listener, socks in zip(self.listeners, self._sockets):
            _log.info(
                "account {account}: {description} on port {port}, {how}",
                account=listener.account,
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
        setup = WorkerSetup(slot.number, self.node, self.handler, tuple(fds))
        process = _WorkerProcess(self, slot, _frame(setup), self._reactor.seconds())
        slot.process = process
        argv = [self.executable, "-c", _BOOT, "ilphttp-worker", str(slot.number)]
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
        text = line.decode("utf-8", "replace").rstrip("\r")
        system = f"worker {process.slot.number}"
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
                self._publish(event)
                return
        if text.strip():
            level = LogLevel.info if fd == 1 else LogLevel.warn
            _log.emit(level, "{line}", line=text, log_system=f"{system}: fd {fd}")

    def _ended(self, process: _WorkerProcess, reason: Failure) -> None:
        slot = process.slot
        if slot.process is process:
            slot.process = None
        how = _describe_end(reason)
        if self._stopping or not self.running:
            _log.info(
                "worker {n} (pid {pid}) stopped ({how})", n=slot.number, pid=process.pid, how=how
            )
            return
        if not slot.ever_ready:
            self.fatal = f"worker {slot.number} could not start ({how}); stopping the node"
            _log.critical("{message}", message=self.fatal)
            self._on_fatal()
            return
        if self._reactor.seconds() - process.started >= STABLE_AFTER:
            slot.delay = RESTART_DELAY
        delay = slot.delay
        slot.delay = min(delay * 2, MAX_RESTART_DELAY)
        _log.warn(
            "worker {n} (pid {pid}) ended ({how}); starting it again in {delay} s",
            n=slot.number,
            pid=process.pid,
            how=how,
            delay=delay,
        )
        slot.restart = self._reactor.callLater(delay, self._spawn, slot)

    def _stop_reactor(self) -> None:
        if self._reactor.running:
            self._reactor.stop()

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
            self._close()

        return done.addBoth(finished)

    def _close(self) -> None:
        for socks in self._sockets:
            for sock in socks:
                sock.close()
        self._sockets = []


# -- the worker -----------------------------------------------------------------------


class _AdoptedTLSEndpoint:
    """TLS over an adopted TCP socket, as ``reactor.listenSSL`` does over a new one."""

    def __init__(self, adopted: Any, context_factory: Any) -> None:
        self._adopted = adopted
        self._context_factory = context_factory

    def listen(self, factory: Factory) -> defer.Deferred[IListeningPort]:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        wrapped = TLSMemoryBIOFactory(self._context_factory, False, factory)
        result: defer.Deferred[IListeningPort] = self._adopted.listen(wrapped)
        return result


def worker_endpoints(reactor: Any, setup: WorkerSetup) -> dict[str, list[Any]]:
    """account -> its endpoints (incoming first, then the extra ones) on the adopted sockets."""
    from twisted.internet.endpoints import AdoptedStreamServerEndpoint
    from twisted.internet.interfaces import IStreamServerEndpoint
    from zope.interface import directlyProvides

    endpoints: dict[str, list[Any]] = {}
    for listener, fd in sorted(setup.listeners, key=lambda item: item[0].index):
        endpoint: Any = AdoptedStreamServerEndpoint(reactor, fd, listener.family)
        if listener.kind == "ssl":
            tls: Any = server_endpoint_from_string(reactor, listener.description)
            endpoint = _AdoptedTLSEndpoint(endpoint, ssl_context_factory(tls))
            directlyProvides(endpoint, IStreamServerEndpoint)
        endpoints.setdefault(listener.account, []).append(endpoint)
    return endpoints


@implementer(ILogObserver)
class _JSONLines:
    """Each event as one ``\\x1e{json}`` line on a file, flushed (for the parent)."""

    def __init__(self, out: Any) -> None:
        from twisted.logger import jsonFileLogObserver

        self._observer = jsonFileLogObserver(out, recordSeparator="\x1e")

    def __call__(self, event: Mapping[str, Any]) -> None:
        try:
            self._observer(dict(event))
        except Exception:  # e.g. a value JSON cannot hold: keep the line
            from twisted.logger import formatEvent

            text = formatEvent(dict(event))
            self._observer({**_plain(event), "log_format": "{text}", "text": text})


def _plain(event: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("log_level", "log_namespace", "log_time", "log_system")
    return {k: event[k] for k in keep if k in event}


@implementer(IReadDescriptor)
class _ParentWatch:
    """Stops the worker when its stdin (the pipe from the parent) closes."""

    def __init__(self, fd: int, gone: Callable[[], object]) -> None:
        self._fd = fd
        self._gone = gone

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "parent-watch"

    def doRead(self) -> Any:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            from twisted.internet.main import CONNECTION_DONE

            return CONNECTION_DONE
        return None

    def connectionLost(self, reason: Failure) -> None:
        self._gone()


def run_worker(setup: WorkerSetup, reactor: Any = None) -> int:
    """Run one worker until it is told to stop; its exit status."""
    from twisted.internet.interfaces import IReactorFDSet

    from ilphttp.node import load_handler_factory, make_node

    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    status = [0]
    stopping = [False]

    def stop(why: str) -> None:
        if stopping[0]:
            return
        stopping[0] = True
        _log.info("{why}; stopping", why=why)
        if reactor.running:
            reactor.stop()

    try:
        factory = None if setup.handler is None else load_handler_factory(setup.handler)
        service = make_node(setup.node, factory, reactor, worker_endpoints(reactor, setup))
    except OptionError as exc:
        _log.critical("ilphttp: --handler {handler}: {e}", handler=setup.handler, e=exc)
        return 1
    except Exception:
        _log.failure("the node could not be built")
        return 1

    def start() -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, on_signal)
        try:
            service.privilegedStartService()
            service.startService()
        except SystemExit:  # NodeService logged why
            status[0] = 1
            stop("the node could not start")
            return
        except Exception:
            _log.failure("the node could not start")
            status[0] = 1
            stop("the node could not start")
            return
        try:
            os.write(CONTROL_FD, b"ready\n")
            os.close(CONTROL_FD)
        except OSError:
            pass

    def on_signal(number: int, frame: Any) -> None:
        reactor.callFromThread(stop, f"Received {signal.Signals(number).name}")

    def before_shutdown() -> Any:
        if service.running:
            return service.stopService()
        return None

    os.set_blocking(0, False)
    watch = _ParentWatch(0, lambda: stop("the parent process is gone"))
    if IReactorFDSet.providedBy(reactor):
        reactor.addReader(watch)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.callWhenRunning(start)
    reactor.run()
    return status[0]


def worker_main() -> None:
    """The worker process's entry point (``python -c`` from the parent)."""
    from twisted.logger import globalLogBeginner

    setup = read_setup(0)
    globalLogBeginner.beginLoggingTo([_JSONLines(sys.stdout)], redirectStandardIO=False)
    _log.info(
        "worker {n} (pid {pid}), Python {version}",
        n=setup.worker,
        pid=os.getpid(),
        version=sys.version.split()[0],
    )
    status = run_worker(setup)
    sys.stdout.flush()
    sys.exit(status)
