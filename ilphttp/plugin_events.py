"""The JS plugin API's events and money methods, shared by :class:`~ilphttp.PluginHttp`.

``on``/``off`` with ``"connect"`` and ``"disconnect"``, and the money
handler methods the plugin interface has but HTTP never uses (settlement is
not done over HTTP, as in ``ilp-plugin-http``).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

__all__ = ["PluginEvents"]

_log = Logger(namespace="ilphttp.plugin")


class PluginEvents:
    """A mixin: ``on``/``off``/``_emit`` and the no-op money methods."""

    _listeners: dict[str, list[Callable[[], object]]]
    _money_handler: Callable[[str], Any] | None = None

    def on(self, event: str, callback: Callable[[], object]) -> None:
        """Call ``callback()`` on each ``"connect"`` or ``"disconnect"``."""
        if event not in ("connect", "disconnect"):
            raise ValueError(f"unknown event {event!r}: use 'connect' or 'disconnect'")
        self._events().setdefault(event, []).append(callback)

    def off(self, event: str, callback: Callable[[], object]) -> None:
        """Stop calling ``callback`` on ``event``."""
        self._events().get(event, []).remove(callback)

    def _events(self) -> dict[str, list[Callable[[], object]]]:
        try:
            return self._listeners
        except AttributeError:
            self._listeners = {}
            return self._listeners

    def _emit(self, event: str) -> None:
        for callback in list(self._events().get(event, ())):
            try:
                callback()
            except Exception:
                _log.failure("{event} listener failed", event=event)

    def register_money_handler(self, handler: Callable[[str], Any]) -> None:
        """Kept for the plugin API; no money moves over HTTP, so it is never called."""
        self._money_handler = handler

    def deregister_money_handler(self) -> None:
        """Kept for the plugin API."""
        self._money_handler = None

    def send_money(self, amount: str | int) -> Deferred[None]:
        """A no-op, as in the JS plugin: settlement is not done over HTTP."""
        return succeed(None)
