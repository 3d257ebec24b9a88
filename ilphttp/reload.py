"""Reload without a restart: a running node takes a new configuration (``SIGHUP``).

:meth:`ilphttp.node.NodeService.reload` re-reads the node's file
(:class:`~ilphttp.config_file.ConfigFile`, the parser ``twistd ilphttp --config`` starts with) and
:func:`apply_config` applies it, from :func:`ilphttp.nodediff.diff_nodes`'s
answer, in three steps:

1. *prepare*: build the plugins of the added and changed accounts, their
   handlers and the new routing table; bind the listeners that are new (an
   added account's port, a changed port).  Any failure here (a file that
   does not parse, a setting that cannot change at run time, a port in use,
   a TLS file that cannot be read) refuses the reload: what was prepared is
   closed, and the running configuration stays, whole.
2. *switch*, in one reactor turn: new packets go to the new plugins and the
   new routing table.  A changed account whose listener stays keeps its
   listening port and its open connections: every listener of an account
   answers through a :class:`DoorSwitch`, and only the door behind it is
   swapped, so no connection is refused or closed, and the next request on a
   kept-alive connection is already checked against the new credentials.
3. *drain*: the replaced and removed plugins are stopped the way a stopping
   node stops (:meth:`PluginHttp.disconnect`): what they have in flight
   finishes with the settings it started with, then they close.  A removed
   account's own port stops listening at once, and the router has no route
   to it any more (new packets to it get the router's usual Reject).

``twistd ilphttp --config FILE`` installs :class:`ReloadOnHangup`, which
reloads on ``SIGHUP``.  See docs/reload.rst.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ilphttp.config_file import ConfigFile, OperationFlags
from ilphttp.endpoint_check import check_not_held
from ilphttp.errors import ConfigError, OptionError
from ilphttp.front import Answer, AnswerObserver, HeaderLookup, IdentityLookup, SharedDoor
from ilphttp.ildcp import IldcpResponse
from ilphttp.listener import startup_error
from ilphttp.node_listeners import node_listeners
from ilphttp.node_logs import apply_log_level, keep_log_format
from ilphttp.node_metrics import forget_account
from ilphttp.nodeconfig import NodeConfig
from ilphttp.nodediff import NodeChanges, diff_nodes, own_listener
from ilphttp.plugin import PluginHttp
from ilphttp.shared import SharedListener
from ilphttp.tls_files import fresh_server_tls, server_tls_of

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort, IProtocolFactory
    from twisted.internet.ssl import CertificateOptions

    from ilphttp.front import Door
    from ilphttp.listener import ListenerFactory
    from ilphttp.node import NodeService
    from ilphttp.nodeconfig import AccountSpec
    from ilphttp.routing import RoutingTable

__all__ = [
    "ConfigFile",
    "DoorSwitch",
    "OperationFlags",
    "ReloadOnHangup",
    "ReloadSummary",
    "apply_config",
    "on_hangup",
    "reload_file",
    "switch_listeners",
]

_log = Logger()

_STARTING = Answer(503, b"starting", headers=((b"retry-after", b"1"),))


class DoorSwitch:
    """A :class:`~ilphttp.front.Door` that hands each request to the door it is set to now.

    Every listener of an account answers through one switch, so that a reload
    can give the account a new plugin (:attr:`door`) without touching its
    port or its connections.  A request already handed on finishes with the
    door it was given.  Without a door it answers ``503`` (starting).
    """

    def __init__(self, door: Door | None = None) -> None:
        self.door = door

    def answer(
        self,
        method: bytes,
        path: bytes,
        header: HeaderLookup,
        body: bytes,
        identity: IdentityLookup,
    ) -> Answer | Deferred[Answer]:
        door = self.door
        if door is None:
            return _STARTING
        return door.answer(method, path, header, body, identity)

    @property
    def observer(self) -> AnswerObserver | None:
        """The observer of the door it is set to now, None without one: the
        listeners' own refusals (:func:`ilphttp.front.show_refusal`) are counted
        for the account the switch serves."""
        observer: AnswerObserver | None = getattr(self.door, "observer", None)
        return observer


def switch_listeners(plugin: PluginHttp, door: Door | None = None) -> DoorSwitch:
    """Make every listener ``plugin`` builds from now on answer through a new switch.

    :param door: where the switch points first (default: nowhere, ``503``).
    :returns: the switch; point it at ``plugin.resource.door`` to serve.
    """
    switch = DoorSwitch(door)
    maker = type(plugin).listener_factory  # the class's, which tests may swap

    def listener(ignored: Door, clock: Any) -> ListenerFactory:
        return maker(switch, clock)

    plugin.listener_factory = listener
    return switch


@implementer(IStreamServerEndpoint)
class _HandedOver:
    """The endpoint of a plugin that takes over its predecessor's listening port.

    :ivar fresh_tls: the TLS options read anew for it (an ``ssl:`` listener), which
        its :attr:`tls` hands out once it took over.
    """

    def __init__(self, fresh_tls: CertificateOptions | None = None) -> None:
        self.port: IListeningPort | None = None
        self.fresh_tls = fresh_tls
        self.tls: Any = None

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        assert self.port is not None, "the port is handed over before the plugin starts"
        return succeed(self.port)


def _take_over(old: PluginHttp, new: PluginHttp, endpoint: _HandedOver) -> None:
    """``new`` serves ``old``'s listening port and connections; ``old`` no longer closes them."""
    # PluginHttp.disconnect() stops its port and closes its listener's
    # connections: both now belong to the new plugin.
    port, listener = old.port, old._tracker
    old.port, old._tracker = None, None
    assert port is not None and listener is not None
    endpoint.port = port
    # Connections accepted from now on get the files as they are now; open ones keep theirs.
    endpoint.tls = server_tls_of(old.listening_endpoint)
    if endpoint.tls is not None and endpoint.fresh_tls is not None:
        endpoint.tls.swap(endpoint.fresh_tls)
    new.listener_factory = lambda door, clock: listener


@dataclass(frozen=True)
class ReloadSummary:
    """What a reload did.

    :ivar changes: the accounts added, removed and changed, and whether routing changed.
    :ivar drained: fires (with None) once the replaced and removed plugins
        have finished what they had in flight and closed.
    """

    changes: NodeChanges
    drained: Deferred[None] = field(compare=False, repr=False)

    def __str__(self) -> str:
        return self.changes.summary()


def _refused(reason: str) -> Deferred[ReloadSummary]:
    _log.error("reload refused, the running configuration stays: {reason}", reason=reason)
    return fail(ConfigError(reason))


def reload_file(service: NodeService, config_file: ConfigFile) -> Deferred[ReloadSummary]:
    """Read ``config_file`` again and :func:`apply_config` it (unparsable: refused)."""
    try:
        config = config_file.read()
    except OptionError as exc:
        return _refused(str(exc))
    return apply_config(service, config)


def _table_for(service: NodeService, new: NodeConfig) -> RoutingTable | None:
    """The router's table for ``new`` (None: our address is still being asked for)."""
    router = service.router
    if router is None or router.table is None:
        return None
    now = router.table
    return new.routing.table(IldcpResponse(now.address, now.asset_scale, now.asset_code))


def apply_config(service: NodeService, new: NodeConfig) -> Deferred[ReloadSummary]:
    """Make the running ``service`` run ``new`` (see the module docstring).

    :returns: a Deferred that fires with a :class:`ReloadSummary` once new
        packets use ``new``, or fails with :class:`~ilphttp.errors.OptionError`
        (the reason, also logged as one line) with the old configuration
        still fully in effect.
    """
    if service.reloading:
        return _refused("a reload is already under way")
    old = service.node
    try:
        changes = diff_nodes(old, new, listeners_fixed=service.listeners is not None)
    except OptionError as exc:
        return _refused(str(exc))
    try:
        _check_ports_free(service, new, changes)
    except OptionError as exc:
        return _refused(str(exc))
    new = keep_log_format(old, new)
    if not changes.links:
        service.node = new
        if changes.log_level:
            apply_log_level(service, changes.log_level)
        _log.info("reloaded: {summary}", summary=changes.summary())
        return succeed(ReloadSummary(changes, succeed(None)))
    specs = {spec.name: spec for spec in new.accounts}
    fresh: dict[str, PluginHttp] = {}
    switches: dict[str, DoorSwitch] = {}
    handed: dict[str, _HandedOver] = {}
    for name in (*changes.added, *changes.changed):
        spec = specs[name]
        endpoint = None
        try:
            if name in changes.changed and name not in changes.moved and own_listener(spec):
                endpoint = handed[name] = _HandedOver(fresh_server_tls(spec))
            # The node's registry: the account's series go on (a new one would
            # record where nothing is served).
            plugin = PluginHttp(
                options=spec.options,
                reactor=service.reactor,
                endpoint=endpoint,
                registry=service.registry,
            )
            plugin.setName(name)
            plugin.ops.metrics  # noqa: B018 -- an added account's series at zero from the start
            if spec.options.incoming is not None and name not in handed:
                switches[name] = switch_listeners(plugin)
            if service.router is None:
                service.attach_handler(spec, plugin, new)
        except OptionError as exc:
            return _refused(f"account {name}: {exc}")
        except Exception as exc:  # a --handler factory that failed
            return _refused(f"account {name}: the handler factory failed: {exc!r}")
        fresh[name] = plugin
    try:
        table = _table_for(service, new)
    except OptionError as exc:
        return _refused(str(exc))
    # Bind the new listeners before anything switches.
    service.reloading = True
    binding = [
        _bind(name, plugin)
        for name, plugin in fresh.items()
        if name not in handed and own_listener(specs[name])
    ]
    d = gatherResults(binding, consumeErrors=True)

    def bound(_: object) -> ReloadSummary:
        service.reloading = False
        return _switch(service, new, changes, fresh, switches, handed, table)

    def not_bound(failure: Failure) -> Deferred[ReloadSummary]:
        service.reloading = False
        for plugin in fresh.values():
            plugin.disconnect()
        first = getattr(failure.value, "subFailure", failure)
        return _refused(first.getErrorMessage())

    return d.addCallbacks(bound, not_bound)


def _check_ports_free(service: NodeService, new: NodeConfig, changes: NodeChanges) -> None:
    """The ports a reload binds (added and moved accounts') are not held by the
    running configuration, which releases its ports only after the switch.

    :raises OptionError: ``account b: accounts.b.options.incoming.endpoint ... would
        listen on port 8334 of 127.0.0.1, which the running configuration's ... still holds``.
    """
    config_file = service.config_file
    flags = 0 if config_file is None else len(config_file.listen_flags)
    metrics_flag = config_file is not None and config_file.operation_flags.metrics is not None
    held = node_listeners(
        service.node, flags, metrics_where="--metrics" if metrics_flag else "metrics"
    )
    binding = {*changes.added, *changes.moved}
    for name in (spec.name for spec in new.accounts if spec.name in binding):
        own = [(w, d) for w, d in node_listeners(new) if w.startswith(f"accounts.{name}.")]
        try:
            check_not_held(own, held)
        except OptionError as exc:
            raise OptionError(f"account {name}: {exc}") from None


def _bind(name: str, plugin: PluginHttp) -> Deferred[None]:
    """Start ``plugin``, which listens on a new port; a failure names the account."""

    def failed(failure: Failure) -> Failure:
        if failure.check(CannotListenError):  # one line as at start, not Twisted's text
            assert isinstance(failure.value, CannotListenError)
            return Failure(ConfigError(startup_error(f"account {name}", failure.value)))
        return Failure(ConfigError(f"account {name}: {failure.getErrorMessage()}"))

    return plugin.connect().addErrback(failed)


def _switch(
    service: NodeService,
    new: NodeConfig,
    changes: NodeChanges,
    fresh: dict[str, PluginHttp],
    switches: dict[str, DoorSwitch],
    handed: dict[str, _HandedOver],
    table: RoutingTable | None,
) -> ReloadSummary:
    """Step 2 and the start of step 3: synchronous, so no request sees half of it."""
    leaving = [service.plugins[name] for name in (*changes.removed, *changes.changed)]
    for name, endpoint in handed.items():
        _take_over(service.plugins[name], fresh[name], endpoint)
    for name in changes.changed:
        # The peer's replies to the old plugin's asynchronous Prepares come to
        # the account's listener, which answers through the new plugin now.
        fresh[name].take_over_replies(service.plugins[name])
    removed = {spec.name: spec for spec in service.node.accounts if spec.name in changes.removed}
    stopping: list[tuple[str, PluginHttp, Any]] = []
    for name, plugin in zip((*changes.removed, *changes.changed), leaving):
        stopping.append((name, plugin, plugin.disownServiceParent()))
        del service.plugins[name]
    draining: list[Deferred[Any]] = [
        succeed(extra.disownServiceParent())
        for extra in [s for s in service if _extra_listener_of(s, changes.removed)]
    ]
    for name in changes.removed:
        service.doors.pop(name, None)
    for name, plugin in fresh.items():
        service.plugins[name] = plugin
        plugin.setServiceParent(service)  # starts it (again: a no-op if bound already)
        door = plugin.resource.door if plugin.resource is not None else None
        if name in switches:
            if name in service.doors:  # the old port's kept-alive connections, extra listeners
                service.doors[name].door = door
            service.doors[name] = switches[name]
        if name in service.doors:
            service.doors[name].door = door
    shared = {
        spec.name: resource.door
        for spec in new.shared_accounts()
        if (resource := service.plugins[spec.name].resource) is not None
    }
    for listener in service:
        if isinstance(listener, SharedListener):
            shared_door = listener.resource.door
            assert isinstance(shared_door, SharedDoor)
            shared_door.update(shared)
    if service.router is not None:
        service.router.reconfigure(new.routing, service.plugins, table)
    service.node = new
    if changes.log_level:
        apply_log_level(service, changes.log_level)
    _log.info("reloaded: {summary}", summary=changes.summary())
    # Only now: a link with nothing in flight has drained already, and its line
    # (and a removed account's series leaving /metrics) follows the summary.
    for name, plugin, stopped in stopping:
        drained_one = _drained(plugin, stopped)
        if name in removed:  # its series leave /metrics once nothing records them
            drained_one.addCallback(_forget, service, removed[name])
        draining.append(drained_one)
    drained = DeferredList(draining, consumeErrors=True).addCallback(lambda _: None)
    return ReloadSummary(changes, drained)


def _forget(ignored: None, service: NodeService, spec: AccountSpec) -> None:
    forget_account(service, spec)


def _extra_listener_of(service: Any, removed: tuple[str, ...]) -> bool:
    name = getattr(service, "name", None) or ""
    return any(name.startswith(f"{account}-listen-") for account in removed)


def _drained(plugin: PluginHttp, stopped: Any) -> Deferred[None]:
    def done(_: object) -> None:
        _log.info("account {account}: the previous link drained", account=plugin.name)

    d: Deferred[None] = stopped if isinstance(stopped, Deferred) else succeed(None)
    return d.addCallback(done)


# -- SIGHUP ----------------------------------------------------------------------------


def on_hangup(callback: Callable[[], object], reactor: Any) -> Callable[[], None]:
    """Call ``callback()`` in the reactor thread on each ``SIGHUP``; returns the undo.

    Where there is no ``SIGHUP`` (Windows) nothing is installed.
    """
    number = getattr(signal, "SIGHUP", None)
    if number is None:
        return lambda: None

    def signalled(signum: int, frame: Any) -> None:
        reactor.callFromThread(callback)

    previous = signal.signal(number, signalled)

    def undo() -> None:
        signal.signal(number, previous)

    return undo


class ReloadOnHangup(Service):
    """Reloads ``target`` (``target.reload()``) on each ``SIGHUP`` while running.

    ``twistd ilphttp --config FILE`` adds one to the node (and the parent of
    ``--workers N`` does the same for its workers).  The outcome is logged by
    the reload itself.
    """

    name = "reload-on-sighup"

    def __init__(self, target: Any, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default

            reactor = default
        self.target = target
        self._reactor = reactor
        self._undo: Callable[[], None] | None = None

    def startService(self) -> None:
        Service.startService(self)
        self._undo = on_hangup(self.hangup, self._reactor)

    def stopService(self) -> None:
        Service.stopService(self)
        if self._undo is not None:
            self._undo()
            self._undo = None

    def hangup(self) -> Deferred[Any]:
        """What ``SIGHUP`` does: log it, reload; a refusal was logged already."""
        _log.info("SIGHUP: reloading the configuration")
        d: Deferred[Any] = self.target.reload()

        def refused(failure: Failure) -> None:
            failure.trap(OptionError)  # logged by the reload, as one line

        return d.addErrback(refused)
