"""PluginHttp: an ILP link over HTTP, as a Twisted Service.

It listens for Prepares (``incoming``) and hands them to the registered data
handler, and it POSTs Prepares to the peer (``outgoing``).  Failures on either
side become ILP Rejects with documented codes; only misuse raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from ilphttp import ildcp
from ilphttp.async_link import async_link
from ilphttp.auth import OutgoingAuth
from ilphttp.client import OutgoingClient, make_agent, reply_of
from ilphttp.config import PluginOptions, options_from_js, options_from_python
from ilphttp.drain import Drain, Hold
from ilphttp.errors import NotConnectedError, OptionError
from ilphttp.handlers import (
    DataHandler,
    PrepareHandler,
    RegisteredHandler,
    SharedFetch,
    fetch_ildcp,
    reply_data,
    settled,
)
from ilphttp.link_ops import LinkOps, count_connections
from ilphttp.listener import (
    ListenerFactory,
    ListenerMaker,
    default_reactor,
    make_listener,
    set_limits,
)
from ilphttp.logtext import escape
from ilphttp.multi import ChildNameError, ChildUrlTemplate, child_name
from ilphttp.packet import (
    ErrorCode,
    Prepare,
    Reject,
    Reply,
    deserialize_prepare,
    envelope_length,
    serialize_prepare,
    serialize_reject,
)
from ilphttp.plugin_events import PluginEvents
from ilphttp.plugin_ildcp import PluginIldcp
from ilphttp.plugin_incoming import PluginIncoming
from ilphttp.server import (
    IlpResource,
    incoming_auth,
    make_site,
    warn_short_secret,
)
from ilphttp.tls import ClientTLSPolicy, server_endpoint_from_string

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
    from twisted.web.iweb import IAgent
    from twisted.web.server import Site

__all__ = ["DataHandler", "NotConnectedError", "PluginHttp", "PrepareHandler", "fetch_ildcp"]

_log = Logger()


class PluginHttp(PluginEvents, PluginIldcp, PluginIncoming, Service):
    """An ILP-over-HTTP link, wire-compatible with ``ilp-plugin-http`` 1.6.1.

    :param incoming: ``{"port": 8000, "static_token": ...}`` or ``{"endpoint":
        "tcp:8000:interface=127.0.0.1", "jwt_secret": ...}``; without a port or
        endpoint nothing listens, and :attr:`resource` can be mounted in your own
        Site.  ``None``: send-only.
    :param outgoing: ``{"url": ..., "static_token"|"jwt_secret": ..., "name": ...}``;
        ``None``: receive-only.
    :param multi: multilateral (hub) mode: children are reached at the URL
        template with ``multi_delimiter`` replaced by their address segment.
    :param ildcp: our IL-DCP info (``client_address``, ``asset_scale``,
        ``asset_code``); in multi mode it is fetched through the data handler
        when not given.
    :param address: our ILP address, used as ``triggered_by`` in the Rejects we
        make (default: ``ildcp``'s client address).
    :param reactor: the reactor (tests pass a Clock/MemoryReactor).
    :param agent: an ``IAgent`` for outgoing requests instead of the plugin's
        own pooled Agent (e.g. ``treq.testing.RequestTraversalAgent``).
    :param endpoint: an ``IStreamServerEndpoint`` to listen on instead of the
        incoming port/endpoint option (``ilphttp.workers`` passes an adopted
        socket); needs ``incoming``.
    :param limits: ``{"rate_limit": ..., "max_packet_amount": ..., "throughput": ...}``
        on the peer's Prepares (docs/limits.rst; JS names in :meth:`from_options`).
    :param registry: the ``prometheus_client.CollectorRegistry`` its metrics go to
        (docs/monitoring.rst); default: one of its own, :attr:`registry`.
    """

    #: ``(door, clock) -> factory`` of the listening protocol (``ilphttp.listener``)
    listener_factory: ListenerMaker = staticmethod(make_listener)

    def __init__(
        self,
        incoming: Mapping[str, Any] | None = None,
        outgoing: Mapping[str, Any] | None = None,
        multi: bool = False,
        multi_delimiter: str = "%",
        ildcp: Any = None,
        address: str | None = None,
        reactor: Any = None,
        agent: IAgent | None = None,
        *,
        options: PluginOptions | None = None,
        endpoint: IStreamServerEndpoint | None = None,
        limits: Mapping[str, Any] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if options is None:
            options = options_from_python(
                incoming, outgoing, multi, multi_delimiter, ildcp, address, limits
            )
        if endpoint is not None and options.incoming is None:
            raise OptionError("endpoint needs incoming (its authentication)")
        self._endpoint = endpoint
        #: the endpoint our port listens on, once it does (a reload finds its TLS there)
        self.listening_endpoint: IStreamServerEndpoint | None = None
        out = options.outgoing
        self.options = options
        self._reactor: IReactorTime = reactor if reactor is not None else default_reactor()
        self._injected_agent = agent
        self._connected = False
        self._handler = RegisteredHandler(self._reactor, self._reject)
        self._listeners: dict[str, list[Callable[[], object]]] = {}
        #: our IL-DCP info: configured, or fetched once through our own handler
        self._ildcp: SharedFetch[ildcp.IldcpResponse] = SharedFetch(options.ildcp)
        self.address: str | None = options.address
        self.port: IListeningPort | None = None
        self._agent: Any = None
        self._client: OutgoingClient | None = None
        self._in_flight: set[Deferred[Any]] = set()
        self._max_in_flight = options.incoming.max_in_flight if options.incoming is not None else 0
        now = self._reactor.seconds
        #: its limits and metrics (:mod:`ilphttp.link_ops`)
        self.ops = LinkOps(self, options.limits, registry, now)
        self.registry = self.ops.registry
        self.resource: IlpResource | None = None
        self.site: Site | None = None
        self._tracker: ListenerFactory | None = None
        self._drain = Drain()
        #: more reasons not to be ready (``check() -> str | None``), asked by :meth:`readiness`
        self.ready_checks = self._drain.checks
        if options.incoming is not None:
            inc = options.incoming
            self._incoming_auth = incoming_auth(inc, now)
            self.resource = IlpResource(self._incoming_auth, self, inc.client_identity)
            self.resource.door.observer = self.ops.answered
            self.resource.door.readiness = self.readiness
            self.site = make_site(self.resource)
            for secret in (inc.jwt_secret, *inc.jwt_secrets):
                warn_short_secret("incoming", secret)
        self._async = async_link(options, self._reactor, self._post, lambda: self.name)
        if self.resource is not None:
            self.resource.door.rfc35 = self._async
        #: where a multi account's children are reached
        self._child_urls: ChildUrlTemplate | None = None
        if out is not None and options.multi:
            self._child_urls = ChildUrlTemplate(
                out.url, options.multi_delimiter, out.child_port_range
            )
        if out is not None:
            self._outgoing_auth = OutgoingAuth(
                out.static_token,
                out.jwt_secret,
                out.jwt_expiry,
                out.bearer,
                now,
                subject=out.jwt_subject,
                audience=out.jwt_audience,
                issuer=out.jwt_issuer,
            )
            warn_short_secret("outgoing", out.jwt_secret)
            try:
                self._tls_policy = ClientTLSPolicy(
                    out.ca_file, client_cert=out.client_cert_file, client_key=out.client_key_file
                )
            except Exception as exc:  # unreadable or invalid PEM files
                raise OptionError(
                    f"outgoing TLS files (ca_file/client_cert_file/client_key_file): {exc}"
                ) from None

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], reactor: Any = None, agent: IAgent | None = None
    ) -> PluginHttp:
        """A plugin from the JS plugin's option object (camelCase, legacy aliases too)."""
        return cls(reactor=reactor, agent=agent, options=options_from_js(options))

    # -- life cycle ----------------------------------------------------------------

    def is_connected(self) -> bool:
        """True between a successful connect() and disconnect()."""
        return self._connected

    def connect(self) -> Deferred[None]:
        """Start listening (if configured) and sending; the same as startService()."""
        if self._connected:
            return succeed(None)
        Service.startService(self)
        return self._start()

    def startService(self) -> None:
        d = self.connect()
        failures: list[Failure] = []

        def failed(failure: Failure) -> None:
            if synchronous:
                failures.append(failure)
            else:
                _log.failure("the ILP-over-HTTP link could not start", failure)

        synchronous = True
        d.addErrback(failed)
        synchronous = False
        if failures:
            # A synchronous failure (port in use, bad endpoint string) stops
            # twistd with a clear message instead of a node that is half up.
            failures[0].raiseException()

    def _start(self) -> Deferred[None]:
        description = (
            None if self.options.incoming is None else self.options.incoming.listen_description
        )
        endpoint = self._endpoint
        if description is None and endpoint is None:
            self._open()
            return succeed(None)
        if endpoint is None:
            assert description is not None
            try:
                endpoint = server_endpoint_from_string(self._reactor, description)
            except (ValueError, KeyError, TypeError, OSError) as exc:  # OSError: a missing PEM
                self.running = 0
                return fail(OptionError(f"incoming.endpoint {description!r} is invalid: {exc}"))
        self._tracker = self.new_listener()
        self.listening_endpoint = endpoint
        listening = endpoint.listen(self._tracker)

        def listened(port: IListeningPort) -> None:
            self.port = port
            self._open()

        def not_listening(failure: Failure) -> Failure:
            self.running = 0
            return failure

        return listening.addCallbacks(listened, not_listening)

    def new_listener(self, label: str | None = None) -> ListenerFactory:
        """A protocol factory serving :attr:`resource`'s door (for an endpoint's ``listen``);
        its connections are counted as ``ilp_connections{listener=label}`` (default: ours)."""
        assert self.resource is not None and self.options.incoming is not None
        factory = self.listener_factory(self.resource.door, self._reactor)
        set_limits(factory, self.options.incoming.server_limits)
        label = label or self.options.incoming.listen_description or "(adopted)"
        count_connections(factory, label, self.registry)
        return factory

    def _open(self) -> None:
        out = self.options.outgoing
        if out is not None:
            name = out.name
            if name is None and self.options.incoming is not None:
                # The JS plugin's default: our incoming port.
                port = self.options.incoming.port
                if self.port is not None:
                    port = getattr(self.port.getHost(), "port", port)
                name = None if port is None else str(port)
            self._agent = self._injected_agent or self._make_agent()
            self._client = OutgoingClient(
                self._reactor,
                self._agent,
                self._outgoing_auth,
                name,
                out.send_ilp_destination,
                out.content_type,
                self.name,
            )
            self._client.on_status = self.ops.http_status
        self._connected = True
        self._emit("connect")

    def _make_agent(self) -> Any:
        out = self.options.outgoing
        assert out is not None
        return make_agent(self._reactor, out, self._tls_policy)

    def readiness(self) -> str | None:
        """None when ready for packets, else why not: the health check's ``503`` body
        (:class:`~ilphttp.drain.Drain`); in multi mode without ``ildcp``, also
        until our IL-DCP is known (asking starts the fetch)."""
        if self._connected and not self._drain.draining and self._ildcp_unknown():
            return "starting: IL-DCP not known yet"
        return self._drain.readiness(self._connected)

    def drain_incoming(self, hold: Hold | None = None) -> Deferred[None]:
        """Stop taking new requests; fire once every incoming connection is closed.

        The port stops listening, the health check answers ``503``, idle
        connections close, the requests already read are answered (the last
        on each connection with ``Connection: close``, HTTP/2 GOAWAY), and
        after ``grace_period`` seconds the rest is closed.  Sending stays
        possible until :meth:`disconnect` (a node drains every listener first).

        While Prepares we sent asynchronously (RFC 35) await their replies,
        which come to our listener, the port first keeps listening for them,
        for at most ``grace_period`` seconds; new Prepares get ``503`` then
        (:class:`~ilphttp.drain.Drain`).

        :param hold: what to wait for instead (``hold() -> Deferred``; a node
            passes one for all its accounts); default :meth:`replies_awaited`.
        """
        inc = self.options.incoming
        grace = inc.server_limits.grace_period if inc is not None else 0.0
        port, self.port = self.port, None  # the drain's now, listening or not
        hold = hold or self.replies_awaited
        return self._drain.start(port, self._tracker, grace, hold, self._reactor)

    def replies_awaited(self) -> Deferred[None]:
        """Fire once none of the Prepares we sent asynchronously (RFC 35) awaits its reply,
        nor one of the plugin this one replaced (:meth:`take_over_replies`)."""
        return self._async.idle()

    def take_over_replies(self, old: PluginHttp) -> None:
        """Take the replies to ``old``'s asynchronous Prepares still pending (a reload
        gives the account a new plugin, which takes its listener)."""
        self._async.take_over_from(old._async)

    def disconnect(self) -> Deferred[None]:
        """Drain (:meth:`drain_incoming`), refuse new sends, let ours in flight end
        (each bounded by its expiry), close every connection."""
        if not self._connected:
            return succeed(None)
        self._connected = False
        Service.stopService(self)

        def outgoing(_: object) -> Deferred[Any]:
            # Observe the packets in flight without adding to their callback
            # chains anything that could change what their callers get.
            in_flight = [settled(d) for d in self._in_flight]
            return DeferredList([self._async.stop(), *in_flight], consumeErrors=True)

        def close_connections(_: object) -> Deferred[Any]:
            closing: list[Deferred[Any]] = []
            if self._tracker is not None:
                closing.append(self._tracker.close_all())
                self._tracker = None
            agent_close = getattr(self._agent, "close", None)
            if self._agent is not self._injected_agent and agent_close is not None:
                closing.append(maybeDeferred(agent_close))
            self._agent = None
            self._client = None
            return DeferredList(closing, consumeErrors=True)

        def stopped(_: object) -> None:
            self._drain.reset()
            self._emit("disconnect")

        d = self.drain_incoming().addCallback(outgoing)
        # A Deferred of its own: not "called" while it waits on the steps.
        return settled(d.addCallback(close_connections).addCallback(stopped))

    def stopService(self) -> Deferred[None]:
        return self.disconnect()

    # -- handlers ------------------------------------------------------------------

    def register_data_handler(self, handler: DataHandler) -> None:
        """``handler(prepare_bytes)`` answers incoming Prepares (bytes or Deferred).

        Replaces any handler registered before, of either kind.
        :raises TypeError: when ``handler`` is not callable.
        """
        if not callable(handler):
            raise TypeError("data handler must be callable")
        self._handler.data_handler, self._handler.prepare_handler = handler, None

    def register_prepare_handler(self, handler: PrepareHandler) -> None:
        """``handler(prepare, prepare_bytes, sender)`` answers incoming Prepares, given them parsed.

        The typed alternative to :meth:`register_data_handler`: the Prepare is
        parsed once, by the server, and handed on with its bytes (forward them
        unchanged with :meth:`send_prepare`).  Return a
        :class:`~ilphttp.Fulfill`/:class:`~ilphttp.Reject`, a
        :class:`~ilphttp.packet.Reply`, bytes, or a Deferred of one.
        :raises TypeError: when ``handler`` is not callable.
        """
        if not callable(handler):
            raise TypeError("prepare handler must be callable")
        self._handler.data_handler, self._handler.prepare_handler = None, handler

    def deregister_data_handler(self) -> None:
        """Incoming Prepares get HTTP 502 until a handler is registered again."""
        self._handler.data_handler = self._handler.prepare_handler = None

    # -- outgoing ------------------------------------------------------------------

    def send_data(self, data: bytes) -> Deferred[bytes]:
        """Send a serialized Prepare; fire with the serialized Fulfill or Reject.

        Peer failures become Rejects (see docs/errors.rst), never errbacks.
        :raises NotConnectedError: when not connected.
        :raises InvalidPacketError: when ``data`` is not a Prepare.
        :raises RuntimeError: when the plugin has no outgoing side.
        """
        prepare = deserialize_prepare(data)  # strict: ``data`` is exactly its envelope
        return self._send_envelope(prepare, data).addCallback(reply_data)

    def send_prepare(self, prepare: Prepare, data: bytes | None = None) -> Deferred[Reply]:
        """Send ``prepare``; fire with its checked :class:`~ilphttp.packet.Reply`.

        ``data`` is ``prepare``'s wire form when the caller has it (a Prepare
        forwarded unchanged), so it is neither parsed nor serialized again;
        only its envelope is sent (bytes after it, which a liberal reader
        ignores, are never written: strict peers refuse them).
        Errors as for :meth:`send_data`.
        """
        self._sending_client()
        if data is None:
            data = serialize_prepare(prepare)
        else:
            end = envelope_length(data)
            if end != len(data):
                data = data[:end]
        return self._send_envelope(prepare, data)

    def _sending_client(self) -> OutgoingClient:
        client = self._client
        if not self._connected:
            # Also while disconnect() drains: the client is still there then.
            raise NotConnectedError("plugin is not connected")
        if client is None:
            raise RuntimeError("this plugin has no outgoing configuration")
        return client

    def _send_envelope(self, prepare: Prepare, data: bytes) -> Deferred[Reply]:
        client = self._sending_client()
        return self._track(self.ops.outgoing(prepare, lambda: self._send(client, data, prepare)))

    def _send(self, client: OutgoingClient, data: bytes, prepare: Prepare) -> Deferred[Reply]:
        out = self.options.outgoing
        assert out is not None
        if self.options.multi:
            return self._get_ildcp().addCallback(self._send_multi, client, data, prepare)
        return self._async.send(client, out.url.encode("ascii"), data, prepare, self.address or "")

    def _send_multi(
        self,
        info: ildcp.IldcpResponse,
        client: OutgoingClient,
        data: bytes,
        prepare: Prepare,
    ) -> Deferred[Reply]:
        ours = info.client_address
        triggered_by = self.address or ours
        name = child_name(ours, prepare.destination)
        try:
            if name is None:
                raise ChildNameError(f"{prepare.destination[:200]} is not a child of {ours}")
            assert self._child_urls is not None
            url = self._child_urls.url_for(name)
            children = self.options.incoming and self.options.incoming.children
            if children and name not in children:
                raise ChildNameError(f"no child named {name} is configured")
        except ChildNameError as exc:
            reason = escape(f"account {self.name}: {exc}" if self.name else str(exc))
            _log.info("cannot reach child {child!r}: {reason}", child=name, reason=reason)
            return succeed(reply_of(Reject(ErrorCode.F02_UNREACHABLE, triggered_by, reason)))
        return self._async.send(client, url.encode("ascii"), data, prepare, triggered_by, name)

    def _post(self, url: bytes, body: bytes, more: Any) -> Deferred[tuple[int, bytes]]:
        assert self._client is not None, "not connected"
        return self._client.post(url, body, more)  # an RFC 35 reply leg

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        if d.called:
            return d
        self._in_flight.add(d)

        def done(result: Any) -> Any:
            self._in_flight.discard(d)
            return result

        return d.addBoth(done)

    def _reject(self, code: str, message: str) -> bytes:
        return serialize_reject(Reject(code, self.address or "", message))
