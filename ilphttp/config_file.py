"""A node's config file as ``twistd ilphttp --config`` reads it, at start and at
each reload: the file (:func:`ilphttp.nodeconfig.parse_node`), then the
command-line flags over it (:class:`OperationFlags`), then the check that no two
listeners bind one address (:func:`ilphttp.endpoint_check.check_distinct_listeners`),
with the flags in place, so ``--metrics`` replaces the file's ``metrics`` first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ilphttp import validate
from ilphttp.endpoint_check import check_distinct_listeners, check_endpoint
from ilphttp.errors import OptionError
from ilphttp.node_file import load_file
from ilphttp.node_listeners import node_listeners
from ilphttp.nodeconfig import LOG_FORMATS, LOG_LEVELS, NodeConfig, parse_node
from ilphttp.tls_files import with_file_digests

__all__ = ["ConfigFile", "OperationFlags"]


@dataclass(frozen=True)
class OperationFlags:
    """``--metrics``, ``--log-format`` and ``--log-level``: given, they win over the
    node's ``metrics``, ``logFormat`` and ``logLevel``, at start and at each reload
    (the one place for that rule).  None: the node's own value."""

    metrics: str | None = None
    log_format: str | None = None
    log_level: str | None = None

    def apply(self, node: NodeConfig) -> NodeConfig:
        """``node`` with the given flags in place of its values.

        :raises OptionError: naming the flag and echoing its value: one that is
            not one of its choices, empty, or (``--metrics``) not an endpoint
            that can be listened on (:func:`~ilphttp.endpoint_check.check_endpoint`).
        """
        for flag, value, choices in (
            ("log-format", self.log_format, LOG_FORMATS),
            ("log-level", self.log_level, LOG_LEVELS),
        ):
            if value is not None and value not in choices:
                raise OptionError(f"--{flag} must be one of {', '.join(choices)}, got {value!r}")
        if self.metrics is not None:
            check_endpoint("--metrics", validate.string("--metrics", self.metrics))
        return replace(
            node,
            metrics=self.metrics or node.metrics,
            log_format=self.log_format or node.log_format,
            log_level=self.log_level or node.log_level,
        )


@dataclass(frozen=True)
class ConfigFile:
    """A node's config file and how it is read: the same at start and at each reload.

    :ivar path: the file (JSON, or TOML for ``*.toml``).
    :ivar environ: where ``staticTokenEnv``/``jwtSecretEnv`` are looked up.
    :ivar listen_flags: node-level listeners from the command line (``--listen``).
    :ivar operation_flags: ``--metrics``, ``--log-format``, ``--log-level``, applied
        over the file each time it is read.
    """

    path: str
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    listen_flags: tuple[str, ...] = ()
    operation_flags: OperationFlags = OperationFlags()

    def read(self) -> NodeConfig:
        """The file parsed now (:func:`ilphttp.nodeconfig.parse_node`), the flags applied.

        No two listeners may bind the same address, checked once the flags are
        applied: ``--metrics`` replaces the file's ``metrics``, so a port the
        file's ``metrics`` shares with an account is no conflict then.

        :raises OptionError: one line; an error in the file starts with the
            file's path, one about a flag names the flag (a clash of a flag's
            listener with the file's names both options, without the path).
        """
        data = load_file(self.path)
        try:
            node = parse_node(
                data,
                os.path.dirname(os.path.abspath(self.path)),
                self.environ,
                listen_flags=self.listen_flags,
                check_listeners=False,
            )
        except OptionError as exc:
            raise OptionError(f"{self.path}: {exc}") from None
        node = self.operation_flags.apply(node)
        metrics_where = "--metrics" if self.operation_flags.metrics else "metrics"
        listeners = node_listeners(node, len(self.listen_flags), metrics_where=metrics_where)
        try:  # the file's own listeners first: a clash there is the file's
            check_distinct_listeners((w, d) for w, d in listeners if not w.startswith("--"))
        except OptionError as exc:
            raise OptionError(f"{self.path}: {exc}") from None
        check_distinct_listeners(listeners)  # one of the two is a flag
        return with_file_digests(node)
