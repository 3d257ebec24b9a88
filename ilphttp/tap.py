"""``twistd ilphttp``: turns command-line flags into a node config, and starts it.

Either one link from flags::

    twistd -n ilphttp --listen tcp:8000:interface=127.0.0.1 \\
        --incoming-token-file in.token --outgoing-url 'http://127.0.0.1:%/' \\
        --outgoing-token-file out.token --multi --ildcp-address test.hub \\
        --asset-code XRP --asset-scale 9

or a node of many accounts from an ilp-connector style file::

    twistd -n ilphttp --config hub.json

This module only reads flags: the file is parsed by :mod:`ilphttp.nodeconfig`,
the node is assembled by :func:`ilphttp.node.make_node`, and ``--workers N``
is :mod:`ilphttp.workers`.  Secrets come from files or the environment, never
from argv (:mod:`ilphttp.secrets`).  Bad options stop startup with one line
naming the option (:class:`~twisted.python.usage.UsageError`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.copyright import version as twisted_version
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python import usage

from ilphttp import __version__, validate
from ilphttp.config import options_from_python
from ilphttp.config_file import ConfigFile, OperationFlags
from ilphttp.endpoint_check import check_distinct_listeners, check_endpoint
from ilphttp.errors import ConfigError, OptionError
from ilphttp.node import HandlerError, NodeService, load_handler_factory, make_node
from ilphttp.node_logs import check_twistd_options, with_log_format
from ilphttp.node_metrics import check_metrics
from ilphttp.nodeconfig import AccountSpec, NodeConfig
from ilphttp.reload import ReloadOnHangup
from ilphttp.routing import CHILD, PEER, RouterConfig
from ilphttp.secrets import token_or_jwt_secret

__all__ = [
    "ENV_INCOMING_JWT_SECRET",
    "ENV_INCOMING_TOKEN",
    "ENV_OUTGOING_JWT_SECRET",
    "ENV_OUTGOING_TOKEN",
    "Options",
    "makeService",
    "make_service",
]

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
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint,"
            " e.g. tcp:9464:interface=127.0.0.1 [default: the file's metrics, else none].",
        ],
        [
            "log-format",
            None,
            None,
            "json or text: ilphttp's log lines instead of twistd's, where twistd logs"
            " [default: the file's logFormat, else twistd's own].",
        ],
        [
            "log-level",
            None,
            None,
            "debug (adds one event per packet), info, warn, error or critical"
            " [default: the file's logLevel, else info].",
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
            number = validate.integer_text("--port", port, 0, 65535)
        except OptionError:
            raise usage.UsageError(f"--port must be a TCP port number, got {port!r}") from None
        self["listen"].append(f"tcp:{number}")

    opt_p = opt_port

    def opt_version(self) -> None:
        """Print ilphttp's and Twisted's versions and exit."""
        print(f"ilphttp {__version__}")
        print(f"Twisted version: {twisted_version}")
        sys.exit(0)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse; under twistd, a bad option is one line on stderr, not the usage text.

        twistd itself prints ~45 lines of usage before the error; as its
        subcommand (``self.parent`` is twistd's options) the error comes first
        and alone, with a hint to ``--help``, and the exit status is 2.
        Called on its own (tests, other programs) it raises ``UsageError``.
        """
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as exc:
            if getattr(self, "parent", None) is None:
                raise
            sys.stderr.write(
                f"twistd ilphttp: {exc}\ntwistd ilphttp: see 'twistd ilphttp --help'\n"
            )
            raise SystemExit(2) from None

    def postOptions(self) -> None:
        try:
            for description in self["listen"]:
                check_endpoint("--listen", validate.string("--listen", description))
            if self["config"] is not None:
                node = self._from_file(self["config"])
            else:
                node = self._from_flags()
            handler = self["handler"]
            self["handler_factory"] = None if handler is None else load_handler_factory(handler)
            self["workers"] = self._workers(node)
            node = self._operations(node)
        except OptionError as exc:
            raise usage.UsageError(str(exc)) from None
        self["node"] = node

    def _operations(self, node: NodeConfig) -> NodeConfig:
        """``node`` with --metrics, --log-format and --log-level applied (flags win;
        the same rule as each reload's, :class:`~ilphttp.config_file.OperationFlags`)."""
        node = self._operation_flags().apply(node)  # with --config, read() applied them
        if node.metrics is not None:
            check_metrics(node.metrics)  # a bad endpoint is a usage error, not a start-up one
        if self["config"] is None:  # with --config, ConfigFile.read checked them
            listeners = [("--listen", description) for description in self["listen"]]
            check_distinct_listeners([*listeners, ("--metrics", node.metrics or "")])
        twistd = getattr(self, "parent", None)
        check_twistd_options(twistd, node.log_format)
        self["twistd"] = None if twistd is None else dict(twistd)
        return node

    def _operation_flags(self) -> OperationFlags:
        return OperationFlags(self["metrics"], self["log-format"], self["log-level"])

    def _workers(self, node: NodeConfig) -> int:
        from ilphttp.workers import listeners_of, parse_workers, refuse_async_senders

        raw = self["workers"]
        count = node.workers if raw is None else parse_workers(raw)
        if count > 1:
            if os.name != "posix":
                raise OptionError("--workers: several worker processes need a POSIX system")
            from_file = self["config"] is not None  # else the one link's listeners are flags
            listeners_of(
                node,
                listen_flags=len(self["listen"]) if from_file else 0,
                accounts_from_flags=not from_file,
            )
            refuse_async_senders(node, count)
        return count

    # -- --config ------------------------------------------------------------------

    def _from_file(self, path: str) -> NodeConfig:
        for name in _LINK_PARAMETERS + _LINK_FLAGS:
            if self[name]:
                raise OptionError(
                    f"--{name} describes a single link and cannot be combined with --config;"
                    " put it in the file's account options"
                )
        # With --config, --listen/--port are the node's shared listeners.
        self["config_file"] = ConfigFile(
            path, self.environ, tuple(self["listen"]), self._operation_flags()
        )
        return self["config_file"].read()  # the same reading as each reload's

    # -- one link from the flags -----------------------------------------------------

    def _credentials(self, side: str, *, both_allowed: bool) -> tuple[str | None, str | None]:
        token_flag, jwt_flag = f"{side}-token-file", f"{side}-jwt-secret-file"
        incoming = side == "incoming"
        return token_or_jwt_secret(
            f"{side} authentication",
            (f"--{token_flag}", self[token_flag]),
            (f"--{jwt_flag}", self[jwt_flag]),
            ENV_INCOMING_TOKEN if incoming else ENV_OUTGOING_TOKEN,
            ENV_INCOMING_JWT_SECRET if incoming else ENV_OUTGOING_JWT_SECRET,
            self.environ,
            both_allowed=both_allowed,
        )

    def _from_flags(self) -> NodeConfig:
        listen = tuple(self["listen"])
        if not listen:
            raise OptionError("--listen or --port is required (or --config FILE)")
        for description in listen:
            validate.string("--listen", description)
        if self["multi-delimiter"] is not None:
            if not self["multi"]:
                raise OptionError("--multi-delimiter needs --multi")
            validate.string("--multi-delimiter", self["multi-delimiter"])
        url = self["outgoing-url"]
        if url is None:
            for name in (*_OUTGOING_ONLY, "send-ilp-destination"):
                if self[name]:
                    raise OptionError(f"--{name} needs --outgoing-url")
        else:
            delimiter = (self["multi-delimiter"] or "%") if self["multi"] else None
            try:
                validate.http_url("--outgoing-url", url, delimiter=delimiter)
            except OptionError as exc:
                if self["multi"] or "%" not in url:
                    raise
                raise OptionError(f"{exc}; a URL template needs --multi") from None
        if self["name"] is not None and any(c in self["name"] for c in "\r\n\0"):
            raise OptionError("--name must not contain line breaks")
        address = self["ildcp-address"]
        code = self["asset-code"]
        raw_scale = self["asset-scale"]
        scale = None
        if raw_scale is not None:
            scale = validate.integer_text("--asset-scale", raw_scale, 0, 255)
        if address is not None:
            validate.address("--ildcp-address", address)
            if code is None:
                raise OptionError("--ildcp-address needs --asset-code")
            if scale is None:
                raise OptionError("--ildcp-address needs --asset-scale")
        else:
            for name, value in (("asset-code", code), ("asset-scale", scale)):
                if value is not None:
                    raise OptionError(f"--{name} needs --ildcp-address")
        if self["handler"] is None:
            if not self["multi"]:
                raise OptionError(
                    "a single bilateral link gives the router nowhere to route: use --multi"
                    " (a hub for many children), --config (several accounts) or --handler"
                )
            if address is None:
                raise OptionError(
                    "--multi needs --ildcp-address: the children's addresses are"
                    " <address>.<their name>, and a single link has no parent to ask"
                )
            if url is None:
                raise OptionError(
                    "--multi needs --outgoing-url, a URL template with the delimiter,"
                    " to reach the children"
                )
        in_token, in_jwt = self._credentials("incoming", both_allowed=True)
        out_token = out_jwt = None
        if url is not None:
            out_token, out_jwt = self._credentials("outgoing", both_allowed=False)
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
        if self["handler"] is None:
            node.routing.table()  # what the router will refuse, refused now
        return node


def make_service(
    options: Mapping[str, Any],
    reactor: Any = None,
    listeners: Mapping[str, Sequence[IStreamServerEndpoint]] | None = None,
) -> NodeService:
    """The node for parsed :class:`Options` (see :func:`ilphttp.node.make_node`).

    A handler factory that returns no handler, or another option make_node
    refuses, stops twistd with one line (naming ``--handler`` only when it is
    the handler's fault).
    """
    try:
        service = make_node(options["node"], options.get("handler_factory"), reactor, listeners)
    except HandlerError as exc:
        raise SystemExit(f"ilphttp: --handler {options.get('handler')}: {exc}") from None
    except OptionError as exc:
        raise SystemExit(f"ilphttp: {exc}") from None
    service.config_file = options.get("config_file")
    return service


def makeService(options: Mapping[str, Any]) -> IService:
    """twistd's entry point (IServiceMaker.makeService).

    With ``--workers N`` (N > 1) this process only opens the ports, serves the
    metrics and supervises N worker processes: see :mod:`ilphttp.workers`.
    With ``--config``, SIGHUP reloads the file (docs/reload.rst); with
    ``--workers N`` the parent reloads, and passes it on to the workers.
    Without ``--config`` a SIGHUP is refused with one log line, and the node
    keeps running.
    The service sets the application's log observer, which drops events below
    ``logLevel`` (``--log-format``'s, else twistd's own: :mod:`ilphttp.node_logs`).
    """
    node: NodeConfig = options["node"]
    workers = options.get("workers") or 1
    service: IService
    if workers > 1:
        from ilphttp.worker_metrics import supervise
        from ilphttp.workers import WorkersService

        # The parent serves the workers' metrics; they serve none themselves.
        supervisor = WorkersService(node, options.get("handler"), workers)
        supervisor.config_file = options.get("config_file")
        supervisor.fatal_exit_status = 1  # as a single process that cannot start
        top = MultiService()
        supervise(supervisor, node.metrics).setServiceParent(top)
        # Always: without a file a SIGHUP is refused in one line, never kills the node.
        ReloadOnHangup(supervisor).setServiceParent(top)
        service = top
    else:
        node_service = make_service(options)
        # As with workers: without a file a SIGHUP is refused in one line (its
        # default action would kill the node, with no drain).
        ReloadOnHangup(node_service).setServiceParent(node_service)
        service = node_service
    return with_log_format(service, node.log_format, node.log_level, options.get("twistd"))


def single_link(
    listen: tuple[str, ...] = (),
    incoming_token: str | None = None,
    incoming_jwt_secret: str | None = None,
    outgoing_url: str | None = None,
    outgoing_token: str | None = None,
    outgoing_jwt_secret: str | None = None,
    name: str | None = None,
    send_ilp_destination: bool = False,
    multi: bool = False,
    multi_delimiter: str | None = None,
    ildcp_address: str | None = None,
    asset_code: str | None = None,
    asset_scale: int | None = None,
    account: str = "link",
) -> NodeConfig:
    """A node of one link (``twistd ilphttp --listen ... --outgoing-url ...``).

    In multi mode the link is a child account whose children are
    ``<ildcp_address>.<their name>``, and the router passes packets between
    them.  The caller has validated each value under its own name (flags);
    errors here name the plugin option.
    """
    incoming: dict[str, Any] | None = None
    if listen:
        incoming = {"endpoint": listen[0]}
        if incoming_token is not None:
            incoming["static_token"] = incoming_token
        if incoming_jwt_secret is not None:
            incoming["jwt_secret"] = incoming_jwt_secret
    outgoing: dict[str, Any] | None = None
    if outgoing_url is not None:
        outgoing = {"url": outgoing_url, "send_ilp_destination": send_ilp_destination}
        if outgoing_token is not None:
            outgoing["static_token"] = outgoing_token
        if outgoing_jwt_secret is not None:
            outgoing["jwt_secret"] = outgoing_jwt_secret
        if name is not None:
            outgoing["name"] = name
    ildcp = None
    if ildcp_address is not None:
        if asset_code is None or asset_scale is None:
            raise ConfigError("the IL-DCP address needs an asset code and scale")
        ildcp = {
            "client_address": ildcp_address,
            "asset_scale": asset_scale,
            "asset_code": asset_code,
        }
    options = options_from_python(
        incoming,
        outgoing,
        multi,
        "%" if multi_delimiter is None else multi_delimiter,
        ildcp,
        ildcp_address,
    )
    spec = AccountSpec(account, CHILD if multi else PEER, options, extra_listen=listen[1:])
    return NodeConfig(
        accounts=(spec,),
        routing=RouterConfig(
            accounts=(spec.routing(),),
            address=ildcp_address,
            asset_code=asset_code,
            asset_scale=asset_scale,
        ),
    )
