"""Connected PluginHttp instances for tests, disconnected at cleanup."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ilphttp.plugin import PluginHttp
from tests.support.packets import fulfil_from_data


def connected_plugin(
    case: SynchronousTestCase, handler: Any = fulfil_from_data, **options: Any
) -> Deferred[PluginHttp]:
    """A PluginHttp with ``options`` and ``handler`` (None: none), connected; fires with it."""
    plugin = PluginHttp(**options)
    if handler is not None:
        plugin.register_data_handler(handler)
    case.addCleanup(plugin.disconnect)
    return plugin.connect().addCallback(lambda _: plugin)
