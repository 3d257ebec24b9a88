"""One listener for many accounts, as rafiki, the Java connector and interledger-rs serve.

A node-level listener (``"listen"`` in the node file, ``--listen`` with
``--config``) serves every account that has no port of its own.  The account
of a request is found

- by its path, ``/accounts/{account}/ilp`` (the Java connector's and
  interledger-rs's route), and then its credential must be that account's; or
- by its credential alone on any other path (rafiki's rule,
  ``middleware/auth.ts``): every account's credentials are checked, each in
  constant time, and exactly one account must accept it.

Anything else is 401, with no hint of which accounts exist.  From there on
the account's own :class:`~ilphttp.server.IlpResource` answers, exactly as on
its own port (content type, size limit, ``ILP-Peer-Name`` for multi accounts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from ilphttp.errors import OptionError
from ilphttp.front import SharedDoor, account_in_path
from ilphttp.listener import ListenerMaker, default_reactor, make_listener
from ilphttp.server import DoorResource, IlpResource
from ilphttp.tls import server_endpoint_from_string

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint

__all__ = ["AccountsResource", "SharedListener", "account_in_path"]


class AccountsResource(DoorResource):
    """The resource of a shared listener: picks the account, then lets it answer
    (:class:`ilphttp.front.SharedDoor`'s rules).

    :param accounts: account name -> that account's resource.
    """

    def __init__(self, accounts: Mapping[str, IlpResource]) -> None:
        super().__init__(SharedDoor({name: r.door for name, r in accounts.items()}))


class SharedListener(Service):
    """A node-level listener: one endpoint serving many accounts through :class:`AccountsResource`.

    HTTP/1.1 and HTTP/2 (h2c, or ALPN on ``ssl:``) as on an account's own
    port.  A listen failure raises from :meth:`startService` (the node stops
    with one line naming this service); stopping closes the port and every
    open connection.

    :param endpoint: where to listen: an endpoint string (``tcp:8000:...``,
        ``ssl:...`` with ilphttp's TLS options) or an ``IStreamServerEndpoint``
        (a worker's adopted socket).
    :param accounts: account name -> that account's resource.
    """

    #: ``(door, clock) -> factory`` of the listening protocol (``ilphttp.listener``)
    listener_factory: ListenerMaker = staticmethod(make_listener)

    def __init__(
        self,
        endpoint: str | IStreamServerEndpoint,
        accounts: Mapping[str, IlpResource],
        reactor: Any = None,
    ) -> None:
        self._endpoint = endpoint
        if reactor is None:
            reactor = default_reactor()
        self._reactor = reactor
        self.resource = AccountsResource(accounts)
        self.tracker = self.listener_factory(self.resource.door, reactor)
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        Service.startService(self)
        endpoint = self._endpoint
        if isinstance(endpoint, str):
            try:
                endpoint = server_endpoint_from_string(self._reactor, endpoint)
            except (ValueError, KeyError, TypeError, OSError) as exc:  # OSError: a missing PEM
                raise OptionError(f"listen {self._endpoint!r} is invalid: {exc}") from None
        failures: list[Failure] = []
        endpoint.listen(self.tracker).addCallbacks(self._listening, failures.append)
        if failures:
            self.running = 0
            failures[0].raiseException()

    def _listening(self, port: IListeningPort) -> None:
        self.port = port

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        port, self.port = self.port, None
        stopped = maybeDeferred(port.stopListening) if port is not None else succeed(None)
        return stopped.addCallback(lambda _: self.tracker.close_all())
