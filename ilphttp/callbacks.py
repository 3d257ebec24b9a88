"""Which ``Callback-Url`` a peer may make us POST to (RFC 35 asynchronous mode), pure.

A Prepare's ``Callback-Url`` makes the receiver send an HTTP request, with
its outgoing credential, to a URL the sender chose: without a check that is
server-side request forgery.  So a callback URL is used only when it matches
the account's allow-list (:class:`CallbackPolicy`):

* by default, the origin (scheme, host, port) of our outgoing URL to that
  peer -- the peer is already trusted there with our credential;
* in multi mode, the child's URL from the template (:mod:`ilphttp.multi`):
  its origin, and when the child's name fills the path, that path up to the
  end of the segment holding the name, so one child cannot send another's
  replies;
* plus the URL prefixes of ``incoming.callback_urls``.

URLs are compared after one strict normalization (:func:`normalize`), and the
URL used for the reply is rebuilt from the normalized parts, so what was
checked is exactly what is requested.  Refused: anything but ``http``/``https``,
user information (``peer.example@evil``), fragments, characters RFC 3986 does
not allow (spaces, backslashes, non-ASCII), malformed percent-escapes, dot
segments (``/cb/../admin``), percent-encoded or otherwise odd hosts, numeric
hosts that are not dotted-quad IPv4 (``2130706433``, ``0x7f.1``), IPv6 zone
identifiers, port 0.  Normalized: scheme and host lower-cased, one trailing
dot of the host dropped, default ports (80, 443) made explicit, IPv6 literals
compressed, percent-escapes of unreserved characters decoded and the others'
hex upper-cased (RFC 3986 section 6.2.2), an empty path made ``/``.  A prefix
matches at a path-segment boundary: ``/cb`` allows ``/cb`` and ``/cb/x``, not
``/cbx``.  No Twisted here.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from ilphttp.multi import PATH, ChildNameError, ChildUrlTemplate

__all__ = [
    "DEFAULT_PORTS",
    "MAX_URL_LENGTH",
    "CallbackDecision",
    "CallbackPolicy",
    "CallbackUrlError",
    "NormalUrl",
    "normalize",
]

#: characters longer URLs than this are refused (a header, not a document)
MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

# RFC 3986 section 2: unreserved, reserved and "%"; nothing else may appear.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# A DNS name's label (underscores allowed: container and service names use them).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
# A last label a URL parser would read as a number (WHATWG "ends in a number").
_NUMERIC = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")


class CallbackUrlError(ValueError):
    """A URL is not one a callback may use; the message says why (without the URL)."""


@dataclass(frozen=True)
class NormalUrl:
    """An http(s) URL in the normal form of :func:`normalize`."""

    scheme: str
    #: lower-case, without a trailing dot; an IPv6 literal compressed, no brackets
    host: str
    #: always given (80 or 443 when the URL had none)
    port: int
    #: starts with ``/``
    path: str
    #: without the ``?``; empty when none
    query: str = ""

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    def geturl(self) -> str:
        """The URL again, from its normal parts (default port left out)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{host}{port}{self.path}{query}"

    def starts_with(self, prefix: NormalUrl) -> bool:
        """Same origin, and ``prefix``'s path is this path or one of its ancestors."""
        if self.origin != prefix.origin:
            return False
        if prefix.path.endswith("/"):
            return self.path.startswith(prefix.path)
        return self.path == prefix.path or self.path.startswith(prefix.path + "/")


def _escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _host(netloc: str, hostname: str | None) -> str:
    if not hostname:
        raise CallbackUrlError("has no host")
    if netloc.rpartition("@")[2].startswith("["):
        if "%" in hostname:
            raise CallbackUrlError("must not have an IPv6 zone identifier")
        try:
            return ipaddress.IPv6Address(hostname).compressed
        except ValueError:
            raise CallbackUrlError("has an invalid IPv6 address") from None
    host = hostname[:-1] if hostname.endswith(".") else hostname
    if "%" in host:
        raise CallbackUrlError("must not have a percent-encoded host")
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise CallbackUrlError("has an invalid host name")
    if _NUMERIC.match(labels[-1]):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise CallbackUrlError(
                "has a numeric host that is not a dotted-quad IPv4 address"
            ) from None
    return host


def normalize(url: object, *, query_ok: bool = True) -> NormalUrl:
    """``url`` checked and in normal form (rules in the module docstring).

    :param query_ok: False refuses a query (``?...``), as for allow-list prefixes.
    :raises CallbackUrlError: saying what is wrong.
    """
    if not isinstance(url, str):
        raise CallbackUrlError(f"must be a string, got {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise CallbackUrlError(f"is longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARS.match(url):
        bad = next(c for c in url if not _URL_CHARS.match(c))
        raise CallbackUrlError(f"has a character a URL may not contain: {bad!r}")
    if _BAD_ESCAPE.search(url):
        raise CallbackUrlError("has a malformed percent-escape")
    if "#" in url:
        raise CallbackUrlError("must not have a fragment (#...)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed "[", a port that is not a number
        raise CallbackUrlError("is not a valid URL") from None
    if parts.scheme not in DEFAULT_PORTS or not url[len(parts.scheme) :].startswith("://"):
        raise CallbackUrlError("must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise CallbackUrlError("must not contain user information (user@host)")
    host = _host(parts.netloc, parts.hostname)
    if port is None:
        port = DEFAULT_PORTS[parts.scheme]
    elif not 1 <= port <= 65535:
        raise CallbackUrlError("has a port outside 1 to 65535")
    if parts.query and not query_ok:
        raise CallbackUrlError("must not have a query (?...)")
    return NormalUrl(parts.scheme, host, port, _path(parts.path), parts.query)


def _path(path: str) -> str:
    """``path`` with escapes normalized; dot segments refused (a server would resolve them)."""
    segments = [_ESCAPE.sub(_escape, s) for s in (path or "/").split("/")]
    if any(s in (".", "..") for s in segments):
        raise CallbackUrlError("must not have dot segments (/./ or /../)")
    return "/".join(segments)


class CallbackDecision(NamedTuple):
    """Whether a ``Callback-Url`` may be used: :attr:`url` when allowed, else :attr:`reason`."""

    #: the URL to POST replies to (normalized), or None when refused
    url: str | None
    #: why it was refused (for the HTTP 400 and the log); empty when allowed
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.url is not None


def _own_url(url: str) -> NormalUrl | None:
    """Our configured peer URL in normal form; its user information is ours, so dropped."""
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    authority = authority.rpartition("@")[2]
    try:
        return normalize(f"{scheme}{sep}{authority}{slash}{tail}".partition("#")[0])
    except CallbackUrlError:
        return None


class CallbackPolicy:
    """The callback URLs one account's peer may name (the allow-list of the module docstring).

    :param prefixes: ``incoming.callback_urls``: URL prefixes (no query, no fragment).
    :param peer_url: our outgoing URL to this peer (single accounts); its origin is allowed.
    :param child_template: multi accounts: the outgoing URL template; each
        child's own URL is allowed as described above.
    :raises CallbackUrlError: when a prefix is not a valid one.

    With neither ``peer_url`` nor ``child_template`` only the prefixes allow anything.
    """

    def __init__(
        self,
        prefixes: Iterable[str] = (),
        peer_url: str | None = None,
        child_template: ChildUrlTemplate | None = None,
    ) -> None:
        self.prefixes = tuple(normalize(p, query_ok=False) for p in prefixes)
        self.child_template = child_template
        own = None if peer_url is None or child_template is not None else _own_url(peer_url)
        self.peer_origin = None if own is None else NormalUrl(*own.origin, path="/")

    def check(self, url: str, child: str | None = None) -> CallbackDecision:
        """Whether ``url`` may receive the replies of this account (of ``child``, multi).

        Never raises: a refusal is a :class:`CallbackDecision` with a reason.
        """
        try:
            target = normalize(url)
        except CallbackUrlError as exc:
            return CallbackDecision(None, f"Callback-Url {exc}")
        allowed = list(self.prefixes)
        if self.peer_origin is not None:
            allowed.append(self.peer_origin)
        if self.child_template is not None and child is not None:
            own = self._child_prefix(self.child_template, child)
            if own is not None:
                allowed.append(own)
        if any(target.starts_with(prefix) for prefix in allowed):
            return CallbackDecision(target.geturl())
        if not allowed:
            return CallbackDecision(
                None, "no Callback-Url is allowed for this account (see incoming.callback_urls)"
            )
        return CallbackDecision(
            None, "Callback-Url is not on this account's allow-list (see incoming.callback_urls)"
        )

    @staticmethod
    def _child_prefix(template: ChildUrlTemplate, child: str) -> NormalUrl | None:
        try:
            own = _own_url(template.url_for(child))
        except ChildNameError:
            return None
        if own is None:
            return None
        if template.place != PATH:
            return NormalUrl(*own.origin, path="/")
        # The path up to the end of the segment that holds the child's name.
        mark = "\0"
        marked = urlsplit(template.template.replace(template.delimiter, mark, 1)).path
        if mark not in marked:  # the name is in the query: the origin alone
            return NormalUrl(*own.origin, path="/")
        head, _, tail = marked.partition(mark)
        try:
            path = _path(head + child + tail.partition("/")[0])
        except CallbackUrlError:
            return None
        return NormalUrl(*own.origin, path=path)
