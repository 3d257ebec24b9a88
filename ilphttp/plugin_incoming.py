"""A plugin's incoming Prepares: the :class:`~ilphttp.front.PacketReceiver` its doors call.

Split out of :mod:`ilphttp.plugin`: the mixin :class:`PluginIncoming` gives
:class:`~ilphttp.PluginHttp` ``receive_prepare``: the account's limits and
metrics first (:meth:`ilphttp.link_ops.LinkOps.incoming`), then the plugin's
own refusals (closed, draining, no handler, over capacity), the Prepare's
expiry, a child's IL-DCP request in multi mode, and the registered handler.
A handler that answers within its call is answered without a Deferred.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred

from ilphttp import ildcp
from ilphttp.front import NotReady, OverCapacity
from ilphttp.packet import ErrorCode, Prepare

if TYPE_CHECKING:
    from ilphttp.config import PluginOptions
    from ilphttp.drain import Drain
    from ilphttp.handlers import RegisteredHandler
    from ilphttp.link_ops import LinkOps

__all__ = ["PluginIncoming"]


class PluginIncoming:
    """A mixin: ``receive_prepare`` (the door's receiver)."""

    options: PluginOptions
    ops: LinkOps
    _connected: bool
    _drain: Drain
    _handler: RegisteredHandler
    _max_in_flight: int
    _reactor: Any
    _reject: Callable[[str, str], bytes]
    _serve_ildcp: Callable[[Prepare, bytes | None, float], Deferred[bytes]]
    _track: Callable[[Deferred[Any]], Deferred[Any]]

    def receive_prepare(
        self, body: bytes, prepare: Prepare, peer_name: bytes | None
    ) -> bytes | Deferred[bytes]:
        """Called by the resource for each authorized, valid Prepare (limits first);
        the reply's bytes when it is known at once (a synchronous handler), else a
        Deferred that never fails.

        :raises NotReady: closed, or no handler registered (HTTP 502).
        :raises OverCapacity: draining, or ``incoming.max_in_flight`` reached (HTTP 503).
        """
        return self.ops.incoming(prepare, lambda: self._receive(body, prepare, peer_name))

    def _receive(
        self, body: bytes, prepare: Prepare, peer_name: bytes | None
    ) -> bytes | Deferred[bytes]:
        if not self._connected and not self._drain.draining:
            raise NotReady("server is closed")
        if self._drain.holding:
            # Draining: the listener stays open only for the replies to our
            # asynchronous Prepares.
            raise OverCapacity("draining")
        serve_ildcp = self.options.multi and ildcp.is_ildcp_request(prepare)
        if not serve_ildcp and not self._handler.registered:
            raise NotReady("no handler registered.")
        # One expiry rule for every Prepare, IL-DCP requests included.
        delay = prepare.expires_at.timestamp() - self._reactor.seconds()
        if delay <= 0:
            return self._reject(ErrorCode.R00_TRANSFER_TIMED_OUT, "prepare has expired")
        if serve_ildcp:
            return self._serve_ildcp(prepare, peer_name, delay)
        if self._handler.pending >= self._max_in_flight:
            raise OverCapacity("over capacity")
        sender = None
        if self.options.multi and peer_name is not None:
            sender = peer_name.decode("latin-1")
        reply = self._handler.answer(prepare, body, delay, sender)
        return reply if isinstance(reply, bytes) else self._track(reply)
