"""Reload without a restart for ``--workers N``: the parent checks, each worker applies.

:func:`reload_workers` is :meth:`WorkersService.reload
<ilphttp.worker_supervisor.WorkersService.reload>` (``SIGHUP`` to the parent):

1. The parent reads the file again (:class:`~ilphttp.config_file.ConfigFile`, the
   reading of start-up) and compares it with what it runs
   (:func:`~ilphttp.nodediff.diff_nodes` with the listeners fixed: it opened
   every listening socket once, and the workers adopted them, so an
   account's own port cannot be added, removed or moved).  A file that does
   not parse or asks for what needs a restart is refused here, in one line,
   and no worker hears of it.
2. It sends the parsed configuration to every running worker, framed on its
   stdin (:class:`~ilphttp.worker_setup.Reload`: one reading, so every worker
   gets the same configuration, even if the file changes again meanwhile).
   Each worker applies it as a one-process node does (``NodeService.apply``)
   and answers ``reloaded N`` or ``refused N``; a worker that refuses logs
   why and keeps its configuration.
3. Once every worker answered (or ended, or :data:`RELOAD_TIMEOUT` passed),
   the parent logs which workers applied it.  If at least one did, the
   parent keeps the new configuration for the workers it starts from then
   on (a restarted worker starts with it); if none did, it is refused and
   the parent keeps the old one.  A worker started while the answers were
   awaited is sent the kept configuration then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger

from ilphttp.errors import ConfigError, OptionError
from ilphttp.node_logs import apply_log_level, keep_log_format
from ilphttp.nodediff import NodeChanges, diff_nodes
from ilphttp.tls_files import fresh_server_tls
from ilphttp.worker_setup import Reload, frame_reload, refuse_async_senders

if TYPE_CHECKING:
    from ilphttp.nodeconfig import NodeConfig
    from ilphttp.worker_supervisor import WorkersService, _WorkerProcess

__all__ = ["RELOAD_TIMEOUT", "WorkersReloaded", "reload_workers"]

# The same namespace as a one-process node's reload lines (docs/reload.rst).
_log = Logger(namespace="ilphttp.reload")

#: seconds the parent waits for a worker's answer to a reload
RELOAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkersReloaded:
    """What a reload of ``--workers N`` did.

    :ivar changes: the accounts added, removed and changed, and whether routing changed.
    :ivar applied: the numbers of the workers that run the new configuration.
    :ivar refused: the numbers of those that keep theirs (refused, ended or silent).
    """

    changes: NodeChanges
    applied: tuple[int, ...] = ()
    refused: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.changes.summary()


def _refused(reason: str) -> defer.Deferred[WorkersReloaded]:
    _log.error("reload refused, the running configuration stays: {reason}", reason=reason)
    return defer.fail(ConfigError(reason))


def _numbers(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in sorted(numbers))


def reload_workers(service: WorkersService) -> defer.Deferred[WorkersReloaded]:
    """Reload ``service``'s workers from its config file (see the module docstring).

    :returns: a Deferred that fires with a :class:`WorkersReloaded` once every
        worker answered, or fails with :class:`~ilphttp.errors.OptionError`
        (the reason, also logged as one line) when the file is refused or no
        worker applied it.
    """
    if service.config_file is None:
        return _refused("this node was not started from a config file (--config)")
    if service.reloading:
        return _refused("a reload is already under way")
    try:
        new = service.config_file.read()
        changes = diff_nodes(service.node, new, listeners_fixed=True)
        refuse_async_senders(new, service.count)  # as at start: replies must find their worker
        _check_tls(new, changes)
    except OptionError as exc:
        return _refused(str(exc))
    new = keep_log_format(service.node, new)  # the workers' events go through our observer
    if changes.empty:
        service.node = new
        _log.info("reloaded: {summary}", summary=changes.summary())
        return defer.succeed(WorkersReloaded(changes))
    generation = service.generation + 1
    frame = frame_reload(Reload(generation, service.for_workers(new)))
    asked = service.processes()
    if not asked:  # all of them are between two restarts: they start with it
        _adopt(service, new, generation, frame, asked)
        _reloaded(service, changes, everywhere=True)
        _log.info("reloaded: {summary}", summary=changes.summary())
        return defer.succeed(WorkersReloaded(changes))
    service.reloading = True
    answers = [_answer(service, process, generation, frame) for process in asked]

    def answered(results: list[bool | None]) -> defer.Deferred[WorkersReloaded]:
        service.reloading = False
        applied = [p.slot.number for p, ok in zip(asked, results) if ok]
        kept = [p.slot.number for p, ok in zip(asked, results) if not ok]
        if not applied:
            return _refused(
                f"no worker applied it (workers {_numbers(kept)} refused it;"
                " their log lines say why)"
            )
        _adopt(service, new, generation, frame, asked)
        _reloaded(service, changes, everywhere=not kept)
        _log.info(
            "reloaded: {summary}; applied by workers {applied}",
            summary=changes.summary(),
            applied=_numbers(applied),
        )
        if kept:
            _log.error(
                "workers {kept} keep the configuration they run until they restart"
                " (their log lines say why)",
                kept=_numbers(kept),
            )
        return defer.succeed(WorkersReloaded(changes, tuple(applied), tuple(kept)))

    gathered: defer.Deferred[list[bool | None]] = defer.gatherResults(answers)
    return gathered.addCallback(answered)


def _answer(
    service: WorkersService, process: _WorkerProcess, generation: int, frame: bytes
) -> defer.Deferred[bool | None]:
    """The worker's answer, or None once :data:`RELOAD_TIMEOUT` passed without one."""
    waiting = process.send(generation, frame)
    result: defer.Deferred[bool | None] = defer.Deferred()

    def timed_out() -> None:
        _log.warn(
            "worker {n} (pid {pid}) did not answer the reload in {t} s",
            n=process.slot.number,
            pid=process.pid,
            t=RELOAD_TIMEOUT,
        )
        result.callback(None)

    timer = service.reactor.callLater(RELOAD_TIMEOUT, timed_out)

    def got(applied: bool | None) -> None:
        if timer.active():
            timer.cancel()
            result.callback(applied)

    waiting.addCallback(got)
    return result


def _adopt(
    service: WorkersService,
    new: NodeConfig,
    generation: int,
    frame: bytes,
    asked: list[_WorkerProcess],
) -> None:
    """``new`` is what workers start with from now on; those started meanwhile get it too."""
    service.node = new
    service.generation = generation
    for process in service.processes():
        if process not in asked and process.generation < generation:
            _late(process, generation, frame)


def _reloaded(service: WorkersService, changes: NodeChanges, everywhere: bool) -> None:
    if changes.log_level:  # the parent's observer filters the workers' events
        apply_log_level(service, changes.log_level)
    if service.on_reloaded is not None:
        service.on_reloaded(changes, everywhere)


def _late(process: _WorkerProcess, generation: int, frame: bytes) -> None:
    def answered(applied: bool | None) -> None:
        if applied:
            _log.info("worker {n} applied the reload too", n=process.slot.number)
        elif applied is False:
            _log.error(
                "worker {n} keeps the configuration it runs until it restarts"
                " (its log lines say why)",
                n=process.slot.number,
            )

    process.send(generation, frame).addCallback(answered)


def _check_tls(new: NodeConfig, changes: NodeChanges) -> None:
    """Refuse, here and once, a changed account's listener TLS files that cannot be used
    (each worker reads them again when it applies the reload).

    :raises OptionError: naming the account.
    """
    for spec in new.accounts:
        if spec.name in changes.changed:
            try:
                fresh_server_tls(spec)
            except OptionError as exc:
                raise OptionError(f"account {spec.name}: {exc}") from None
