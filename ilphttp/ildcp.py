"""IL-DCP (RFC 31): how a child learns its ILP address and asset from its parent.

The request is a Prepare of amount 0 to ``peer.config`` with a well-known
condition; the answer is a Fulfill whose data carries the client's address and
the asset's scale and code.  Everything here is pure (no Twisted); asking a
parent over a link is :func:`ilphttp.plugin.fetch_ildcp`.
"""

from __future__ import annotations

import datetime as _dt
from typing import NamedTuple, Union

from ilphttp.logtext import escape
from ilphttp.packet import (
    Fulfill,
    InvalidPacketError,
    Prepare,
    Reject,
    condition_from_fulfillment,
    deserialize,
    is_valid_address,
    serialize_fulfill,
    serialize_prepare,
)

__all__ = [
    "ILDCP_CONDITION",
    "ILDCP_DESTINATION",
    "ILDCP_FULFILLMENT",
    "IldcpError",
    "IldcpResponse",
    "deserialize_response",
    "is_ildcp_request",
    "request_prepare",
    "serialize_request",
    "serialize_response",
    "serve",
]

ILDCP_DESTINATION = "peer.config"
ILDCP_FULFILLMENT = bytes(32)
ILDCP_CONDITION = condition_from_fulfillment(ILDCP_FULFILLMENT)
DEFAULT_EXPIRY = _dt.timedelta(seconds=60)


class IldcpError(Exception):
    """IL-DCP failed: the parent rejected, or its answer was malformed.

    :ivar reject: the parent's :class:`~ilphttp.packet.Reject` when it rejected
        the request, else None.
    """

    def __init__(self, message: str, reject: Reject | None = None) -> None:
        super().__init__(message)
        self.reject = reject


class IldcpResponse(NamedTuple):
    """What a parent tells its child: the child's address and the asset."""

    client_address: str
    asset_scale: int
    asset_code: str


IldcpLike = Union[IldcpResponse, "dict[str, object]"]


def as_response(value: IldcpResponse | dict[str, object]) -> IldcpResponse:
    """An :class:`IldcpResponse` from itself or from a dict in Python or JS spelling."""
    if isinstance(value, IldcpResponse):
        resp = value
    else:
        d = dict(value)

        def pick(*names: str) -> object:
            for n in names:
                if n in d:
                    return d[n]
            raise ValueError(f"ildcp: missing {names[0]!r}")

        resp = IldcpResponse(
            str(pick("client_address", "clientAddress")),
            int(pick("asset_scale", "assetScale")),  # type: ignore[call-overload]
            str(pick("asset_code", "assetCode")),
        )
    _check_response(resp)
    return resp


def _check_response(resp: IldcpResponse) -> None:
    if not is_valid_address(resp.client_address):
        raise ValueError(f"ildcp: invalid client address {resp.client_address!r}")
    if not 0 <= resp.asset_scale <= 255:
        raise ValueError(f"ildcp: asset scale {resp.asset_scale} is not in 0..255")
    if len(resp.asset_code.encode("utf-8")) > 255:
        raise ValueError("ildcp: asset code is too long")


def request_prepare(expires_at: _dt.datetime | None = None) -> Prepare:
    """The IL-DCP request Prepare (expiring in 60 s unless told otherwise)."""
    if expires_at is None:
        expires_at = _dt.datetime.now(_dt.timezone.utc) + DEFAULT_EXPIRY
    return Prepare(0, expires_at, ILDCP_CONDITION, ILDCP_DESTINATION, b"")


def serialize_request(expires_at: _dt.datetime | None = None) -> bytes:
    """The serialized IL-DCP request."""
    return serialize_prepare(request_prepare(expires_at))


def is_ildcp_request(prepare: Prepare) -> bool:
    """True for a Prepare to ``peer.config`` with the IL-DCP condition."""
    return (
        prepare.destination == ILDCP_DESTINATION and prepare.execution_condition == ILDCP_CONDITION
    )


def _length_prefixed(raw: bytes) -> bytes:
    n = len(raw)
    if n < 0x80:
        return bytes((n,)) + raw
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big") + raw


def serialize_response(resp: IldcpResponse) -> bytes:
    """The serialized Fulfill that answers an IL-DCP request with ``resp``."""
    _check_response(resp)
    data = (
        _length_prefixed(resp.client_address.encode("ascii"))
        + bytes((resp.asset_scale,))
        + _length_prefixed(resp.asset_code.encode("utf-8"))
    )
    return serialize_fulfill(Fulfill(ILDCP_FULFILLMENT, data))


def _read_var(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(data):
        raise IldcpError("IL-DCP response truncated")
    first = data[pos]
    pos += 1
    if first >= 0x80:
        size = first & 0x7F
        if size == 0 or size > 2 or pos + size > len(data) or data[pos] == 0:
            raise IldcpError("IL-DCP response has an invalid length prefix")
        n = int.from_bytes(data[pos : pos + size], "big")
        if n < 0x80:
            raise IldcpError("IL-DCP response has a non-canonical length prefix")
        pos += size
    else:
        n = first
    if pos + n > len(data):
        raise IldcpError("IL-DCP response truncated")
    return data[pos : pos + n], pos + n


def deserialize_response(reply: bytes) -> IldcpResponse:
    """Decode the parent's reply; raises :class:`IldcpError` for a Reject or bad data.

    Bytes after the reply's envelope are ignored (RFC 30: liberal reader).
    """
    try:
        packet = deserialize(reply, strict=False)
    except InvalidPacketError as exc:
        raise IldcpError(f"IL-DCP reply is not an ILP packet: {exc}") from None
    if isinstance(packet, Reject):
        raise IldcpError(
            # The parent's text, escaped: this message goes to logs and terminals.
            f"IL-DCP request rejected: {escape(packet.code)} {escape(packet.message)!r}"
            f" (triggered by {escape(packet.triggered_by) or 'unknown'})",
            packet,
        )
    if not isinstance(packet, Fulfill):
        raise IldcpError("IL-DCP reply is a Prepare, not a Fulfill")
    if packet.fulfillment != ILDCP_FULFILLMENT:
        # it cannot fulfil the request's condition: not an answer to IL-DCP
        raise IldcpError("IL-DCP response does not contain the expected fulfillment")
    data = packet.data
    raw_address, pos = _read_var(data, 0)
    if pos >= len(data):
        raise IldcpError("IL-DCP response truncated: no asset scale")
    scale = data[pos]
    raw_code, pos = _read_var(data, pos + 1)
    try:
        address = raw_address.decode("ascii")
        code = raw_code.decode("utf-8")
    except UnicodeDecodeError:
        raise IldcpError("IL-DCP response has undecodable text") from None
    if not is_valid_address(address):
        raise IldcpError(f"IL-DCP response has an invalid client address {address!r}")
    return IldcpResponse(address, scale, code)


def serve(prepare: Prepare, resp: IldcpResponse) -> bytes:
    """Answer an IL-DCP request; raises ValueError if ``prepare`` is not one."""
    if not is_ildcp_request(prepare):
        raise ValueError("not an IL-DCP request (destination or condition differ)")
    return serialize_response(resp)
