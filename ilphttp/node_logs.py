"""The node's log observer: ``--log-format json|text``, and ``logLevel`` always.

twistd chooses its log observer when it starts logging: its ``--logger``
option first, else an ``ILogObserver`` component of the application, else
its own (syslog with ``--syslog``, else text on ``--logfile``: ``twistd.log``,
stdout with ``-n``).  :func:`with_log_format` takes the middle way: the
node's service, put in the application by twistd, sets the component, so
that the node's observer writes where twistd's would have (``--logfile``,
rotated as twistd rotates it, or stdout with ``-n`` or ``--logfile -``) and
everything else twistd does is unchanged.  With ``--log-format`` that is
the observer of :mod:`ilphttp.logformat`; without it, twistd's own text (or
syslog) observer, so its lines look as they always did.  Both drop the events
below the node's ``logLevel`` (:class:`ilphttp.logformat.LevelFilter`).

twistd's ``--logger`` wins over the component, so with it the level does
not filter what that observer gets (packet events still come only at
``debug``: they are not emitted below it); :func:`check_twistd_options`
refuses ``--logger`` and ``--syslog`` together with ``--log-format``.

A reload changes the level (:func:`apply_log_level`); the format stays until
a restart (:func:`keep_log_format`): twistd chose the observer when it
started logging.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import IO, Any

from twisted.application.service import IService, MultiService
from twisted.logger import (
    ILogObserver,
    LegacyLogObserverWrapper,
    Logger,
    LogLevel,
    textFileLogObserver,
)
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

from ilphttp.errors import OptionError
from ilphttp.link_ops import LinkOps
from ilphttp.logformat import FORMATS, LevelFilter
from ilphttp.nodeconfig import NodeConfig

__all__ = [
    "LogFormatService",
    "apply_log_level",
    "check_twistd_options",
    "keep_log_format",
    "log_target",
    "with_log_format",
]

# The reload's namespace: these lines belong with its own (docs/reload.rst).
_log = Logger(namespace="ilphttp.reload")

#: twistd's options that choose the log observer too
_TWISTD_OBSERVERS = ("logger", "syslog")


def check_twistd_options(twistd: Mapping[str, Any] | None, log_format: str | None) -> None:
    """Refuse ``--log-format`` with twistd's own ``--logger`` or ``--syslog``.

    :raises OptionError: naming both options.
    """
    if twistd is None or log_format is None:
        return
    for name in _TWISTD_OBSERVERS:
        if twistd.get(name):
            raise OptionError(
                f"--log-format (or logFormat) and twistd's --{name} both choose the log"
                " observer: give one"
            )


def log_target(twistd: Mapping[str, Any] | None) -> IO[str]:
    """Where twistd would log: its ``--logfile`` (default ``twistd.log``), or stdout
    with ``--logfile -``, with ``-n`` and no ``--logfile``, or outside twistd."""
    if twistd is None:
        return sys.stdout
    name = twistd.get("logfile") or ""
    if name == "-" or (not name and twistd.get("nodaemon")):
        return sys.stdout
    target = LogFile.fromFullPath(name or "twistd.log")
    _rotate_on_usr1(target)
    return target


def _rotate_on_usr1(target: LogFile) -> None:
    """``SIGUSR1`` rotates ``target``, as twistd does for the log file of its own
    observer (and only when nothing else handles the signal yet)."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or signal.getsignal(usr1):
        return

    def rotate(number: int, frame: Any) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(target.rotate)  # type: ignore[attr-defined]

    signal.signal(usr1, rotate)


class LogFormatService(MultiService):
    """The node's service, which sets ``observer`` as its application's log observer."""

    def __init__(self, node: IService, observer: ILogObserver) -> None:
        MultiService.__init__(self)
        self.observer = observer
        node.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)
        MultiService.setServiceParent(self, parent)


def with_log_format(
    service: IService, log_format: str | None, level: str, twistd: Mapping[str, Any] | None
) -> IService:
    """``service`` inside a :class:`LogFormatService` whose observer passes the events
    at ``level`` (one of ``LOG_LEVELS``) or above: ``log_format``'s, else twistd's own
    text or syslog observer, built from twistd's options (``twistd``).

    ``service`` is returned as it is outside twistd (``twistd`` None) without
    ``log_format`` (where twistd would log is not known), and with twistd's
    ``--logger``, which twistd uses whatever the application sets.
    """
    threshold = LogLevel.levelWithName(level)
    if log_format is not None:
        return LogFormatService(service, FORMATS[log_format](log_target(twistd), threshold))
    if twistd is None or twistd.get("logger"):
        return service
    observer: ILogObserver
    if twistd.get("syslog"):
        from twisted.python import syslog

        emit = syslog.SyslogObserver(twistd.get("prefix") or "twisted").emit
        observer = LegacyLogObserverWrapper(emit)  # type: ignore[arg-type]  # a legacy observer
    else:
        observer = textFileLogObserver(log_target(twistd))
    return LogFormatService(service, LevelFilter(observer, threshold))


def apply_log_level(service: IService, level: str) -> None:
    """Make ``level`` (``logLevel``, one of ``LOG_LEVELS``) the running one, as a
    reload does: packet events are emitted only at ``debug``, and the node's
    observer (a :class:`LogFormatService` above ``service``, see
    :func:`with_log_format`) passes the events at ``level`` or above from now on."""
    LinkOps.log_packets = level == "debug"
    parent: Any = service
    while parent is not None:
        if isinstance(parent, LogFormatService) and isinstance(parent.observer, LevelFilter):
            parent.observer.set_level(LogLevel.levelWithName(level))
        parent = getattr(parent, "parent", None)


def keep_log_format(running: NodeConfig, new: NodeConfig) -> NodeConfig:
    """``new`` with the ``logFormat`` that runs, logging one warning when they differ.

    The format cannot change at run time: twistd chose the log observer
    (ilphttp's, or its own without ``logFormat``) when it started logging, and
    only a restart chooses again.  Refusing the whole reload for it would hold
    back the rest of the file, so the rest applies and this line says what did not.
    """
    if new.log_format == running.log_format:
        return new
    _log.warn(
        "logFormat stays {running} until a restart (the file asks for {wanted}): the log"
        " observer is chosen when the node starts",
        running=running.log_format or "twistd's own",
        wanted=new.log_format or "twistd's own",
    )
    return replace(new, log_format=running.log_format)
