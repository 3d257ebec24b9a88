"""One worker process of ``--workers N``: adopt the parent's sockets and run the node.

The parent (:mod:`ilphttp.worker_supervisor`) starts ``python -c`` with
:func:`worker_main`, which reads its
:class:`~ilphttp.worker_setup.WorkerSetup` from stdin, logs JSON events on
stdout for the parent, and runs :func:`run_worker`: the node of
:func:`ilphttp.node.make_node` on the inherited listening sockets
(:func:`worker_endpoints`).  The worker writes ``ready`` on
:data:`~ilphttp.worker_setup.CONTROL_FD` once it listens, stops on
``SIGTERM``/``SIGINT`` the way one process does, and stops by itself when its
stdin (the pipe from the parent) closes.

The parent also sends :class:`~ilphttp.worker_setup.Reload` messages on
stdin: the worker applies each one (``NodeService.apply``, logged as a
one-process reload is) and answers ``reloaded N`` or ``refused N`` on the
control descriptor.  ``SIGHUP`` is ignored in a worker: reloads are the
parent's to start (a hang-up of the whole process group must not kill the
workers).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor, IStreamServerEndpoint
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import (
    ILogObserver,
    Logger,
    formatEvent,
    globalLogBeginner,
    jsonFileLogObserver,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ilphttp._compat import ssl_context_factory
from ilphttp.errors import OptionError
from ilphttp.node import load_handler_factory, make_node
from ilphttp.tls import server_endpoint_from_string
from ilphttp.worker_setup import (
    CONTROL_FD,
    FrameReader,
    Reload,
    WorkerSetup,
    answer_line,
    read_setup,
)

if TYPE_CHECKING:
    from twisted.internet import defer
    from twisted.internet.interfaces import IListeningPort, IProtocolFactory

__all__ = ["run_worker", "worker_endpoints", "worker_main"]

# The namespace of the log lines users read stays that of the entry module.
_log = Logger(namespace="ilphttp.workers")


@implementer(IStreamServerEndpoint)
class _AdoptedTLSEndpoint:
    """TLS over an adopted TCP socket, as ``reactor.listenSSL`` does over a new one."""

    def __init__(self, adopted: Any, tls: Any) -> None:
        self._adopted = adopted
        #: the context factory (a :class:`~ilphttp.tls.ServerTLS`: a reload swaps it)
        self.tls = tls

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        wrapped = TLSMemoryBIOFactory(self.tls, False, protocolFactory)
        result: defer.Deferred[IListeningPort] = self._adopted.listen(wrapped)
        return result


def worker_endpoints(reactor: Any, setup: WorkerSetup) -> dict[str, list[Any]]:
    """account -> its endpoints (incoming first, then the extra ones) on the adopted sockets."""
    endpoints: dict[str, list[Any]] = {}
    for listener, fd in sorted(setup.listeners, key=lambda item: item[0].index):
        endpoint: Any = AdoptedStreamServerEndpoint(reactor, fd, listener.family)
        if listener.kind == "ssl":
            tls: Any = server_endpoint_from_string(reactor, listener.description)
            endpoint = _AdoptedTLSEndpoint(endpoint, ssl_context_factory(tls))
        endpoints.setdefault(listener.account, []).append(endpoint)
    return endpoints


@implementer(ILogObserver)
class _JSONLines:
    """Each event as one ``\\x1e{json}`` line on a file, flushed (for the parent)."""

    def __init__(self, out: Any) -> None:
        self._observer = jsonFileLogObserver(out, recordSeparator="\x1e")

    def __call__(self, event: Mapping[str, Any]) -> None:
        try:
            self._observer(dict(event))
        except Exception:  # e.g. a value JSON cannot hold: keep the line
            text = formatEvent(dict(event))
            self._observer({**_plain(event), "log_format": "{text}", "text": text})


def _plain(event: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("log_level", "log_namespace", "log_time", "log_system")
    return {k: event[k] for k in keep if k in event}


@implementer(IReadDescriptor)
class _ParentWatch:
    """Reads the parent's :class:`Reload` messages on stdin; stops the worker when it closes.

    :param on_reload: called with each message (default: none expected).
    """

    def __init__(
        self,
        fd: int,
        gone: Callable[[], object],
        on_reload: Callable[[Reload], object] | None = None,
    ) -> None:
        self._fd = fd
        self._gone = gone
        self._on_reload = on_reload
        self._reader = FrameReader()

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
            return CONNECTION_DONE
        try:
            messages = self._reader.feed(data)
        except ValueError as exc:
            # The stream cannot be followed: stop; the parent starts a fresh worker.
            _log.error("the parent's pipe could not be read: {e}", e=exc)
            return CONNECTION_DONE
        for message in messages:
            if self._on_reload is not None:
                self._on_reload(message)
        return None

    def connectionLost(self, reason: Failure) -> None:
        self._gone()


def run_worker(setup: WorkerSetup, reactor: Any = None) -> int:
    """Run one worker until it is told to stop; its exit status (0, or 1 if it could not start)."""
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
        answer(b"ready\n")

    def answer(line: bytes) -> None:
        # The control pipe stays open for the answers to reloads.
        try:
            os.write(CONTROL_FD, line)
        except OSError:
            pass

    def on_reload(message: Reload) -> None:
        if not service.running:
            answer(answer_line(message.generation, False))
            return
        d = service.apply(message.node)

        def applied(_: object) -> None:
            answer(answer_line(message.generation, True))

        def refused(failure: Failure) -> None:
            if not failure.check(OptionError):  # the reload logged an OptionError already
                _log.failure("the new configuration could not be applied", failure)
            answer(answer_line(message.generation, False))

        d.addCallbacks(applied, refused)

    def on_signal(number: int, frame: Any) -> None:
        reactor.callFromThread(stop, f"Received {signal.Signals(number).name}")

    def before_shutdown() -> Any:
        if service.running:
            return service.stopService()
        return None

    os.set_blocking(0, False)
    watch = _ParentWatch(0, lambda: stop("the parent process is gone"), on_reload)
    if IReactorFDSet.providedBy(reactor):
        reactor.addReader(watch)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.callWhenRunning(start)
    reactor.run()
    return status[0]


def worker_main() -> None:
    """The worker process's entry point (``python -c`` from the parent); exits with its status."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
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
