"""Multilateral (hub) accounts, pure: a child's URL from the template, a child's address.

A multi account serves many children through one link (the JS plugin's
``multi`` mode): a child's name is the address segment after ours, and the
outgoing URL is a template in which the delimiter (default ``%``, its first
occurrence only) is replaced by that name.  A name must fit the place it
fills: digits for a port (no leading zero: one port, one name), an RFC 1123
label for a host, anything an ILP segment allows for a path.  Otherwise the
child cannot be reached, and it is refused before any request is made -- a
name is never a way to make the hub knock on arbitrary ports or hosts.  No
Twisted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ilphttp.packet import is_valid_address, is_valid_segment

__all__ = ["ChildNameError", "ChildUrlTemplate", "child_address", "child_name"]

PORT = "port"
HOST = "host"
PATH = "path"

_MARK = "ilphttp0child0mark"
# RFC 1123 section 2.1: letters, digits and hyphens, not at either end, 63 at most.
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


class ChildNameError(ValueError):
    """A child's name cannot be used (not a segment, or it does not fit the URL)."""


def _place(template: str, delimiter: str) -> str | None:
    """Where the delimiter stands in ``template``: PORT, HOST, PATH, or None (absent)."""
    if delimiter not in template:
        return None
    parts = urlsplit(template.replace(delimiter, _MARK, 1))
    if _MARK not in parts.netloc:
        return PATH
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if _MARK in userinfo:
        raise ValueError("the delimiter may fill the host, the port or the path, not the user")
    # The port follows the last ":" after the host (an IPv6 host is in brackets).
    port = hostport.rpartition("]")[2].rpartition(":")[2] if ":" in hostport else ""
    return PORT if _MARK in port else HOST


@dataclass(frozen=True)
class ChildUrlTemplate:
    """An outgoing URL template of a multi account.

    :param template: e.g. ``http://127.0.0.1:%/`` or ``https://%.peers.example/ilp``.
    :param delimiter: what the child's name replaces (first occurrence only).
    :param port_range: the ports a name may select, inclusive, when it fills the port.
    :raises ValueError: when the delimiter stands somewhere a name may not go.
    """

    template: str
    delimiter: str = "%"
    port_range: tuple[int, int] = (1, 65535)
    place: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "place", _place(self.template, self.delimiter))

    def url_for(self, name: str) -> str:
        """The URL of child ``name``.

        :raises ChildNameError: saying why ``name`` cannot be reached through
            this template (without repeating the URL).
        """
        if not is_valid_segment(name):
            raise ChildNameError(f"{name[:64]!r} is not a valid address segment")
        url = self.template.replace(self.delimiter, name, 1)
        if self.place == PORT:
            low, high = self.port_range
            port = urlsplit(url).netloc.rpartition(":")[2]
            # Canonical digits only: "08191" would reach the port of child
            # "8191" under another address (and so another child's packets).
            digits = port.isascii() and port.isdigit()
            if not (digits and low <= int(port) <= high):
                raise ChildNameError(
                    f"the child's name fills the port of the URL template, so it must be"
                    f" a number from {low} to {high}"
                )
            if str(int(port)) != port:
                raise ChildNameError(
                    "the child's name fills the port of the URL template, so it must be"
                    " written without leading zeros"
                )
        elif self.place == HOST:
            hostname = urlsplit(url).hostname or ""
            if not all(_HOST_LABEL.match(label) for label in hostname.split(".")):
                raise ChildNameError(
                    "the child's name fills the host of the URL template, so it must be"
                    " letters, digits and hyphens (RFC 1123)"
                )
        return url


def child_name(parent_address: str, destination: str) -> str | None:
    """The child's name in ``destination`` (the segment after ``parent_address``), or None."""
    if not destination.startswith(parent_address + "."):
        return None
    name = destination[len(parent_address) + 1 :].split(".", 1)[0]
    return name if is_valid_segment(name) else None


def child_address(parent_address: str, name: str) -> str:
    """``<parent_address>.<name>``, the address a child is told over IL-DCP.

    :raises ChildNameError: when ``name`` is not a segment or the address is too long.
    """
    if not is_valid_segment(name):
        raise ChildNameError("ILP-Peer-Name is not a valid segment")
    address = f"{parent_address}.{name}"
    if not is_valid_address(address):
        raise ChildNameError("child address is too long")
    return address
