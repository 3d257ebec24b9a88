"""Secrets (tokens, JWT secrets) from a file, an environment variable or a literal.

One loader for the node file (``staticTokenFile``, ``jwtSecretEnv``, ...),
``twistd ilphttp`` flags and ``ilphttp ping``: secrets never come from argv
and never reach a repr or a log.  Pure: no Twisted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ilphttp.auth import PublicKey, load_public_key
from ilphttp.errors import OptionError
from ilphttp.validate import optional_string

__all__ = [
    "env_secret",
    "read_public_key",
    "read_secret_file",
    "resolve_secret",
    "token_or_jwt_secret",
]


def read_secret_file(path: str, what: str) -> str:
    """The secret in ``path``, surrounding whitespace (a final newline) removed.

    :raises OptionError: naming ``what`` when the file cannot be read, is not
        UTF-8 or is empty.
    """
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise OptionError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OptionError(f"{what}: {path} is not UTF-8 text") from None
    if not secret:
        raise OptionError(f"{what}: {path} is empty")
    return secret


def resolve_secret(
    where: str,
    value: tuple[str, Any],
    file: tuple[str, Any],
    env: tuple[str, Any],
    environ: Mapping[str, str] | None = None,
    base_dir: str = ".",
) -> str | None:
    """The one secret of ``where`` given as a literal, a file or an environment variable.

    Each of ``value``, ``file`` and ``env`` is ``(key, what the user gave or
    None)``; errors name ``where.key``.  A relative file name is taken from
    ``base_dir``.  None when nothing is given; a literal is returned as given
    (it is validated with the other options).

    :raises OptionError: when several are given, or the one given is unusable.
    """
    given = [key for key, v in (value, file, env) if v is not None]
    if len(given) > 1:
        raise OptionError(f"{where}: give one of {', '.join(given)}, not several")
    if value[1] is not None:
        literal: str = value[1]
        return literal
    key, path = file
    if path is not None:
        if not isinstance(path, str) or not path:
            raise OptionError(f"{where}.{key} must be a file name")
        return read_secret_file(os.path.join(base_dir, path), f"{where}.{key}")
    key, variable = env
    if variable is not None:
        if not isinstance(variable, str) or not variable:
            raise OptionError(f"{where}.{key} must name an environment variable")
        return env_secret(
            os.environ if environ is None else environ, variable, f"{where}.{key}", required=True
        )
    return None


def env_secret(
    environ: Mapping[str, str], variable: str, what: str, *, required: bool
) -> str | None:
    """The secret in the environment variable ``variable``, surrounding whitespace
    removed (as from a file); None when it is unset or empty and not ``required``.

    :raises OptionError: naming ``what`` and ``variable`` when it is blank
        (whitespace only: refused like a blank file), or unset or empty and ``required``.
    """
    value = environ.get(variable)
    if not value:
        if required:
            raise OptionError(f"{what}: environment variable {variable} is not set")
        return None
    secret = value.strip()
    if not secret:
        raise OptionError(f"{what}: environment variable {variable} is blank (whitespace only)")
    return secret


def token_or_jwt_secret(
    label: str,
    token_file: tuple[str, str | None],
    jwt_file: tuple[str, str | None],
    token_env: str,
    jwt_env: str,
    environ: Mapping[str, str],
    *,
    both_allowed: bool = False,
) -> tuple[str | None, str | None]:
    """(static token, JWT secret) for one side of a link given by command-line flags.

    ``token_file``/``jwt_file`` are ``(flag, path or None)``.  A file given on
    the command line wins over the whole environment; otherwise the
    environment variables ``token_env``/``jwt_env`` are read.  At least one is
    required, and both only when ``both_allowed`` (incoming: a static token is
    accepted beside JWTs, as in the JS plugin).

    :raises OptionError: naming ``label`` and the flags/variables.
    """
    (token_flag, token_path), (jwt_flag, jwt_path) = token_file, jwt_file
    if token_path is not None and jwt_path is not None and not both_allowed:
        raise OptionError(f"{label}: give {token_flag} or {jwt_flag}, not both")
    if token_path is not None or jwt_path is not None:
        token = None if token_path is None else read_secret_file(token_path, token_flag)
        jwt = None if jwt_path is None else read_secret_file(jwt_path, jwt_flag)
    else:
        token = env_secret(environ, token_env, label, required=False)
        jwt = env_secret(environ, jwt_env, label, required=False)
    if token is None and jwt is None:
        raise OptionError(
            f"{label} is missing: give {token_flag} or {jwt_flag}, or set {token_env} or {jwt_env}"
        )
    if token is not None and jwt is not None and not both_allowed:
        first = token_flag if token_path is not None else token_env
        second = jwt_flag if jwt_path is not None else jwt_env
        raise OptionError(f"{label}: give {first} or {second}, not both")
    return token, jwt


def read_public_key(where: str, path: Any) -> tuple[str | None, PublicKey | None]:
    """A PEM public key file (option ``where``): its name and its key, read once.

    :raises OptionError: naming ``where`` when it is unreadable or not a usable key.
    """
    name = optional_string(where, path)
    if name is None:
        return None, None
    try:
        with open(name, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise OptionError(f"{where}: cannot read {name!r} ({exc.strerror})") from None
    try:
        return name, load_public_key(pem)
    except ValueError as exc:
        raise OptionError(f"{where} {name!r}: {exc}") from None
