"""The node: every account's :class:`~ilphttp.PluginHttp` and the router, from a config.

This is the one place a node is assembled.  ``twistd ilphttp`` (:mod:`ilphttp.tap`)
turns flags or a file into a :class:`~ilphttp.nodeconfig.NodeConfig` and calls
:func:`make_node`; each worker of :mod:`ilphttp.workers` calls it too, with the
listening sockets it adopted.  Your own Twisted application may call it the
same way::

    from ilphttp.nodeconfig import load_file, parse_node
    from ilphttp.node import make_node

    node = make_node(parse_node(load_file("hub.json"), base_dir="."))
    node.setServiceParent(application)

Packets are routed by :class:`ilphttp.router.Router` unless a handler factory
is given: it is called once per account with a :class:`HandlerContext` and
returns that account's data handler.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger

from ilphttp import node_metrics
from ilphttp._compat import raise_listen_errors_synchronously
from ilphttp.config_file import ConfigFile
from ilphttp.drain import held
from ilphttp.errors import OptionError, StartupError
from ilphttp.listener import default_reactor, drain_listener, startup_error
from ilphttp.nodeconfig import SHARED_LISTEN, AccountSpec, NodeConfig
from ilphttp.plugin import DataHandler, PluginHttp
from ilphttp.reload import (
    DoorSwitch,
    ReloadSummary,
    apply_config,
    reload_file,
    switch_listeners,
)
from ilphttp.router import Router
from ilphttp.shared import SharedListener
from ilphttp.tls import server_service

__all__ = [
    "SHARED_LISTEN",
    "HandlerContext",
    "HandlerError",
    "HandlerFactory",
    "NodeService",
    "load_handler_factory",
    "make_node",
    "startup_error",
]

_log = Logger()
#: the reload's lines keep their namespace (docs/reload.rst)
_reload_log = Logger(namespace="ilphttp.reload")


class HandlerError(OptionError):
    """The ``--handler`` factory gave something that is not a data handler."""


@dataclass(frozen=True)
class HandlerContext:
    """What a handler factory (``twistd ilphttp --handler``) is called with, once per account.

    The factory returns that account's data handler,
    ``handler(prepare: bytes) -> bytes | Deferred[bytes]`` (a serialized
    Fulfill or Reject, or the :class:`~ilphttp.Fulfill`/:class:`~ilphttp.Reject`
    object), exactly as for :meth:`PluginHttp.register_data_handler`.

    :ivar account: the account's name (a key of the file's ``accounts``;
        ``"link"`` for a node built from flags).
    :ivar relation: ``"parent"``, ``"child"`` or ``"peer"``.
    :ivar plugin: this account's plugin.
    :ivar plugins: every account's plugin by name, to forward packets with
        ``plugins[name].send_data(prepare)``.
    :ivar node: the whole node's configuration.
    """

    account: str
    relation: str
    plugin: PluginHttp
    plugins: Mapping[str, PluginHttp]
    node: NodeConfig


#: ``factory(context) -> data handler``
HandlerFactory = Callable[[HandlerContext], DataHandler]


def load_handler_factory(spec: str) -> HandlerFactory:
    """Import ``pkg.module:callable`` (dots after the colon walk attributes).

    :raises OptionError: naming ``--handler`` and the reason.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise OptionError(f"--handler must be pkg.module:callable, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OptionError(f"--handler: cannot import {module_name}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise OptionError(f"--handler: {module_name} has no {attribute}") from None
    if not callable(target):
        raise OptionError(f"--handler: {spec} is not callable")
    factory: HandlerFactory = target
    return factory


class NodeService(MultiService):
    """The node: one PluginHttp per account (named after it), and the router or your handlers.

    A listening failure (port in use, bad endpoint) stops startup with one
    critical log line naming the account, not a traceback, and
    :class:`~ilphttp.errors.StartupError` (a ``SystemExit`` of status 1 whose
    text is that line).

    :ivar plugins: account name -> its plugin.
    :ivar router: the router, or None when a handler factory answers packets.
    :ivar config_file: where :meth:`reload` reads the configuration again
        (``twistd ilphttp --config`` sets it), or None.
    """

    def __init__(self, node: NodeConfig) -> None:
        MultiService.__init__(self)
        self.node = node
        self.plugins: dict[str, PluginHttp] = {}
        self.router: Router | None = None
        self.config_file: ConfigFile | None = None
        #: what make_node was given, to build the accounts a reload adds or changes
        self.reactor: Any = None
        self.handler_factory: HandlerFactory | None = None
        self.listeners: Mapping[str, Sequence[IStreamServerEndpoint]] | None = None
        #: the metrics registry every plugin records into and ``/metrics`` serves;
        #: a reload gives it to the plugins it builds, so their series continue
        self.registry: CollectorRegistry | None = None
        #: account -> the switch every listener of the account answers through
        self.doors: dict[str, DoorSwitch] = {}
        self.reloading = False

    def reload(self) -> Deferred[ReloadSummary]:
        """Read :attr:`config_file` again and apply it to the running node (``SIGHUP``).

        Fires with a :class:`~ilphttp.reload.ReloadSummary` once new packets
        use the new configuration; fails with
        :class:`~ilphttp.errors.OptionError` (the reason, also logged as one
        line) when the file cannot be read or applied, and then the running
        configuration stays, whole.  See docs/reload.rst.
        """
        if self.config_file is None:
            reason = "this node was not started from a config file (--config)"
            _reload_log.error(
                "reload refused, the running configuration stays: {reason}", reason=reason
            )
            return fail(OptionError(reason))
        return reload_file(self, self.config_file)

    def apply(self, config: NodeConfig) -> Deferred[ReloadSummary]:
        """Apply ``config`` to the running node, as :meth:`reload` does with the file's."""
        return apply_config(self, config)

    def attach_handler(self, spec: AccountSpec, plugin: PluginHttp, config: NodeConfig) -> None:
        """Register the handler factory's handler for ``spec``'s account on ``plugin``.

        :raises HandlerError: when the factory raises (one line: its error, not
            its traceback), or returns something not callable.
        """
        assert self.handler_factory is not None
        try:
            handler = self.handler_factory(
                HandlerContext(spec.name, spec.relation, plugin, self.plugins, config)
            )
        except Exception as exc:
            raise HandlerError(
                f"the handler factory raised {type(exc).__name__}: {exc} (account {spec.name})"
            ) from None
        if not callable(handler):
            raise HandlerError(
                f"the handler factory returned {type(handler).__name__}, not a callable"
                f" data handler (account {spec.name})"
            )
        plugin.register_data_handler(handler)

    def privilegedStartService(self) -> None:
        for service in self:
            self._guard(service, service.privilegedStartService)

    def startService(self) -> None:
        Service.startService(self)
        for ignored in self.node.ignored:
            _log.info("ignoring the ilp-connector setting {setting}", setting=ignored)
        for service in self:
            self._guard(service, service.startService)
        routing = self.node.routing
        if routing.address is not None:
            _log.info(
                "our address is {address}, asset {code} scale {scale}",
                address=routing.address,
                code=routing.asset_code if routing.asset_code is not None else "(from the parent)",
                scale=(
                    routing.asset_scale if routing.asset_scale is not None else "(from the parent)"
                ),
            )
        elif self.router is not None:
            _log.info("our address comes from the parent over IL-DCP")
        shared = self.node.shared_accounts()
        for spec in self.node.accounts:
            plugin = self.plugins.get(spec.name)
            listening = "send-only"
            if spec in shared:
                listening = f"on the node's listeners ({', '.join(self.node.listen)})"
            elif plugin is not None and plugin.port is not None:
                host = plugin.port.getHost()
                listening = f"listening on port {getattr(host, 'port', host)}"
            if spec.extra_listen:
                listening += f" (and {', '.join(spec.extra_listen)})"
            _log.info(
                "account {account}: {relation}{multi}, {listening}",
                account=spec.name,
                relation=spec.relation,
                multi=", multi" if spec.multi else "",
                listening=listening,
            )

    def stopService(self) -> Deferred[None]:
        """Drain, then stop: every listener first stops accepting and answers what it
        read (while every account can still send, so that packets read are
        forwarded), then the plugins stop (theirs in flight end) and the router.
        ``/metrics`` is served until the drain has ended.

        While an account's asynchronous Prepares (RFC 35) await their replies,
        every listener keeps taking reply POSTs first, for at most its grace
        period (they may come to any of them: a shared listener, an account's
        port); new Prepares get ``503`` meanwhile."""
        plugins = list(self.plugins.values())

        def hold() -> Deferred[None]:
            awaited = DeferredList([plugin.replies_awaited() for plugin in plugins])
            return awaited.addCallback(lambda _: None)

        draining = []
        for service in self:
            if isinstance(service, PluginHttp):
                draining.append(service.drain_incoming(hold))
            elif isinstance(service, SharedListener):
                draining.append(service.drain(hold))
            elif service.name == node_metrics.SERVICE_NAME:
                continue  # /metrics stays up while the rest drains, so the drain can be watched
            elif isinstance(service, StreamServerEndpointService):
                draining.append(_drain_extra(service, hold(), self.reactor or default_reactor()))
        drained = DeferredList(draining, consumeErrors=True)
        return drained.addCallback(lambda _: MultiService.stopService(self))

    def _guard(self, service: IService, start: Callable[[], object]) -> None:
        try:
            start()
        except (CannotListenError, OptionError) as exc:
            name = getattr(service, "name", None)
            if name in self.plugins:
                what = f"account {name!r}"
            else:
                what = f"listener {name!r}" if name else "a listener"
            message = startup_error(what, exc)
            _log.critical("{reason}", reason=message)
            raise StartupError(f"ilphttp: {message}") from None


def _drain_extra(
    service: StreamServerEndpointService, awaited: Deferred[None], clock: Any
) -> Deferred[None]:
    """An account's extra listener: once ``awaited`` fires (the replies to our
    asynchronous Prepares, which may come here) or the grace period passed,
    stop listening, drain its connections."""
    factory = service.factory
    grace = getattr(getattr(factory, "limits", None), "grace_period", 0.0)
    waited = held(awaited, clock, grace)
    stopped = waited.addCallback(lambda _: maybeDeferred(service.stopService))
    return stopped.addBoth(lambda _: drain_listener(None, factory, grace))


def make_node(
    config: NodeConfig,
    handler_factory: HandlerFactory | None = None,
    reactor: Any = None,
    listeners: Mapping[str, Sequence[IStreamServerEndpoint]] | None = None,
) -> NodeService:
    """The node's service for ``config``, not started.

    :param handler_factory: answers packets instead of the router (see
        :class:`HandlerContext`).
    :param reactor: the reactor (tests pass a Clock or MemoryReactor).
    :param listeners: account -> endpoints (its incoming one, then its extra
        ``--listen`` ones), replacing the accounts' endpoint strings, and
        :data:`~ilphttp.nodeconfig.SHARED_LISTEN` -> the node-level listeners' endpoints; a worker
        of :mod:`ilphttp.workers` passes its adopted sockets so.
    :raises OptionError: when the handler factory returns something that is
        not callable.
    """
    service = NodeService(config)
    service.reactor, service.handler_factory, service.listeners = (
        reactor,
        handler_factory,
        listeners,
    )
    registry = service.registry = node_metrics.node_registry()
    for spec in config.accounts:
        endpoints = None if listeners is None else listeners.get(spec.name)
        plugin = PluginHttp(
            options=spec.options,
            reactor=reactor,
            endpoint=endpoints[0] if endpoints else None,
            registry=registry,
        )
        plugin.setName(spec.name)
        if plugin.resource is not None:  # its listeners answer through a switch (reload)
            service.doors[spec.name] = switch_listeners(plugin, plugin.resource.door)
        plugin.setServiceParent(service)
        service.plugins[spec.name] = plugin
        for i, description in enumerate(spec.extra_listen):
            listener: Service
            if endpoints:
                listener = raise_listen_errors_synchronously(
                    StreamServerEndpointService(endpoints[i + 1], plugin.new_listener())
                )
            else:
                # ilphttp's ssl: parser: an encrypted key is refused, never prompted for
                listener = server_service(description, plugin.new_listener(), reactor)
            listener.setName(f"{spec.name}-listen-{i + 1}")
            listener.setServiceParent(service)
    resources = {}
    for spec in config.shared_accounts():
        resource = service.plugins[spec.name].resource
        assert resource is not None
        resources[spec.name] = resource
    shared_endpoints = None if listeners is None else listeners.get(SHARED_LISTEN)
    for i, description in enumerate(config.listen):
        shared = SharedListener(
            shared_endpoints[i] if shared_endpoints else description,
            resources,
            reactor,
            config.server_limits,
        )
        shared.setName(f"listen-{i + 1}")
        shared.setServiceParent(service)
    node_metrics.instrument(service, config, registry, reactor)
    if handler_factory is None:
        router = Router(config.routing, service.plugins, reactor)
        router.setName("router")
        router.setServiceParent(service)
        service.router = router
        for child in service:
            checks = getattr(child, "ready_checks", None)
            if checks is not None:
                checks.append(router.readiness)
        return service
    for spec in config.accounts:
        service.attach_handler(spec, service.plugins[spec.name], config)
    return service
