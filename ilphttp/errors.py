"""The exceptions ilphttp raises to its callers (pure: no Twisted).

Packet errors live with the codec (:class:`ilphttp.packet.InvalidPacketError`);
peer failures are never exceptions but ILP Rejects (``docs/errors.rst``).
"""

from __future__ import annotations

__all__ = ["ConfigError", "NotConnectedError", "OptionError", "RoutingError"]


class OptionError(ValueError):
    """An option or setting is missing, unknown, of the wrong type, or contradicts another.

    One type for every layer: plugin options, the node's config file, routing
    rules and ``twistd ilphttp`` flags.  The message names the option as the
    user wrote it (``outgoing.staticToken``, ``accounts.bob.relation``,
    ``--outgoing-url``).
    """


#: The node config file's name for :class:`OptionError` (kept for existing callers).
ConfigError = OptionError
#: The routing table's name for :class:`OptionError` (kept for existing callers).
RoutingError = OptionError


class NotConnectedError(Exception):
    """``send_data()`` was called while the plugin is not connected."""
