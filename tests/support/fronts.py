"""Run a test case over either front door of the plugin's listeners.

The plugin, the shared listener and a node's extra listeners listen with the
lean engine (:func:`ilphttp.listener.make_listener`) by default; a test case
that mixes in :class:`OverSite` runs the same tests over twisted.web's
``Site`` with :class:`~ilphttp.server.IlpResource`'s door
(:func:`ilphttp.listener.site_listener`), so each test body runs against both.
"""

from __future__ import annotations

from typing import Any

from ilphttp.listener import site_listener
from ilphttp.plugin import PluginHttp
from ilphttp.shared import SharedListener


class OverSite:
    """Mixin (first base): listeners built while the test runs are twisted.web Sites."""

    def setUp(self) -> Any:
        case: Any = self
        for cls in (PluginHttp, SharedListener):
            # Not TestCase.patch: it would restore the unwrapped function, not the staticmethod.
            original = vars(cls)["listener_factory"]
            cls.listener_factory = staticmethod(site_listener)  # type: ignore[assignment]
            case.addCleanup(setattr, cls, "listener_factory", original)
        return super().setUp()  # type: ignore[misc]
