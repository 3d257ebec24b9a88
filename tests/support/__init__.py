"""What the tests share, by what it provides.

- ``packets``: Prepares with known fulfillments, reading replies;
- ``fakes``: a recording HTTP server, recording data handlers, log capture;
- ``clients``: raw TCP clients and HTTP requests;
- ``ports``: free ports and loopback URLs;
- ``reactor``: the global reactor, timeouts on real time;
- ``certs``: a throwaway CA and certificates;
- ``options``: a base for ``twistd ilphttp`` option tests, an example node config;
- ``jsinterop``: ``require_node`` and the real npm peers under ``interop/``.

Test modules import from here only, never from each other (``test_layout``).
"""
