"""Prometheus metrics of ILP links, recorded with ``prometheus-client``.

The families (docs/monitoring.rst has their meanings), all in one
:class:`prometheus_client.CollectorRegistry`:

=============================================  =========  ===================================
``ilp_packets_total``                          counter    account, direction, result, code
``ilp_packet_duration_seconds``                histogram  account, direction
``ilp_amount_total``                           counter    account, direction, result
``ilp_http_requests_total``                    counter    account, status
``ilp_packets_in_flight``                      gauge      account, direction
``ilp_connections``                            gauge      listener
``ilp_auth_failures_total``                    counter    account
=============================================  =========  ===================================

``direction`` is ``incoming`` (a Prepare a peer sent us) or ``outgoing`` (one
we sent); ``result`` is ``fulfill`` or ``reject``; ``code`` is the Reject's
ILP error code, empty for a Fulfill.  Amounts are in the account's asset units.

:class:`IlpMetrics` owns the families of one registry; :meth:`IlpMetrics.link`
gives the :class:`LinkMetrics` a plugin records into.  Times are seconds
passed in by the caller (``reactor.seconds()``), so tests need no clock.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from twisted.web.resource import IResource

__all__ = [
    "DIRECTIONS",
    "DURATION_BUCKETS",
    "RESULTS",
    "IlpMetrics",
    "LinkMetrics",
    "PacketTiming",
    "metrics_for",
    "metrics_resource",
    "metrics_root",
]

DIRECTIONS = ("incoming", "outgoing")
RESULTS = ("fulfill", "reject")
#: Seconds, from half a millisecond (loopback) to 30 s (a usual Prepare expiry).
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class IlpMetrics:
    """The ilphttp families in ``registry`` (a new :class:`CollectorRegistry` by default).

    One per registry: registering the same family names twice in one
    registry raises :class:`ValueError` (prometheus-client's rule).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        self.packets = Counter(
            "ilp_packets_total",
            "ILP packets answered (incoming) or sent and answered (outgoing), by result and "
            "ILP error code (empty for a Fulfill).",
            ["account", "direction", "result", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "ilp_packet_duration_seconds",
            "Seconds from a Prepare to its Fulfill or Reject (incoming: read to answered; "
            "outgoing: sent to reply received).",
            ["account", "direction"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.amount = Counter(
            "ilp_amount_total",
            "Sum of the amounts of answered Prepares, in the account's asset units.",
            ["account", "direction", "result"],
            registry=r,
        )
        self.http = Counter(
            "ilp_http_requests_total",
            "HTTP answers to ILP requests, given (to a peer's POST) and got (from a peer), "
            "by status code.",
            ["account", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "ilp_packets_in_flight",
            "Prepares waiting for their Fulfill or Reject.",
            ["account", "direction"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "ilp_connections",
            "Open connections on a listener.",
            ["listener"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.auth_failures = Counter(
            "ilp_auth_failures_total",
            "Requests refused for their credentials (HTTP 401); account is empty where no "
            "account could be told (a shared listener and an unknown token).",
            ["account"],
            registry=r,
        )

    def forget_account(self, account: str) -> bool:
        """Remove every series labelled ``account`` (a removed account, drained).

        Another account's series stay.  A plugin still recording for ``account``
        would record where nothing is served: call it once nothing does.

        :returns: False, and nothing removed, in prometheus-client's
            multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a worker of
            ``--workers N``): a live process's files cannot drop one label set.
        """
        if multiprocess_mode():
            return False
        for family, names in (
            (self.packets, ("account", "direction", "result", "code")),
            (self.duration, ("account", "direction")),
            (self.amount, ("account", "direction", "result")),
            (self.http, ("account", "status")),
            (self.in_flight, ("account", "direction")),
            (self.auth_failures, ("account",)),
        ):
            _remove_where(family, names, account)
        return True

    def forget_listener(self, listener: str) -> bool:
        """Remove ``ilp_connections{listener}`` (a listener closed for good);
        False, and nothing removed, in multiprocess mode (see :meth:`forget_account`)."""
        if multiprocess_mode():
            return False
        _remove_where(self.connections, ("listener",), listener)
        return True

    def link(self, account: str) -> LinkMetrics:
        """The recorder for one account's link."""
        return LinkMetrics(self, account)

    def set_connections(self, listener: str, count: int) -> None:
        """``listener`` (its endpoint description) has ``count`` open connections."""
        self.connections.labels(listener).set(count)

    def resource(self) -> IResource:
        """The exposition of :attr:`registry` (see :func:`metrics_resource`)."""
        return metrics_resource(self.registry)

    def root(self) -> IResource:
        """A root resource with the exposition at ``/metrics`` (see :func:`metrics_root`)."""
        return metrics_root(self.registry)


def multiprocess_mode() -> bool:
    """True when prometheus-client records into a multiprocess directory (its
    own test: either spelling of the environment variable)."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def _remove_where(family: Any, names: tuple[str, ...], value: str) -> None:
    """Remove ``family``'s children whose first label (``names[0]``, of ``names``,
    the family's label names in order) is ``value``, found through its public
    ``collect()`` (a histogram's samples add ``le``, which is not a child's)."""
    doomed = {
        tuple(sample.labels[n] for n in names)
        for metric in family.collect()
        for sample in metric.samples
        if sample.labels.get(names[0]) == value
    }
    for labels in doomed:
        family.remove(*labels)


def metrics_resource(registry: CollectorRegistry) -> IResource:
    """A twisted.web resource answering GET with ``registry``'s exposition (text
    format, or OpenMetrics when asked), from the reactor's thread pool.

    prometheus-client's ``MetricsResource`` imports the global reactor when
    first imported, so this module imports it here, after twistd has
    installed the reactor it chose.
    """
    from prometheus_client.twisted import MetricsResource

    resource: IResource = MetricsResource(registry)
    return resource


def metrics_root(registry: CollectorRegistry) -> IResource:
    """A root resource with ``registry``'s exposition at ``/metrics`` (404 elsewhere),
    for a listener of its own."""
    from twisted.web.resource import Resource

    root = Resource()
    root.putChild(b"metrics", metrics_resource(registry))
    return root


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, IlpMetrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry) -> IlpMetrics:
    """The :class:`IlpMetrics` of ``registry``, made at the first call: every plugin
    given the same registry records into the same families."""
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = IlpMetrics(registry)
    return metrics


class PacketTiming:
    """A Prepare under way: what :meth:`LinkMetrics.packet_finished` needs to close it."""

    __slots__ = ("direction", "finished", "started")

    def __init__(self, direction: str, started: float) -> None:
        self.direction = direction
        self.started = started
        self.finished = False


class LinkMetrics:
    """One account's recorder, labelled ``account``: the calls a plugin makes."""

    def __init__(self, metrics: IlpMetrics, account: str) -> None:
        self.metrics = metrics
        self.account = account
        self._in_flight = {d: metrics.in_flight.labels(account, d) for d in DIRECTIONS}
        self._duration = {d: metrics.duration.labels(account, d) for d in DIRECTIONS}
        # Series at zero from the start, so that rate() sees the first packet;
        # the children are kept, so that a packet costs no label lookups.
        self._amount = {
            (d, r): metrics.amount.labels(account, d, r) for d in DIRECTIONS for r in RESULTS
        }
        self._packets: dict[tuple[str, str, str], Any] = {
            (d, "fulfill", ""): metrics.packets.labels(account, d, "fulfill", "")
            for d in DIRECTIONS
        }
        self._statuses: dict[int, Any] = {}
        self._auth_failures = metrics.auth_failures.labels(account)

    def packet_started(self, direction: str, now: float) -> PacketTiming:
        """A Prepare read from the peer (``incoming``) or about to be sent (``outgoing``)
        at ``now`` (seconds); raises :class:`ValueError` for another direction."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        self._in_flight[direction].inc()
        return PacketTiming(direction, now)

    def packet_finished(
        self, timing: PacketTiming, result: str, code: str, amount: int, now: float
    ) -> None:
        """Its reply: ``result`` ``fulfill`` or ``reject`` with ``code`` (the ILP error
        code; ignored for a Fulfill), the Prepare's ``amount``, at ``now`` (seconds).
        A second call for the same Prepare records nothing."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, not {result!r}")
        if timing.finished:
            return
        timing.finished = True
        self._in_flight[timing.direction].dec()
        self.packet_answered(timing.direction, timing.started, result, code, amount, now)

    def packet_answered(
        self, direction: str, started: float, result: str, code: str, amount: int, now: float
    ) -> None:
        """A Prepare answered without ever being in flight (its reply was known at once,
        within one call): counted as :meth:`packet_finished` counts, from ``started``
        to ``now`` (seconds), without :meth:`packet_started`.
        Raises :class:`ValueError` for another direction or result."""
        duration = self._duration.get(direction)
        if duration is None:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        duration.observe(max(0.0, now - started))
        key = (direction, result, code if result == "reject" else "")
        packets = self._packets.get(key)
        if packets is None:
            if result not in RESULTS:
                raise ValueError(f"result must be one of {RESULTS}, not {result!r}")
            packets = self._packets[key] = self.metrics.packets.labels(self.account, *key)
        packets.inc()
        if amount:
            self._amount[direction, result].inc(amount)

    def packet_abandoned(self, timing: PacketTiming) -> None:
        """A Prepare that will get no reply from us (the peer went away, or the
        request was refused with an HTTP error): no longer in flight, not counted."""
        if not timing.finished:
            timing.finished = True
            self._in_flight[timing.direction].dec()

    def http_status(self, status: int) -> None:
        """An HTTP answer to an ILP request, given or got, with ``status``."""
        child = self._statuses.get(status)
        if child is None:
            child = self._statuses[status] = self.metrics.http.labels(self.account, str(status))
        child.inc()

    def auth_failure(self) -> None:
        """A request refused for its credentials."""
        self._auth_failures.inc()

    def connections(self, listener: str, count: int) -> None:
        """``listener`` has ``count`` open connections (see :meth:`IlpMetrics.set_connections`)."""
        self.metrics.set_connections(listener, count)
