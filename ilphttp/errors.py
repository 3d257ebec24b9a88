"""The exceptions ilphttp raises to its callers (pure: no Twisted).

Packet errors live with the codec (:class:`ilphttp.packet.InvalidPacketError`);
peer failures are never exceptions but ILP Rejects (``docs/errors.rst``).
"""

from __future__ import annotations

__all__ = ["ConfigError", "NotConnectedError", "OptionError", "RoutingError", "StartupError"]


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


class StartupError(SystemExit):
    """A service of the node cannot start (a port in use, an unreadable TLS file).

    It stops twistd with exit status 1 (:attr:`code` is 1) and without a
    second line: the reason was logged already, once, at ``critical``.
    ``str(exc)`` is that reason, ``"ilphttp: cannot start account 'a': ..."``,
    for an application that starts the node itself.  (A ``SystemExit``
    carrying a message would have Python print it to stderr again, which
    twistd logs as a second line.)
    """

    def __init__(self, message: str) -> None:
        SystemExit.__init__(self, 1)
        #: the reason, one line
        self.message = message

    def __str__(self) -> str:
        return self.message
