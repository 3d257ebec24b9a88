"""``twistd ilphttp``: an ILP-over-HTTP node as a supervised Twisted service.

Either one link from flags::

    twistd -n ilphttp --listen tcp:8000:interface=127.0.0.1 \\
        --incoming-token-file in.token --outgoing-url 'http://127.0.0.1:%/' \\
        --outgoing-token-file out.token --multi --ildcp-address test.hub \\
        --asset-code XRP --asset-scale 9

or a node of many accounts from an ilp-connector style file::

    twistd -n ilphttp --config hub.json

Every account is a :class:`~ilphttp.PluginHttp` under one MultiService; the
data handler is :mod:`ilphttp.router` unless ``--handler pkg.module:callable``
names a factory of your own.  Secrets come from files or the environment,
never from argv, and are never logged.  Bad options stop startup with one
line naming the option (:class:`~twisted.python.usage.UsageError`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage

from ilphttp.config import OptionError
from ilphttp.nodeconfig import (
    ConfigError,
    NodeConfig,
    load_file,
    parse_node,
    read_secret_file,
    single_link,
)
from ilphttp.packet import is_valid_address
from ilphttp.plugin import DataHandler, PluginHttp
from ilphttp.router import Router, RoutingError

__all__ = [
    "ENV_INCOMING_JWT_SECRET",
    "ENV_INCOMING_TOKEN",
    "ENV_OUTGOING_JWT_SECRET",
    "ENV_OUTGOING_TOKEN",
    "HandlerContext",
    "NodeService",
    "Options",
    "load_handler_factory",
    "makeService",
    "make_service",
]

_log = Logger()

ENV_INCOMING_TOKEN = "ILPHTTP_INCOMING_TOKEN"
ENV_INCOMING_JWT_SECRET = "ILPHTTP_INCOMING_JWT_SECRET"
ENV_OUTGOING_TOKEN = "ILPHTTP_OUTGOING_TOKEN"
ENV_OUTGOING_JWT_SECRET = "ILPHTTP_OUTGOING_JWT_SECRET"

#: the flags that describe the single link (meaningless with --config)
_LINK_PARAMETERS = (
    "outgoing-url",
    "name",
    "multi-delimiter",
    "ildcp-address",
    "asset-code",
    "asset-scale",
    "incoming-token-file",
    "outgoing-token-file",
    "incoming-jwt-secret-file",
    "outgoing-jwt-secret-file",
)
_LINK_FLAGS = ("multi", "send-ilp-destination")
_OUTGOING_ONLY = ("name", "outgoing-token-file", "outgoing-jwt-secret-file")


@dataclass(frozen=True)
class HandlerContext:
    """What a ``--handler`` factory is called with, once per account.

    The factory returns that account's data handler:
    ``handler(prepare: bytes) -> bytes | Deferred[bytes]`` (a serialized
    Fulfill or Reject).  ``plugins`` holds every account's plugin, so a
    handler may forward packets with ``plugins[name].send_data(...)``.
    """

    account: str
    relation: str
    plugin: PluginHttp
    plugins: Mapping[str, PluginHttp]
    node: NodeConfig


HandlerFactory = Callable[[HandlerContext], DataHandler]


def load_handler_factory(spec: str) -> HandlerFactory:
    """Import ``pkg.module:callable``; raises UsageError with the reason."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise usage.UsageError(f"--handler must be pkg.module:callable, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise usage.UsageError(f"--handler: cannot import {module_name}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise usage.UsageError(f"--handler: {module_name} has no {attribute}") from None
    if not callable(target):
        raise usage.UsageError(f"--handler: {spec} is not callable")
    factory: HandlerFactory = target
    return factory


class Options(usage.Options):
    """``twistd ilphttp`` options (see ``twistd ilphttp --help``)."""

    synopsis = "[--config FILE | --listen ENDPOINT [link options]] [--handler pkg.module:callable]"

    longdesc = (
        "Run an Interledger-over-HTTP node (wire-compatible with ilp-plugin-http). "
        "With --config, every account of an ilp-connector style JSON/TOML file becomes a "
        "link; otherwise the flags describe one link. Packets are routed between the "
        "accounts by address (ilphttp.router) unless --handler names your own data handler "
        "factory. Secrets are read from files or from the environment variables "
        f"{ENV_INCOMING_TOKEN}, {ENV_INCOMING_JWT_SECRET}, {ENV_OUTGOING_TOKEN} and "
        f"{ENV_OUTGOING_JWT_SECRET}; the file options win over the environment."
    )

    optParameters = [
        ["config", "c", None, "An ilp-connector style config file (JSON, or TOML)."],
        ["outgoing-url", None, None, "The peer's URL (in multi mode a template: see --multi)."],
        ["name", None, None, "Our ILP-Peer-Name sent to the peer (default: our port)."],
        ["multi-delimiter", None, None, "What the child's name replaces in the URL [default: %]."],
        ["ildcp-address", None, None, "Our ILP address (multi: children get <address>.<name>)."],
        ["asset-code", None, None, "The asset code children are told over IL-DCP."],
        ["asset-scale", None, None, "The asset scale children are told over IL-DCP (0..255)."],
        ["incoming-token-file", None, None, "File holding the token peers must send us."],
        ["outgoing-token-file", None, None, "File holding the token we send to the peer."],
        ["incoming-jwt-secret-file", None, None, "File holding the HS256 secret for peers' JWTs."],
        ["outgoing-jwt-secret-file", None, None, "File holding the HS256 secret to sign our JWTs."],
        [
            "handler",
            None,
            None,
            "pkg.module:callable: your data handler factory, not the router.",
        ],
        [
            "workers",
            None,
            None,
            "Worker processes sharing the listening ports (tcp:/ssl: only)"
            " [default: the file's workers, else 1].",
        ],
    ]

    optFlags = [
        ["multi", None, "Multilateral (hub) mode: serve many children through one link."],
        ["send-ilp-destination", None, "Send the ILP-Destination header."],
    ]

    compData = usage.Completions(
        optActions={
            "config": usage.CompleteFiles("*.json *.toml"),
            "incoming-token-file": usage.CompleteFiles(),
            "outgoing-token-file": usage.CompleteFiles(),
            "incoming-jwt-secret-file": usage.CompleteFiles(),
            "outgoing-jwt-secret-file": usage.CompleteFiles(),
        }
    )

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        usage.Options.__init__(self)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """An endpoint to listen on, e.g. tcp:8000:interface=127.0.0.1 or
        ssl:8443:privateKey=key.pem:certKey=cert.pem (repeatable)."""
        self["listen"].append(description)

    def opt_port(self, port: str) -> None:
        """Shorthand for --listen tcp:PORT."""
        try:
            number = int(port, 10)
        except ValueError:
            number = -1
        if not 0 <= number <= 65535:
            raise usage.UsageError(f"--port must be a TCP port number, got {port!r}")
        self["listen"].append(f"tcp:{number}")

    opt_p = opt_port

    def postOptions(self) -> None:
        try:
            if self["config"] is not None:
                node = self._from_file(self["config"])
            else:
                node = self._from_flags()
        except (ConfigError, OptionError, RoutingError) as exc:
            raise usage.UsageError(str(exc)) from None
        self["node"] = node
        handler = self["handler"]
        self["handler_factory"] = None if handler is None else load_handler_factory(handler)
        self["workers"] = self._workers(node)

    def _workers(self, node: NodeConfig) -> int:
        from ilphttp.workers import listeners_of, parse_workers

        raw = self["workers"]
        try:
            count = node.workers if raw is None else parse_workers(raw)
            if count > 1:
                if os.name != "posix":
                    raise ConfigError("--workers: several worker processes need a POSIX system")
                listeners_of(node)
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None
        return count

    # -- --config ------------------------------------------------------------------

    def _from_file(self, path: str) -> NodeConfig:
        if self["listen"]:
            raise usage.UsageError(
                "--listen/--port cannot be combined with --config: give each account"
                " its incoming.port or incoming.endpoint in the file"
            )
        for name in _LINK_PARAMETERS:
            if self[name] is not None:
                raise usage.UsageError(
                    f"--{name} describes a single link and cannot be combined with --config;"
                    " put it in the file's account options"
                )
        for name in _LINK_FLAGS:
            if self[name]:
                raise usage.UsageError(
                    f"--{name} describes a single link and cannot be combined with --config;"
                    " put it in the file's account options"
                )
        data = load_file(path)
        try:
            return parse_node(data, os.path.dirname(os.path.abspath(path)), self.environ)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    # -- one link from the flags -----------------------------------------------------

    def _secret(self, flag: str, env: str) -> str | None:
        path = self[flag]
        if path is not None:
            return read_secret_file(path, f"--{flag}")
        value = self.environ.get(env)
        return value or None

    def _side_secrets(self, side: str) -> tuple[str | None, str | None]:
        token_flag, jwt_flag = f"{side}-token-file", f"{side}-jwt-secret-file"
        token_env = ENV_INCOMING_TOKEN if side == "incoming" else ENV_OUTGOING_TOKEN
        jwt_env = ENV_INCOMING_JWT_SECRET if side == "incoming" else ENV_OUTGOING_JWT_SECRET
        if self[token_flag] is not None or self[jwt_flag] is not None:
            # An explicit file wins over everything in the environment.
            token = None if self[token_flag] is None else self._secret(token_flag, "")
            jwt = None if self[jwt_flag] is None else self._secret(jwt_flag, "")
        else:
            token = self._secret(token_flag, token_env)
            jwt = self._secret(jwt_flag, jwt_env)
        if token is None and jwt is None:
            raise usage.UsageError(
                f"{side} authentication is missing: give --{token_flag} or --{jwt_flag},"
                f" or set {token_env} or {jwt_env}"
            )
        if side == "outgoing" and token is not None and jwt is not None:
            sources = (
                f"--{token_flag}" if self[token_flag] is not None else token_env,
                f"--{jwt_flag}" if self[jwt_flag] is not None else jwt_env,
            )
            raise usage.UsageError(
                f"outgoing authentication: give {sources[0]} or {sources[1]}, not both"
            )
        return token, jwt

    def _from_flags(self) -> NodeConfig:
        listen = tuple(self["listen"])
        if not listen:
            raise usage.UsageError("--listen or --port is required (or --config FILE)")
        url = self["outgoing-url"]
        if url is None:
            for name in _OUTGOING_ONLY:
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} needs --outgoing-url")
            if self["send-ilp-destination"]:
                raise usage.UsageError("--send-ilp-destination needs --outgoing-url")
        if self["multi-delimiter"] is not None and not self["multi"]:
            raise usage.UsageError("--multi-delimiter needs --multi")
        address = self["ildcp-address"]
        code = self["asset-code"]
        scale = self._asset_scale()
        if address is not None:
            if not is_valid_address(address):
                raise usage.UsageError(f"--ildcp-address {address!r} is not a valid ILP address")
            if code is None:
                raise usage.UsageError("--ildcp-address needs --asset-code")
            if scale is None:
                raise usage.UsageError("--ildcp-address needs --asset-scale")
        else:
            for name, value in (("asset-code", code), ("asset-scale", scale)):
                if value is not None:
                    raise usage.UsageError(f"--{name} needs --ildcp-address")
        if self["handler"] is None:
            if not self["multi"]:
                raise usage.UsageError(
                    "a single bilateral link gives the router nowhere to route: use --multi"
                    " (a hub for many children), --config (several accounts) or --handler"
                )
            if address is None:
                raise usage.UsageError(
                    "--multi needs --ildcp-address: the children's addresses are"
                    " <address>.<their name>, and a single link has no parent to ask"
                )
            if url is None:
                raise usage.UsageError(
                    "--multi needs --outgoing-url, a URL template with the delimiter,"
                    " to reach the children"
                )
        in_token, in_jwt = self._side_secrets("incoming")
        out_token = out_jwt = None
        if url is not None:
            out_token, out_jwt = self._side_secrets("outgoing")
        try:
            node = single_link(
                listen=listen,
                incoming_token=in_token,
                incoming_jwt_secret=in_jwt,
                outgoing_url=url,
                outgoing_token=out_token,
                outgoing_jwt_secret=out_jwt,
                name=self["name"],
                send_ilp_destination=bool(self["send-ilp-destination"]),
                multi=bool(self["multi"]),
                multi_delimiter=self["multi-delimiter"],
                ildcp_address=address,
                asset_code=code,
                asset_scale=scale,
            )
        except ConfigError as exc:
            raise usage.UsageError(_flag_words(str(exc))) from None
        if self["handler"] is None:
            node.router_config().table()  # RoutingError: reported by postOptions
        return node

    def _asset_scale(self) -> int | None:
        raw = self["asset-scale"]
        if raw is None:
            return None
        try:
            scale = int(raw, 10)
        except ValueError:
            scale = -1
        if not 0 <= scale <= 255:
            raise usage.UsageError(f"--asset-scale must be an integer from 0 to 255, got {raw!r}")
        return scale


def _flag_words(message: str) -> str:
    """A plugin option error in the words of the flags that set it."""
    for option, flag in (
        ("outgoing.url", "--outgoing-url"),
        ("outgoing.name", "--name"),
        ("incoming.endpoint", "--listen"),
        ("multi_delimiter", "--multi-delimiter"),
    ):
        message = message.replace(option, flag)
    return message


# -- the service ----------------------------------------------------------------------


class NodeService(MultiService):
    """The node: one PluginHttp per account, and the router (or your handlers).

    A listening failure (port in use, bad endpoint) stops twistd with one line
    naming the account, not a traceback.
    """

    def __init__(self, node: NodeConfig) -> None:
        MultiService.__init__(self)
        self.node = node
        self.plugins: dict[str, PluginHttp] = {}
        self.router: Router | None = None

    def privilegedStartService(self) -> None:
        for service in self:
            self._guard(service, service.privilegedStartService)

    def startService(self) -> None:
        Service.startService(self)
        for ignored in self.node.ignored:
            _log.info("ignoring the ilp-connector setting {setting}", setting=ignored)
        for service in self:
            self._guard(service, service.startService)
        node = self.node
        if node.address is not None:
            _log.info(
                "our address is {address}, asset {code} scale {scale}",
                address=node.address,
                code=node.asset_code if node.asset_code is not None else "(from the parent)",
                scale=node.asset_scale if node.asset_scale is not None else "(from the parent)",
            )
        elif self.router is not None:
            _log.info("our address comes from the parent over IL-DCP")
        for spec in self.node.accounts:
            plugin = self.plugins.get(spec.name)
            listening = "send-only"
            if plugin is not None and plugin.port is not None:
                host = plugin.port.getHost()
                listening = f"listening on port {getattr(host, 'port', host)}"
            if spec.extra_listen:
                listening += f" (and {', '.join(spec.extra_listen)})"
            _log.info(
                "account {account}: {relation}{multi}, {listening}",
                account=spec.name,
                relation=spec.relation,
                multi=", multi" if spec.multi else "",
                listening=listening,
            )

    def _guard(self, service: IService, start: Callable[[], object]) -> None:
        try:
            start()
        except (CannotListenError, OptionError) as exc:
            what = getattr(service, "name", None) or "a listener"
            message = f"cannot start {what}: {exc}"
            _log.critical("{message}", message=message)
            raise SystemExit(f"ilphttp: {message}") from None


def make_service(
    options: Mapping[str, Any],
    reactor: Any = None,
    listeners: Mapping[str, Sequence[IStreamServerEndpoint]] | None = None,
) -> NodeService:
    """The node's MultiService for parsed :class:`Options`.

    ``listeners`` (account -> endpoints: its incoming one, then its extra
    ``--listen`` ones) replaces the accounts' endpoint strings; a worker of
    :mod:`ilphttp.workers` passes its adopted sockets so.
    """
    node: NodeConfig = options["node"]
    factory: HandlerFactory | None = options.get("handler_factory")
    service = NodeService(node)
    for spec in node.accounts:
        endpoints = None if listeners is None else listeners.get(spec.name)
        plugin = PluginHttp(
            options=spec.options, reactor=reactor, endpoint=endpoints[0] if endpoints else None
        )
        plugin.setName(spec.name)
        plugin.setServiceParent(service)
        service.plugins[spec.name] = plugin
        for i, description in enumerate(spec.extra_listen):
            assert plugin.site is not None
            listener: Service
            if endpoints:
                listener = StreamServerEndpointService(endpoints[i + 1], plugin.site)
                listener._raiseSynchronously = True
            else:
                listener = strports.service(description, plugin.site, reactor=reactor)
            listener.setName(f"{spec.name}-listen-{i + 1}")
            listener.setServiceParent(service)
    if factory is None:
        router = Router(node.router_config(), service.plugins, reactor)
        router.setName("router")
        router.setServiceParent(service)
        service.router = router
        return service
    for spec in node.accounts:
        plugin = service.plugins[spec.name]
        context = HandlerContext(spec.name, spec.relation, plugin, service.plugins, node)
        handler = factory(context)
        if not callable(handler):
            raise SystemExit(
                f"ilphttp: --handler {options.get('handler')} returned"
                f" {type(handler).__name__}, not a callable data handler"
            )
        plugin.register_data_handler(handler)
    return service


def makeService(options: Mapping[str, Any]) -> IService:
    """twistd's entry point (IServiceMaker.makeService).

    With ``--workers N`` (N > 1) this process only opens the ports and
    supervises N worker processes: see :mod:`ilphttp.workers`.
    """
    workers = options.get("workers") or 1
    if workers > 1:
        from ilphttp.workers import WorkersService

        return WorkersService(options["node"], options.get("handler"), workers)
    return make_service(options)
