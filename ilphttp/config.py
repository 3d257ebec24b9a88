"""Plugin options: validated once, at construction, with errors that name the option.

Two spellings are accepted: Pythonic keyword dicts (``static_token``) and the
JS plugin's option object as found in an ilp-connector account
(``staticToken``), legacy aliases included.  Both produce the same frozen
:class:`PluginOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ilphttp import validate
from ilphttp._option_fields import (
    JS,
    PY,
    Spelling,
    auth,
    callback_url,
    callback_urls,
    leeway,
    mode,
    peer_name,
    pick,
)
from ilphttp.auth import PublicKey
from ilphttp.endpoint_check import check_endpoint
from ilphttp.errors import OptionError
from ilphttp.ildcp import IldcpResponse, as_response
from ilphttp.limits import Limits, parse_limits
from ilphttp.multi import ChildNameError, ChildUrlTemplate
from ilphttp.secrets import read_public_key
from ilphttp.server_limits import (
    DEFAULT_LIMITS,
    SERVER_LIMIT_KEYS,
    ServerLimits,
    parse_server_limits,
)

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_JWT_EXPIRY",
    "ILP_OCTET_STREAM",
    "OCTET_STREAM",
    "ChildCredentials",
    "IncomingOptions",
    "OptionError",
    "OutgoingOptions",
    "PluginOptions",
    "options_from_js",
    "options_from_python",
]

#: seconds; the JS plugin's 30,000 ms
DEFAULT_JWT_EXPIRY = 30.0
#: RFC 35: a request's ``Content-Type`` and ``Accept`` MUST be this; rafiki
#: refuses any other content type (``middleware/ilp-packet.ts``, HTTP 400)
OCTET_STREAM = "application/octet-stream"
#: what the JS plugin 1.6.1 sends; ilphttp, the JS plugin and the Java
#: connector accept it, rafiki does not
ILP_OCTET_STREAM = "application/ilp+octet-stream"
#: the values of ``outgoing.content_type`` (JS: ``contentType``)
CONTENT_TYPES = (OCTET_STREAM, ILP_OCTET_STREAM)


@dataclass(frozen=True)
class ChildCredentials:
    """What one child of a multi account authenticates with (``incoming.children``).

    A request claiming this child's name (``ILP-Peer-Name``) must carry one of
    its static tokens, or a JWT -- verified under the account's JWT secrets or
    public key -- whose ``sub`` is :attr:`subject`.
    """

    static_tokens: tuple[str, ...] = field(default=(), repr=False)
    subject: str | None = None


@dataclass(frozen=True)
class IncomingOptions:
    """Where and how incoming packets are accepted."""

    port: int | None = None
    endpoint: str | None = None
    # Secrets stay out of reprs, and so out of logs.
    static_token: str | None = field(default=None, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    #: with a TLS listener that verifies client certificates (``caCerts=``),
    #: only a client whose certificate names this identity (SAN DNS name, or
    #: CN without SANs) is served; others get HTTP 403.
    client_identity: str | None = None
    #: Prepares whose handler has not answered yet, at most; past it HTTP 503
    #: (the sender's T00), so a slow handler cannot pile up unbounded work.
    max_in_flight: int = 4096
    #: more static tokens, all accepted beside ``static_token`` (rotation)
    static_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: more HS256 secrets, all accepted beside ``jwt_secret`` (rotation)
    jwt_secrets: tuple[str, ...] = field(default=(), repr=False)
    #: when set, a JWT's ``aud`` (string or list) must contain it; else ``aud`` is ignored
    audience: str | None = None
    #: when set, a JWT's ``iss`` must equal it; else ``iss`` is ignored
    issuer: str | None = None
    #: when set, a JWT's ``sub`` must equal it; else ``sub`` is ignored
    subject: str | None = None
    #: seconds of clock skew allowed on ``exp`` and ``nbf`` (JS ``jwtLeeway``: ms)
    jwt_leeway: float = 0.0
    #: PEM public key (RSA: RS256, EC P-256: ES256) that verifies JWTs too
    jwt_public_key_file: str | None = None
    #: the key read from ``jwt_public_key_file`` at validation
    jwt_public_key: PublicKey | None = field(default=None, repr=False, compare=False)
    #: multi accounts only: each child's name bound to its own credentials;
    #: when set, a name not listed here, or claimed with another child's
    #: credential, is refused (HTTP 401)
    children: Mapping[str, ChildCredentials] | None = None
    #: RFC 35: URL prefixes a peer's ``Callback-Url`` may start with, beside
    #: the origin of our outgoing URL (:class:`ilphttp.callbacks.CallbackPolicy`)
    callback_urls: tuple[str, ...] = ()
    #: its listeners' connection cap, deadlines, header limits, idle timeout
    #: and drain grace period (docs/options.rst, "Listener limits")
    server_limits: ServerLimits = DEFAULT_LIMITS

    @property
    def listen_description(self) -> str | None:
        """The Twisted endpoint string to listen on, if any."""
        if self.endpoint is not None:
            return self.endpoint
        if self.port is not None:
            return f"tcp:{self.port}"
        return None


@dataclass(frozen=True)
class OutgoingOptions:
    """Where and how outgoing packets are sent."""

    url: str
    static_token: str | None = field(default=None, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_expiry: float = DEFAULT_JWT_EXPIRY
    #: ``sub``, ``aud`` and ``iss`` of the JWTs we sign (none when None); the
    #: Java connector's JWT_HS_256 profile needs ``sub`` = its token subject
    jwt_subject: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    #: False when a legacy option (``secret``/``secretToken``) was used: the JS
    #: plugin then sends the raw token without the ``"Bearer "`` prefix.
    bearer: bool = True
    http2: bool = False
    http2_max_requests_per_session: int | None = None
    name: str | None = None
    send_ilp_destination: bool = False
    #: PEM file of CAs that verify https:// peers (default: the system's).
    ca_file: str | None = None
    #: client certificate (PEM, key included or in ``client_key_file``) for mutual TLS
    client_cert_file: str | None = None
    client_key_file: str | None = None
    #: the ``Content-Type`` of the Prepares sent, one of :data:`CONTENT_TYPES`;
    #: ``Accept`` is always :data:`OCTET_STREAM`
    content_type: str = OCTET_STREAM
    #: multi accounts whose child's name fills the port of ``url``: the
    #: ports a name may select, inclusive (JS ``childPortRange``: ``[low, high]``)
    child_port_range: tuple[int, int] = (1, 65535)
    #: ``"sync"``, or ``"async"``: RFC 35, the reply comes to :attr:`callback_url`
    mode: str = "sync"
    #: async mode: the ``Callback-Url`` of our Prepares (required there)
    callback_url: str | None = None


@dataclass(frozen=True)
class PluginOptions:
    """Everything a :class:`~ilphttp.PluginHttp` is configured with."""

    incoming: IncomingOptions | None
    outgoing: OutgoingOptions | None
    multi: bool = False
    multi_delimiter: str = "%"
    ildcp: IldcpResponse | None = None
    #: our own ILP address (for ``triggered_by``); defaults to the IL-DCP address
    address: str | None = None
    #: limits on the peer's Prepares (and ours): ``rateLimit``, ``maxPacketAmount``,
    #: ``throughput`` (docs/limits.rst)
    limits: Limits = field(default_factory=Limits)


_INCOMING = {
    "port",
    "endpoint",
    "static_token",
    "jwt_secret",
    "secret",
    "secret_token",
    "client_identity",
    "max_in_flight",
    "static_tokens",
    "jwt_secrets",
    "audience",
    "issuer",
    "subject",
    "jwt_leeway",
    "jwt_public_key_file",
    "children",
    "callback_urls",
    *(key for key in SERVER_LIMIT_KEYS if "_" in key),
}
_CHILD = {"static_tokens", "subject"}
_OUTGOING = {
    "url",
    "static_token",
    "jwt_secret",
    "jwt_expiry",
    "jwt_subject",
    "jwt_audience",
    "jwt_issuer",
    "secret",
    "secret_token",
    "token_expiry",
    "http2",
    "http2_max_requests_per_session",
    "name",
    "send_ilp_destination",
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "content_type",
    "child_port_range",
    "mode",
    "callback_url",
}
_TOP = {
    "multi",
    "multi_delimiter",
    "ildcp",
    "incoming",
    "outgoing",
    "address",
    "rate_limit",
    "max_packet_amount",
    "throughput",
}
#: the options :func:`ilphttp.limits.parse_limits` reads
_LIMITS = {"rate_limit", "max_packet_amount", "throughput"}


def _children(
    sp: Spelling, where: str, value: Any, verifies_jwt: bool
) -> dict[str, ChildCredentials]:
    """``incoming.children``: ``{name: {static_tokens: [...], subject: "..."}}``."""
    if not isinstance(value, Mapping) or not value:
        raise OptionError(f"{where} must be an object of child names")
    children: dict[str, ChildCredentials] = {}
    owners: dict[str, str] = {}
    for name, entry in value.items():
        validate.segment(f"{where} name", name)
        at = f"{where}.{name}"
        validate.check_keys(at, entry, sp.names(_CHILD))
        tokens = validate.string_list(
            f"{at}.{sp('static_tokens')}", entry.get(sp("static_tokens")), None, validate.token
        )
        subject = validate.optional_string(f"{at}.subject", entry.get("subject"))
        if not tokens and subject is None:
            raise OptionError(f"{at} needs {sp('static_tokens')} or a subject")
        if subject is not None and not verifies_jwt:
            raise OptionError(f"{at}.subject applies to JWTs: give the account a JWT secret")
        for i, token in enumerate(tokens):
            other = owners.setdefault(token, name)
            if other != name:
                raise OptionError(f"{at}.{sp('static_tokens')}[{i}] is also {where}.{other}'s")
        children[name] = ChildCredentials(tokens, subject)
    subjects = [c.subject for c in children.values() if c.subject is not None]
    if len(subjects) != len(set(subjects)):
        raise OptionError(f"{where}: two children have the same subject")
    return children


def _incoming(sp: Spelling, inc: Mapping[str, Any]) -> IncomingOptions:
    validate.check_keys("incoming", inc, sp.names(_INCOMING))

    def opt(name: str) -> Any:
        return inc.get(sp(name))

    def where(name: str) -> str:
        return f"incoming.{sp(name)}"

    port = inc.get("port")
    if port is not None:
        port = validate.integer("incoming.port", port, 0, 65535)
    endpoint = validate.optional_string("incoming.endpoint", inc.get("endpoint"))
    if endpoint is not None:
        check_endpoint("incoming.endpoint", endpoint)
    if port is not None and endpoint is not None:
        raise OptionError("give incoming.port or incoming.endpoint, not both")
    static_token, jwt_secret = auth(sp, "incoming", inc)
    static_tokens = validate.string_list(
        where("static_tokens"), opt("static_tokens"), static_token, validate.token
    )
    jwt_secrets = validate.string_list(
        where("jwt_secrets"), opt("jwt_secrets"), jwt_secret, validate.secret
    )
    key_file, public_key = read_public_key(where("jwt_public_key_file"), opt("jwt_public_key_file"))
    verifies_jwt = jwt_secret is not None or bool(jwt_secrets) or public_key is not None
    children = None
    if opt("children") is not None:
        children = _children(sp, where("children"), opt("children"), verifies_jwt)
        for name in ("static_token", "static_tokens", "subject"):
            if opt(name) is not None or (name == "static_token" and static_token is not None):
                raise OptionError(
                    f"{where(name)} and {where('children')}: with children, each child"
                    " authenticates with its own tokens or JWT subject"
                )
    if static_token is None and not static_tokens and not verifies_jwt and not children:
        raise OptionError(
            "incoming needs a static token or a JWT secret"
            f" ({where('static_token')}, {where('static_tokens')},"
            f" {where('jwt_secret')}, {where('jwt_secrets')}"
            f" or {where('jwt_public_key_file')})"
        )
    claims = {
        name: validate.optional_string(where(name), opt(name))
        for name in ("audience", "issuer", "subject")
    }
    given_leeway = opt("jwt_leeway")
    jwt_leeway = 0.0 if given_leeway is None else leeway(sp, where("jwt_leeway"), given_leeway)
    if not verifies_jwt:
        for name in ("audience", "issuer", "subject", "jwt_leeway"):
            if opt(name) is not None:
                raise OptionError(
                    f"{where(name)} applies to JWTs: give {where('jwt_secret')},"
                    f" {where('jwt_secrets')} or {where('jwt_public_key_file')} too"
                )
    identity = validate.optional_string(where("client_identity"), opt("client_identity"))
    max_in_flight = opt("max_in_flight")
    max_in_flight = (
        4096
        if max_in_flight is None
        else validate.integer(where("max_in_flight"), max_in_flight, 1, 2**31)
    )
    return IncomingOptions(
        port=port,
        endpoint=endpoint,
        static_token=static_token,
        jwt_secret=jwt_secret,
        client_identity=identity,
        max_in_flight=max_in_flight,
        static_tokens=static_tokens,
        jwt_secrets=jwt_secrets,
        audience=claims["audience"],
        issuer=claims["issuer"],
        subject=claims["subject"],
        jwt_leeway=jwt_leeway,
        jwt_public_key_file=key_file,
        jwt_public_key=public_key,
        children=children,
        callback_urls=callback_urls(where("callback_urls"), opt("callback_urls")),
        server_limits=parse_server_limits("incoming", inc, sp.camel),
    )


def _outgoing(sp: Spelling, out: Mapping[str, Any]) -> OutgoingOptions:
    validate.check_keys("outgoing", out, sp.names(_OUTGOING))

    def opt(name: str) -> Any:
        return out.get(sp(name))

    def where(name: str) -> str:
        return f"outgoing.{sp(name)}"

    if opt("url") is None:
        raise OptionError("outgoing.url is required")
    static_token, jwt_secret = auth(sp, "outgoing", out)
    if static_token is None and jwt_secret is None:
        raise OptionError(
            "outgoing needs a static token or a JWT secret"
            f" ({where('static_token')} or {where('jwt_secret')})"
        )
    claims = {
        name: validate.optional_string(where(name), opt(name))
        for name in ("jwt_subject", "jwt_audience", "jwt_issuer")
    }
    if jwt_secret is None:
        for name, value in claims.items():
            if value is not None:
                raise OptionError(f"{where(name)} needs {where('jwt_secret')}")
    expiry_name, expiry = pick(out, sp("jwt_expiry"), sp("token_expiry"))
    max_requests = opt("http2_max_requests_per_session")
    name = opt("name")
    mode_value = mode("outgoing.mode", opt("mode"))
    return OutgoingOptions(
        url=validate.string("outgoing.url", opt("url")),
        static_token=static_token,
        jwt_secret=jwt_secret,
        jwt_expiry=(
            DEFAULT_JWT_EXPIRY
            if expiry is None
            else validate.positive_number(f"outgoing.{expiry_name}", expiry) * sp.expiry_unit
        ),
        jwt_subject=claims["jwt_subject"],
        jwt_audience=claims["jwt_audience"],
        jwt_issuer=claims["jwt_issuer"],
        bearer=opt("secret") is None and opt("secret_token") is None,
        http2=validate.boolean(where("http2"), opt("http2") or False),
        http2_max_requests_per_session=(
            None
            if max_requests is None
            else validate.integer(where("http2_max_requests_per_session"), max_requests, 1, 2**31)
        ),
        name=None if name is None else peer_name(where("name"), name),
        send_ilp_destination=validate.boolean(
            where("send_ilp_destination"), opt("send_ilp_destination") or False
        ),
        ca_file=validate.optional_string(where("ca_file"), opt("ca_file")),
        client_cert_file=validate.optional_string(
            where("client_cert_file"), opt("client_cert_file")
        ),
        client_key_file=validate.optional_string(where("client_key_file"), opt("client_key_file")),
        content_type=_content_type(where("content_type"), opt("content_type")),
        child_port_range=validate.port_range(where("child_port_range"), opt("child_port_range")),
        mode=mode_value,
        callback_url=callback_url(
            where("callback_url"), opt("callback_url"), mode_value == "async", "outgoing.mode"
        ),
    )


def _content_type(where: str, value: Any) -> str:
    if value is None:
        return OCTET_STREAM
    if value not in CONTENT_TYPES:
        raise OptionError(f"{where} must be {OCTET_STREAM!r} or {ILP_OCTET_STREAM!r}")
    return str(value)


def _build(sp: Spelling, opts: Mapping[str, Any]) -> PluginOptions:
    validate.check_keys("options", opts, sp.names(_TOP))
    multi = validate.boolean("multi", opts.get("multi") or False)
    delimiter_name = sp("multi_delimiter")
    delimiter = opts.get(delimiter_name)
    delimiter = "%" if delimiter is None else validate.string(delimiter_name, delimiter)
    incoming = None if opts.get("incoming") is None else _incoming(sp, opts["incoming"])
    outgoing = None if opts.get("outgoing") is None else _outgoing(sp, opts["outgoing"])
    if incoming is None and outgoing is None:
        raise OptionError("at least one of incoming and outgoing must be configured")
    if incoming is not None and incoming.children is not None and not multi:
        raise OptionError("incoming.children is for multi accounts (multi: true)")
    if outgoing is not None:
        try:
            validate.http_url("outgoing.url", outgoing.url, delimiter=delimiter if multi else None)
        except OptionError as exc:
            if multi or delimiter not in outgoing.url:
                raise
            raise OptionError(f"{exc}; a URL template needs multi: true") from None
        if multi:
            try:
                template = ChildUrlTemplate(outgoing.url, delimiter, outgoing.child_port_range)
            except ValueError as exc:
                raise OptionError(f"outgoing.url: {exc}") from None
            for name in (incoming.children or {}) if incoming is not None else ():
                try:
                    template.url_for(name)  # a listed child must be reachable
                except ChildNameError as exc:
                    raise OptionError(f"incoming.children.{name}: {exc}") from None
    ildcp = None
    if opts.get("ildcp") is not None:
        try:
            ildcp = as_response(opts["ildcp"])
        except (ValueError, TypeError) as exc:
            message = str(exc)
            if not message.startswith("ildcp"):
                message = f"ildcp is invalid: {message}"
            raise OptionError(message) from None
    address = opts.get("address")
    if address is not None:
        address = validate.address("address", address)
    elif ildcp is not None:
        address = ildcp.client_address
    limits = parse_limits({k: v for k, v in opts.items() if k in sp.names(_LIMITS)})
    return PluginOptions(incoming, outgoing, multi, delimiter, ildcp, address, limits)


def options_from_js(opts: Mapping[str, Any]) -> PluginOptions:
    """Options from the JS plugin's camelCase object (``jwtExpiry`` in milliseconds)."""
    return _build(JS, opts)


def options_from_python(
    incoming: Mapping[str, Any] | None,
    outgoing: Mapping[str, Any] | None,
    multi: bool = False,
    multi_delimiter: str = "%",
    ildcp: Any = None,
    address: str | None = None,
    limits: Mapping[str, Any] | None = None,
) -> PluginOptions:
    """Options from snake_case dicts; ``jwt_expiry`` is in seconds here.

    ``limits`` holds ``rate_limit``, ``max_packet_amount`` and ``throughput``
    (periods in seconds; see :func:`ilphttp.limits.parse_limits`).
    """
    if limits is not None:
        validate.check_keys("limits", limits, _LIMITS)
    return _build(
        PY,
        {
            "incoming": incoming,
            "outgoing": outgoing,
            "multi": multi,
            "multi_delimiter": multi_delimiter,
            "ildcp": ildcp,
            "address": address,
            **(limits or {}),
        },
    )
