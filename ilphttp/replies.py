"""What a peer's answer means, pure: an HTTP status as a Reject, a reply body as a Reply.

Shared by both ways a reply arrives: in the response to our Prepare
(synchronous ILP-over-HTTP) and in a request to our callback URL (RFC 35
asynchronous mode).  The same body or status gives the same Fulfill or
Reject either way, as ``docs/errors.rst`` documents.  No Twisted here.

:func:`reject_for_status` and :func:`check_reply_body` are the one rule:
``ilphttp.client`` (synchronous replies) and :mod:`ilphttp.pending` (RFC 35
replies) both use them.
"""

from __future__ import annotations

from ilphttp.packet import (
    TYPE_FULFILL,
    TYPE_REJECT,
    ErrorCode,
    Fulfill,
    InvalidPacketError,
    Reject,
    Reply,
    condition_from_fulfillment,
    deserialize,
    envelope_length,
)

__all__ = ["check_reply_body", "read_reply", "reject_for_status"]


def reject_for_status(status: int, triggered_by: str) -> Reject:
    """The Reject for an HTTP status that brings no reply (not 200; not 202 in async mode).

    401/403 → T00 (our credential is wrong: retrying later may work once it is
    fixed), other 4xx → F00, 5xx → T00 (RFC 35: "Server errors ... T00"),
    anything else → T00.
    """
    if status in (401, 403):
        return Reject(
            ErrorCode.T00_INTERNAL_ERROR,
            triggered_by,
            f"peer refused our credentials (HTTP {status}): check the outgoing token or secret",
        )
    if 400 <= status < 500:
        return Reject(ErrorCode.F00_BAD_REQUEST, triggered_by, f"peer answered HTTP {status}")
    if status >= 500:
        return Reject(ErrorCode.T00_INTERNAL_ERROR, triggered_by, f"peer answered HTTP {status}")
    return Reject(
        ErrorCode.T00_INTERNAL_ERROR, triggered_by, f"peer answered unexpected HTTP {status}"
    )


def read_reply(body: bytes) -> Reply:
    """``body`` read as a Fulfill or Reject, not yet checked against any condition.

    Bytes after the envelope are ignored (RFC 30's liberal reader) and left out
    of the :class:`~ilphttp.packet.Reply`'s ``data``: ``len(body) -
    len(reply.data)`` is how many were ignored.

    :raises InvalidPacketError: when ``body`` is not a Fulfill or a Reject.
    """
    if not body or body[0] not in (TYPE_FULFILL, TYPE_REJECT):
        raise InvalidPacketError("not a Fulfill or Reject")
    try:
        packet = deserialize(body)  # the common case: exactly one envelope, read once
        end = len(body)
    except InvalidPacketError:
        packet = deserialize(body, strict=False)
        end = envelope_length(body)
    assert isinstance(packet, (Fulfill, Reject))
    return Reply(packet, body if end == len(body) else body[:end])


def check_reply_body(body: bytes, condition: bytes, triggered_by: str) -> Reply | Reject:
    """``body`` if it is a Reject or a Fulfill of ``condition``; else a Reject of ours.

    Not a Fulfill or Reject → T00; a Fulfill whose fulfillment does not hash to
    ``condition`` (32 bytes) → F05 (nothing was paid).  A Reject of ours comes
    back bare (not a :class:`~ilphttp.packet.Reply`), so the caller can tell
    the two apart.  A hash-checked Fulfill is always passed on.
    """
    try:
        reply = read_reply(body)
    except InvalidPacketError as exc:
        return Reject(
            ErrorCode.T00_INTERNAL_ERROR,
            triggered_by,
            f"peer's reply is not a valid ILP Fulfill or Reject: {exc}",
        )
    packet = reply.packet
    if isinstance(packet, Fulfill) and condition_from_fulfillment(packet.fulfillment) != condition:
        return Reject(
            ErrorCode.F05_WRONG_CONDITION,
            triggered_by,
            "peer's fulfillment does not match the execution condition",
        )
    return reply
