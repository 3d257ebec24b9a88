"""ilphttp: Interledger (ILPv4) packets over HTTP, on Twisted.

The public API: :class:`PluginHttp` (the link), the packet codec in
:mod:`ilphttp.packet`, IL-DCP in :mod:`ilphttp.ildcp`, and test helpers in
:mod:`ilphttp.testing`.
"""

from __future__ import annotations

from ilphttp._version import __version__
from ilphttp.config import OptionError
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    InvalidPacketError,
    Prepare,
    Reject,
    deserialize,
    serialize,
)
from ilphttp.plugin import NotConnectedError, PluginHttp

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
