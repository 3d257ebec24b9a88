"""A plugin's own IL-DCP (multi mode without ``ildcp``): fetched once, served to children.

Split out of :mod:`ilphttp.plugin`: the mixin :class:`PluginIldcp` gives
:class:`~ilphttp.PluginHttp` its IL-DCP fetch through its own data handler
(the parent's answer, RFC 31), the answers to its children's IL-DCP requests,
and the health check's ``starting`` until the address is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, fail

from ilphttp import ildcp
from ilphttp.handlers import (
    RegisteredHandler,
    SharedFetch,
    answer_child_ildcp,
    as_bytes,
    fetch_ildcp,
)
from ilphttp.packet import Prepare, deserialize_prepare

if TYPE_CHECKING:
    from ilphttp.config import PluginOptions
    from ilphttp.multi import ChildUrlTemplate

__all__ = ["PluginIldcp"]


class PluginIldcp:
    """A mixin: ``_get_ildcp``, ``_serve_ildcp`` and ``_ildcp_unknown``."""

    options: PluginOptions
    address: str | None
    _ildcp: SharedFetch[ildcp.IldcpResponse]
    _handler: RegisteredHandler
    _child_urls: ChildUrlTemplate | None
    _reactor: Any
    _reject: Callable[[str, str], bytes]

    def _ildcp_unknown(self) -> bool:
        """Multi mode, IL-DCP still unknown (its fetch started now): the health check's 503."""
        if not self.options.multi or self._ildcp.value is not None:
            return False
        if not self._handler.registered:
            return False  # nothing to ask; its packets are 502 anyway
        self._get_ildcp().addErrback(lambda _: None)
        return self._ildcp.value is None

    def _get_ildcp(self) -> Deferred[ildcp.IldcpResponse]:
        if self._ildcp.value is None and not self._handler.registered:
            return fail(ildcp.IldcpError("data handler must be registered to fetch IL-DCP"))
        return self._ildcp.get(self._fetch_own_ildcp)

    def _fetch_own_ildcp(self) -> Deferred[ildcp.IldcpResponse]:
        def learned(info: ildcp.IldcpResponse) -> ildcp.IldcpResponse:
            if self.address is None:
                self.address = info.client_address
            return info

        return fetch_ildcp(self._handle).addCallback(learned)

    def _handle(self, data: bytes) -> Deferred[bytes]:
        """Our own handler, for our own IL-DCP request (multi mode without ``ildcp``)."""
        try:
            d = self._handler.call(deserialize_prepare(data), data)
        except ildcp.IldcpError as exc:
            return fail(exc)
        return d.addCallback(as_bytes)

    def _serve_ildcp(
        self, prepare: Prepare, peer_name: bytes | None, delay: float
    ) -> Deferred[bytes]:
        """Answer a child's IL-DCP request (multi mode) within ``delay`` seconds (R00 after)."""
        name = "" if peer_name is None else peer_name.decode("latin-1")
        return answer_child_ildcp(
            self._get_ildcp, prepare, name, self._child_urls, self._reject, self._reactor, delay
        )
