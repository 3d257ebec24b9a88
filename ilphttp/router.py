"""The router: the data handler that ``twistd ilphttp`` runs by default.

:class:`Router` is the Twisted side of :mod:`ilphttp.routing`: a Service that
gives each account's :class:`~ilphttp.PluginHttp` its own data handler (so it
knows where a packet came from), learns our address from the parent over
IL-DCP when it is not configured, and moves packets between the plugins as
:meth:`ilphttp.routing.RoutingTable.decide` says.

It is a router, not a connector: no balances, no settlement, no exchange
rates; the amount is forwarded as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ilphttp import ildcp
from ilphttp.errors import NotConnectedError, RoutingError
from ilphttp.packet import ErrorCode, Prepare, Reject, Reply
from ilphttp.plugin import PrepareHandler, fetch_ildcp
from ilphttp.routing import AnswerIldcp, Forward, RouterConfig, RoutingTable

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from ilphttp.plugin import PluginHttp

__all__ = ["ILDCP_RETRY_FIRST", "ILDCP_RETRY_MAX", "Router"]

_log = Logger()

#: first and largest delay between IL-DCP attempts at the parent, seconds
ILDCP_RETRY_FIRST = 1.0
ILDCP_RETRY_MAX = 30.0


class Router(Service):
    """The routing data handler for every account's PluginHttp.

    Add it to the node's MultiService *after* the plugins: it registers one
    data handler per plugin, and, when our address is not configured, asks the
    parent over IL-DCP as soon as it starts (retrying with backoff).  Until the
    address is known, packets wait (each bounded by its own expiry).
    """

    def __init__(
        self,
        config: RouterConfig,
        plugins: Mapping[str, PluginHttp],
        reactor: IReactorTime | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        assert reactor is not None
        names = {a.name for a in config.accounts}
        if names != set(plugins):
            raise RoutingError(f"accounts {sorted(names)} and plugins {sorted(plugins)} differ")
        self.config = config
        self.plugins = dict(plugins)
        self._reactor = reactor
        self.table: RoutingTable | None = None
        self._waiting: list[Deferred[RoutingTable]] = []
        self._retry: IDelayedCall | None = None
        self._fetching: Deferred[ildcp.IldcpResponse] | None = None
        self._delay = ILDCP_RETRY_FIRST
        self._upstream = config.upstream()
        if self._upstream is None:
            self._set_table(config.table())
        for name, plugin in self.plugins.items():
            plugin.register_prepare_handler(self.handler_for(name))

    # -- life cycle ------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        if self.table is None:
            self._fetch()

    def stopService(self) -> None:
        Service.stopService(self)
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._fetching is not None:
            self._fetching.cancel()
            self._fetching = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(Failure(CancelledError("the router stopped")))

    # -- our address ---------------------------------------------------------------

    def _set_table(self, table: RoutingTable) -> None:
        self.table = table
        for plugin in self.plugins.values():
            if plugin.address is None:
                plugin.address = table.address
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(table)

    def _fetch(self) -> None:
        self._retry = None
        upstream = self._upstream
        assert upstream is not None
        parent = self.plugins[upstream]
        try:
            d = fetch_ildcp(parent.send_data)
        except Exception as exc:  # not connected yet, misuse
            self._failed(Failure(exc))
            return
        self._fetching = d

        def got(info: ildcp.IldcpResponse) -> None:
            self._fetching = None
            try:
                table = self.config.table(info)
            except RoutingError as exc:
                _log.critical(
                    "cannot route with {parent}'s IL-DCP answer: {e}", parent=upstream, e=exc
                )
                return
            c = self.config
            if (c.asset_code is not None and c.asset_code != info.asset_code) or (
                c.asset_scale is not None and c.asset_scale != info.asset_scale
            ):
                _log.warn(
                    "parent {parent} uses {code} scale {scale}; children are told"
                    " {ours} scale {our_scale} as configured (the router converts nothing)",
                    parent=upstream,
                    code=info.asset_code,
                    scale=info.asset_scale,
                    ours=table.asset_code,
                    our_scale=table.asset_scale,
                )
            _log.info(
                "our address is {address} (IL-DCP from {parent}), asset {code} scale {scale}",
                address=table.address,
                parent=upstream,
                code=table.asset_code,
                scale=table.asset_scale,
            )
            self._set_table(table)

        def failed(failure: Failure) -> None:
            self._fetching = None
            if failure.check(CancelledError) and not self.running:
                return
            self._failed(failure)

        d.addCallbacks(got, failed)

    def _failed(self, failure: Failure) -> None:
        if not self.running:
            return
        _log.warn(
            "IL-DCP from {parent} failed ({reason}); retrying in {delay:.0f} s",
            parent=self._upstream,
            reason=failure.getErrorMessage(),
            delay=self._delay,
        )
        self._retry = self._reactor.callLater(self._delay, self._fetch)
        self._delay = min(self._delay * 2, ILDCP_RETRY_MAX)

    def when_ready(self) -> Deferred[RoutingTable]:
        """Fires with the routing table once our address is known."""
        if self.table is not None:
            return succeed(self.table)

        def cancel(d: Deferred[RoutingTable]) -> None:
            if d in self._waiting:
                self._waiting.remove(d)

        d: Deferred[RoutingTable] = Deferred(cancel)
        self._waiting.append(d)
        return d

    # -- packets -------------------------------------------------------------------

    def handler_for(self, source: str) -> PrepareHandler:
        """The prepare handler for account ``source``'s plugin.

        The Prepare arrives parsed; it is forwarded with its own bytes unless
        the routing decision changed its expiry, and the reply comes back as
        the :class:`~ilphttp.packet.Reply` the next hop checked.
        """

        def handle(prepare: Prepare, data: bytes) -> Any:
            table = self.table
            if table is None:
                return self.when_ready().addCallback(self._route, source, prepare, data)
            return self._route(table, source, prepare, data)

        return handle

    def _route(
        self, table: RoutingTable, source: str, prepare: Prepare, data: bytes
    ) -> Reject | Reply | bytes | Deferred[Reply]:
        decision = table.decide(source, prepare, self._reactor.seconds())
        if isinstance(decision, Forward):
            forwarded = decision.prepare
            try:
                return self.plugins[decision.account].send_prepare(
                    forwarded, data if forwarded is prepare else None
                )
            except NotConnectedError:
                return Reject(
                    ErrorCode.T01_PEER_UNREACHABLE,
                    table.address,
                    f"account {decision.account} is not connected",
                )
        if isinstance(decision, AnswerIldcp):
            return ildcp.serve(prepare, decision.response)
        return table.reject(decision)
