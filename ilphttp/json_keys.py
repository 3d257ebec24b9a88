"""JSON text whose objects give each key once: the config file's parser.

Python's :func:`json.loads` (like JSON.parse) silently keeps the last of two
equal keys in one object, so a second ``"bob"`` account would replace the
first without a word, and a second ``"accounts"`` would hide every account of
the first.  :func:`loads_without_duplicates` refuses them instead, naming
the key and where it is (RFC 8259 section 4: names *should* be unique).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DuplicateKeyError", "loads_without_duplicates"]


class DuplicateKeyError(ValueError):
    """A key given twice in one JSON object; the message names it and its path."""


class _Pairs(dict[str, Any]):
    """A JSON object that remembers the first key it was given twice."""

    duplicate: str | None = None

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        for key, value in pairs:
            if key in self and self.duplicate is None:
                self.duplicate = key
            self[key] = value


def loads_without_duplicates(text: str) -> Any:
    """``json.loads(text)``, refusing an object that gives one key twice.

    The objects come back as plain dicts.

    :raises DuplicateKeyError: ``accounts: the key 'bob' is given twice``
        (the outermost such object first; ``the top level`` for the file's
        own object; a path such as ``accounts.bob.options`` or
        ``listen[1]`` otherwise).
    :raises ValueError: when ``text`` is not JSON (:class:`json.JSONDecodeError`).
    """
    return _plain(json.loads(text, object_pairs_hook=_Pairs), "")


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, _Pairs):
        if value.duplicate is not None:
            raise DuplicateKeyError(
                f"{where or 'the top level'}: the key {value.duplicate!r} is given twice"
                " (JSON would keep only the last one)"
            )
        return {k: _plain(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return value
