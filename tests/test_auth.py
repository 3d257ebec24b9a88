"""Static tokens and JWTs (HS256, RS256/ES256) against a fake clock: rotation,
registered claims, algorithms, hostile input, outgoing claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import auth as auth_module
from ilphttp.auth import (
    _VERIFY_CACHE_SIZE,
    IncomingAuth,
    OutgoingAuth,
    load_public_key,
    token_from_header,
)

SECRET = "a-jwt-secret-that-is-long-enough-for-hs256"
NOW = 1_700_000_000.0


class FakeTime:
    """A settable ``now`` for the auth objects."""

    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sign(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short keys for HS384/HS512 are the point here
        return jwt.encode(claims, secret, algorithm=algorithm).encode("ascii")


class TokenFromHeaderTests(SynchronousTestCase):
    def test_bearer_and_raw(self) -> None:
        self.assertEqual(token_from_header(b"Bearer abc"), b"abc")
        self.assertEqual(token_from_header(b"abc"), b"abc")
        self.assertEqual(token_from_header(b"Bearer "), b"")
        # Only the one prefix is removed: a token may itself start with "Bearer ".
        self.assertEqual(token_from_header(b"Bearer Bearer x"), b"Bearer x")

    def test_surrounding_whitespace_is_not_the_value(self) -> None:
        """RFC 9110 section 5.5: a field value excludes leading and trailing
        OWS, whichever parser left it; the scheme may be followed by more spaces."""
        for header in (b"Bearer abc  ", b"  Bearer abc", b"\tBearer abc\t", b"Bearer   abc"):
            self.assertEqual(token_from_header(header), b"abc", header)
        self.assertEqual(token_from_header(b" abc \t"), b"abc")
        for blank in (b"Bearer    ", b"Bearer \t ", b"   "):
            self.assertEqual(token_from_header(blank), b"", blank)


class StaticTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.auth = IncomingAuth("s3cret-token", None, FakeTime())

    def test_bearer_and_raw_accepted(self) -> None:
        self.assertTrue(self.auth.verify(b"Bearer s3cret-token"))
        self.assertTrue(self.auth.verify(b"s3cret-token"))
        # The scheme is case-insensitive (RFC 9110), unlike in the JS plugin.
        self.assertTrue(self.auth.verify(b"bearer s3cret-token"))
        self.assertTrue(self.auth.verify(b"BEARER s3cret-token"))

    def test_surrounding_whitespace_accepted(self) -> None:
        # RFC 9110 section 5.5: not part of the field value
        for header in (b"Bearer s3cret-token  ", b"  Bearer s3cret-token", b"s3cret-token "):
            self.assertTrue(self.auth.verify(header), header)

    def test_wrong_tokens_refused(self) -> None:
        for header in (
            b"Bearer s3cret-tokeN",
            b"Bearer s3cret token",
            b"Bearer     ",
            b"s3cret-toke",
            b"s3cret-token-and-more",
            b"Basic s3cret-token",
            b"",
            None,
        ):
            self.assertFalse(self.auth.verify(header), header)

    def test_compared_in_constant_time(self) -> None:
        calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def recording(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real(a, b)

        self.patch(auth_module.hmac, "compare_digest", recording)
        self.assertTrue(self.auth.verify(b"Bearer s3cret-token"))
        self.assertFalse(self.auth.verify(b"wrong"))
        self.assertEqual(calls, [(b"s3cret-token", b"s3cret-token"), (b"wrong", b"s3cret-token")])

    def test_utf8_token(self) -> None:
        auth = IncomingAuth("jeton-été", None, FakeTime())
        self.assertTrue(auth.verify("Bearer jeton-été".encode()))
        self.assertFalse(auth.verify(b"Bearer jeton-ete"))

    def test_jwt_refused_without_secret(self) -> None:
        self.assertFalse(self.auth.verify(b"Bearer " + sign({"exp": int(NOW) + 30})))

    def test_needs_something(self) -> None:
        self.assertRaises(ValueError, IncomingAuth, None, None, FakeTime())
        self.assertRaises(ValueError, OutgoingAuth, None, None, 30.0, True, FakeTime())


class IncomingJwtTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.now = FakeTime()
        self.auth = IncomingAuth(None, SECRET, self.now)

    def test_hs256_accepted_bearer_and_raw(self) -> None:
        token = sign({"iat": int(NOW), "exp": int(NOW) + 30})
        self.assertTrue(self.auth.verify(b"Bearer " + token))
        self.assertTrue(IncomingAuth(None, SECRET, self.now).verify(token))

    def test_other_algorithms_refused(self) -> None:
        exp = int(NOW) + 30
        self.assertFalse(self.auth.verify(b"Bearer " + sign({"exp": exp}, algorithm="HS512")))
        self.assertFalse(self.auth.verify(b"Bearer " + sign({"exp": exp}, algorithm="HS384")))
        no_key: Any = None
        unsigned = jwt.encode({"exp": exp}, no_key, algorithm="none").encode("ascii")
        self.assertFalse(self.auth.verify(b"Bearer " + unsigned))
        # The same claims under HS256 pass: the algorithm alone made the difference.
        self.assertTrue(self.auth.verify(b"Bearer " + sign({"exp": exp})))

    def test_missing_exp_refused(self) -> None:
        self.assertFalse(self.auth.verify(b"Bearer " + sign({"iat": int(NOW)})))
        self.assertFalse(self.auth.verify(b"Bearer " + sign({})))

    def test_non_numeric_exp_refused(self) -> None:
        self.assertFalse(self.auth.verify(b"Bearer " + sign({"exp": str(int(NOW) + 30)})))

    def test_expired_refused_on_the_fake_clock(self) -> None:
        token = b"Bearer " + sign({"exp": int(NOW) + 10})
        self.now.t = NOW + 10
        self.assertFalse(self.auth.verify(token))
        self.now.t = NOW + 9.999
        self.assertTrue(IncomingAuth(None, SECRET, self.now).verify(token))

    def test_exp_uses_our_clock_not_the_wall_clock(self) -> None:
        # exp long past by the wall clock, but in the future on our clock.
        auth = IncomingAuth(None, SECRET, FakeTime(1000.0))
        self.assertTrue(auth.verify(b"Bearer " + sign({"exp": 1030})))

    def test_wrong_secret_and_garbage_refused(self) -> None:
        exp = int(NOW) + 30
        self.assertFalse(self.auth.verify(b"Bearer " + sign({"exp": exp}, secret="other" * 8)))
        self.assertFalse(self.auth.verify(b"Bearer not.a.jwt"))
        self.assertFalse(self.auth.verify(b"Bearer \xff\xfe"))
        token = sign({"exp": exp})
        self.assertFalse(self.auth.verify(b"Bearer " + token[:-2]))

    def test_crit_header_refused(self) -> None:
        """RFC 7515 §4.1.11: we understand no extension, so any "crit" is refused,
        even on a well-signed token (PyJWT < 2.12 would accept it)."""
        exp = int(NOW) + 30
        for crit in (["x-ext"], ["exp"], []):
            headers = {"crit": crit, "x-ext": True}
            token = jwt.encode({"exp": exp}, SECRET, algorithm="HS256", headers=headers)
            self.assertFalse(self.auth.verify(b"Bearer " + token.encode("ascii")), crit)
        # the same token without "crit" passes: the header alone made the difference
        plain = jwt.encode({"exp": exp}, SECRET, algorithm="HS256", headers={"x-ext": True})
        self.assertTrue(self.auth.verify(b"Bearer " + plain.encode("ascii")))

    def test_static_accepted_in_jwt_mode_when_both_configured(self) -> None:
        auth = IncomingAuth("static-one", SECRET, self.now)
        self.assertTrue(auth.verify(b"Bearer static-one"))
        self.assertTrue(auth.verify(b"static-one"))
        self.assertTrue(auth.verify(b"Bearer " + sign({"exp": int(NOW) + 5})))
        self.assertFalse(auth.verify(b"Bearer static-two"))

    def test_cache_skips_verification_until_exp_and_never_after(self) -> None:
        decoded: list[bytes] = []
        real = jwt.decode

        def counting(token: Any, *args: Any, **kwargs: Any) -> Any:
            decoded.append(token)
            return real(token, *args, **kwargs)

        self.patch(auth_module.jwt, "decode", counting)
        header = b"Bearer " + sign({"exp": int(NOW) + 20})
        self.assertTrue(self.auth.verify(header))
        self.now.t = NOW + 19.9
        self.assertTrue(self.auth.verify(header))
        self.assertEqual(len(decoded), 1, "second verification should come from the cache")
        self.now.t = NOW + 20
        self.assertFalse(self.auth.verify(header), "a cached token must not outlive its exp")
        self.now.t = NOW + 1000
        self.assertFalse(self.auth.verify(header))

    def test_cache_is_bounded(self) -> None:
        # More distinct live tokens than the cache holds: it stays bounded, and
        # tokens dropped from it are still accepted (verified again).
        tokens = [
            b"Bearer " + sign({"exp": int(NOW) + 1000, "n": i})
            for i in range(_VERIFY_CACHE_SIZE * 2 + 10)
        ]
        for token in tokens:
            self.assertTrue(self.auth.verify(token))
            self.assertLessEqual(len(self.auth._verified), _VERIFY_CACHE_SIZE)
        self.assertTrue(self.auth.verify(tokens[0]))

    def test_cache_drops_expired_entries_first(self) -> None:
        short = [
            b"Bearer " + sign({"exp": int(NOW) + 5, "n": i}) for i in range(_VERIFY_CACHE_SIZE)
        ]
        for token in short:
            self.assertTrue(self.auth.verify(token))
        self.now.t = NOW + 6
        fresh = b"Bearer " + sign({"exp": int(NOW) + 100})
        self.assertTrue(self.auth.verify(fresh))
        self.assertEqual(len(self.auth._verified), 1)


class OutgoingAuthTests(SynchronousTestCase):
    def test_static_bearer_and_raw(self) -> None:
        now = FakeTime()
        self.assertEqual(OutgoingAuth("tok", None, 30.0, True, now).header(), b"Bearer tok")
        self.assertEqual(OutgoingAuth("tok", None, 30.0, False, now).header(), b"tok")

    def test_jwt_is_hs256_with_iat_and_exp(self) -> None:
        now = FakeTime()
        header = OutgoingAuth(None, SECRET, 30.0, True, now).header()
        self.assertTrue(header.startswith(b"Bearer "))
        token = header[len(b"Bearer ") :]
        self.assertEqual(jwt.get_unverified_header(token)["alg"], "HS256")
        claims = jwt.decode(
            token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
        )
        self.assertEqual(claims["iat"], int(NOW))
        self.assertEqual(claims["exp"], int(NOW) + 30)
        self.assertTrue(IncomingAuth(None, SECRET, now).verify(header))

    def test_raw_jwt_without_bearer(self) -> None:
        now = FakeTime()
        header = OutgoingAuth(None, SECRET, 30.0, False, now).header()
        self.assertFalse(header.startswith(b"Bearer"))
        self.assertEqual(header.count(b"."), 2)
        self.assertTrue(IncomingAuth(None, SECRET, now).verify(header))

    def test_resigned_after_half_the_lifetime_and_not_before(self) -> None:
        now = FakeTime()
        auth = OutgoingAuth(None, SECRET, 30.0, True, now)
        first = auth.header()
        now.t = NOW + 14.999
        self.assertIs(auth.header(), first)
        now.t = NOW + 15
        second = auth.header()
        self.assertNotEqual(second, first)
        claims = jwt.decode(second[7:], SECRET, algorithms=["HS256"], options={"verify_exp": False})
        self.assertEqual(claims["exp"], int(NOW) + 15 + 30)
        now.t = NOW + 29.9
        self.assertIs(auth.header(), second)
        now.t = NOW + 30
        self.assertNotEqual(auth.header(), second)

    def test_every_header_is_valid_when_sent_even_with_short_fractional_expiry(self) -> None:
        # exp is whole seconds; with a 1 s lifetime signed at .7 the token
        # expires 0.3 s later, and must not be reused past that.
        now = FakeTime(NOW + 0.7)
        auth = OutgoingAuth(None, SECRET, 1.0, True, now)
        for step in range(60):
            now.t = NOW + 0.7 + step * 0.05
            header = auth.header()
            self.assertTrue(
                IncomingAuth(None, SECRET, now).verify(header),
                f"expired token sent at +{now.t - NOW:.2f}s",
            )

    def test_concurrent_first_calls_all_get_a_valid_token(self) -> None:
        now = FakeTime()
        auth = OutgoingAuth(None, SECRET, 30.0, True, now)
        headers = [auth.header() for _ in range(20)]
        self.assertEqual(len(set(headers)), 1)
        checker = IncomingAuth(None, SECRET, now)
        self.assertTrue(all(checker.verify(h) for h in headers))
        self.assertNotIn(b"undefined", headers[0])


def forge(header: Any, claims: Any, secret: str = SECRET) -> bytes:
    """A token with exactly this header and payload (any JSON), HS256-signed with ``secret``."""

    def part(value: Any) -> bytes:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode("utf-8")
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = part(header) + b"." + part(claims)
    mac = hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")


ALICE = {
    "sub": "alice",
    "exp": int(NOW) + 60,
    "iss": "https://alice.example",
    "aud": "https://bob.example",
}


class RotationTests(SynchronousTestCase):
    """Several incoming credentials, any of which authorizes (issue 10)."""

    def test_old_and_new_static_tokens_accepted_removed_one_refused(self) -> None:
        during = IncomingAuth("old-token", None, FakeTime(), static_tokens=["new-token"])
        self.assertTrue(during.verify(b"Bearer old-token"))
        self.assertTrue(during.verify(b"Bearer new-token"))
        self.assertFalse(during.verify(b"Bearer other-token"))
        after = IncomingAuth(None, None, FakeTime(), static_tokens=["new-token"])
        self.assertTrue(after.verify(b"Bearer new-token"))
        self.assertFalse(after.verify(b"Bearer old-token"))

    def test_every_static_token_compared_every_time(self) -> None:
        calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def recording(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real(a, b)

        self.patch(auth_module.hmac, "compare_digest", recording)
        auth = IncomingAuth("t1", None, FakeTime(), static_tokens=["t2", "t3"])
        for header, matched in ((b"Bearer t1", True), (b"t3", True), (b"Bearer t4", False)):
            del calls[:]
            self.assertEqual(auth.verify(header), matched, header)
            token = token_from_header(header)
            # No early exit on a match, no lookup: all three, in order.
            self.assertEqual(calls, [(token, b"t1"), (token, b"t2"), (token, b"t3")], header)

    def test_old_and_new_jwt_secrets_accepted_removed_one_refused(self) -> None:
        old, new = "old-secret-" * 4, "new-secret-" * 4
        by_old = b"Bearer " + sign({"exp": int(NOW) + 30}, secret=old)
        by_new = b"Bearer " + sign({"exp": int(NOW) + 30}, secret=new)
        during = IncomingAuth(None, old, FakeTime(), jwt_secrets=[new])
        self.assertTrue(during.verify(by_old))
        self.assertTrue(during.verify(by_new))
        self.assertFalse(during.verify(b"Bearer " + sign({"exp": int(NOW) + 30})))
        after = IncomingAuth(None, None, FakeTime(), jwt_secrets=[new])
        self.assertTrue(after.verify(by_new))
        self.assertFalse(after.verify(by_old))

    def test_static_tokens_and_jwt_secrets_together(self) -> None:
        auth = IncomingAuth(
            None, None, FakeTime(), static_tokens=["s1", "s2"], jwt_secrets=[SECRET]
        )
        self.assertTrue(auth.verify(b"Bearer s2"))
        self.assertTrue(auth.verify(b"Bearer " + sign({"exp": int(NOW) + 5})))
        self.assertFalse(auth.verify(b"Bearer s3"))

    def test_needs_a_credential(self) -> None:
        self.assertRaises(ValueError, IncomingAuth, None, None, FakeTime(), static_tokens=[])
        self.assertRaises(ValueError, IncomingAuth, "t", None, FakeTime(), leeway=-1)
        self.assertRaises(ValueError, IncomingAuth, "t", None, FakeTime(), leeway=float("inf"))


class JwtClaimTests(SynchronousTestCase):
    """Registered claims: exp required, aud/iss/sub only when configured, leeway on exp/nbf."""

    def test_claims_table(self) -> None:
        exp = int(NOW) + 60
        aud = {"audience": "https://bob.example"}
        cases: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
            # (case, IncomingAuth keywords, claims, accepted)
            ("issue 10 example, nothing configured", {}, ALICE, True),
            ("issue 10 example, audience configured", aud, ALICE, True),
            ("wrong aud", aud, {**ALICE, "aud": "https://eve.example"}, False),
            ("aud missing", aud, {"exp": exp}, False),
            ("aud list containing ours", aud, {**ALICE, "aud": ["x", "https://bob.example"]}, True),
            ("aud list without ours", aud, {**ALICE, "aud": ["x", "y"]}, False),
            ("aud not a string", aud, {**ALICE, "aud": 5}, False),
            ("aud not a string, not configured", {}, {**ALICE, "aud": 5}, True),
            ("aud case matters", aud, {**ALICE, "aud": "https://BOB.example"}, False),
            ("issuer matches", {"issuer": "https://alice.example"}, ALICE, True),
            ("issuer wrong", {"issuer": "https://eve.example"}, ALICE, False),
            ("issuer missing", {"issuer": "https://alice.example"}, {"exp": exp}, False),
            ("subject matches", {"subject": "alice"}, ALICE, True),
            ("subject wrong", {"subject": "bob"}, ALICE, False),
            ("subject missing", {"subject": "alice"}, {"exp": exp}, False),
            (
                "all three configured",
                {**aud, "issuer": ALICE["iss"], "subject": "alice"},
                ALICE,
                True,
            ),
            ("odd claims ignored", {}, {"exp": exp, "sub": 7, "jti": [], "iat": "x", "x": 1}, True),
            ("iat in the future is not checked", {}, {"exp": exp, "iat": exp + 100}, True),
            ("exp missing", {}, {k: v for k, v in ALICE.items() if k != "exp"}, False),
            ("exp a boolean", {}, {"exp": True}, False),
            ("exp a string", {}, {"exp": str(exp)}, False),
            ("exp NaN", {}, {"exp": float("nan")}, False),
            ("exp infinite", {}, {"exp": float("inf")}, False),
            ("exp too large for a float", {}, {"exp": 10**400}, False),
            ("exp fractional", {}, {"exp": NOW + 0.5}, True),
            ("exp passed", {}, {"exp": int(NOW)}, False),
            ("exp passed, within leeway", {"leeway": 5.0}, {"exp": int(NOW) - 4}, True),
            ("exp passed, past leeway", {"leeway": 5.0}, {"exp": int(NOW) - 5}, False),
            ("nbf passed", {}, {"exp": exp, "nbf": int(NOW)}, True),
            ("nbf in the future", {}, {"exp": exp, "nbf": int(NOW) + 1}, False),
            ("nbf within leeway", {"leeway": 2.0}, {"exp": exp, "nbf": int(NOW) + 2}, True),
            ("nbf past leeway", {"leeway": 2.0}, {"exp": exp, "nbf": int(NOW) + 3}, False),
            ("nbf not a number", {}, {"exp": exp, "nbf": "0"}, False),
        ]
        for case, config, claims, accepted in cases:
            auth = IncomingAuth(None, SECRET, FakeTime(), **config)
            token = forge({"alg": "HS256", "typ": "JWT"}, claims)
            self.assertEqual(auth.verify(b"Bearer " + token), accepted, case)

    def test_issue_example_signed_by_pyjwt_accepted(self) -> None:
        # The failing input of issue 10, exactly: 401 before (PyJWT refuses an
        # unexpected aud), accepted now.
        auth = IncomingAuth(None, SECRET, FakeTime())
        self.assertTrue(auth.verify(b"Bearer " + sign(ALICE)))

    def test_cache_lasts_until_exp_plus_leeway_and_not_after(self) -> None:
        now = FakeTime()
        auth = IncomingAuth(None, SECRET, now, leeway=3.0)
        header = b"Bearer " + sign({"exp": int(NOW) + 10})
        self.assertTrue(auth.verify(header))
        now.t = NOW + 12.9
        self.assertTrue(auth.verify(header))
        now.t = NOW + 13
        self.assertFalse(auth.verify(header))
        self.assertEqual(auth._verified, {})

    def test_refused_claims_are_not_cached_as_accepted(self) -> None:
        auth = IncomingAuth(None, SECRET, FakeTime(), audience="https://bob.example")
        header = b"Bearer " + sign({**ALICE, "aud": "https://eve.example"})
        self.assertFalse(auth.verify(header))
        self.assertFalse(auth.verify(header))
        self.assertEqual(auth._verified, {})

    def test_nbf_token_accepted_once_its_time_comes(self) -> None:
        now = FakeTime()
        auth = IncomingAuth(None, SECRET, now)
        header = b"Bearer " + sign({"exp": int(NOW) + 60, "nbf": int(NOW) + 10})
        self.assertFalse(auth.verify(header))
        now.t = NOW + 10
        self.assertTrue(auth.verify(header))


class AlgorithmAndHostileInputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.auth = IncomingAuth(None, SECRET, FakeTime(), audience="https://bob.example")

    def test_only_hs256_under_a_secret(self) -> None:
        no_key: Any = None
        cases: list[tuple[str, bytes]] = [
            ("alg none, PyJWT", jwt.encode(ALICE, no_key, algorithm="none").encode("ascii")),
            ("alg none, HS256 signature", forge({"alg": "none"}, ALICE)),
            ("alg None", forge({"alg": "None"}, ALICE)),
            ("alg hs256 (case)", forge({"alg": "hs256"}, ALICE)),
            ("HS384", sign(ALICE, algorithm="HS384")),
            ("HS512", sign(ALICE, algorithm="HS512")),
            ("alg missing", forge({"typ": "JWT"}, ALICE)),
            ("alg a list", forge({"alg": ["HS256"]}, ALICE)),
            ("crit", forge({"alg": "HS256", "crit": ["b64"], "b64": False}, ALICE)),
        ]
        for case, token in cases:
            self.assertFalse(self.auth.verify(b"Bearer " + token), case)
        self.assertTrue(self.auth.verify(b"Bearer " + forge({"alg": "HS256"}, ALICE)))

    def test_hostile_tokens_are_refused_not_raised(self) -> None:
        deep = b'{"alg":"HS256","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        deep_payload = b'{"exp":' + str(int(NOW) + 60).encode() + b',"x":' + b"[" * 100_000
        deep_payload += b"]" * 100_000 + b"}"
        cases: list[tuple[str, bytes]] = [
            ("deeply nested header", forge(deep, ALICE)),
            ("deeply nested payload", forge({"alg": "HS256"}, deep_payload)),
            ("header a list", forge(["HS256"], ALICE)),
            ("header a string", forge("HS256", ALICE)),
            ("header not JSON", forge(b"\xff{", ALICE)),
            ("payload a list", forge({"alg": "HS256"}, [ALICE])),
            ("payload a number", forge({"alg": "HS256"}, 5)),
            ("payload not JSON", forge({"alg": "HS256"}, b"{exp:1}")),
            ("huge kid", forge({"alg": "HS256", "kid": "k" * 100_000}, {**ALICE, "aud": "x"})),
            ("four parts", forge({"alg": "HS256"}, ALICE) + b".x"),
            ("bad base64", b"!!!.???.***"),
            ("empty", b""),
            ("dots", b".."),
        ]
        for case, token in cases:
            self.assertFalse(self.auth.verify(b"Bearer " + token), case)

    def test_any_exception_from_pyjwt_is_a_refusal(self) -> None:
        # PyJWT before 2.10 or so lets the json module's RecursionError through
        # on a deeply nested header; other versions may raise ValueError or
        # TypeError on shapes they do not expect.  Whatever it raises, the
        # token is refused and nothing propagates.
        token = b"Bearer " + sign(ALICE)
        for where in ("get_unverified_header", "decode"):
            for error in (RecursionError, ValueError, TypeError, KeyError, OverflowError):

                def hostile(*args: Any, _error: type[Exception] = error, **kwargs: Any) -> Any:
                    raise _error("hostile input")

                patch = self.patch(auth_module.jwt, where, hostile)
                auth = IncomingAuth(None, SECRET, FakeTime())
                self.assertFalse(auth.verify(token), (where, error))
                patch.restore()
        self.assertTrue(IncomingAuth(None, SECRET, FakeTime()).verify(token))


class OutgoingClaimTests(SynchronousTestCase):
    def claims(self, auth: OutgoingAuth) -> dict[str, Any]:
        token = auth.header()[len(b"Bearer ") :]
        self.assertEqual(jwt.get_unverified_header(token)["alg"], "HS256")
        return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_signature": False})

    def test_claims_table(self) -> None:
        base = {"iat": int(NOW), "exp": int(NOW) + 30}
        cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
            ({}, base),
            ({"subject": "bob"}, {**base, "sub": "bob"}),
            ({"audience": "https://bob.example"}, {**base, "aud": "https://bob.example"}),
            ({"issuer": "https://alice.example"}, {**base, "iss": "https://alice.example"}),
            (
                {"subject": "bob", "audience": "a", "issuer": "i"},
                {**base, "sub": "bob", "aud": "a", "iss": "i"},
            ),
        ]
        for config, expected in cases:
            auth = OutgoingAuth(None, SECRET, 30.0, True, FakeTime(), **config)
            self.assertEqual(self.claims(auth), expected, config)

    def test_signed_claims_verify_on_a_receiver_that_checks_them(self) -> None:
        now = FakeTime()
        header = OutgoingAuth(
            None,
            SECRET,
            30.0,
            True,
            now,
            subject="alice",
            audience="https://bob.example",
            issuer="https://alice.example",
        ).header()
        strict = IncomingAuth(
            None,
            SECRET,
            now,
            subject="alice",
            audience="https://bob.example",
            issuer="https://alice.example",
        )
        self.assertTrue(strict.verify(header))
        self.assertFalse(IncomingAuth(None, SECRET, now, subject="carol").verify(header))

    def test_java_jwt_hs256_profile(self) -> None:
        """What interledger4j/ilpv4-connector's JwtHs256AuthenticationProvider
        checks (docs/peering/rules.md): alg HS256, the signature, sub equal to
        the account's token subject, exp only if present, nbf/iat not in the
        future; iss and aud ignored."""
        now = FakeTime()
        header = OutgoingAuth(None, SECRET, 30.0, True, now, subject="ilphttp-node").header()
        token = header[len(b"Bearer ") :]
        self.assertEqual(jwt.get_unverified_header(token), {"alg": "HS256", "typ": "JWT"})
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
        self.assertEqual(claims["sub"], "ilphttp-node")
        self.assertLessEqual(claims["iat"], now.t)
        self.assertGreater(claims["exp"], now.t)

    def test_static_token_ignores_claims(self) -> None:
        auth = OutgoingAuth("tok", None, 30.0, True, FakeTime(), subject="bob")
        self.assertEqual(auth.header(), b"Bearer tok")


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


class PublicKeyTests(SynchronousTestCase):
    """RS256/ES256 from a PEM public key (issue 10's optional mode), no network."""

    def setUp(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    def test_rs256_and_es256_accepted_under_their_key_only(self) -> None:
        rsa_key = load_public_key(_pem(self.rsa))
        ec_key = load_public_key(_pem(self.ec))
        self.assertEqual((rsa_key.algorithm, ec_key.algorithm), ("RS256", "ES256"))
        by_rsa = b"Bearer " + jwt.encode(ALICE, self.rsa, algorithm="RS256").encode("ascii")
        by_ec = b"Bearer " + jwt.encode(ALICE, self.ec, algorithm="ES256").encode("ascii")
        rsa_auth = IncomingAuth(None, None, FakeTime(), public_keys=[rsa_key], subject="alice")
        ec_auth = IncomingAuth(None, None, FakeTime(), public_keys=[ec_key])
        self.assertTrue(rsa_auth.verify(by_rsa))
        self.assertTrue(ec_auth.verify(by_ec))
        self.assertFalse(rsa_auth.verify(by_ec))
        self.assertFalse(ec_auth.verify(by_rsa))
        both = IncomingAuth(None, SECRET, FakeTime(), public_keys=[rsa_key, ec_key])
        for header in (by_rsa, by_ec, b"Bearer " + sign(ALICE)):
            self.assertTrue(both.verify(header))

    def test_other_algorithms_refused_under_a_public_key(self) -> None:
        pem = _pem(self.rsa)
        auth = IncomingAuth(None, None, FakeTime(), public_keys=[load_public_key(pem)])
        cases: list[tuple[str, bytes]] = [
            # RFC 8725 §2.1: the public key used as an HMAC secret
            ("HS256 keyed with the PEM", forge({"alg": "HS256"}, ALICE, secret=pem.decode())),
            ("RS512", jwt.encode(ALICE, self.rsa, algorithm="RS512").encode("ascii")),
            ("PS256", jwt.encode(ALICE, self.rsa, algorithm="PS256").encode("ascii")),
            ("none", forge({"alg": "none"}, ALICE)),
            ("claims still checked", jwt.encode({"sub": "a"}, self.rsa, "RS256").encode("ascii")),
        ]
        for case, token in cases:
            self.assertFalse(auth.verify(b"Bearer " + token), case)

    def test_unusable_keys_refused(self) -> None:
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        p384 = ec.generate_private_key(ec.SECP384R1())
        ed = ed25519.Ed25519PrivateKey.generate()
        for case, pem in (
            ("RSA 1024", _pem(small)),
            ("P-384", _pem(p384)),
            ("Ed25519", _pem(ed)),
            ("garbage", b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"),
            (
                "private key",
                self.ec.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
            ),
        ):
            exc = self.assertRaises(ValueError, load_public_key, pem)
            self.assertNotIn("Traceback", str(exc), case)
