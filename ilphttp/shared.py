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
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ilphttp.drain import Drain, Hold
from ilphttp.errors import OptionError
from ilphttp.front import SharedDoor, account_in_path
from ilphttp.listener import ListenerMaker, default_reactor, make_listener, set_limits
from ilphttp.server import DoorResource, IlpResource
from ilphttp.server_limits import DEFAULT_LIMITS, ServerLimits
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
    with one line naming this service); stopping drains it (:meth:`drain`).
    Its health check answers ``503`` before it starts, while it drains, and
    while one of :attr:`ready_checks` gives a reason.

    :param endpoint: where to listen: an endpoint string (``tcp:8000:...``,
        ``ssl:...`` with ilphttp's TLS options) or an ``IStreamServerEndpoint``
        (a worker's adopted socket).
    :param accounts: account name -> that account's resource.
    :param limits: the listener's limits and drain grace (the node file's ``server``).
    """

    #: ``(door, clock) -> factory`` of the listening protocol (``ilphttp.listener``)
    listener_factory: ListenerMaker = staticmethod(make_listener)

    def __init__(
        self,
        endpoint: str | IStreamServerEndpoint,
        accounts: Mapping[str, IlpResource],
        reactor: Any = None,
        limits: ServerLimits = DEFAULT_LIMITS,
    ) -> None:
        self._endpoint = endpoint
        if reactor is None:
            reactor = default_reactor()
        self._reactor = reactor
        self.resource = AccountsResource(accounts)
        self.tracker = self.listener_factory(self.resource.door, reactor)
        set_limits(self.tracker, limits)
        self.limits = limits
        self.port: IListeningPort | None = None
        self._drain = Drain()
        #: more reasons not to be ready (``check() -> str | None``): the node's IL-DCP
        self.ready_checks = self._drain.checks
        door = self.resource.door
        assert isinstance(door, SharedDoor)
        door.readiness = self.readiness

    def readiness(self) -> str | None:
        """None when ready, else why not (the health check's ``503`` body)."""
        return self._drain.readiness(bool(self.running))

    def drain(self, hold: Hold | None = None) -> Deferred[None]:
        """Stop accepting at once, answer what was read, close within the grace period
        (:meth:`ilphttp.listener.IlpListener.drain`); fire when every connection is closed.

        :param hold: ``hold() -> Deferred`` firing once none of the node's
            asynchronous Prepares awaits its reply (RFC 35: replies come here):
            until then, for at most the grace period, it keeps listening first
            (:class:`~ilphttp.drain.Drain`).
        """
        port, self.port = self.port, None
        grace = self.limits.grace_period
        return self._drain.start(port, self.tracker, grace, hold, self._reactor)

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
        drained = self.drain()
        Service.stopService(self)

        def closed(_: object) -> Deferred[None]:
            self._drain.reset()
            return self.tracker.close_all()

        return drained.addCallback(closed)
