"""The node's configuration: an ilp-connector style file, or one link from flags.

A file in the shape ilp-connector operators already write (JSON, or TOML with
Python 3.11+ or the ``tomli`` package)::

    {
      "ilpAddress": "test.hub",          # optional when a parent answers IL-DCP
      "assetCode": "XRP", "assetScale": 9,
      "accounts": {
        "up":   {"relation": "parent", "options": {...ilp-plugin-http options...}},
        "kids": {"relation": "child",  "options": {"multi": true, ...}},
        "bob":  {"relation": "child",  "options": {...}}
      }
    }

Each account's ``options`` is the JS plugin's option object, accepted as is,
plus four ways to keep secrets out of the file: ``staticTokenFile``,
``staticTokenEnv``, ``jwtSecretFile`` and ``jwtSecretEnv`` in ``incoming`` and
``outgoing`` (files relative to the config file).  Settings of ilp-connector
that a router without balances has no use for (``backend``, ``spread``,
``balance``, ...) are accepted and reported in :attr:`NodeConfig.ignored`;
anything else unknown is an error, so that typos do not pass silently.

Everything here is pure: errors are :class:`~ilphttp.errors.OptionError`
(also known as ``ConfigError``) naming the setting as the file writes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ilphttp import validate
from ilphttp.config import PluginOptions, options_from_js
from ilphttp.endpoint_check import check_distinct_listeners, check_endpoint
from ilphttp.errors import ConfigError
from ilphttp.limits import parse_limits
from ilphttp.node_file import load_file
from ilphttp.node_listeners import check_shared_listen, node_listeners
from ilphttp.packet import is_valid_segment
from ilphttp.routing import (
    CHILD,
    DEFAULT_MAX_HOLD_TIME,
    DEFAULT_MIN_MESSAGE_WINDOW,
    PARENT,
    RELATIONS,
    Account,
    RouterConfig,
)
from ilphttp.secrets import resolve_secret
from ilphttp.server_limits import (
    DEFAULT_LIMITS,
    SERVER_LIMIT_KEYS,
    ServerLimits,
    parse_server_limits,
)

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_WORKERS",
    "SHARED_LISTEN",
    "AccountSpec",
    "ConfigError",
    "NodeConfig",
    "load_file",
    "node_listeners",
    "parse_node",
]


#: the account key under which the node-level listeners (``listen``) go where
#: listeners are keyed by account (no account has an empty name)
SHARED_LISTEN = ""

#: the most worker processes a node may have (``workers``, ``--workers``)
MAX_WORKERS = 256


#: ilp-connector settings that make no sense for a router (accepted, ignored)
_IGNORED_TOP = {
    "env",
    "spread",
    "backend",
    "backendConfig",
    "store",
    "storePath",
    "storeConfig",
    "routeBroadcastEnabled",
    "routeBroadcastInterval",
    "routeCleanupInterval",
    "routeExpiry",
    "routingSecret",
    "reflectPayments",
    "initialConnectTimeout",
    "adminApi",
    "adminApiPort",
    "adminApiHost",
    "collectDefaultMetrics",
    "broadcastCurves",
    "profile",
}
_KNOWN_TOP = {
    "ilpAddress",
    "ilpAddressInheritFrom",
    "assetCode",
    "assetScale",
    "accounts",
    "routes",
    "defaultRoute",
    "minMessageWindow",
    "maxHoldTime",
    "workers",
    "listen",
    "metrics",
    "logFormat",
    "logLevel",
    "server",
}
#: ``logFormat`` values (``--log-format``): ilphttp's observers (:mod:`ilphttp.logformat`)
LOG_FORMATS = ("json", "text")
#: ``logLevel`` values (``--log-level``); packet events are logged at ``debug`` only
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
_IGNORED_ACCOUNT = {
    "balance",
    "sendRoutes",
    "receiveRoutes",
    "deduplicate",
    "store",
}
_KNOWN_ACCOUNT = {
    "relation",
    "options",
    "plugin",
    "assetCode",
    "assetScale",
    "ilpAddressSegment",
    # ilp-connector's names (periods in milliseconds), as its account objects hold them
    "rateLimit",
    "maxPacketAmount",
    "throughput",
}
_PLUGIN_NAMES = ("ilp-plugin-http", "ilphttp")
_SECRETS = (
    ("staticToken", "staticTokenFile", "staticTokenEnv"),
    ("jwtSecret", "jwtSecretFile", "jwtSecretEnv"),
)


@dataclass(frozen=True)
class AccountSpec:
    """One account: its routing role and its validated plugin options."""

    name: str
    relation: str
    #: not in the repr: it holds the secrets
    options: PluginOptions = field(repr=False)
    segment: str | None = None
    #: extra endpoints serving this account's site (several ``--listen``)
    extra_listen: tuple[str, ...] = ()
    #: (path, sha256 hex) of the TLS and key files it names, as read with the
    #: config (:func:`ilphttp.tls_files.with_file_digests`): a reload sees a
    #: file rewritten under the same name
    file_digests: tuple[tuple[str, str], ...] = ()

    @property
    def multi(self) -> bool:
        return self.options.multi

    def routing(self) -> Account:
        """This account as the routing table sees it."""
        child_address = None
        if self.options.multi and self.options.ildcp is not None:
            child_address = self.options.ildcp.client_address
        return Account(
            self.name,
            self.relation,
            multi=self.options.multi,
            segment=self.segment,
            address=child_address,
            can_send=self.options.outgoing is not None,
        )


@dataclass(frozen=True)
class NodeConfig:
    """A whole node: its accounts' plugin options and how packets are routed."""

    accounts: tuple[AccountSpec, ...]
    #: our address, asset and routes (the accounts as the router sees them)
    routing: RouterConfig
    #: settings accepted for ilp-connector compatibility but not used
    ignored: tuple[str, ...] = ()
    #: worker processes sharing the listening ports (``twistd ilphttp --workers``)
    workers: int = 1
    #: node-level listeners serving every account without a port of its own
    #: (:mod:`ilphttp.shared`), as Twisted endpoint strings
    listen: tuple[str, ...] = ()
    #: where ``/metrics`` is served (an endpoint string), or None
    metrics: str | None = None
    #: ``json`` or ``text`` (ilphttp's log observers), or None: twistd's own
    log_format: str | None = None
    #: the lowest level logged (:data:`LOG_LEVELS`); ``debug`` adds packet events
    log_level: str = "info"
    #: the node-level listeners' limits and drain grace (the file's ``server``)
    server_limits: ServerLimits = DEFAULT_LIMITS

    def shared_accounts(self) -> tuple[AccountSpec, ...]:
        """The accounts the node-level listeners serve: incoming, but no port of their own."""
        return tuple(
            spec
            for spec in self.accounts
            if spec.options.incoming is not None
            and spec.options.incoming.listen_description is None
        )


# -- the config object ---------------------------------------------------------------


def _resolve_secrets(
    where: str, side: Any, base_dir: str, environ: Mapping[str, str]
) -> dict[str, Any] | None:
    """``side`` (incoming/outgoing) with ``*File``/``*Env`` secrets read in."""
    if side is None:
        return None
    if not isinstance(side, Mapping):
        raise ConfigError(f"{where} must be an object")
    out = dict(side)
    for value_key, file_key, env_key in _SECRETS:
        secret = resolve_secret(
            where,
            (value_key, out.get(value_key)),
            (file_key, out.pop(file_key, None)),
            (env_key, out.pop(env_key, None)),
            environ,
            base_dir,
        )
        if secret is not None:
            out[value_key] = secret
    return out


def _routes(value: Any) -> dict[str, str]:
    routes: dict[str, str] = {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for i, route in enumerate(value):
            if not isinstance(route, Mapping) or set(route) - {"targetPrefix", "peerId"}:
                raise ConfigError(f"routes[{i}] must be {{targetPrefix, peerId}}")
            items.append((route.get("targetPrefix"), route.get("peerId")))
    else:
        raise ConfigError("routes must be a list of {targetPrefix, peerId}")
    for prefix, target in items:
        prefix = validate.string("routes: targetPrefix", prefix)
        routes[prefix] = validate.string(f"routes[{prefix}]: peerId", target)
    return routes


def parse_node(
    data: Mapping[str, Any],
    base_dir: str = ".",
    environ: Mapping[str, str] | None = None,
    listen_flags: tuple[str, ...] = (),
    *,
    check_listeners: bool = True,
) -> NodeConfig:
    """A :class:`NodeConfig` from the file's object (see the module docstring).

    ``listen_flags`` are node-level listeners given on the command line
    (``twistd ilphttp --config FILE --listen ...``), after the file's ``listen``.

    :param check_listeners: False leaves the check that no two listeners bind
        the same address to the caller, who applies flags first
        (:meth:`ilphttp.config_file.ConfigFile.read`: ``--metrics`` replaces ``metrics``).
    :raises OptionError: naming the setting, as the file writes it.
    """
    if environ is None:
        environ = os.environ
    ignored: list[str] = []
    validate.check_keys("", data, _KNOWN_TOP, _IGNORED_TOP, ignored)
    address = data.get("ilpAddress")
    address = None if address is None else validate.address("ilpAddress", address)
    code = data.get("assetCode")
    code = None if code is None else validate.string("assetCode", code)
    scale = data.get("assetScale")
    scale = None if scale is None else validate.integer("assetScale", scale, 0, 255)

    accounts_raw = data.get("accounts")
    if not isinstance(accounts_raw, Mapping) or not accounts_raw:
        raise ConfigError("accounts must be an object with at least one account")

    # First pass: relations and assets, to know the node's asset.
    checked: list[tuple[str, Mapping[str, Any], str]] = []
    account_assets: dict[str, tuple[str | None, int | None]] = {}
    for name, account in accounts_raw.items():
        where = f"accounts.{name}"
        if not isinstance(account, Mapping):
            raise ConfigError(f"{where} must be an object")
        if not isinstance(name, str) or not name:
            raise ConfigError("accounts: an account's name must be a non-empty string")
        validate.check_keys(where, account, _KNOWN_ACCOUNT, _IGNORED_ACCOUNT, ignored)
        relation = account.get("relation")
        if relation not in RELATIONS:
            raise ConfigError(
                f"{where}.relation must be one of {', '.join(RELATIONS)}, got {relation!r}"
            )
        plugin = account.get("plugin")
        if plugin is not None and plugin not in _PLUGIN_NAMES:
            raise ConfigError(
                f"{where}.plugin is {plugin!r}: ilphttp runs ilp-plugin-http accounts only"
            )
        a_code = account.get("assetCode")
        a_code = None if a_code is None else validate.string(f"{where}.assetCode", a_code)
        a_scale = account.get("assetScale")
        if a_scale is not None:
            a_scale = validate.integer(f"{where}.assetScale", a_scale, 0, 255)
        account_assets[name] = (a_code, a_scale)
        checked.append((name, account, relation))

    code, scale = _node_asset(code, scale, account_assets)
    inherit = data.get("ilpAddressInheritFrom")
    inherit = None if inherit is None else validate.string("ilpAddressInheritFrom", inherit)
    if address is None and inherit is None and all(r != PARENT for _, _, r in checked):
        raise ConfigError("ilpAddress is required when no account is a parent")
    static = address is not None and code is not None and scale is not None
    specs = tuple(
        _account(
            name, account, relation, address if static else None, code, scale, base_dir, environ
        )
        for name, account, relation in checked
    )
    default_route = data.get("defaultRoute")
    if default_route is not None:
        default_route = validate.string("defaultRoute", default_route)
    routing = RouterConfig(
        accounts=tuple(spec.routing() for spec in specs),
        address=address,
        asset_code=code,
        asset_scale=scale,
        routes=_routes(data["routes"]) if data.get("routes") is not None else {},
        default_route=None if default_route == "auto" else default_route,
        inherit_from=inherit,
        min_message_window=(
            DEFAULT_MIN_MESSAGE_WINDOW
            if data.get("minMessageWindow") is None
            else validate.milliseconds("minMessageWindow", data["minMessageWindow"])
        ),
        max_hold_time=(
            DEFAULT_MAX_HOLD_TIME
            if data.get("maxHoldTime") is None
            else validate.milliseconds("maxHoldTime", data["maxHoldTime"])
        ),
    )
    workers = data.get("workers")
    node = NodeConfig(
        accounts=specs,
        routing=routing,
        ignored=tuple(ignored),
        workers=1 if workers is None else validate.integer("workers", workers, 1, MAX_WORKERS),
        listen=_listen(data.get("listen")) + listen_flags,
        metrics=_metrics(data.get("metrics")),
        log_format=_choice("logFormat", data.get("logFormat"), LOG_FORMATS),
        log_level=_choice("logLevel", data.get("logLevel"), LOG_LEVELS) or "info",
        server_limits=_server(data.get("server")),
    )
    _check_routing(node)
    check_shared_listen(node, "--listen/--port with --config" if listen_flags else "listen")
    if check_listeners:
        check_distinct_listeners(node_listeners(node, listen_flags=len(listen_flags)))
    return node


def _server(value: Any) -> ServerLimits:
    """``server``: the node-level listeners' limits, JS names (milliseconds)."""
    if value is None:
        return DEFAULT_LIMITS
    validate.check_keys("server", value, {k for k in SERVER_LIMIT_KEYS if "_" not in k})
    return parse_server_limits("server", value, camel=True)


def _choice(where: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    text: str = value
    return text


def _metrics(value: Any) -> str | None:
    description = validate.optional_string("metrics", value)
    return None if description is None else check_endpoint("metrics", description)


def _listen(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError("listen must be an endpoint string or a list of them")
    return tuple(
        check_endpoint(f"listen[{i}]", validate.string(f"listen[{i}]", v))
        for i, v in enumerate(value)
    )


def _node_asset(
    code: str | None, scale: int | None, accounts: Mapping[str, tuple[str | None, int | None]]
) -> tuple[str | None, int | None]:
    """The node's asset: top level, else the accounts' common one; all must agree."""
    for what, top, index in (("assetCode", code, 0), ("assetScale", scale, 1)):
        seen: dict[Any, str] = {}
        for name, asset in accounts.items():
            value = asset[index]
            if value is not None:
                seen.setdefault(value, name)
        if top is not None:
            for value, name in seen.items():
                if value != top:
                    raise ConfigError(
                        f"accounts.{name}.{what} is {value!r} but {what} is {top!r}:"
                        " the router converts nothing, all accounts share one asset"
                    )
        elif len(seen) > 1:
            (v1, n1), (v2, n2) = list(seen.items())[:2]
            raise ConfigError(
                f"accounts.{n1}.{what} ({v1!r}) and accounts.{n2}.{what} ({v2!r}) differ:"
                " the router converts nothing, all accounts share one asset"
            )
        elif seen:
            if index == 0:
                code = next(iter(seen))
            else:
                scale = next(iter(seen))
    return code, scale


def _account(
    name: str,
    account: Mapping[str, Any],
    relation: str,
    address: str | None,
    code: str | None,
    scale: int | None,
    base_dir: str,
    environ: Mapping[str, str],
) -> AccountSpec:
    where = f"accounts.{name}"
    raw = account.get("options")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.options must be an object (the ilp-plugin-http options)")
    options = dict(raw)
    for side in ("incoming", "outgoing"):
        if side in options:
            options[side] = _resolve_secrets(
                f"{where}.options.{side}", options[side], base_dir, environ
            )
    segment = account.get("ilpAddressSegment")
    if segment is not None:
        segment = validate.segment(f"{where}.ilpAddressSegment", segment)
        if relation != CHILD:
            raise ConfigError(f"{where}.ilpAddressSegment is for children only")
    if relation == CHILD and segment is None and not is_valid_segment(name):
        raise ConfigError(
            f"{where}: {name!r} is not a valid address segment; set ilpAddressSegment"
        )
    multi = options.get("multi")
    if address is not None:
        options.setdefault("address", address)
        if multi and relation == CHILD and options.get("ildcp") is None:
            assert code is not None and scale is not None
            child = f"{address}.{segment if segment is not None else name}"
            options["ildcp"] = {"clientAddress": child, "assetScale": scale, "assetCode": code}
    try:
        plugin_options = options_from_js(options)
    except ConfigError as exc:
        raise ConfigError(f"{where}.options: {exc}") from None
    # ilp-connector puts the limits next to the options; inside them is accepted too.
    limits = parse_limits(account, f"{where}.")
    if limits.any:
        if plugin_options.limits.any:
            raise ConfigError(f"{where}: give the limits next to options or inside them, not both")
        plugin_options = replace(plugin_options, limits=limits)
    return AccountSpec(name, relation, plugin_options, segment)


def _check_routing(node: NodeConfig) -> None:
    """Catch what the routing table would refuse, now, with the file's words."""
    config = node.routing
    upstream = config.upstream()
    if upstream is not None:
        spec = next(a for a in node.accounts if a.name == upstream)
        if spec.options.outgoing is None:
            raise ConfigError(
                f"accounts.{upstream} has no outgoing link, so it cannot be asked for our"
                " address and asset over IL-DCP: give it options.outgoing, or set"
                " ilpAddress, assetCode and assetScale"
            )
        return  # completed by IL-DCP at run time
    config.table()
