"""Static tokens and HS256 JWTs, checked against a fake clock."""

from __future__ import annotations

import hmac
import warnings
from typing import Any

import jwt
from twisted.trial.unittest import SynchronousTestCase

from ilphttp import auth as auth_module
from ilphttp.auth import _VERIFY_CACHE_SIZE, IncomingAuth, OutgoingAuth, token_from_header

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


class StaticTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.auth = IncomingAuth("s3cret-token", None, FakeTime())

    def test_bearer_and_raw_accepted(self) -> None:
        self.assertTrue(self.auth.verify(b"Bearer s3cret-token"))
        self.assertTrue(self.auth.verify(b"s3cret-token"))
        # The scheme is case-insensitive (RFC 9110), unlike in the JS plugin.
        self.assertTrue(self.auth.verify(b"bearer s3cret-token"))
        self.assertTrue(self.auth.verify(b"BEARER s3cret-token"))

    def test_wrong_tokens_refused(self) -> None:
        for header in (
            b"Bearer s3cret-tokeN",
            b"s3cret-token ",
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
