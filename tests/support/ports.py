"""Loopback addresses and ports.  Everything in the tests listens on 127.0.0.1 only."""

from __future__ import annotations

import socket
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


LOOPBACK_ENDPOINT = "tcp:0:interface=127.0.0.1"


def listen_port(plugin: Any) -> int:
    port: int = plugin.port.getHost().port
    return port


def plugin_url(plugin: Any, path: str = "/") -> str:
    return f"http://127.0.0.1:{listen_port(plugin)}{path}"
