"""Helpers for the HTTP/2 server's tests: h2's client side as the frame
factory (as hyper-h2's own tests do), and a door that records its calls."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
from twisted.internet.defer import Deferred

from ilphttp.front import OCTET_STREAM, Answer


def h2_client(**settings: int) -> h2.connection.H2Connection:
    """A client-side h2 connection, preface and SETTINGS queued."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    if settings:
        conn.local_settings.update(
            {getattr(h2.settings.SettingCodes, k): v for k, v in settings.items()}
        )
    conn.initiate_connection()
    return conn


def request(
    method: bytes = b"POST", path: bytes = b"/", *fields: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """A request header block."""
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", b"x"),
        (b":path", path),
        *fields,
    ]


def answered(events: list[Any]) -> dict[int, bytes]:
    """The complete answer bodies among a client's events, by stream id."""
    bodies: dict[int, bytes] = {}
    ended = set()
    for e in events:
        if isinstance(e, h2.events.ResponseReceived):
            bodies.setdefault(e.stream_id, b"")
        elif isinstance(e, h2.events.DataReceived):
            bodies[e.stream_id] = bodies.get(e.stream_id, b"") + e.data
        elif isinstance(e, h2.events.StreamEnded):
            ended.add(e.stream_id)
    return {sid: body for sid, body in bodies.items() if sid in ended}


def statuses(events: list[Any]) -> dict[int, int]:
    """The ``:status`` of each response among a client's events."""
    return {
        e.stream_id: int(dict(e.headers)[b":status"])
        for e in events
        if isinstance(e, h2.events.ResponseReceived)
    }


def goaways(events: list[Any]) -> list[h2.events.ConnectionTerminated]:
    return [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]


class RecordingDoor:
    """Answers ``200 ok <path>`` at once, or (paths under ``/later``) with a
    Deferred the test fires through :meth:`answer_all`."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, Any, bytes, Any]] = []
        self.waiting: dict[bytes, Deferred[Answer]] = {}
        self.cancelled: list[bytes] = []
        #: the statuses shown to :meth:`observer`: the server's own answers
        #: (this door calls no observer for its own)
        self.observed: list[int] = []

    def observer(self, answer: Any) -> Any:
        """Record ``answer``'s status (the door's ``observer`` hook, as metrics' is)."""
        self.observed.append(answer.status)
        return answer

    def answer(
        self, method: bytes, path: bytes, header: Any, body: bytes, identity: Any
    ) -> Answer | Deferred[Answer]:
        self.calls.append((method, path, header, body, identity))
        if path.startswith(b"/later"):
            d: Deferred[Answer] = Deferred(lambda _: self.cancelled.append(path))
            self.waiting[path] = d
            return d
        return Answer(200, b"ok " + path, OCTET_STREAM)

    @property
    def paths(self) -> list[bytes]:
        return [call[1] for call in self.calls]

    def answer_all(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for path, d in waiting.items():
            if not d.called:
                d.callback(Answer(200, b"ok " + path, OCTET_STREAM))
