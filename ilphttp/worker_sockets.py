"""The listening sockets of ``--workers N``: which listeners can be shared, and opening them.

:func:`listeners_of` turns every account's endpoint strings into
:class:`~ilphttp.worker_setup.Listener` values (``tcp:``, ``tcp6:`` and
``ssl:`` only; ``ssl:`` certificates are loaded once here, so a bad one stops
start-up in the parent).  :func:`open_sockets` binds them in the parent: on
Linux one socket per worker with ``SO_REUSEPORT``, so the kernel spreads new
connections evenly, else one socket all workers share.
"""

from __future__ import annotations

import os
import socket
import sys

from twisted.internet.error import CannotListenError

from ilphttp.errors import ConfigError
from ilphttp.nodeconfig import SHARED_LISTEN, NodeConfig
from ilphttp.tls import server_endpoint_from_string, split_endpoint
from ilphttp.worker_setup import Listener

__all__ = ["listeners_of", "open_sockets", "parse_listener", "reuse_port_available"]

_KINDS = ("tcp", "tcp6", "ssl")


def parse_listener(account: str, index: int, description: str, flag: bool = False) -> Listener:
    """A :class:`Listener` from an endpoint string.

    :param account: the account the endpoint serves.
    :param index: 0 for the account's incoming endpoint, 1, 2, ... for its
        extra ``--listen`` ones.
    :param flag: it comes from ``--listen``/``--port`` (the message names ``--listen``).
    :raises ConfigError: if worker processes cannot share the endpoint (not
        ``tcp:``, ``tcp6:`` or ``ssl:``, unknown options, a bad port or
        backlog, certificates that do not load).
    """
    args, kwargs = split_endpoint(description)
    kind = args[0].strip().lower() if args else ""
    if flag:
        where = f"--listen {description!r}"
    elif account:
        where = f"account {account}: listener {description!r}"
    else:
        where = f"listen {description!r}"
    if kind not in _KINDS:
        raise ConfigError(
            f"{where}: several worker processes can share tcp:, tcp6: and ssl: listeners"
            " only (use one process, --workers 1, for other endpoints)"
        )
    positional = args[1:]
    if len(positional) > 1:
        raise ConfigError(f"{where}: unexpected positional arguments")
    port_text = kwargs.pop("port", positional[0] if positional else None)
    interface = kwargs.pop("interface", "")
    backlog_text = kwargs.pop("backlog", "50")
    if kind == "ssl":
        try:
            server_endpoint_from_string(None, description)  # the certificates load
        except Exception as exc:
            raise ConfigError(f"{where} is invalid: {exc}") from None
    elif kwargs:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(kwargs))}")
    try:
        port = int(port_text or "", 10)
        backlog = int(backlog_text, 10)
    except ValueError:
        raise ConfigError(f"{where}: the port and backlog must be integers") from None
    if not 0 <= port <= 65535 or backlog < 1:
        raise ConfigError(f"{where}: port out of range or backlog below 1")
    return Listener(account, index, description, kind, port, interface, backlog)


def listeners_of(
    node: NodeConfig, listen_flags: int = 0, accounts_from_flags: bool = False
) -> list[Listener]:
    """Every listener of every account, in order (accounts without one are skipped).

    :param listen_flags: how many of ``node.listen`` (the last ones) are
        ``--listen``/``--port`` flags (``--config`` with ``--listen``), for the message.
    :param accounts_from_flags: the accounts' listeners are ``--listen`` flags
        (one link from flags), for the message.
    :raises ConfigError: if one cannot be shared (see :func:`parse_listener`).
    """
    first_flag = len(node.listen) - listen_flags
    listeners = [
        parse_listener(SHARED_LISTEN, index, description, flag=index >= first_flag)
        for index, description in enumerate(node.listen)
    ]
    for spec in node.accounts:
        incoming = spec.options.incoming
        main = None if incoming is None else incoming.listen_description
        if main is None:
            continue
        for index, description in enumerate((main, *spec.extra_listen)):
            listeners.append(
                parse_listener(spec.name, index, description, flag=accounts_from_flags)
            )
    return listeners


def reuse_port_available() -> bool:
    """True where SO_REUSEPORT spreads connections over sockets (Linux 3.9+)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _listening_socket(listener: Listener, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(listener.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's tcp.Port
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((listener.bind_address[0], port))
        sock.listen(listener.backlog)
        sock.setblocking(False)
        os.set_inheritable(sock.fileno(), True)
    except BaseException:
        sock.close()
        raise
    return sock


def open_sockets(listener: Listener, count: int, reuse_port: bool) -> list[socket.socket]:
    """The listening sockets of ``listener``: ``count`` of them with SO_REUSEPORT, else one.

    They are non-blocking and inheritable (for ``spawnProcess``'s ``childFDs``).
    With SO_REUSEPORT, a first bind without it checks that nobody else has
    the port (a stray process with SO_REUSEPORT would otherwise silently get
    a share of the connections) and resolves port 0.

    :raises CannotListenError: if a bind fails; no socket is left open.
    """
    sockets: list[socket.socket] = []
    port = listener.port
    try:
        if reuse_port:
            probe = socket.socket(listener.family, socket.SOCK_STREAM)
            with probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(listener.bind_address)
                probe.listen(1)
                port = probe.getsockname()[1]
        for _ in range(count if reuse_port else 1):
            sock = _listening_socket(listener, port, reuse_port)
            sockets.append(sock)
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CannotListenError(listener.interface, listener.port, exc) from None
    return sockets
