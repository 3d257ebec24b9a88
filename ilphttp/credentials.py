"""Which credential belongs to which account, when one listener serves many (pure).

A shared listener (:mod:`ilphttp.shared`) finds a request's account by its
credential, so no credential may open two accounts: these are the rules the
node's configuration must keep (:func:`ilphttp.node_listeners.check_shared_listen`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ilphttp.config import IncomingOptions
from ilphttp.errors import ConfigError

__all__ = ["account_tokens", "check_distinct_credentials"]


def check_distinct_credentials(accounts: Sequence[tuple[str, IncomingOptions]]) -> None:
    """No static token is two accounts', and a JWT secret is shared only with distinct subs.

    ``accounts`` are ``(account name, its incoming options)``; a multi
    account's children's tokens and subjects count as the account's.

    :raises OptionError: naming both accounts.
    """
    tokens: dict[str, str] = {}
    secrets: dict[str, list[tuple[str, str | None]]] = {}
    for name, incoming in accounts:
        children = incoming.children or {}
        for token in account_tokens(incoming):
            other = tokens.setdefault(token, name)
            if other != name:
                raise ConfigError(_clash(other, name, "token"))
        # The subjects a JWT under this account's secrets may carry: its own
        # (None: any), or, with children, each child's.
        subjects: list[str | None] = (
            [c.subject for c in children.values() if c.subject is not None]
            if children
            else [incoming.subject]
        )
        for secret in filter(None, (incoming.jwt_secret, *incoming.jwt_secrets)):
            for subject in subjects:
                for other, taken in secrets.setdefault(secret, []):
                    # Two accounts may share a JWT secret only when each binds its own sub.
                    if other != name and (subject is None or taken is None or subject == taken):
                        raise ConfigError(_clash(other, name, "JWT secret"))
                secrets[secret].append((name, subject))


def account_tokens(incoming: IncomingOptions) -> list[str]:
    """Every static token an account accepts: its own, and its children's."""
    tokens = [t for t in (incoming.static_token, *incoming.static_tokens) if t]
    for child in (incoming.children or {}).values():
        tokens.extend(child.static_tokens)
    return tokens


def _clash(first: str, second: str, kind: str) -> str:
    return (
        f"accounts.{first} and accounts.{second} have the same incoming {kind}: on a"
        " shared listener a request could not tell them apart"
        + (" (give each its own subject)" if kind == "JWT secret" else "")
    )
