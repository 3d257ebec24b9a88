"""One account's operations around its packets: limits, metrics and packet log events.

:class:`LinkOps` is what :class:`~ilphttp.PluginHttp` calls at each step of a
packet, so that the plugin only says *when* and this module says *what*:

- an incoming Prepare (:meth:`LinkOps.incoming`): the account's limits
  (:mod:`ilphttp.limits`) answer ``T05``/``F08``/``T04`` before the handler is
  called, with our address as ``triggered_by``; then the packet is timed and
  counted by its reply (:mod:`ilphttp.metrics`);
- an outgoing Prepare (:meth:`LinkOps.outgoing`): the outgoing throughput
  limit, then the same timing and counting;
- every HTTP answer a front door gives (:meth:`LinkOps.answered`, HTTP 401
  also counted as an authentication failure) and every status a peer gives
  us (:meth:`LinkOps.http_status`);
- the open connections of each listener (:func:`count_connections`).

Packet events are logged at debug level, with ``event="packet"``,
``account``, ``direction``, ``result``, ``code``, ``destination``, ``amount``
and ``duration_ms``, when :attr:`LinkOps.log_packets` is true (the node sets
it for ``logLevel: debug``); otherwise they cost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Union

from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ilphttp.front import Answer
from ilphttp.limits import AccountLimiter, Limits
from ilphttp.logtext import escape
from ilphttp.metrics import LinkMetrics, PacketTiming, metrics_for
from ilphttp.packet import TYPE_FULFILL, Fulfill, Prepare, Reply, serialize_reject

if TYPE_CHECKING:
    from ilphttp.listener import ListenerFactory

__all__ = ["LinkOps", "SharedDoorOps", "count_connections", "reply_code"]

_log = Logger(namespace="ilphttp.packets")

#: what a front door answers: at once, or later
AnswerResult = Union[Answer, "Deferred[Answer]"]


class LinkOwner(Protocol):
    """What :class:`LinkOps` reads from its plugin, when it needs it."""

    @property
    def name(self) -> str | None:
        """The account's name (the service's name)."""

    @property
    def address(self) -> str | None:
        """Our ILP address, for ``triggered_by``."""


def reply_code(data: bytes) -> tuple[str, str]:
    """(``"fulfill"``, ``""``) or (``"reject"``, its ILP error code) for a serialized,
    checked reply, read without decoding it (the code follows the envelope's length)."""
    if data[:1] == bytes([TYPE_FULFILL]):
        return "fulfill", ""
    first = data[1] if len(data) > 1 else 0
    start = 2 if first < 0x80 else 2 + (first & 0x7F)
    return "reject", data[start : start + 3].decode("ascii", "replace")


class LinkOps:
    """One account's limiter and metrics, called by its plugin.

    :param owner: the plugin (its ``name`` labels the metrics; its ``address``
        is the ``triggered_by`` of the limits' Rejects).
    :param limits: the account's limits (none: nothing is refused).
    :param registry: where the metrics go; None: a registry of its own
        (:attr:`registry`).
    :param clock: seconds now (the reactor's ``seconds``).
    """

    #: log each packet at debug level (set by the node for ``logLevel: debug``)
    log_packets: ClassVar[bool] = False

    def __init__(
        self,
        owner: LinkOwner,
        limits: Limits,
        registry: CollectorRegistry | None,
        clock: Callable[[], float],
    ) -> None:
        self._owner = owner
        self._clock = clock
        self.limiter: AccountLimiter | None = AccountLimiter(limits) if limits.any else None
        #: the registry this link records into
        self.registry = CollectorRegistry() if registry is None else registry
        self._metrics: LinkMetrics | None = None

    @property
    def metrics(self) -> LinkMetrics:
        """This account's recorder (made at the first use, once the plugin has its name)."""
        metrics = self._metrics
        if metrics is None:
            metrics = self._metrics = metrics_for(self.registry).link(self._owner.name or "")
        return metrics

    def set_limits(self, limits: Limits) -> None:
        """New limits; buckets keep their fill level (a config reload)."""
        if not limits.any:
            self.limiter = None
        elif self.limiter is None:
            self.limiter = AccountLimiter(limits)
        else:
            self.limiter = self.limiter.reconfigured(limits)

    # -- packets -----------------------------------------------------------------

    def incoming(
        self, prepare: Prepare, answer: Callable[[], bytes | Deferred[bytes]]
    ) -> bytes | Deferred[bytes]:
        """The reply to a peer's ``prepare``: the limits' Reject, or ``answer()``'s.

        The reply's bytes when it is known at once (a limit, a synchronous
        handler): counted then and there, never in flight; else a Deferred,
        in flight until it fires.  Exceptions of ``answer`` (the plugin's
        NotReady/OverCapacity, answered with an HTTP error) pass through and
        the packet is not counted.
        """
        now = self._clock()
        limiter = self.limiter
        if limiter is not None:
            refused = limiter.check(prepare.amount, now)
            if refused is not None:
                ours = refused._replace(triggered_by=self._owner.address or "")
                data = serialize_reject(ours)
                self._finished("incoming", now, "reject", ours.code, prepare)
                return data
        result = answer()
        if isinstance(result, bytes):
            outcome, code = reply_code(result)
            self._finished("incoming", now, outcome, code, prepare)
            return result
        timing = self.metrics.packet_started("incoming", now)
        return result.addBoth(self._answered_in, prepare, timing)

    def _answered_in(self, result: Any, prepare: Prepare, timing: PacketTiming) -> Any:
        if not isinstance(result, bytes):  # a Failure: the peer went away
            self.metrics.packet_abandoned(timing)
            return result
        outcome, code = reply_code(result)
        self._finished(timing.direction, timing.started, outcome, code, prepare, timing)
        return result

    def outgoing(self, prepare: Prepare, send: Callable[[], Deferred[Reply]]) -> Deferred[Reply]:
        """The reply to our ``prepare``: the outgoing throughput limit's T04, or ``send()``'s."""
        now = self._clock()
        metrics = self.metrics
        timing = metrics.packet_started("outgoing", now)
        limiter = self.limiter
        if limiter is not None:
            refused = limiter.check_outgoing(prepare.amount, now)
            if refused is not None:
                ours = refused._replace(triggered_by=self._owner.address or "")
                reply = Reply(ours, serialize_reject(ours))
                return succeed(self._answered_out(reply, prepare, timing))
        try:
            d = send()
        except BaseException:
            metrics.packet_abandoned(timing)
            raise
        return d.addBoth(self._answered_out, prepare, timing)

    def _answered_out(self, result: Any, prepare: Prepare, timing: PacketTiming) -> Any:
        if not isinstance(result, Reply):  # cancelled by the caller
            self.metrics.packet_abandoned(timing)
            return result
        packet = result.packet
        if isinstance(packet, Fulfill):
            self._finished("outgoing", timing.started, "fulfill", "", prepare, timing)
        else:
            self._finished("outgoing", timing.started, "reject", packet.code, prepare, timing)
        return result

    def _finished(
        self,
        direction: str,
        started: float,
        result: str,
        code: str,
        prepare: Prepare,
        timing: PacketTiming | None = None,
    ) -> None:
        """Count a packet answered (``timing``: it was in flight; None: answered at once)."""
        now = self._clock()
        if timing is None:
            self.metrics.packet_answered(direction, started, result, code, prepare.amount, now)
        else:
            self.metrics.packet_finished(timing, result, code, prepare.amount, now)
        if self.log_packets:
            _log.debug(
                "{direction} packet to {destination}: {result}"
                + (" {code}" if code else "")  # a Fulfill has none: one space, not two
                + " ({amount}, {duration_ms} ms)",
                event="packet",
                account=self._owner.name or "",
                direction=direction,
                result=result,
                code=code,
                destination=escape(prepare.destination),
                amount=prepare.amount,
                duration_ms=round((now - started) * 1000, 3),
            )

    # -- HTTP ----------------------------------------------------------------------

    def http_status(self, status: int) -> None:
        """The peer answered one of our requests with ``status``."""
        self.metrics.http_status(status)

    def answered(self, result: AnswerResult) -> AnswerResult:
        """Count the answer a front door gives (now or later); ``result`` unchanged."""
        if isinstance(result, Answer):
            self._count_answer(result)
            return result
        return result.addCallback(self._count_answer)

    def _count_answer(self, answer: Answer) -> Answer:
        metrics = self.metrics
        metrics.http_status(answer.status)
        if answer.status == 401:
            metrics.auth_failure()
        return answer


class SharedDoorOps:
    """Counts the answers a shared listener gives before any account is known,
    labelled ``account=""``: its ``401`` for a credential no account can be told
    from (also ``ilp_auth_failures_total{account=""}``) and its HTTP servers'
    own refusals (``400``, ``408``, ``413``, ``431``) in ``ilp_http_requests_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        metrics = metrics_for(registry)
        # Only these two families: no packet series at zero for account "".
        self._http = metrics.http
        self._failures = metrics.auth_failures.labels("")

    def answered(self, result: AnswerResult) -> AnswerResult:
        """Count ``result`` (an :class:`Answer`; a Deferred passes uncounted,
        as the shared door gives none before an account is known)."""
        if isinstance(result, Answer):
            self._http.labels("", str(result.status)).inc()
            if result.status == 401:
                self._failures.inc()
        return result


def count_connections(factory: ListenerFactory, listener: str, registry: CollectorRegistry) -> None:
    """Keep ``ilp_connections{listener}`` at ``factory``'s open connections.

    Several listeners of one name add up; the factory calls back with +1/-1.
    """
    factory.on_change = metrics_for(registry).connections.labels(listener).inc
