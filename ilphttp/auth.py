"""Authorization of ILP-over-HTTP requests: static bearer tokens and HS256 JWTs.

Pure: the current time is passed in, so these work under any clock.  Incoming
headers may be ``Bearer <token>`` or the raw token (both are on the wire:
the JS plugin's legacy options send the raw form).
"""

from __future__ import annotations

import hmac
import warnings
from typing import Callable

import jwt

__all__ = ["IncomingAuth", "OutgoingAuth", "token_from_header"]

_BEARER = b"Bearer "
# Verified JWTs are remembered until their exp, so a busy link verifies each
# token once per peer instead of once per packet.
_VERIFY_CACHE_SIZE = 256
# PyJWT >= 2.10 warns about HMAC keys under 32 bytes on every call; JS peers
# commonly use short secrets, so the plugin warns once at configuration instead.
_KEY_WARNING: type[Warning] = getattr(
    getattr(jwt, "warnings", None), "InsecureKeyLengthWarning", UserWarning
)
SHORT_SECRET = 32


def token_from_header(value: bytes) -> bytes:
    """The token in an Authorization header value, ``Bearer`` prefix or not.

    The scheme is matched case-insensitively (RFC 9110), so ``bearer x`` works
    too; the JS plugin only knows the exact ``"Bearer "``.
    """
    if value[:7].lower() == b"bearer ":
        return value[7:]
    return value


class IncomingAuth:
    """Checks the Authorization header of incoming requests.

    With a JWT secret, HS256 tokens carrying ``exp`` are accepted; the static
    token too when both are configured (the JS plugin's rule).
    """

    def __init__(
        self,
        static_token: str | None,
        jwt_secret: str | None,
        now: Callable[[], float],
    ) -> None:
        if static_token is None and jwt_secret is None:
            raise ValueError("incoming auth needs a static token or a JWT secret")
        self._static = None if static_token is None else static_token.encode("utf-8")
        self._secret = jwt_secret
        self._now = now
        self._verified: dict[bytes, float] = {}

    def verify(self, header: bytes | None) -> bool:
        """True when ``header`` (the Authorization value, or None) authorizes the request."""
        if not header:
            return False
        token = token_from_header(header)
        if self._static is not None and hmac.compare_digest(token, self._static):
            return True
        if self._secret is None:
            return False
        return self._verify_jwt(token)

    def _verify_jwt(self, token: bytes) -> bool:
        now = self._now()
        exp = self._verified.get(token)
        if exp is not None:
            if now < exp:
                return True
            del self._verified[token]
            return False
        try:
            # RFC 7515 §4.1.11: a token whose "crit" header names extensions
            # we do not understand MUST be refused, and we understand none.
            # PyJWT checks "crit" itself only from 2.12, so check it here.
            if "crit" in jwt.get_unverified_header(token):
                return False
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", _KEY_WARNING)
                claims = jwt.decode(
                    token,
                    self._secret,  # type: ignore[arg-type]
                    algorithms=["HS256"],
                    options={"require": ["exp"], "verify_exp": False, "verify_iat": False},
                )
        except jwt.PyJWTError:
            return False
        exp_value = claims.get("exp")
        if not isinstance(exp_value, (int, float)) or now >= exp_value:
            return False
        if len(self._verified) >= _VERIFY_CACHE_SIZE:
            self._forget_expired(now)
        self._verified[token] = float(exp_value)
        return True

    def _forget_expired(self, now: float) -> None:
        for token in [t for t, exp in self._verified.items() if exp <= now]:
            del self._verified[token]
        # Still full of live tokens: drop the oldest entries (insertion order).
        while len(self._verified) >= _VERIFY_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]


class OutgoingAuth:
    """Produces the Authorization header of outgoing requests.

    A JWT is signed once and reused until half its lifetime has passed.  It is
    signed synchronously, so concurrent first sends cannot race (the JS plugin
    sends ``Bearer undefined`` there).
    """

    def __init__(
        self,
        static_token: str | None,
        jwt_secret: str | None,
        jwt_expiry: float,
        bearer: bool,
        now: Callable[[], float],
    ) -> None:
        if static_token is None and jwt_secret is None:
            raise ValueError("outgoing auth needs a static token or a JWT secret")
        self._secret = jwt_secret
        self._expiry = jwt_expiry
        self._prefix = _BEARER if bearer else b""
        self._now = now
        self._header = b""
        self._renew_at = float("-inf")
        if jwt_secret is None:
            assert static_token is not None
            self._header = self._prefix + static_token.encode("utf-8")
            self._renew_at = float("inf")

    def header(self) -> bytes:
        """The Authorization header value to send now."""
        now = self._now()
        if now >= self._renew_at:
            issued = int(now)
            # exp is whole seconds, as jsonwebtoken writes it (floor of the expiry).
            expires = issued + max(1, int(self._expiry))
            assert self._secret is not None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", _KEY_WARNING)
                token = jwt.encode({"iat": issued, "exp": expires}, self._secret, algorithm="HS256")
            self._header = self._prefix + token.encode("ascii")
            # Half the token's real lifetime: exp was rounded down, so
            # ``now + expiry / 2`` could reuse a token past its exp.
            self._renew_at = (issued + expires) / 2
        return self._header
