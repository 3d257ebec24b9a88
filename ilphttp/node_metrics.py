"""A node's metrics: one registry for all accounts, served at ``/metrics`` on its own listener.

:func:`make_node` creates the registry (:func:`node_registry`), gives it to
each :class:`~ilphttp.PluginHttp`, and then calls :func:`instrument`, which
counts the connections of the node's other listeners, logs packets when the
node's ``logLevel`` is ``debug``, and adds the ``/metrics`` listener
(``"metrics": "tcp:9464:interface=127.0.0.1"``, ``--metrics``) as the
service named ``metrics``.

With ``--workers N`` the parent serves the sum of the workers' metrics
(:mod:`ilphttp.worker_metrics`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from ilphttp.errors import OptionError
from ilphttp.front import SharedDoor
from ilphttp.link_ops import LinkOps, SharedDoorOps, count_connections
from ilphttp.metrics import metrics_for, metrics_root
from ilphttp.server import IlpSite
from ilphttp.shared import SharedListener
from ilphttp.tls import server_endpoint_from_string, server_service

if TYPE_CHECKING:
    from ilphttp.node import NodeService
    from ilphttp.nodeconfig import AccountSpec, NodeConfig

__all__ = [
    "SERVICE_NAME",
    "check_metrics",
    "forget_account",
    "instrument",
    "metrics_listener",
    "node_registry",
]
#: the name of the ``/metrics`` listener's service (and of its start-up errors)
SERVICE_NAME = "metrics"


def node_registry() -> CollectorRegistry:
    """A new registry for one node's accounts."""
    return CollectorRegistry()


def check_metrics(description: str) -> str:
    """``description`` when it parses as a server endpoint (nothing is opened).

    :raises OptionError: ``metrics '...' is invalid: <why>``.
    """
    try:
        # ilphttp's ssl: parser, which never asks for a key's passphrase (Twisted's would)
        server_endpoint_from_string(None, description)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise OptionError(f"metrics {description!r} is invalid: {exc}") from None
    return description


def metrics_listener(description: str, registry: CollectorRegistry, reactor: Any = None) -> Any:
    """A service serving ``registry`` at ``/metrics`` on the endpoint ``description``;
    a listen failure raises from ``startService``.  A scrape writes no access-log
    line (as the ILP listeners: :class:`~ilphttp.server.IlpSite`)."""
    site = IlpSite(metrics_root(registry))
    site.noisy = False
    try:
        service = server_service(description, site, reactor)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise OptionError(f"metrics {description!r} is invalid: {exc}") from None
    service.setName(SERVICE_NAME)
    return service


def instrument(
    service: NodeService, config: NodeConfig, registry: CollectorRegistry, reactor: Any = None
) -> None:
    """Count the connections of the node's extra and shared listeners, the shared
    listeners' unknown credentials, set packet logging, and add the ``/metrics``
    listener when ``config.metrics`` names one."""
    LinkOps.log_packets = config.log_level == "debug"
    for spec in config.accounts:
        service.plugins[spec.name].ops.metrics  # noqa: B018 -- series at zero from the start
        for i, description in enumerate(spec.extra_listen):
            extra: Any = service.getServiceNamed(f"{spec.name}-listen-{i + 1}")
            count_connections(extra.factory, description, registry)
    for i, description in enumerate(config.listen):
        shared = service.getServiceNamed(f"listen-{i + 1}")
        assert isinstance(shared, SharedListener)
        count_connections(shared.tracker, description, registry)
        door = shared.resource.door
        assert isinstance(door, SharedDoor)
        door.observer = SharedDoorOps(registry).answered
    if config.metrics is not None:
        metrics_listener(config.metrics, registry, reactor).setServiceParent(service)


def forget_account(service: NodeService, spec: AccountSpec) -> None:
    """``spec``'s account was removed by a reload and has drained: its series
    (every family labelled ``account``) leave ``/metrics``, and so do
    ``ilp_connections`` of its own and extra listeners when no listener of the
    running node has the same description.

    Nothing is removed when the account was added again meanwhile (its series
    are live again), nor in a worker of ``--workers N`` (prometheus-client's
    multiprocess files cannot drop one label set; the parent hides them
    instead, :mod:`ilphttp.worker_metrics`).
    """
    if service.registry is None or spec.name in service.plugins:
        return
    metrics = metrics_for(service.registry)
    if not metrics.forget_account(spec.name):
        return
    node = service.node
    in_use = set(node.listen)
    for other in node.accounts:
        in_use.update(other.extra_listen)
        if other.options.incoming is not None:
            in_use.add(other.options.incoming.listen_description or "")
    own = spec.options.incoming.listen_description if spec.options.incoming is not None else None
    for description in (own, *spec.extra_listen):
        if description and description not in in_use:
            metrics.forget_listener(description)
