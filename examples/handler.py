"""An example ``--handler`` factory: log every Prepare, reject it with F99.

Run it (the module must be importable: installed, or on PYTHONPATH)::

    export ILPHTTP_INCOMING_TOKEN=change-me
    PYTHONPATH=examples twistd -n ilphttp --listen tcp:8000:interface=127.0.0.1 \\
        --handler handler:make_handler

and try it with ``ilphttp ping --url http://127.0.0.1:8000/ --destination
test.x --amount 1`` (with ILPHTTP_OUTGOING_TOKEN=change-me).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

from ilphttp.packet import ErrorCode, Reject, deserialize_prepare, serialize_reject

if TYPE_CHECKING:
    from ilphttp.node import HandlerContext

log = Logger()


def make_handler(context: HandlerContext) -> Callable[[bytes], bytes]:
    """Called once per account with an :class:`ilphttp.node.HandlerContext`."""
    account = context.account
    address = context.plugin.address or ""

    def handler(data: bytes) -> bytes:
        prepare = deserialize_prepare(data)
        log.info(
            "{account}: {amount} to {destination}, {size} bytes of data",
            account=account,
            amount=prepare.amount,
            destination=prepare.destination,
            size=len(prepare.data),
        )
        return serialize_reject(
            Reject(ErrorCode.F99_APPLICATION_ERROR, address, f"seen by {account}")
        )

    return handler
