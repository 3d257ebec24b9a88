"""What a reload changes: two node configurations compared, and what cannot change at run time.

:func:`diff_nodes` is the pure half of ``NodeService.reload()``
(:mod:`ilphttp.reload` applies its answer): which accounts are added,
removed or changed, whether the routing changed, and, raised as
:class:`~ilphttp.errors.ConfigError` with the file's words, what a running
node cannot take without a restart:

- the node-level listeners (``listen``, ``--listen`` with ``--config``),
  the ``/metrics`` listener (``metrics``) and ``workers``;
- our address and asset (``ilpAddress``, ``ilpAddressInheritFrom``,
  ``assetCode``, ``assetScale``): every account, every child's address and
  IL-DCP answer hangs on them;
- with ``--workers N``, any account's own listener (the parent opened the
  sockets once and the workers adopted them).

``logLevel`` changes at run time; ``logFormat`` does not, but it is not
refused either: :func:`ilphttp.node_logs.keep_log_format` keeps the running
one and says so.

An account is *changed* when anything in its plugin options differs (URL,
tokens, secrets, TLS files, limits...), or a TLS or key file it names was
rewritten (:attr:`~ilphttp.nodeconfig.AccountSpec.file_digests`): the node
replaces its plugin.  A
change of relation or ``ilpAddressSegment`` alone is a routing change.
"""

from __future__ import annotations

from dataclasses import dataclass

from ilphttp.errors import ConfigError
from ilphttp.nodeconfig import AccountSpec, NodeConfig

__all__ = ["NodeChanges", "diff_nodes", "own_listener"]


def own_listener(spec: AccountSpec) -> str | None:
    """The endpoint string of the account's own listener, or None (shared or send-only)."""
    incoming = spec.options.incoming
    return None if incoming is None else incoming.listen_description


@dataclass(frozen=True)
class NodeChanges:
    """What a reload does, by account name (each tuple in the new file's order)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: accounts whose plugin is replaced (its options differ)
    changed: tuple[str, ...] = ()
    #: the changed accounts whose own listener changes too (a new port is bound)
    moved: tuple[str, ...] = ()
    #: routes, relations, segments, defaultRoute, minMessageWindow or maxHoldTime differ
    routing: bool = False
    #: the new ``logLevel``, when it differs
    log_level: str | None = None

    @property
    def links(self) -> bool:
        """True when accounts or routing change (plugins or the router's table)."""
        return bool(self.added or self.removed or self.changed or self.routing)

    @property
    def empty(self) -> bool:
        """True when the new configuration is the old one."""
        return not (self.links or self.log_level)

    def summary(self) -> str:
        """One line for the log, e.g. ``"added bob; removed carol; changed alice"``."""
        if self.empty:
            return "nothing changed"
        parts = []
        for word, names in (
            ("added", self.added),
            ("removed", self.removed),
            ("changed", self.changed),
        ):
            if names:
                parts.append(f"{word} {', '.join(names)}")
        if self.moved:
            parts.append(f"new listener for {', '.join(self.moved)}")
        if self.routing:
            parts.append("routing changed")
        if self.log_level:
            parts.append(f"logLevel {self.log_level}")
        return "; ".join(parts)


def _refuse(what: str) -> ConfigError:
    return ConfigError(f"{what} cannot change on a running node; restart it to change it")


def diff_nodes(old: NodeConfig, new: NodeConfig, *, listeners_fixed: bool = False) -> NodeChanges:
    """What turning the running ``old`` into ``new`` takes (see the module docstring).

    :param listeners_fixed: the accounts' own listeners cannot be opened or
        closed (``--workers N``): adding, removing or moving one is refused.
    :raises ConfigError: naming the first setting that cannot change at run time.
    """
    if new.listen != old.listen:
        raise _refuse("listen (the node's own listeners)")
    if new.workers != old.workers:
        raise _refuse("workers")
    if new.metrics != old.metrics:
        raise _refuse("metrics (the /metrics listener)")
    was, now = old.routing, new.routing
    for key, before, after in (
        ("ilpAddress", was.address, now.address),
        ("assetCode", was.asset_code, now.asset_code),
        ("assetScale", was.asset_scale, now.asset_scale),
        ("ilpAddressInheritFrom", was.inherit_from, now.inherit_from),
    ):
        if before != after:
            raise _refuse(key)
    if was.upstream() != now.upstream():
        raise _refuse("the parent our address comes from")
    before_specs = {spec.name: spec for spec in old.accounts}
    after_specs = {spec.name: spec for spec in new.accounts}
    added = tuple(name for name in after_specs if name not in before_specs)
    removed = tuple(name for name in before_specs if name not in after_specs)
    changed: list[str] = []
    moved: list[str] = []
    for name, spec in after_specs.items():
        previous = before_specs.get(name)
        if previous is None:
            continue
        if spec.extra_listen != previous.extra_listen:
            raise _refuse(f"accounts.{name}'s extra listeners")
        if spec.options != previous.options or spec.file_digests != previous.file_digests:
            changed.append(name)
            if own_listener(spec) != own_listener(previous):
                moved.append(name)
    if listeners_fixed:
        for name in (*added, *removed, *moved):
            spec = after_specs.get(name) or before_specs[name]
            if name in moved or own_listener(spec) is not None:
                raise ConfigError(
                    f"accounts.{name}: with --workers the parent opened every listening socket"
                    " at start, so an account's own listener cannot be added, removed or"
                    " changed on a running node; restart it (or serve the account on the"
                    " node's listen)"
                )
    routing = (
        tuple(spec.routing() for spec in old.accounts)
        != tuple(spec.routing() for spec in new.accounts)
        or dict(was.routes) != dict(now.routes)
        or was.default_route != now.default_route
        or was.min_message_window != now.min_message_window
        or was.max_hold_time != now.max_hold_time
    )
    log_level = new.log_level if new.log_level != old.log_level else None
    return NodeChanges(added, removed, tuple(changed), tuple(moved), routing, log_level)
