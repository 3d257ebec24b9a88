"""The metrics of a node of several workers (``--workers N``), added up by the parent.

Each worker records into files that prometheus-client's multiprocess mode adds
up: the parent makes a private directory (mode 0700, empty), gives it to the
workers as ``PROMETHEUS_MULTIPROC_DIR`` (read by prometheus-client when a
worker first imports it, so it is in their environment from the start),
serves the sum at ``/metrics``, forgets the live gauges of a worker that
ended (``mark_process_dead``), and removes the directory when it stops.
Counters and histograms keep what ended workers counted; the gauges
(``livesum``) count live workers only.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from twisted.application.service import IService, MultiService
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from ilphttp.errors import OptionError, StartupError
from ilphttp.node import startup_error
from ilphttp.node_metrics import SERVICE_NAME, metrics_listener

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from ilphttp.worker_supervisor import WorkersService

__all__ = ["MULTIPROC_ENV", "WorkerMetrics", "supervise"]

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
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiService.__init__(self)
        #: where the workers write their values (mode 0700, made empty)
        self.directory = tempfile.mkdtemp(prefix="ilphttp-metrics-")
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=self.directory)
        workers.extra_env[MULTIPROC_ENV] = self.directory
        workers.on_worker_ended = self._worker_ended
        self._listener = metrics_listener(description, self.registry, reactor)
        self._listener.setServiceParent(self)
        workers.setServiceParent(self)

    def _worker_ended(self, pid: int) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, self.directory)

    def privilegedStartService(self) -> None:
        self._guard(MultiService.privilegedStartService)

    def startService(self) -> None:
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
        d: Deferred[None] = MultiService.stopService(self)
        return d.addBoth(lambda result: self._remove())

    def _remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def supervise(workers: WorkersService, description: str | None, reactor: Any = None) -> IService:
    """``workers`` alone, or with the ``/metrics`` listener of :class:`WorkerMetrics`."""
    if description is None:
        return workers
    return WorkerMetrics(description, workers, reactor)
