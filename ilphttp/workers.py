"""Several worker processes behind the same ports: ``twistd ilphttp --workers N``.

One Python process runs one reactor on one core.  With ``--workers N`` (or
``"workers": N`` in the config file), the twistd process becomes a small
*parent* that serves no packets itself:

1. It opens every account's listening TCP sockets (``tcp:``, ``tcp6:`` and
   ``ssl:`` endpoints), in ``privilegedStartService``, so a port below 1024
   can be bound before twistd drops privileges, and a port in use stops
   start-up with the same one line as without workers.
2. It starts N worker processes (``sys.executable -c ...``) and hands each one
   the sockets as inherited file descriptors (``childFDs``).  A worker adopts
   them (``reactor.adoptStreamPort``; TLS is added in the worker with
   ``TLSMemoryBIOFactory``, as ``listenSSL`` does) and runs the same node:
   every account and the router (or your ``--handler``).  The parsed node
   configuration, secrets included, goes to the worker over its stdin pipe,
   never through argv or the environment.
3. It supervises them: a worker that dies is started again on the same
   sockets (after 0.5 s, doubling up to 30 s while it keeps dying young); a
   worker that cannot start the first time stops the node.  ``SIGTERM`` or
   ``SIGINT`` is passed on to every worker, which stops the way one process
   does (no new packets, those in flight finish); the parent waits for them
   (at most :data:`STOP_TIMEOUT`, then ``SIGKILL``) and exits.  A worker whose
   parent is gone (its stdin pipe closes) stops by itself.  On ``SIGHUP``
   the parent reads its config file again, checks it and sends it to every
   worker on the same stdin pipe (:mod:`ilphttp.worker_reload`); workers
   ignore ``SIGHUP`` themselves.
4. The workers log JSON events on stdout; the parent re-emits each one into
   its own log with the system ``worker N: ...``.  Lines on a worker's stderr
   are logged as warnings.

How the connections are spread: on Linux each worker gets its *own* socket
per listener, all bound to the same address with ``SO_REUSEPORT``, so the
kernel spreads new connections over the workers evenly (by a hash of the
client's address and port).  Where ``SO_REUSEPORT`` is missing, all workers
share one socket, and whichever worker accepts first gets the connection.
This does not depend on the Twisted version (Twisted 26.10's ``makeBinding
(reusePort=True)`` is not needed): the parent makes the sockets.

Each worker is a separate node as far as state goes: its own outgoing
connection pools, and its own IL-DCP address from the parent account (each
worker asks the parent once).  Nothing is shared between workers, so a
handler that keeps state in memory sees only its worker's packets.

This module is the entry the twistd glue (:mod:`ilphttp.tap`) uses; the
work is done in five modules, each with one job:

- :mod:`ilphttp.worker_setup`: what a worker is told (:class:`WorkerSetup`,
  its wire format on stdin, the descriptor numbers, :func:`parse_workers`);
  no Twisted.
- :mod:`ilphttp.worker_sockets`: which listeners can be shared
  (:func:`listeners_of`) and the parent's listening sockets
  (:func:`open_sockets`).
- :mod:`ilphttp.worker_supervisor`: the parent, :class:`WorkersService`.
- :mod:`ilphttp.worker_process`: a worker, :func:`worker_main`.
- :mod:`ilphttp.worker_reload`: a reload of the workers (``SIGHUP``).
"""

from __future__ import annotations

from ilphttp.worker_process import run_worker, worker_endpoints, worker_main
from ilphttp.worker_setup import (
    CONTROL_FD,
    FIRST_LISTEN_FD,
    MAX_WORKERS,
    Listener,
    WorkerSetup,
    parse_workers,
    read_setup,
    refuse_async_senders,
)
from ilphttp.worker_sockets import (
    listeners_of,
    open_sockets,
    parse_listener,
    reuse_port_available,
)
from ilphttp.worker_supervisor import (
    MAX_RESTART_DELAY,
    RESTART_DELAY,
    STABLE_AFTER,
    STOP_TIMEOUT,
    WorkersService,
)

__all__ = [
    "CONTROL_FD",
    "FIRST_LISTEN_FD",
    "MAX_RESTART_DELAY",
    "MAX_WORKERS",
    "RESTART_DELAY",
    "STABLE_AFTER",
    "STOP_TIMEOUT",
    "Listener",
    "WorkerSetup",
    "WorkersService",
    "listeners_of",
    "open_sockets",
    "parse_listener",
    "parse_workers",
    "read_setup",
    "refuse_async_senders",
    "reuse_port_available",
    "run_worker",
    "worker_endpoints",
    "worker_main",
]
