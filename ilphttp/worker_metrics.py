"""The metrics of a node of several workers (``--workers N``), added up by the parent.

Each worker records into files that prometheus-client's multiprocess mode adds
up: the parent makes a private directory (mode 0700, empty), gives it to the
workers as ``PROMETHEUS_MULTIPROC_DIR`` (read by prometheus-client when a
worker first imports it, so it is in their environment from the start),
serves the sum at ``/metrics``, forgets the live gauges of a worker that
ended (``mark_process_dead``), and removes the directory when it stops.
Counters and histograms keep what ended workers counted; the gauges
(``livesum``) count live workers only.

A reload that removes an account cannot take its series out of the files:
prometheus-client cannot drop one label set from a live process's files,
and a worker's files outlive it.  The parent hides them instead
(:class:`HidingCollector`): once every running worker applied the reload,
``/metrics`` no longer shows a sample labelled with a removed account, and
shows it again if the account comes back (its counters go on from the
files).  The parent cannot tell when the workers' old links have drained, so
what the removed account still had in flight is not shown.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from ilphttp.errors import OptionError, StartupError
from ilphttp.node import startup_error
from ilphttp.node_metrics import SERVICE_NAME, metrics_listener

if TYPE_CHECKING:
    from prometheus_client import Metric
    from twisted.internet.defer import Deferred

    from ilphttp.nodediff import NodeChanges
    from ilphttp.worker_supervisor import WorkersService

__all__ = ["MULTIPROC_ENV", "HidingCollector", "WorkerMetrics", "supervise"]

_log = Logger(namespace="ilphttp.workers")

#: the environment variable prometheus-client's multiprocess mode reads
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class WorkerMetrics(MultiService):
    """The ``/metrics`` listener of a node of several workers, and the workers.

    :param description: the metrics endpoint.
    :param workers: the supervisor; its workers get :data:`MULTIPROC_ENV`.
    :raises StartupError: from ``startService``, logged in one line, when the listener
        cannot listen (as for any other listener of a node).
    """

    def __init__(self, description: str, workers: WorkersService, reactor: Any = None) -> None:
        MultiService.__init__(self)
        #: where the workers write their values (mode 0700, made empty when the
        #: service starts, so that a service built and never started leaves nothing)
        self.directory: str | None = None
        self.registry = CollectorRegistry()
        #: the workers' sum, without the accounts a reload removed
        self.collector = HidingCollector(None)
        self.registry.register(self.collector)
        self._workers = workers
        workers.on_worker_ended = self._worker_ended
        workers.on_reloaded = self._reloaded
        self._listener = metrics_listener(description, self.registry, reactor)
        self._listener.setServiceParent(self)
        workers.setServiceParent(self)

    def _reloaded(self, changes: NodeChanges, everywhere: bool) -> None:
        hidden = self.collector.hidden
        hidden.difference_update(changes.added)
        if everywhere:  # else a worker that kept the old configuration still serves them
            hidden.update(changes.removed)

    def _worker_ended(self, pid: int) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        if self.directory is not None:
            mark_process_dead(pid, self.directory)

    def _make_directory(self) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        if self.directory is not None:
            return
        self.directory = tempfile.mkdtemp(prefix="ilphttp-metrics-")
        self.collector.collector = MultiProcessCollector(None, path=self.directory)
        self._workers.extra_env[MULTIPROC_ENV] = self.directory

    def privilegedStartService(self) -> None:
        self._make_directory()
        self._guard(MultiService.privilegedStartService)

    def startService(self) -> None:
        self._make_directory()
        _log.info("workers' metrics in {directory}", directory=self.directory)
        self._guard(MultiService.startService)

    def _guard(self, start: Any) -> None:
        try:
            start(self)
        except (CannotListenError, OptionError) as exc:
            message = startup_error(f"listener {SERVICE_NAME!r}", exc)
            _log.critical("{reason}", reason=message)
            self._remove()
            raise StartupError(f"ilphttp: {message}") from None

    def stopService(self) -> Deferred[None]:
        """Stop the workers (they drain), then ``/metrics``: the drain can be watched."""
        Service.stopService(self)
        others = [s for s in reversed(list(self)) if s is not self._listener]
        stopping = DeferredList([maybeDeferred(s.stopService) for s in others])
        stopping.addCallback(lambda _: maybeDeferred(self._listener.stopService))
        stopped: Deferred[None] = stopping.addBoth(lambda result: self._remove())
        return stopped

    def _remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


class HidingCollector:
    """``collector``'s families without the samples labelled ``account`` in :attr:`hidden`."""

    def __init__(self, collector: Any) -> None:
        #: what is summed and filtered; None (nothing to show) until the service starts
        self.collector = collector
        #: the accounts whose samples are left out
        self.hidden: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        if self.collector is None:
            return
        hidden = self.hidden
        for metric in self.collector.collect():
            if hidden:
                metric.samples = [
                    s for s in metric.samples if s.labels.get("account") not in hidden
                ]
            yield metric


def supervise(workers: WorkersService, description: str | None, reactor: Any = None) -> IService:
    """``workers`` alone, or with the ``/metrics`` listener of :class:`WorkerMetrics`."""
    if description is None:
        return workers
    return WorkerMetrics(description, workers, reactor)
