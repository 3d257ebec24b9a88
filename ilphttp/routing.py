"""Routing decisions, pure: which account a Prepare goes to, or why it is refused.

Given the account a Prepare came from, the Prepare and the time,
:meth:`RoutingTable.decide` says what to do with it: :class:`Forward` it to an
account (with its expiry shortened), answer an IL-DCP request
(:class:`AnswerIldcp`) or refuse it (:class:`Refuse`, an ILP error code).
:class:`RouterConfig` is what a node's file or flags say about routing; once our
address is known (configured, or from the parent over IL-DCP) it becomes a
:class:`RoutingTable`.  No reactor, no sockets: table-driven tests.  The
Twisted service that applies these decisions is :class:`ilphttp.router.Router`.

It is a router, not a connector: no balances, no settlement, no exchange
rates; the amount is forwarded as is (ilp-connector's ``minMessageWindow`` and
``maxHoldTime`` are honoured).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from ilphttp import ildcp
from ilphttp.errors import RoutingError
from ilphttp.multi import child_name
from ilphttp.packet import (
    ErrorCode,
    Prepare,
    Reject,
    is_valid_address,
    is_valid_segment,
)

__all__ = [
    "CHILD",
    "DEFAULT_MAX_HOLD_TIME",
    "DEFAULT_MIN_MESSAGE_WINDOW",
    "PARENT",
    "PEER",
    "RELATIONS",
    "Account",
    "AnswerIldcp",
    "Decision",
    "Forward",
    "Refuse",
    "RouterConfig",
    "RoutingError",
    "RoutingTable",
]

PARENT = "parent"
CHILD = "child"
PEER = "peer"
RELATIONS = (PARENT, CHILD, PEER)

#: seconds taken off a forwarded Prepare's expiry, so that the answer has time
#: to travel back (ilp-connector's ``minMessageWindow``, 1 s)
DEFAULT_MIN_MESSAGE_WINDOW = 1.0
#: the longest a forwarded Prepare may be held (ilp-connector's ``maxHoldTime``)
DEFAULT_MAX_HOLD_TIME = 30.0

_UTC = _dt.timezone.utc


@dataclass(frozen=True)
class Account:
    """One account of the node, as the routing table sees it.

    :param name: the account's name (a key of the config's ``accounts``).
    :param relation: ``"parent"``, ``"child"`` or ``"peer"``.
    :param multi: a multilateral (hub) account: it serves many children,
        ``<its address>.<child name>``, and packets may be routed from one of
        them to another through it.
    :param segment: a child's address segment (default: ``name``).
    :param address: a child's full address, instead of ``<ours>.<segment>``
        (a single-link node in multi mode serves its children directly under
        our own address).
    :param can_send: False for an account with no outgoing side: nothing can
        be forwarded to it.
    """

    name: str
    relation: str
    multi: bool = False
    segment: str | None = None
    address: str | None = None
    can_send: bool = True


@dataclass(frozen=True)
class Forward:
    """Send ``prepare`` (expiry already shortened) out through ``account``."""

    account: str
    prepare: Prepare


@dataclass(frozen=True)
class Refuse:
    """Answer with a Reject of ``code`` (an :class:`~ilphttp.ErrorCode` value)."""

    code: str
    message: str


@dataclass(frozen=True)
class AnswerIldcp:
    """Answer an IL-DCP request with ``response``."""

    response: ildcp.IldcpResponse


Decision = Union[Forward, Refuse, AnswerIldcp]


def _matches(destination: str, prefix: str) -> bool:
    return destination == prefix or destination.startswith(prefix + ".")


def _check_accounts(
    accounts: tuple[Account, ...], default_route: str | None
) -> tuple[dict[str, Account], str | None]:
    """The account rules that need no address: ``({name: account}, default account)``.

    :raises RoutingError: naming the accounts at fault.
    """
    by_name: dict[str, Account] = {}
    for account in accounts:
        if account.name in by_name:
            raise RoutingError(f"account {account.name!r} is listed twice")
        if account.relation not in RELATIONS:
            raise RoutingError(
                f"account {account.name!r}: relation must be one of"
                f" {', '.join(RELATIONS)}, got {account.relation!r}"
            )
        if account.multi and account.relation != CHILD:
            raise RoutingError(
                f"accounts.{account.name}: a multi account must have relation child,"
                f" not {account.relation}"
            )
        by_name[account.name] = account
    parents = [a.name for a in accounts if a.relation == PARENT]
    if len(parents) > 1:
        raise RoutingError(
            f"accounts.{parents[0]} and accounts.{parents[1]} are both parents; the router"
            " takes at most one (use relation peer and routes for the others)"
        )
    default = default_route
    if default is None and parents:
        default = parents[0]
    if default is not None and default not in by_name:
        raise RoutingError(f"defaultRoute: no account named {default!r}")
    return by_name, default


def _check_routes(
    routes: Mapping[str, str],
    by_name: Mapping[str, Account],
    min_message_window: float,
    max_hold_time: float,
) -> None:
    """The static routes and timing settings.

    :raises RoutingError: naming the route or setting at fault.
    """
    for prefix, target in routes.items():
        if target not in by_name:
            raise RoutingError(
                f"routes: {prefix} goes to {target!r}, which is not an account"
                f" (no account named {target!r})"
            )
        if not is_valid_address(prefix):
            raise RoutingError(f"route {prefix!r} is not a valid ILP address prefix")
    if min_message_window < 0 or max_hold_time <= 0:
        raise RoutingError("minMessageWindow must be >= 0 and maxHoldTime > 0")


@dataclass(frozen=True)
class RoutingTable:
    """Pure routing decisions for one node.

    :param address: our ILP address.
    :param asset_code, asset_scale: what children are told over IL-DCP.
    :param accounts: every account of the node.
    :param routes: static routes, ``{address prefix: account}`` (the
        ilp-connector ``routes`` setting); matched on segment boundaries.
    :param default_route: the account for every destination that matches no
        child and no route (default: the parent, if there is one).
    :param min_message_window: seconds taken off a forwarded Prepare's expiry;
        a Prepare with less than twice this left is refused with R02.
    :param max_hold_time: a forwarded Prepare expires at most this many
        seconds from now.
    """

    address: str
    asset_code: str
    asset_scale: int
    accounts: tuple[Account, ...]
    routes: Mapping[str, str] = field(default_factory=dict)
    default_route: str | None = None
    min_message_window: float = DEFAULT_MIN_MESSAGE_WINDOW
    max_hold_time: float = DEFAULT_MAX_HOLD_TIME

    def __post_init__(self) -> None:
        if not is_valid_address(self.address):
            raise RoutingError(f"our address {self.address!r} is not a valid ILP address")
        by_name, default = _check_accounts(self.accounts, self.default_route)
        prefixes: dict[str, str] = {}
        for account in self.accounts:
            if account.relation == CHILD:
                child = self._child_address(account)
                if child in prefixes:
                    raise RoutingError(
                        f"accounts {prefixes[child]!r} and {account.name!r} both have the"
                        f" address {child}"
                    )
                prefixes[child] = account.name
        _check_routes(self.routes, by_name, self.min_message_window, self.max_hold_time)
        for prefix, target in self.routes.items():
            # A child's own address wins over a static route to the same prefix.
            prefixes.setdefault(prefix, target)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_prefixes", prefixes)
        object.__setattr__(self, "_default", default)

    # -- lookups ---------------------------------------------------------------

    def account(self, name: str) -> Account:
        """The account called ``name`` (KeyError if there is none)."""
        by_name: dict[str, Account] = self._by_name  # type: ignore[attr-defined]
        return by_name[name]

    def _child_address(self, account: Account) -> str:
        if account.address is not None:
            return account.address
        segment = account.segment if account.segment is not None else account.name
        if not is_valid_segment(segment):
            raise RoutingError(
                f"account {account.name!r}: {segment!r} is not a valid address segment"
                " (set ilpAddressSegment)"
            )
        address = f"{self.address}.{segment}"
        if not is_valid_address(address):
            raise RoutingError(f"account {account.name!r}: address {address!r} is too long")
        return address

    def child_address(self, name: str) -> str:
        """The address of child account ``name``: ``<ours>.<segment>``."""
        account = self.account(name)
        if account.relation != CHILD:
            raise RoutingError(f"account {name!r} is a {account.relation}, not a child")
        return self._child_address(account)

    def ildcp_response(self, name: str) -> ildcp.IldcpResponse:
        """What child account ``name`` is told over IL-DCP."""
        return ildcp.IldcpResponse(self.child_address(name), self.asset_scale, self.asset_code)

    def lookup(self, destination: str) -> str | None:
        """The account for ``destination``: longest prefix, else the default route."""
        prefixes: dict[str, str] = self._prefixes  # type: ignore[attr-defined]
        candidate = destination
        while True:
            target = prefixes.get(candidate)
            if target is not None:
                return target
            cut = candidate.rfind(".")
            if cut <= 0:
                break
            candidate = candidate[:cut]
        default: str | None = self._default  # type: ignore[attr-defined]
        return default

    # -- the decision ------------------------------------------------------------

    def decide(
        self, source: str, prepare: Prepare, now: float, sender: str | None = None
    ) -> Decision:
        """What to do with ``prepare``, received from account ``source`` at ``now``.

        ``now`` is POSIX seconds (``reactor.seconds()``).  ``sender`` is the
        child of a multi account that sent it: a packet is never routed back
        to the child it came from.
        """
        account = self.account(source)
        destination = prepare.destination
        if destination == ildcp.ILDCP_DESTINATION:
            if not ildcp.is_ildcp_request(prepare):
                return Refuse(ErrorCode.F00_BAD_REQUEST, "peer.config with a wrong condition")
            if account.relation != CHILD:
                return Refuse(
                    ErrorCode.F02_UNREACHABLE,
                    f"IL-DCP is answered to children only; {source} is a {account.relation}",
                )
            return AnswerIldcp(self.ildcp_response(source))
        if destination.startswith("peer."):
            return Refuse(ErrorCode.F02_UNREACHABLE, f"{destination} is not served here")
        if destination == self.address:
            return Refuse(ErrorCode.F02_UNREACHABLE, "this node routes packets, it receives none")
        target = self.lookup(destination)
        if target is None:
            return Refuse(ErrorCode.F02_UNREACHABLE, f"no route to {destination}")
        if target == source and account.multi and sender is not None:
            if child_name(self._child_address(account), destination) == sender:
                return Refuse(
                    ErrorCode.F02_UNREACHABLE,
                    f"no route to {destination} other than back to its sender",
                )
        if target == source and not account.multi:
            # Only a multi account stands for many peers: anything else going
            # back where it came from is a routing loop.
            return Refuse(
                ErrorCode.F02_UNREACHABLE,
                f"no route to {destination} other than back to {source}",
            )
        if not self.account(target).can_send:
            return Refuse(ErrorCode.F02_UNREACHABLE, f"account {target} has no outgoing link")
        expires = prepare.expires_at.timestamp()
        left = expires - now
        if left <= 0:
            return Refuse(ErrorCode.R00_TRANSFER_TIMED_OUT, "the prepare has expired")
        window = self.min_message_window
        forward_at = min(expires - window, now + self.max_hold_time)
        if forward_at - now < window:
            return Refuse(
                ErrorCode.R02_INSUFFICIENT_TIMEOUT,
                f"{left:.3f} s left; forwarding needs more than {2 * window:.3f} s",
            )
        if forward_at != expires:
            prepare = prepare._replace(expires_at=_dt.datetime.fromtimestamp(forward_at, _UTC))
        return Forward(target, prepare)

    def reject(self, refuse: Refuse) -> Reject:
        """The Reject that carries ``refuse``, triggered by us."""
        return Reject(refuse.code, self.address, refuse.message)


@dataclass(frozen=True)
class RouterConfig:
    """Everything :class:`Router` needs besides the plugins.

    ``address`` None means: ask the parent (``inherit_from``, default: the
    parent account) over IL-DCP.  ``asset_code``/``asset_scale`` None means:
    take the parent's.
    """

    accounts: tuple[Account, ...]
    address: str | None = None
    asset_code: str | None = None
    asset_scale: int | None = None
    routes: Mapping[str, str] = field(default_factory=dict)
    default_route: str | None = None
    inherit_from: str | None = None
    min_message_window: float = DEFAULT_MIN_MESSAGE_WINDOW
    max_hold_time: float = DEFAULT_MAX_HOLD_TIME

    def __post_init__(self) -> None:
        by_name, _ = _check_accounts(self.accounts, self.default_route)
        _check_routes(self.routes, by_name, self.min_message_window, self.max_hold_time)
        if self.inherit_from is not None and self.inherit_from not in by_name:
            raise RoutingError(f"ilpAddressInheritFrom: no account named {self.inherit_from!r}")
        if self.address is not None and not is_valid_address(self.address):
            raise RoutingError(f"ilpAddress {self.address!r} is not a valid ILP address")

    def upstream(self) -> str | None:
        """The account whose IL-DCP answer gives our address (None: none needed)."""
        if self.address is not None and self.asset_code is not None:
            if self.asset_scale is not None:
                return None
        if self.inherit_from is not None:
            return self.inherit_from
        for account in self.accounts:
            if account.relation == PARENT:
                return account.name
        return None

    def table(self, info: ildcp.IldcpResponse | None = None) -> RoutingTable:
        """The routing table, completed with the parent's IL-DCP ``info`` if needed."""
        address = self.address
        code = self.asset_code
        scale = self.asset_scale
        if info is not None:
            address = address if address is not None else info.client_address
            code = code if code is not None else info.asset_code
            scale = scale if scale is not None else info.asset_scale
        if address is None or code is None or scale is None:
            missing = "ilpAddress" if address is None else "assetCode and assetScale"
            raise RoutingError(f"{missing} must be configured when there is no parent")
        return RoutingTable(
            address,
            code,
            scale,
            self.accounts,
            self.routes,
            self.default_route,
            self.min_message_window,
            self.max_hold_time,
        )
