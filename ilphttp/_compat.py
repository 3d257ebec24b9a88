"""Every use of private Twisted API, in one place, each checked by tests/test_compat.py.

Twisted gives no public way to do these things; each is small, and each has a
test that fails loudly (naming the attribute) when a Twisted release changes
it, so an upgrade breaks the suite and not a running node.  The lowest and the
newest supported Twisted both run that suite (tox envs ``lowest`` and ``tests``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.web import _newclient

__all__ = [
    "h2_stream_connection",
    "raise_listen_errors_synchronously",
    "request_disconnected",
    "ssl_context_factory",
    "wrapped_reasons",
    "write_now",
]


def wrapped_reasons(exc: BaseException | None) -> list[Any] | None:
    """The Failures inside one of ``_newclient``'s wrapper exceptions, else None.

    ``ResponseFailed``, ``RequestTransmissionFailed`` and ``ResponseNeverReceived``
    derive from the private ``_WrapperException`` that holds ``reasons``.
    """
    if isinstance(exc, _newclient._WrapperException):
        return list(exc.reasons)
    return None


def request_disconnected(request: Any) -> bool:
    """True once a twisted.web ``Request``'s connection is gone (``request._disconnected``)."""
    return bool(request._disconnected)


def raise_listen_errors_synchronously(service: Any) -> Any:
    """A ``StreamServerEndpointService`` whose listen failure raises from ``startService``.

    Without it the failure is only logged and twistd runs on without the port
    (``_raiseSynchronously``, which ``twistd``'s own strports use).
    """
    service._raiseSynchronously = True
    return service


def ssl_context_factory(endpoint: Any) -> Any:
    """The TLS context factory of an ``SSL4ServerEndpoint`` (``_sslContextFactory``)."""
    return endpoint._sslContextFactory


def h2_stream_connection(channel: Any) -> Any:
    """The ``H2Connection`` behind a twisted.web HTTP/2 request channel, or None.

    A request over HTTP/2 has an ``H2Stream`` as its channel; its private
    ``_conn`` holds the connection (and so the TLS transport).
    """
    return getattr(channel, "_conn", None)


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, but sent at once when a TCP socket has nothing queued.

    Twisted only queues what ``write`` is given and sends it when the reactor
    next finds the socket writable: per answer, two ``epoll_ctl`` calls and a
    reactor turn, about a third of a small request's cost.  A plain TCP
    connection (``tcp.Connection``) whose buffer is empty (``dataBuffer``,
    ``offset``, ``_tempDataLen``) gets ``writeSomeData`` now, as asyncio's
    transports do; whatever the socket does not take, and every other
    transport (TLS, tests' StringTransport), goes through ``write`` as usual.
    """
    if (
        type(transport) in _DIRECT
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent >= 0:
            if sent == len(data):
                return
            data = data[sent:]
        # else an error: write() queues it and the reactor reports the loss as usual
    transport.write(data)


_DIRECT = (tcp.Server, tcp.Client)
