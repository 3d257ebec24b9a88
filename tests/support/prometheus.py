"""Debian's ``promtool`` (package ``prometheus``), for checking exposition and rules."""

from __future__ import annotations

import shutil
import subprocess

from twisted.trial import unittest

from tests.support.jsinterop import in_ci


def require_promtool() -> str:
    """The path of ``promtool``; otherwise the calling test is skipped, or fails
    when ``CI=true`` (.ci/run installs it: there a missing promtool is a broken
    environment, not a reason to pass)."""
    found = shutil.which("promtool")
    if found is not None:
        return found
    problem = "promtool is not on PATH (Debian: apt-get install prometheus)"
    if in_ci():
        raise unittest.FailTest(problem + " with CI=true")
    raise unittest.SkipTest(problem)


def promtool(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """``promtool ARGS`` with ``stdin``; its output as text, whatever its exit status."""
    return subprocess.run(
        [require_promtool(), *args],
        input=stdin.decode("utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
    )
