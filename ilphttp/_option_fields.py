"""Option spellings, and the options that take more than one validator.

Split out of :mod:`ilphttp.config`, which builds :class:`~ilphttp.config.PluginOptions`
with these.  Every function raises :class:`~ilphttp.errors.OptionError` naming
the option as the user spelled it (``outgoing.callbackUrl`` or
``outgoing.callback_url``).  Pure: no Twisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ilphttp import validate
from ilphttp.callbacks import CallbackUrlError, normalize
from ilphttp.errors import OptionError
from ilphttp.logtext import loggable_url

__all__ = [
    "ASYNC",
    "JS",
    "MODES",
    "PY",
    "SYNC",
    "Spelling",
    "auth",
    "callback_url",
    "callback_urls",
    "camel",
    "leeway",
    "mode",
    "peer_name",
    "pick",
]

#: ``outgoing.mode``: synchronous ILP-over-HTTP (the reply in the response),
#: or RFC 35 asynchronous (``202``, the reply POSTed to ``callback_url``)
SYNC = "sync"
ASYNC = "async"
MODES = (SYNC, ASYNC)


def pick(d: Mapping[str, Any], new: str, legacy: str) -> tuple[str, Any]:
    """(name, value) of ``legacy`` if set, else of ``new`` (the JS plugin's precedence)."""
    if d.get(legacy) is not None:
        return legacy, d[legacy]
    return new, d.get(new)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


class Spelling:
    """How one dialect names the options: snake_case (Python) or camelCase (JS)."""

    def __init__(self, camel: bool, expiry_unit: float) -> None:
        self.camel = camel
        #: seconds per unit of jwt_expiry in this dialect
        self.expiry_unit = expiry_unit

    def __call__(self, name: str) -> str:
        return camel(name) if self.camel else name

    def names(self, canonical: set[str]) -> set[str]:
        return {self(n) for n in canonical}


PY = Spelling(camel=False, expiry_unit=1.0)
JS = Spelling(camel=True, expiry_unit=0.001)


def auth(sp: Spelling, where: str, d: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(static token, JWT secret); the legacy names win, as in the JS plugin."""
    token_name, token = pick(d, sp("static_token"), sp("secret_token"))
    static_token = None if token is None else validate.token(f"{where}.{token_name}", token)
    secret_name, secret = pick(d, sp("jwt_secret"), sp("secret"))
    jwt_secret = None if secret is None else validate.secret(f"{where}.{secret_name}", secret)
    return static_token, jwt_secret


def leeway(sp: Spelling, where: str, value: Any) -> float:
    """A JWT leeway: seconds (Python) or milliseconds (JS), >= 0, as seconds."""
    unit = "seconds" if sp.expiry_unit == 1.0 else "milliseconds"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < float("inf")
    ):
        raise OptionError(f"{where} must be a number of {unit} >= 0, got {value!r}")
    return float(value) * sp.expiry_unit


def peer_name(where: str, value: Any) -> str:
    # The JS plugin sends String(name); numbers (ports) are common here.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    name = validate.string(where, value)
    if any(c in name for c in "\r\n\0"):
        raise OptionError(f"{where} must not contain line breaks")
    return name


def mode(where: str, value: Any) -> str:
    """``outgoing.mode``: ``"sync"`` (the default, when None) or ``"async"``."""
    if value is None:
        return SYNC
    if value not in MODES:
        raise OptionError(f"{where} must be 'sync' or 'async', got {value!r}")
    return str(value)


def _callback_target(where: str, value: Any, *, query_ok: bool) -> str:
    """An http(s) URL that :func:`ilphttp.callbacks.normalize` accepts, as given."""
    url = validate.http_url(where, value)
    try:
        normalize(url, query_ok=query_ok)
    except CallbackUrlError as exc:
        raise OptionError(f"{where} {exc}, got {loggable_url(url)!r}") from None
    return url


def callback_url(where: str, value: Any, async_mode: bool, mode_where: str) -> str | None:
    """``outgoing.callback_url``: where peers POST replies to us; required in async mode only.

    It goes verbatim into the ``Callback-Url`` of our Prepares, so it must
    pass the receiver's check (:mod:`ilphttp.callbacks`): http(s), no user
    information, no fragment.
    """
    if value is None:
        if async_mode:
            raise OptionError(
                f"{where} is required when {mode_where} is 'async': the URL where the"
                " peer POSTs its replies (our own listener, as the peer reaches it)"
            )
        return None
    if not async_mode:
        raise OptionError(f"{where} applies to {mode_where} 'async'")
    return _callback_target(where, value, query_ok=True)


def callback_urls(where: str, value: Any) -> tuple[str, ...]:
    """``incoming.callback_urls``: URL prefixes a peer's ``Callback-Url`` may start with.

    Each an http(s) URL without user information, query or fragment; see
    :class:`ilphttp.callbacks.CallbackPolicy` for how they match.
    """
    prefixes = validate.string_list(where, value, None)
    for i, prefix in enumerate(prefixes):
        _callback_target(f"{where}[{i}]", prefix, query_ok=False)
    return prefixes
