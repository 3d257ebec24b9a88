"""The listeners of a node's configuration, and whether they fit together.

:func:`node_listeners` names every endpoint a :class:`~ilphttp.nodeconfig.NodeConfig`
listens on with the option that gives it (for
:func:`~ilphttp.endpoint_check.check_distinct_listeners`);
:func:`check_shared_listen` checks the node-level ``listen`` against the
accounts it serves.  Pure: no Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ilphttp.credentials import check_distinct_credentials
from ilphttp.errors import ConfigError

if TYPE_CHECKING:
    from ilphttp.nodeconfig import NodeConfig

__all__ = ["check_shared_listen", "node_listeners"]


def node_listeners(
    node: NodeConfig, listen_flags: int = 0, metrics_where: str = "metrics"
) -> list[tuple[str, str]]:
    """Every endpoint the node listens on, each with the option that gives it (for
    :func:`~ilphttp.endpoint_check.check_distinct_listeners`).

    :param listen_flags: how many of ``node.listen`` (the last ones) are ``--listen`` flags.
    :param metrics_where: the option ``node.metrics`` comes from (``--metrics``).
    """
    first_flag = len(node.listen) - listen_flags
    listeners = [
        (f"listen[{i}]" if i < first_flag else "--listen", description)
        for i, description in enumerate(node.listen)
    ]
    for spec in node.accounts:
        incoming = spec.options.incoming
        own = None if incoming is None else incoming.listen_description
        if incoming is not None and own is not None:
            option = "endpoint" if incoming.endpoint is not None else "port"
            listeners.append((f"accounts.{spec.name}.options.incoming.{option}", own))
        listeners += [("--listen", description) for description in spec.extra_listen]
    if node.metrics is not None:
        listeners.append((metrics_where, node.metrics))
    return listeners


def check_shared_listen(node: NodeConfig, where: str = "listen") -> None:
    """The node-level listeners and the accounts they serve fit together.

    :raises OptionError: when accounts would be unreachable, a listener would
        serve nobody, or two accounts share a credential (a request could not
        tell them apart).
    """
    shared = node.shared_accounts()
    if shared and not node.listen:
        raise ConfigError(
            f"accounts.{shared[0].name}.options.incoming has no port or endpoint of its own,"
            ' and the node has no listen (e.g. "listen": ["tcp:8000:interface=127.0.0.1"])'
        )
    if node.listen and not shared:
        raise ConfigError(
            f"{where}: every account has a port of its own; give an account incoming"
            " options without port or endpoint to serve it on the node's listeners"
        )
    check_distinct_credentials(
        [(spec.name, spec.options.incoming) for spec in shared if spec.options.incoming]
    )
