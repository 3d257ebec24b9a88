"""What the tests share, by what it provides.

- ``packets``: Prepares with known fulfillments, reading replies, an OER length writer;
- ``vectors``: the official vectors kept as data in ``tests/vectors/``;
- ``fakes``: a recording HTTP server, recording data handlers, a fake IAgent, log capture;
- ``clients``: raw TCP clients and HTTP requests;
- ``ports``: free ports and loopback URLs;
- ``reactor``: the global reactor, timeouts on real time;
- ``certs``: a throwaway CA and certificates;
- ``options``: a base for ``twistd ilphttp`` option tests, an example node config;
- ``jsinterop``: ``require_node`` and the real npm peers under ``interop/``;
- ``h2node``: node's own HTTP/2 server and scripts under ``interop/``;
- ``prometheus``: ``require_promtool`` and ``promtool`` (Debian's ``prometheus``).

Test modules import from here only, never from each other (``test_layout``).
"""
