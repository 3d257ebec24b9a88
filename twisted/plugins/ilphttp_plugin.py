"""The ``twistd ilphttp`` plugin (see :mod:`ilphttp.tap`).

This directory has no ``__init__.py`` on purpose: ``twisted.plugins`` is
Twisted's own package, extended through its ``__path__``.
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

ilphttp = ServiceMaker(
    "ilphttp",
    "ilphttp.tap",
    "An Interledger (ILPv4) over HTTP node: links, and a router between them.",
    "ilphttp",
)
