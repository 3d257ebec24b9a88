"""Reading a node's config file: JSON (a key given twice refused) or TOML.

The file's top-level object is handed to :func:`ilphttp.nodeconfig.parse_node`;
errors are :class:`~ilphttp.errors.OptionError` (``ConfigError``) naming the
file.  Pure: no Twisted.
"""

from __future__ import annotations

import importlib
from typing import Any

from ilphttp.errors import ConfigError
from ilphttp.json_keys import DuplicateKeyError, loads_without_duplicates

__all__ = ["load_file"]


def load_file(path: str) -> dict[str, Any]:
    """The config file's top-level object (JSON; TOML for ``*.toml``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.endswith(".toml"):
        toml = _toml_module(path)
        try:
            data = toml.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    else:
        try:
            data = loads_without_duplicates(raw.decode("utf-8"))
        except DuplicateKeyError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    return data


def _toml_module(path: str) -> Any:
    try:
        return importlib.import_module("tomllib")
    except ImportError:
        pass
    try:
        return importlib.import_module("tomli")
    except ImportError:
        raise ConfigError(
            f"{path}: TOML needs Python 3.11+ or the tomli package"
            " (pip install tomli); or write the config as JSON"
        ) from None
