"""What the benchmark scripts share; standard library only (no Twisted, no ilphttp).

A small self-contained ILPv4 encoder (OER, RFC 27) builds the Prepare that the
load generator posts, so run.py works even where ilphttp does not import; when
ilphttp does import, run.py checks the two encoders agree.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import math
import os
import time
from collections.abc import Sequence

#: every bench Prepare's condition is sha256 of this (js_server.js has the same)
FULFILLMENT = bytes([7]) * 32
CONDITION = hashlib.sha256(FULFILLMENT).digest()
DEFAULT_TOKEN = "bench-static-token"
#: 32+ bytes, so PyJWT does not warn about a short HMAC key
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123"
DESTINATION = "test.bench.receiver"
TYPE_PREPARE = 12
TYPE_FULFILL = 13


def _length_prefix(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _var_octets(b: bytes) -> bytes:
    return _length_prefix(len(b)) + b


def _timestamp(when: _dt.datetime) -> bytes:
    when = when.astimezone(_dt.timezone.utc)
    text = when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 1000:03d}"
    return text.encode("ascii")


def encode_prepare(
    amount: int,
    expires_at: _dt.datetime,
    condition: bytes,
    destination: str,
    data: bytes,
) -> bytes:
    """An ILPv4 Prepare: type 12, then amount, expiry, condition, destination, data."""
    if len(condition) != 32:
        raise ValueError("the condition is 32 bytes")
    content = (
        amount.to_bytes(8, "big")
        + _timestamp(expires_at)
        + condition
        + _var_octets(destination.encode("ascii"))
        + _var_octets(data)
    )
    return bytes([TYPE_PREPARE]) + _var_octets(content)


def encode_fulfill(fulfillment: bytes, data: bytes = b"") -> bytes:
    """An ILPv4 Fulfill: type 13, then the fulfillment and data."""
    return bytes([TYPE_FULFILL]) + _var_octets(fulfillment + _var_octets(data))


def bench_prepare(size: int, expires_in: float, now: float | None = None) -> bytes:
    """The Prepare every bench sender posts: ``size`` bytes of data, fulfilled by FULFILLMENT."""
    start = time.time() if now is None else now
    expires = _dt.datetime.fromtimestamp(start + expires_in, _dt.timezone.utc)
    return encode_prepare(1, expires, CONDITION, DESTINATION, b"a" * size)


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def hs256_jwt(secret: str, lifetime: float, now: float | None = None) -> str:
    """An HS256 JWT with ``iat``/``exp``, as the JS plugin signs them (payload ``{}``)."""
    iat = int(time.time() if now is None else now)
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps({"iat": iat, "exp": iat + int(lifetime)}).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile (``p`` in 0..1) of already sorted values."""
    n = len(sorted_values)
    if n == 0:
        return None
    i = min(n - 1, max(0, math.ceil(p * n) - 1))
    return sorted_values[i]


def summarize(latencies_ms: list[float], errors: int, seconds: float, impl: str) -> dict:
    """The result line every sender prints (the same keys as js_pair.js)."""
    latencies_ms.sort()
    n = len(latencies_ms)
    return {
        "event": "result",
        "impl": impl,
        "packets": n,
        "errors": errors,
        "seconds": seconds,
        "pps": n / seconds if seconds else 0.0,
        "p50_ms": percentile(latencies_ms, 0.5),
        "p99_ms": percentile(latencies_ms, 0.99),
        "mean_ms": sum(latencies_ms) / n if n else None,
        "max_ms": latencies_ms[-1] if n else None,
    }


# -- process accounting (Linux /proc; None elsewhere) -------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # fields after "pid (comm)": comm may hold spaces, so split after the last ')'
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_rss_kb(pid: int) -> int | None:
    """Resident set size of process ``pid`` in KiB (VmRSS in /proc/<pid>/status)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound, read, released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
