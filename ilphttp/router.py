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
from ilphttp.logtext import escape
from ilphttp.packet import MAX_ADDRESS_LENGTH, ErrorCode, Prepare, Reject, Reply
from ilphttp.plugin import PrepareHandler, fetch_ildcp
from ilphttp.routing import CHILD, AnswerIldcp, Forward, RouterConfig, RoutingTable

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from ilphttp.plugin import PluginHttp

__all__ = ["ILDCP_RETRY_FIRST", "ILDCP_RETRY_MAX", "Router"]

_log = Logger()

#: first and largest delay between IL-DCP attempts at the parent, seconds
ILDCP_RETRY_FIRST = 1.0
ILDCP_RETRY_MAX = 30.0


class _Unusable(Exception):
    """The parent's IL-DCP answer could not be used (the message says why)."""


class Router(Service):
    """The routing data handler for every account's PluginHttp.

    Add it to the node's MultiService *after* the plugins: it registers one
    data handler per plugin, and, when our address is not configured, asks the
    parent over IL-DCP as soon as it starts (retrying with backoff, also when
    the parent's answer cannot be used, e.g. it would make a child's address
    longer than RFC 15's 1,023 bytes).  Until the address is known, packets
    wait (each bounded by its own expiry); a child's IL-DCP request gets F00
    at once while the parent's last answer was unusable.
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
        #: children's IL-DCP requests waiting for our address
        self._waiting_ildcp: list[Deferred[RoutingTable]] = []
        #: why the parent's last IL-DCP answer could not be used (None: it could)
        self.unusable: str | None = None
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
        waiting, self._waiting = self._waiting + self._waiting_ildcp, []
        self._waiting_ildcp = []
        for d in waiting:
            d.errback(Failure(CancelledError("the router stopped")))

    def reconfigure(
        self,
        config: RouterConfig,
        plugins: Mapping[str, PluginHttp],
        table: RoutingTable | None,
    ) -> None:
        """Route new packets by ``config`` between ``plugins`` (a reload: :mod:`ilphttp.reload`).

        ``table`` is ``config``'s table with our current address (None while
        IL-DCP has not given one).  Packets already handed on finish as they began.
        """
        self.config, self.plugins = config, dict(plugins)
        for name, plugin in self.plugins.items():
            plugin.register_prepare_handler(self.handler_for(name))
        if table is not None:
            self._set_table(table)

    def readiness(self) -> str | None:
        """None once our address is known, else why not (the health check's ``503``)."""
        if self.table is None:
            return "starting: our address is not known yet (IL-DCP)"
        return None

    # -- our address ---------------------------------------------------------------

    def _set_table(self, table: RoutingTable) -> None:
        self.table = table
        self.unusable = None
        for plugin in self.plugins.values():
            if plugin.address is None:
                plugin.address = table.address
        waiting, self._waiting = self._waiting + self._waiting_ildcp, []
        self._waiting_ildcp = []
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
                self._unusable_answer(info, exc)
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
            reason=escape(failure.getErrorMessage()),
            delay=self._delay,
        )
        self._retry = self._reactor.callLater(self._delay, self._fetch)
        self._delay = min(self._delay * 2, ILDCP_RETRY_MAX)

    def _unusable_answer(self, info: ildcp.IldcpResponse, exc: RoutingError) -> None:
        """The parent answered, but we cannot route with it: say why, ask again later.

        Children's IL-DCP requests get F00 with the reason until an answer is
        usable (:attr:`unusable`); other Prepares keep waiting, each until it
        expires.
        """
        address = self.config.address or info.client_address
        why = f"{self._upstream}'s IL-DCP answer does not fit this node's accounts: {exc}"
        self.unusable = "our parent's IL-DCP answer does not fit this node's accounts"
        for account in self.config.accounts:
            if account.relation != CHILD or account.address is not None:
                continue
            segment = account.segment if account.segment is not None else account.name
            length = len(address) + 1 + len(segment)
            if length > MAX_ADDRESS_LENGTH:
                why = (
                    f"the address {self._upstream} gave us over IL-DCP ({len(address):,} bytes)"
                    f" makes child {account.name}'s address {length:,} bytes long, over the"
                    f" {MAX_ADDRESS_LENGTH:,} bytes RFC 15 allows"
                )
                self.unusable = (
                    f"the address our parent gave us ({len(address):,} bytes) leaves no room for"
                    f" children's addresses within the {MAX_ADDRESS_LENGTH:,} bytes RFC 15 allows"
                )
                break
        if self.running:
            _log.error(
                "cannot route: {why}; asking {parent} again in {delay:.0f} s",
                why=why,
                parent=self._upstream,
                delay=self._delay,
            )
            self._retry = self._reactor.callLater(self._delay, self._fetch)
            self._delay = min(self._delay * 2, ILDCP_RETRY_MAX)
        waiting, self._waiting_ildcp = self._waiting_ildcp, []
        for d in waiting:
            d.errback(Failure(_Unusable(self.unusable)))

    def when_ready(self) -> Deferred[RoutingTable]:
        """Fires with the routing table once our address is known."""
        return self._wait(self._waiting)

    def _wait(self, waiting: list[Deferred[RoutingTable]]) -> Deferred[RoutingTable]:
        if self.table is not None:
            return succeed(self.table)

        def cancel(d: Deferred[RoutingTable]) -> None:
            if d in waiting:
                waiting.remove(d)

        d: Deferred[RoutingTable] = Deferred(cancel)
        waiting.append(d)
        return d

    # -- packets -------------------------------------------------------------------

    def handler_for(self, source: str) -> PrepareHandler:
        """The prepare handler for account ``source``'s plugin.

        The Prepare arrives parsed; it is forwarded with its own bytes unless
        the routing decision changed its expiry, and the reply comes back as
        the :class:`~ilphttp.packet.Reply` the next hop checked.
        """

        is_child = any(a.name == source and a.relation == CHILD for a in self.config.accounts)

        def handle(prepare: Prepare, data: bytes, sender: str | None = None) -> Any:
            table = self.table
            if table is not None:
                return self._route(table, source, prepare, data, sender)
            if is_child and ildcp.is_ildcp_request(prepare):
                # A child asking for its address while we have none: F00 at
                # once when the parent's answer was unusable, else wait.
                if self.unusable is not None:
                    return self._no_address(self.unusable)
                return self._wait(self._waiting_ildcp).addCallbacks(
                    self._route,
                    self._no_address_yet,
                    callbackArgs=(source, prepare, data, sender),
                )
            return self.when_ready().addCallback(self._route, source, prepare, data, sender)

        return handle

    @staticmethod
    def _no_address(why: str) -> Reject:
        return Reject(ErrorCode.F00_BAD_REQUEST, "", f"no ILP address to give: {why}")

    def _no_address_yet(self, failure: Failure) -> Reject:
        failure.trap(_Unusable)
        return self._no_address(str(failure.value))

    def _route(
        self,
        table: RoutingTable,
        source: str,
        prepare: Prepare,
        data: bytes,
        sender: str | None = None,
    ) -> Reject | Reply | bytes | Deferred[Reply]:
        decision = table.decide(source, prepare, self._reactor.seconds(), sender)
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
