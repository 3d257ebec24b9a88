"""ilphttp.endpoint_check: endpoint strings checked before anything listens."""

from __future__ import annotations

import os
import socket
import sys

from twisted.trial.unittest import SynchronousTestCase

from ilphttp.endpoint_check import check_distinct_listeners, check_endpoint
from ilphttp.errors import ConfigError


class DistinctListenersTests(SynchronousTestCase):
    def collide(self, one: str, other: str) -> bool:
        try:
            check_distinct_listeners([("a", one), ("b", other)])
        except ConfigError:
            return True
        return False

    def test_what_would_fail_to_bind(self) -> None:
        # as Linux binds them, SO_REUSEADDR set (as Twisted does), IPv6 dual stack
        for one, other in [
            ("tcp:8260:interface=127.0.0.1", "tcp:8260:interface=127.0.0.1"),
            ("tcp:8260", "tcp:8260:interface=127.0.0.1"),  # '': every IPv4 interface
            ("tcp:8260:interface=0.0.0.0", "ssl:8260:interface=127.0.0.1"),
            ("tcp:port=8260", "tcp:8260:127.0.0.1"),  # tcp:PORT:INTERFACE
            ("tcp6:8260", "tcp:8260:interface=127.0.0.1"),  # '::' takes IPv4 too
            (r"tcp6:8260:interface=\:\:1", r"tcp:8260:interface=\:\:0001"),
            (r"tcp:8260:interface=\:\:", "tcp:8260"),
            ("tcp:8260:interface=localhost", "tcp:8260"),  # a name: an IPv4 socket
            ("unix:/run/ilp/a.sock", "unix:/run/ilp/../ilp/a.sock"),
        ]:
            self.assertTrue(self.collide(one, other), (one, other))

    def test_what_binds(self) -> None:
        for one, other in [
            ("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1"),  # port 0 never collides
            ("tcp:8260:interface=127.0.0.1", "tcp:8261:interface=127.0.0.1"),
            ("tcp:8260:interface=127.0.0.1", "tcp:8260:interface=127.0.0.2"),
            ("tcp:8260", r"tcp6:8260:interface=\:\:1"),  # 0.0.0.0 is IPv4 only
            ("tcp:8260:interface=127.0.0.1", r"tcp6:8260:interface=\:\:1"),
            ("unix:/run/ilp/a.sock", "unix:/run/ilp/b.sock"),
            ("unix:/run/ilp/8260", "tcp:8260"),
            ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),  # left to Twisted
        ]:
            self.assertFalse(self.collide(one, other), (one, other))

    def test_the_rule_is_the_kernel_s(self) -> None:
        if not sys.platform.startswith("linux") or not socket.has_ipv6:
            raise self.skipTest("the rule is Linux's, with IPv6")
        hosts = {"127.0.0.1": "tcp", "0.0.0.0": "tcp", "::1": "tcp6", "::": "tcp6"}
        for first, kind in hosts.items():
            for second, other_kind in hosts.items():
                sockets: list[socket.socket] = []
                try:
                    for host in (first, second):
                        family = socket.AF_INET6 if ":" in host else socket.AF_INET
                        sock = socket.socket(family, socket.SOCK_STREAM)
                        sockets.append(sock)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        port = sockets[0].getsockname()[1] if len(sockets) == 2 else 0
                        sock.bind((host, port))
                        sock.listen(1)
                    failed = False
                except OSError:
                    failed = True
                finally:
                    for sock in sockets:
                        sock.close()
                escaped = [h.replace(":", "\\:") for h in (first, second)]
                predicted = self.collide(
                    f"{kind}:8260:interface={escaped[0]}",
                    f"{other_kind}:8260:interface={escaped[1]}",
                )
                self.assertEqual(predicted, failed, (first, second))

    def test_the_message_names_both(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            check_distinct_listeners(
                [
                    ("listen[0]", "tcp:0"),
                    ("accounts.alice.options.incoming.endpoint", "tcp:8260:interface=127.0.0.1"),
                    ("metrics", "tcp:8260"),
                ]
            )
        self.assertEqual(
            str(caught.exception),
            "accounts.alice.options.incoming.endpoint 'tcp:8260:interface=127.0.0.1' and"
            " metrics 'tcp:8260' would both listen on port 8260 (127.0.0.1 and 0.0.0.0):"
            " give each its own port (accounts without a port or endpoint of their own"
            " share the node's listen)",
        )


class SslFilesTests(SynchronousTestCase):
    def test_missing_key_or_certificate(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        key = os.path.join(directory, "key.pem")
        with open(key, "w") as f:
            f.write("not checked here: only that it is there\n")
        cert = os.path.join(directory, "cert.pem")
        for description, missing in [
            (f"ssl:8443:privateKey={cert}", f"the privateKey file {cert} does not exist"),
            (f"ssl:8443:privateKey={key}:certKey={cert}", f"the certKey file {cert} does not"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                check_endpoint("--listen", description)
            self.assertIn(f"--listen {description!r}: {missing}", str(caught.exception))
        # certKey defaults to privateKey, which holds both
        self.assertEqual(check_endpoint("m", f"ssl:0:privateKey={key}"), f"ssl:0:privateKey={key}")
