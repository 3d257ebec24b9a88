"""ilphttp: Interledger (ILPv4) packets over HTTP, on Twisted.

The public API: :class:`PluginHttp` (the link), the packet codec in
:mod:`ilphttp.packet`, IL-DCP in :mod:`ilphttp.ildcp`, and test helpers in
:mod:`ilphttp.testing`.  ``import ilphttp`` loads no Twisted: the names that
need it (:class:`PluginHttp`) are imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ilphttp._version import __version__
from ilphttp.errors import NotConnectedError, OptionError
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    InvalidPacketError,
    Prepare,
    Reject,
    deserialize,
    serialize,
)

if TYPE_CHECKING:
    from ilphttp.plugin import PluginHttp

__all__ = [
    "ErrorCode",
    "Fulfill",
    "InvalidPacketError",
    "NotConnectedError",
    "OptionError",
    "PluginHttp",
    "Prepare",
    "Reject",
    "__version__",
    "deserialize",
    "serialize",
]


def __getattr__(name: str) -> Any:
    if name == "PluginHttp":
        from ilphttp.plugin import PluginHttp

        return PluginHttp
    raise AttributeError(f"module 'ilphttp' has no attribute {name!r}")
