"""The ``--handler`` of ``examples/peers.json``: bob's side and the hub's parent.

``examples/hub.json`` sends to two addresses that it does not run itself: its
parent (``http://127.0.0.1:7780/``) and bob's side (``http://127.0.0.1:7782/``).
``examples/peers.json`` is one more node, with one account for each of them,
and this module answers their packets. From the repository root::

    PYTHONPATH=examples twistd -n --pidfile= ilphttp --config examples/peers.json \\
        --handler peers:make_handler

(``PYTHONPATH=examples`` makes this file importable as ``peers``: twistd does
not add the current directory.) The README's walk-through and
``docs/tutorial.rst`` use it.

What each account does:

- ``bob`` (port 7782; relation ``parent``, because the hub is bob's parent)
  is bob's side, at ``test.hub.bob``. Like a receiver that made up the
  condition itself, it knows one fulfillment, :data:`FULFILLMENT`: it answers
  a Prepare whose condition is that fulfillment's SHA-256 (RFC 27) with a
  Fulfill, and any other Prepare with Reject F05 Wrong Condition.
- ``hub`` (port 7780; relation ``child``, because the hub is this node's
  child) is the hub's parent, at ``test.up``. It answers the hub's IL-DCP
  request (RFC 31) with ``test.hub``, XRP, scale 9, and any other Prepare as
  bob's side does: it stands for the rest of the Interledger.

Loopback only: ``examples/peers.json`` listens on 127.0.0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

from ilphttp import ildcp
from ilphttp.packet import (
    ErrorCode,
    Fulfill,
    Reject,
    condition_from_fulfillment,
    deserialize_prepare,
    serialize_fulfill,
    serialize_reject,
)

if TYPE_CHECKING:
    from ilphttp.node import HandlerContext

log = Logger()

#: The one fulfillment (preimage) the walk-through's receivers know: 32 bytes,
#: the text ``ilphttp walk-through fulfillment``; in hex
#: ``696c7068747470207761 6c6b2d7468726f756768 2066756c66696c6c6d656e74``.
FULFILLMENT = b"ilphttp walk-through fulfillment"
#: Its SHA-256: the condition a Prepare needs to be fulfilled here.
CONDITION = condition_from_fulfillment(FULFILLMENT)
#: What the parent tells the hub over IL-DCP (``examples/hub.json`` says the same).
HUB = ildcp.IldcpResponse(client_address="test.hub", asset_scale=9, asset_code="XRP")


def make_handler(context: HandlerContext) -> Callable[[bytes], bytes]:
    """One account's data handler: ``bytes`` (a Prepare) -> ``bytes`` (a Fulfill or Reject).

    :param context: the account (``hub`` or ``bob`` of ``examples/peers.json``);
        its plugin's ``address`` (the account's ``options.address``) is the
        ``triggeredBy`` of our Rejects.
    """
    account = context.account
    address = context.plugin.address or "test.unknown"
    is_parent = context.relation == "child"  # the far end is our child: we are its parent

    def handler(data: bytes) -> bytes:
        prepare = deserialize_prepare(data)
        if ildcp.is_ildcp_request(prepare):
            if is_parent:
                log.info("{account}: IL-DCP, the child is {child}", account=account, child=HUB)
                return ildcp.serve(prepare, HUB)
            reject = Reject(ErrorCode.F02_UNREACHABLE, address, "we are nobody's parent")
            return serialize_reject(reject)
        if prepare.execution_condition == CONDITION:
            log.info(
                "{account}: {amount} to {destination}: Fulfill",
                account=account,
                amount=prepare.amount,
                destination=prepare.destination,
            )
            return serialize_fulfill(Fulfill(FULFILLMENT, b"fulfilled by " + address.encode()))
        log.info(
            "{account}: {amount} to {destination}: unknown condition, F05",
            account=account,
            amount=prepare.amount,
            destination=prepare.destination,
        )
        message = f"{address} knows no fulfillment for this condition"
        return serialize_reject(Reject(ErrorCode.F05_WRONG_CONDITION, address, message))

    return handler
