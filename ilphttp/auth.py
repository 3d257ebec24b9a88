"""Authorization of ILP-over-HTTP requests: static bearer tokens and JWTs.

Incoming: any of several static tokens, HS256 JWTs under any of several
secrets, optionally RS256/ES256 JWTs under PEM public keys.  Outgoing: one
static token or HS256 JWTs, optionally carrying ``sub``/``aud``/``iss``.

Pure: the current time is passed in, so these work under any clock.  Incoming
headers may be ``Bearer <token>`` or the raw token (both are on the wire:
the JS plugin's legacy options send the raw form).
"""

from __future__ import annotations

import hmac
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import jwt

__all__ = [
    "ChildrenAuth",
    "IncomingAuth",
    "OutgoingAuth",
    "PublicKey",
    "load_public_key",
    "token_from_header",
]

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

    A field value excludes leading and trailing whitespace (SP, HTAB: RFC 9110
    section 5.5), whichever parser kept it; the scheme is matched
    case-insensitively and may be followed by several spaces (RFC 9110 section
    11.1, RFC 6750 section 2.1), so ``bearer  x`` works too; the JS plugin only
    knows the exact ``"Bearer "``.
    """
    value = value.strip(b" \t")
    if value[:7].lower() == b"bearer ":
        return value[7:].lstrip(b" ")
    if len(value) == 6 and value.lower() == b"bearer":
        return b""  # the scheme without a credential (what "Bearer    " trims to)
    return value


@dataclass(frozen=True)
class PublicKey:
    """A public key that verifies incoming JWTs, and the one algorithm allowed with it."""

    #: a ``cryptography`` public key object
    key: Any
    #: ``"RS256"`` or ``"ES256"``
    algorithm: str


def load_public_key(pem: bytes) -> PublicKey:
    """The key in a PEM ``PUBLIC KEY`` block: RSA (RS256) or EC P-256 (ES256).

    :raises ValueError: not a PEM public key, another key type or curve, or the
        ``cryptography`` package is missing.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        raise ValueError("JWT public keys need the cryptography package") from None
    try:
        key = load_pem_public_key(pem)
    except Exception as exc:  # ValueError, UnsupportedAlgorithm, ...
        raise ValueError(f"not a PEM public key ({exc.__class__.__name__})") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"an RSA key of {key.key_size} bits; RS256 wants at least 2048")
        return PublicKey(key, "RS256")
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"an EC key on {key.curve.name}; ES256 needs P-256 (secp256r1)")
        return PublicKey(key, "ES256")
    raise ValueError(f"a {type(key).__name__}; only RSA (RS256) and EC P-256 (ES256) keys")


class IncomingAuth:
    """Checks the Authorization header of incoming requests.

    A request is authorized when its token equals one of the static tokens, or
    is a JWT that verifies under one of the JWT secrets (HS256) or public keys
    (RS256/ES256).  Several of each may be configured so that a credential can
    be rotated without downtime: the new one is added, the sender switches, the
    old one is removed.

    Static tokens are compared with :func:`hmac.compare_digest` against every
    configured token, with no early exit, so the time taken does not depend on
    which token (if any) matched.

    JWT rules (RFC 7519; RFC 8725 §3.1 and §3.2 for the algorithm checks):

    - ``alg`` must be HS256 for a secret, RS256 (RSA key) or ES256 (P-256 key)
      for a public key; ``none`` and any other algorithm are refused, and so is
      a ``crit`` header (RFC 7515 §4.1.11: we understand no extension);
    - ``exp`` is required and must be a finite number with ``now < exp + leeway``;
    - ``nbf``, when present, must be a finite number with ``nbf <= now + leeway``;
    - ``aud`` (a string or a list of strings), ``iss`` and ``sub`` are checked
      only when ``audience``, ``issuer`` or ``subject`` is configured; any other
      claim is ignored (the JS plugin's ``jsonwebtoken.verify`` and the Java
      connector's HS256 verifier do the same).

    ``leeway`` is in seconds (default 0).  Accepted JWTs are remembered until
    ``exp + leeway``, so a busy link verifies each token once; the configuration
    cannot change after construction, so the token alone is the cache key.
    """

    def __init__(
        self,
        static_token: str | None,
        jwt_secret: str | None,
        now: Callable[[], float],
        *,
        static_tokens: Sequence[str] = (),
        jwt_secrets: Sequence[str] = (),
        public_keys: Sequence[PublicKey] = (),
        audience: str | None = None,
        issuer: str | None = None,
        subject: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        statics = ([] if static_token is None else [static_token]) + list(static_tokens)
        secrets = ([] if jwt_secret is None else [jwt_secret]) + list(jwt_secrets)
        if not statics and not secrets and not public_keys:
            raise ValueError("incoming auth needs a static token, a JWT secret or a public key")
        if leeway < 0 or not math.isfinite(leeway):
            raise ValueError(f"JWT leeway must be a finite number of seconds >= 0, got {leeway!r}")
        self._static = tuple(t.encode("utf-8") for t in statics)
        #: (key, the one algorithm allowed with it)
        self._keys: tuple[tuple[Any, str], ...] = tuple(
            [(s.encode("utf-8"), "HS256") for s in secrets]
            + [(k.key, k.algorithm) for k in public_keys]
        )
        self._audience = audience
        self._issuer = issuer
        self._subject = subject
        self._leeway = float(leeway)
        self._now = now
        #: token -> the time it stops being accepted (exp + leeway)
        self._verified: dict[bytes, float] = {}

    def verify(self, header: bytes | None) -> bool:
        """True when ``header`` (the Authorization value, or None) authorizes the request."""
        if not header:
            return False
        token = token_from_header(header)
        matched = False
        for expected in self._static:
            # No short-circuit: every configured token is compared every time.
            matched |= hmac.compare_digest(token, expected)
        if matched:
            return True
        if not self._keys:
            return False
        return self._verify_jwt(token)

    def _verify_jwt(self, token: bytes) -> bool:
        now = self._now()
        until = self._verified.get(token)
        if until is not None:
            if now < until:
                return True
            del self._verified[token]
            return False
        claims = self._decode(token)
        if claims is None:
            return False
        until = self._accepted_until(claims, now)
        if until is None:
            return False
        if len(self._verified) >= _VERIFY_CACHE_SIZE:
            self._forget_expired(now)
        self._verified[token] = until
        return True

    def _decode(self, token: bytes) -> dict[str, Any] | None:
        """The claims of ``token`` if its signature verifies under one of our keys."""
        # Hostile input can make PyJWT (or the json module under it) raise more
        # than PyJWTError: RecursionError on a deeply nested header, ValueError
        # or TypeError on odd shapes.  Every failure to decode is a refusal.
        try:
            header = jwt.get_unverified_header(token)
            # RFC 7515 §4.1.11: a token whose "crit" header names extensions
            # we do not understand MUST be refused, and we understand none.
            # PyJWT checks "crit" itself only from 2.12, so check it here.
            if "crit" in header:
                return None
        except Exception:
            return None
        for key, algorithm in self._keys:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", _KEY_WARNING)
                    claims = jwt.decode(
                        token,
                        key,
                        algorithms=[algorithm],
                        # The signature only: every claim is checked by
                        # _accepted_until against our clock, the same way
                        # whichever PyJWT version is installed.
                        options={
                            "verify_signature": True,
                            "verify_exp": False,
                            "verify_nbf": False,
                            "verify_iat": False,
                            "verify_aud": False,
                            "verify_iss": False,
                            "verify_sub": False,
                            "verify_jti": False,
                        },
                    )
            except Exception:
                continue
            if isinstance(claims, dict):
                return claims
        return None

    def _accepted_until(self, claims: Mapping[str, Any], now: float) -> float | None:
        """When the verified ``claims`` stop being accepted, or None if they are refused now."""
        exp = _time(claims, "exp")
        if exp is None or now >= exp + self._leeway:
            return None
        if "nbf" in claims:
            nbf = _time(claims, "nbf")
            if nbf is None or nbf > now + self._leeway:
                return None
        if self._audience is not None:
            aud = claims.get("aud")
            audiences = [aud] if isinstance(aud, str) else aud
            if not isinstance(audiences, list) or self._audience not in audiences:
                return None
        if self._issuer is not None and claims.get("iss") != self._issuer:
            return None
        if self._subject is not None and claims.get("sub") != self._subject:
            return None
        return exp + self._leeway

    def _forget_expired(self, now: float) -> None:
        for token in [t for t, until in self._verified.items() if until <= now]:
            del self._verified[token]
        # Still full of live tokens: drop the oldest entries (insertion order).
        while len(self._verified) >= _VERIFY_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]


class ChildrenAuth:
    """The credentials of a multi account whose children each have their own.

    :param children: child name -> the :class:`IncomingAuth` of that child alone.

    :meth:`verify` says whether a request comes from *some* child (what finds
    the account on a shared listener); :meth:`verify_child` whether it comes
    from the child it claims to be (``ILP-Peer-Name``), so that no child can
    take another's name, address and packets.
    """

    def __init__(self, children: Mapping[str, IncomingAuth]) -> None:
        self._children = dict(children)

    def verify(self, header: bytes | None) -> bool:
        """True when ``header`` is one of some child's credentials."""
        matched = False
        for auth in self._children.values():
            # Every child is asked, so the time taken does not tell which matched.
            matched |= auth.verify(header)
        return matched

    def verify_child(self, name: bytes | None, header: bytes | None) -> bool:
        """True when ``header`` is a credential of the child called ``name``."""
        try:
            auth = None if name is None else self._children.get(name.decode("ascii"))
        except UnicodeDecodeError:
            auth = None
        return auth is not None and auth.verify(header)


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    """The NumericDate claim ``name`` (RFC 7519 §2) as a float, or None if absent or invalid.

    A JSON number only: not a boolean, not NaN or infinite, not an integer
    too large for a float.
    """
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


class OutgoingAuth:
    """Produces the Authorization header of outgoing requests.

    A JWT is signed once and reused until half its lifetime has passed.  It is
    signed synchronously, so concurrent first sends cannot race (the JS plugin
    sends ``Bearer undefined`` there).

    A JWT is HS256 with the claims ``iat``, ``exp`` (whole seconds, ``iat +
    jwt_expiry``) and, when given, ``sub``, ``aud`` and ``iss`` (strings).  The
    Java connector's JWT_HS_256 profile needs ``sub`` equal to the account's
    token subject (interledger4j/ilpv4-connector,
    ``connector-server/.../auth/ilpoverhttp/JwtHs256AuthenticationProvider.java``);
    ``jwt_expiry`` is in seconds.
    """

    def __init__(
        self,
        static_token: str | None,
        jwt_secret: str | None,
        jwt_expiry: float,
        bearer: bool,
        now: Callable[[], float],
        *,
        subject: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        if static_token is None and jwt_secret is None:
            raise ValueError("outgoing auth needs a static token or a JWT secret")
        self._secret = jwt_secret
        self._expiry = jwt_expiry
        self._prefix = _BEARER if bearer else b""
        self._now = now
        self._claims = {
            name: value
            for name, value in (("sub", subject), ("aud", audience), ("iss", issuer))
            if value is not None
        }
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
            claims = {**self._claims, "iat": issued, "exp": expires}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", _KEY_WARNING)
                token = jwt.encode(claims, self._secret, algorithm="HS256")
            self._header = self._prefix + token.encode("ascii")
            # Half the token's real lifetime: exp was rounded down, so
            # ``now + expiry / 2`` could reuse a token past its exp.
            self._renew_at = (issued + expires) / 2
        return self._header
