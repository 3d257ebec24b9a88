"""TLS and key files across a reload: their digests, and a listener's certificate swapped.

A certificate is renewed by rewriting its file under the same name, which a
comparison of the config alone cannot see.  :func:`with_file_digests` notes
a sha256 of each file an account names (its own ``ssl:`` listener's
``privateKey``, ``certKey``, ``extraCertChain``, ``caCerts`` and
``dhParameters``; ``outgoing.ca_file``, ``client_cert_file`` and
``client_key_file``; ``incoming.jwt_public_key_file``) when the config is
read, so that :func:`ilphttp.nodediff.diff_nodes` sees a rewritten file as a
changed account, whose plugin the reload replaces (new outgoing connections
then use the new files).

The account's listening port stays (docs/reload.rst): its context factory is
a :class:`~ilphttp.tls.ServerTLS`, which a reload gives the options read from
the files anew (:func:`fresh_server_tls`, before anything switches; a file
that cannot be used refuses the reload), so that the connections accepted
from then on get the new certificate and those already open keep theirs.
The node's ``listen`` and an account's extra listeners keep theirs until a
restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import CertificateOptions

from ilphttp._compat import ssl_context_factory
from ilphttp.errors import OptionError
from ilphttp.nodeconfig import AccountSpec, NodeConfig
from ilphttp.nodediff import own_listener
from ilphttp.tls import ServerTLS, server_tls_from_string, split_endpoint
from ilphttp.tls_identity import openssl_reason

__all__ = ["fresh_server_tls", "server_tls_of", "tls_files", "with_file_digests"]

#: an ``ssl:`` description's options that name files, beside privateKey/certKey
_SSL_FILES = ("extraCertChain", "caCerts", "dhParameters")


def tls_files(spec: AccountSpec) -> tuple[str, ...]:
    """The paths of the TLS and key files ``spec`` names, as its plugin reads them."""
    paths: list[str] = []
    incoming, outgoing = spec.options.incoming, spec.options.outgoing
    description = own_listener(spec)
    if description is not None:
        args, kwargs = split_endpoint(description)
        if args and args[0].strip().lower() == "ssl":
            key = kwargs.get("privateKey", "server.pem")  # Twisted's default, as ours
            paths += [key, kwargs.get("certKey", key)]
            paths += [kwargs[name] for name in _SSL_FILES if name in kwargs]
    if incoming is not None and incoming.jwt_public_key_file:
        paths.append(incoming.jwt_public_key_file)
    if outgoing is not None:
        files = (outgoing.ca_file, outgoing.client_cert_file, outgoing.client_key_file)
        paths += [path for path in files if path]
    return tuple(dict.fromkeys(paths))


def _digest(path: str) -> str:
    """sha256 of the file, in hex; what keeps it from being read when it cannot be (the
    plugin then says so, naming the option)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def with_file_digests(node: NodeConfig) -> NodeConfig:
    """``node`` whose accounts carry the digests of their files as they are now
    (:attr:`~ilphttp.nodeconfig.AccountSpec.file_digests`)."""
    accounts = tuple(
        replace(spec, file_digests=tuple((path, _digest(path)) for path in tls_files(spec)))
        for spec in node.accounts
    )
    return replace(node, accounts=accounts)


def fresh_server_tls(spec: AccountSpec) -> CertificateOptions | None:
    """The TLS options of the account's own ``ssl:`` listener, read from its files now
    (None: it has no such listener).

    :raises OptionError: one line (the caller names the account), when a file
        cannot be read, is not valid PEM, or the key is not the certificate's.
    """
    description = own_listener(spec)
    if description is None:
        return None
    try:
        return server_tls_from_string(description)
    except Exception as exc:  # OSError, ValueError, OpenSSL's errors: all mean "cannot use"
        raise OptionError(f"the TLS files of its listener cannot be used: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = openssl_reason(exc)  # OpenSSL's errors as "lib: reason", not raw tuples
    return text if len(text) <= 300 else text[:300] + "..."


def server_tls_of(endpoint: Any) -> ServerTLS | None:
    """The swappable TLS of the endpoint a plugin listens on, or None (plain TCP, or
    an endpoint the node did not build)."""
    tls = getattr(endpoint, "tls", None)
    if isinstance(tls, ServerTLS):
        return tls
    if isinstance(endpoint, SSL4ServerEndpoint):
        factory = ssl_context_factory(endpoint)
        if isinstance(factory, ServerTLS):
            return factory
    return None
