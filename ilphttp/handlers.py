"""What a link's data handlers are, and how their answers are checked (Twisted edge).

A handler answers an incoming Prepare with a Fulfill or Reject: as bytes (the
JS plugin's shape), as a packet object, as a :class:`~ilphttp.packet.Reply`
already checked, or as a Deferred of any of these.  :func:`reply_bytes` turns
that answer into the bytes to send back, checking it once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ilphttp import ildcp
from ilphttp.logtext import escape
from ilphttp.multi import ChildNameError, ChildUrlTemplate, child_address
from ilphttp.packet import (
    TYPE_FULFILL,
    TYPE_REJECT,
    ErrorCode,
    Fulfill,
    InvalidPacketError,
    Prepare,
    Reject,
    Reply,
    deserialize,
    is_valid_segment,
    serialize,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = [
    "DataHandler",
    "HandlerResult",
    "PrepareHandler",
    "RegisteredHandler",
    "SharedFetch",
    "answer_child_ildcp",
    "as_bytes",
    "cancel_after",
    "fetch_ildcp",
    "reply_bytes",
    "reply_data",
    "settled",
]

#: what a handler answers: a serialized Fulfill/Reject, the packet object, or a
#: :class:`~ilphttp.packet.Reply` (trusted as already checked)
HandlerResult = Union[bytes, Fulfill, Reject, Reply]
#: ``handler(prepare_bytes)`` returns a HandlerResult or a Deferred of one (the JS shape).
DataHandler = Callable[[bytes], Union[HandlerResult, "Deferred[HandlerResult]"]]
#: ``handler(prepare, prepare_bytes, sender)``: the same, given the Prepare already
#: parsed; ``sender`` is the child that sent it (a multi account's
#: ``ILP-Peer-Name``, bound to its credential when ``incoming.children`` is
#: set), else None.
PrepareHandler = Callable[
    [Prepare, bytes, Optional[str]], Union[HandlerResult, "Deferred[HandlerResult]"]
]


_log = Logger()

#: what a handler answers at once (checked by :func:`reply_bytes`)
_REPLY_TYPES = (bytes, Fulfill, Reject, Reply)


def reply_bytes(result: Any) -> bytes:
    """The wire form of a handler's answer, checked once.

    A :class:`~ilphttp.packet.Reply` was checked where it was read or made;
    a packet object is checked as it is serialized; bytes are parsed.
    :raises InvalidPacketError, TypeError, ValueError: when the answer is not
        a valid Fulfill or Reject.
    """
    if isinstance(result, Reply):
        return result.data
    if isinstance(result, (Fulfill, Reject)):
        return serialize(result)
    reply = as_bytes(result)
    if not reply or reply[0] not in (TYPE_FULFILL, TYPE_REJECT):
        raise InvalidPacketError(f"packet type {reply[:1].hex() or 'missing'}")
    deserialize(reply)
    return reply


def fetch_ildcp(send_data: Callable[[bytes], Any]) -> Deferred[ildcp.IldcpResponse]:
    """Ask the parent behind ``send_data`` for our address and asset (IL-DCP, RFC 31).

    ``send_data(prepare_bytes)`` returns the reply bytes or a Deferred of them
    (:meth:`PluginHttp.send_data` does).  Fires with an
    :class:`~ilphttp.ildcp.IldcpResponse`, or fails with
    :class:`~ilphttp.ildcp.IldcpError` when the parent rejects or answers garbage.
    """
    reply: Deferred[bytes] = maybeDeferred(send_data, ildcp.serialize_request())
    return reply.addCallback(ildcp.deserialize_response)


def settled(d: Deferred[Any]) -> Deferred[None]:
    """Fires with None once ``d`` has a result; ``d``'s result is passed on untouched."""
    done: Deferred[None] = Deferred()

    def passthrough(result: Any) -> Any:
        done.callback(None)
        return result

    d.addBoth(passthrough)
    return done


def reply_data(reply: Reply) -> bytes:
    return reply.data


def as_bytes(result: Any) -> bytes:
    if isinstance(result, bytes):
        return result
    if isinstance(result, Reply):
        return result.data
    if isinstance(result, (Fulfill, Reject)):
        return serialize(result)
    if isinstance(result, (bytearray, memoryview)):
        return bytes(result)
    raise TypeError(f"expected bytes, got {type(result).__name__}")


_T = TypeVar("_T")


class SharedFetch(Generic[_T]):
    """A value fetched at most once at a time: concurrent askers share one fetch.

    A successful result is kept for good (:attr:`value`); a failure reaches
    everyone waiting for that fetch, and the next ask fetches again.
    """

    def __init__(self, value: _T | None = None) -> None:
        self.value = value
        self._waiting: list[Deferred[_T]] | None = None

    def get(self, fetch: Callable[[], Deferred[_T]]) -> Deferred[_T]:
        """The value, from :attr:`value` or from ``fetch()`` (called only when none is running)."""
        if self.value is not None:
            return succeed(self.value)
        d: Deferred[_T] = Deferred()
        if self._waiting is not None:
            self._waiting.append(d)
            return d
        self._waiting = [d]

        def fetched(result: _T | Failure) -> None:
            waiting, self._waiting = self._waiting or [], None
            if not isinstance(result, Failure):
                self.value = result
            for w in waiting:
                w.callback(result)

        fetch().addBoth(fetched)
        return d


class RegisteredHandler:
    """The handler a link puts incoming Prepares to, and how it is asked.

    One of a JS-shaped data handler (bytes in) or a prepare handler (the
    Prepare parsed, with its bytes) is registered at a time.  An asynchronous
    answer is cancelled at the Prepare's expiry (R00); a failure or an invalid
    answer becomes T00 and is logged, never passed to the peer.

    :param reactor: for the expiry timers.
    :param reject: ``reject(code, message)`` -> a serialized Reject of ours.
    """

    def __init__(self, reactor: IReactorTime, reject: Callable[[str, str], bytes]) -> None:
        self._reactor = reactor
        self._reject = reject
        self.data_handler: DataHandler | None = None
        self.prepare_handler: PrepareHandler | None = None
        #: asynchronous answers not in yet (what ``incoming.max_in_flight`` bounds)
        self.pending = 0

    @property
    def registered(self) -> bool:
        """True when a handler of either kind is registered."""
        return self.data_handler is not None or self.prepare_handler is not None

    def call(self, prepare: Prepare, data: bytes, sender: str | None = None) -> Deferred[Any]:
        """The registered handler's answer to ``prepare`` (its bytes: ``data``), unchecked."""
        if self.prepare_handler is not None:
            return maybeDeferred(self.prepare_handler, prepare, data, sender)
        if self.data_handler is not None:
            return maybeDeferred(self.data_handler, data)
        raise ildcp.IldcpError("no data handler is registered")

    def answer(
        self, prepare: Prepare, data: bytes, delay: float, sender: str | None = None
    ) -> bytes | Deferred[bytes]:
        """The checked answer, as bytes, given ``delay`` seconds until ``prepare`` expires.

        The bytes themselves when the handler answered at once with a reply
        (bytes, a packet or a :class:`~ilphttp.packet.Reply`) or raised: no
        Deferred on the common path; else a Deferred that never fails (except
        with ``CancelledError`` once its caller cancelled it).
        """
        try:
            if self.prepare_handler is not None:
                result = self.prepare_handler(prepare, data, sender)
            elif self.data_handler is not None:
                result = self.data_handler(data)
            else:
                raise ildcp.IldcpError("no data handler is registered")
        except BaseException:  # as maybeDeferred would: the handler's failure
            return self._failed(Failure())
        if isinstance(result, _REPLY_TYPES):
            return self._checked(result)
        # A Deferred, a coroutine, a Failure or garbage: what maybeDeferred makes of it.
        d: Deferred[Any] = maybeDeferred(lambda: result)
        if d.called:
            # A synchronous handler: no timer, no bookkeeping.
            return d.addCallbacks(self._checked, self._failed)
        self.pending += 1

        def done(result: Any) -> Any:
            self.pending -= 1
            return result

        cancel_after(self._reactor, d, delay)
        return d.addBoth(done).addCallbacks(self._checked, self._failed)

    def _checked(self, result: Any) -> bytes:
        try:
            return reply_bytes(result)
        except Exception as exc:  # InvalidPacketError, TypeError, ValueError, ...: never a 500
            _log.error(
                "data handler returned an invalid reply ({reason}); answering T00",
                reason=str(exc) or exc.__class__.__name__,
            )
            return self._reject(ErrorCode.T00_INTERNAL_ERROR, "internal error")

    def _failed(self, failure: Failure) -> bytes:
        if failure.check(CancelledError):
            return self._reject(
                ErrorCode.R00_TRANSFER_TIMED_OUT, "no answer before the prepare expired"
            )
        _log.failure("data handler failed; answering T00", failure)
        return self._reject(ErrorCode.T00_INTERNAL_ERROR, "internal error")


def cancel_after(reactor: IReactorTime, d: Deferred[Any], delay: float) -> None:
    """Cancel ``d`` if it has no result ``delay`` seconds from now (a Prepare's expiry)."""
    timer = reactor.callLater(delay, d.cancel)

    def stop_timer(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    d.addBoth(stop_timer)


def answer_child_ildcp(
    get_info: Callable[[], Deferred[ildcp.IldcpResponse]],
    prepare: Prepare,
    name: str,
    child_urls: ChildUrlTemplate | None,
    reject: Callable[[str, str], bytes],
    reactor: IReactorTime,
    delay: float,
) -> Deferred[bytes]:
    """A multi account's answer to the IL-DCP request of child ``name`` (``ILP-Peer-Name``).

    The child is told ``<our address>.<name>`` (from ``get_info()``, our own
    IL-DCP info), or refused with F00 when its name could never be reached
    through ``child_urls`` or makes too long an address; R00 when our own
    info does not come within ``delay`` seconds; T00 when it cannot come at
    all, F00 with the reason when our parent refused to give one (RFC 31).
    """
    try:
        if child_urls is not None:
            child_urls.url_for(name)  # a child we could never reach gets no address
        elif not is_valid_segment(name):
            raise ChildNameError("ILP-Peer-Name is not a valid segment")
    except ChildNameError as exc:
        return succeed(reject(ErrorCode.F00_BAD_REQUEST, str(exc)))

    def answer(info: ildcp.IldcpResponse) -> bytes:
        try:
            child = child_address(info.client_address, name)
        except ChildNameError as exc:
            return reject(ErrorCode.F00_BAD_REQUEST, str(exc))
        return ildcp.serve(prepare, info._replace(client_address=child))

    def failed(failure: Failure) -> bytes:
        if failure.check(CancelledError):
            return reject(ErrorCode.R00_TRANSFER_TIMED_OUT, "no answer before the prepare expired")
        _log.error("cannot answer IL-DCP: {reason}", reason=escape(failure.getErrorMessage()))
        exc = failure.value
        refused = exc.reject if isinstance(exc, ildcp.IldcpError) else None
        if refused is not None and refused.code == ErrorCode.F00_BAD_REQUEST:
            # Our parent (the router, in a node) cannot give us an address it
            # could stand behind: the child learns why.
            return reject(ErrorCode.F00_BAD_REQUEST, f"IL-DCP is not available: {refused.message}")
        return reject(ErrorCode.T00_INTERNAL_ERROR, "IL-DCP is not available")

    d = get_info()
    if not d.called:
        # Our own address is still being fetched: the child's request expires
        # as any other Prepare does.
        cancel_after(reactor, d, delay)
    return d.addCallbacks(answer, failed)
