"""Private keys that cannot be used (issue 14): an encrypted key is refused in one line and
never prompted for (OpenSSL would ask on the terminal and block the process), and a key
that is not the certificate's stops start-up in one line, not a traceback."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

from OpenSSL import crypto
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ilphttp.errors import ConfigError
from ilphttp.node import NodeService, make_node
from ilphttp.reload import ConfigFile
from ilphttp.tls import ClientTLSPolicy, server_tls_from_string
from ilphttp.tls_identity import load_private_certificate, load_private_key, openssl_reason
from tests.support.certs import CertificateAuthority, CertPaths
from tests.support.fakes import LogCapture
from tests.support.reload import TOKENS, account, node_data
from tests.support.twistd import ROOT, start_twistd

ENCRYPTED = "is encrypted (a passphrase-protected key): give an unencrypted key"


def _esc(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:")


def _endpoint(paths: CertPaths) -> str:
    return f"ssl:0:interface=127.0.0.1:privateKey={_esc(paths.key)}:certKey={_esc(paths.cert)}"


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


class _Files:
    """A certificate, its key in the clear and encrypted, and another CA's key."""

    def __init__(self, directory: str) -> None:
        ca = CertificateAuthority()
        self.issued = ca.issue("server", ip_addresses=["127.0.0.1"])
        self.paths = self.issued.write(directory, "server")
        self.encrypted = os.path.join(directory, "encrypted.key.pem")
        _write(self.encrypted, self.issued.encrypted_key_pem())
        self.legacy = os.path.join(directory, "legacy.key.pem")
        _write(self.legacy, self.issued.encrypted_key_pem(legacy=True))
        self.other = os.path.join(directory, "other.key.pem")
        _write(self.other, ca.issue("other").key_pem)


class LoaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.files = _Files(os.path.abspath(self.mktemp()))

    def test_encrypted_keys_are_refused_in_one_line(self) -> None:
        for path in (self.files.encrypted, self.files.legacy):
            with self.assertRaises(ValueError) as caught:
                load_private_key(path)
            self.assertEqual(str(caught.exception), f"the private key in {path!r} {ENCRYPTED}")
            with self.assertRaises(ValueError) as caught:
                load_private_certificate(self.files.paths.cert, path)
            self.assertIn(ENCRYPTED, str(caught.exception))

    def test_a_clear_key_loads_also_from_a_file_with_the_certificate(self) -> None:
        both = os.path.join(os.path.dirname(self.files.paths.cert), "both.pem")
        _write(both, self.files.issued.cert_pem + self.files.issued.key_pem)
        self.assertIsInstance(load_private_key(self.files.paths.key), crypto.PKey)
        private = load_private_certificate(both)
        self.assertEqual(private.getPublicKey().keyHash(), private.privateKey.keyHash())

    def test_a_key_that_is_not_the_certificates(self) -> None:
        cert, key = self.files.paths.cert, self.files.other
        with self.assertRaises(ValueError) as caught:
            load_private_certificate(cert, key)
        self.assertEqual(
            str(caught.exception),
            f"the private key in {key!r} does not match the certificate in {cert!r}",
        )

    def test_unreadable_pem_gives_a_readable_reason(self) -> None:
        broken = os.path.join(os.path.dirname(self.files.paths.cert), "broken.pem")
        _write(broken, b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        with self.assertRaises(ValueError) as caught:
            load_private_key(broken)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"the private key in {broken!r} cannot be read: "))
        self.assertNotIn("[(", message)
        _write(broken, b"no PEM at all\n")
        with self.assertRaises(ValueError) as caught:
            load_private_key(broken)
        self.assertEqual(str(caught.exception), f"no PEM private key in {broken!r}")
        _write(broken, b"-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n")
        with self.assertRaises(ValueError) as caught:
            load_private_certificate(broken, self.files.paths.key)
        self.assertIn(f"the certificate in {broken!r} cannot be read: ", str(caught.exception))
        self.assertNotIn("[(", str(caught.exception))

    def test_openssl_reason(self) -> None:
        error = crypto.Error([("DECODER routines", "", "unsupported")] * 2 + [("", "f", "bad")])
        self.assertEqual(openssl_reason(error), "DECODER routines: unsupported; bad")
        self.assertEqual(openssl_reason(OSError("gone")), "gone")

    def test_server_and_client_sides_refuse_an_encrypted_key(self) -> None:
        paths = CertPaths(self.files.paths.cert, self.files.encrypted)
        with self.assertRaises(ValueError) as caught:
            server_tls_from_string(_endpoint(paths))
        self.assertIn(ENCRYPTED, str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            ClientTLSPolicy(client_cert=paths.cert, client_key=paths.key)
        self.assertIn(ENCRYPTED, str(caught.exception))


_CHILD = """
import os, sys
os.close(os.open(os.ttyname(0), os.O_RDWR))  # a new session's first terminal: its controlling one
from ilphttp.tls_identity import load_private_certificate
try:
    load_private_certificate(sys.argv[1], sys.argv[2])
except ValueError as exc:
    print("refused:", exc, flush=True)
"""


class NoPromptTests(SynchronousTestCase):
    """With a terminal, OpenSSL's default would print ``Enter PEM pass phrase:`` and block."""

    def test_no_passphrase_prompt_on_a_controlling_terminal(self) -> None:
        files = _Files(os.path.abspath(self.mktemp()))
        master, slave = os.openpty()
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, (ROOT, os.environ.get("PYTHONPATH")))),
        )
        argv = [sys.executable, "-c", _CHILD, files.paths.cert, files.encrypted]
        child = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=env
        )
        os.close(slave)
        self.addCleanup(os.close, master)
        output = bytearray()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif child.poll() is not None:
                break
        else:
            child.kill()
        child.wait(30)
        text = output.decode("utf-8", "replace")
        self.assertNotIn("pass phrase", text.lower())
        self.assertEqual(child.returncode, 0, text)
        self.assertIn(f"refused: the private key in {files.encrypted!r} {ENCRYPTED}", text)


class ReloadTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.files = _Files(self.directory)
        self.logs = LogCapture(self)

    def start(self) -> NodeService:
        path = os.path.join(self.directory, "node.json")
        with open(path, "w") as f:
            endpoint = _endpoint(self.files.paths)
            json.dump(
                node_data({"alice": account("peer", endpoint=endpoint, token=TOKENS["a1"])}), f
            )
        config_file = ConfigFile(path, {})
        service = make_node(config_file.read())
        service.config_file = config_file
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @defer.inlineCallbacks
    def test_an_encrypted_key_refuses_the_reload_in_one_line(self) -> Any:
        service = self.start()
        _write(self.files.paths.key, self.files.issued.encrypted_key_pem())
        failure = yield self.assertFailure(service.reload(), ConfigError)
        self.assertEqual(
            str(failure),
            "account alice: the TLS files of its listener cannot be used: the private key in"
            f" {self.files.paths.key!r} {ENCRYPTED}",
        )
        _write(
            self.files.paths.key, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        failure = yield self.assertFailure(service.reload(), ConfigError)
        self.assertIn("cannot be read: ", str(failure))
        self.assertNotIn("[(", str(failure))


class StartupTests(TestCase):
    """A real ``twistd``: one critical line and exit 1, no traceback."""

    timeout = 120

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.files = _Files(self.directory)

    @defer.inlineCallbacks
    def run_node(self, key: str, **top: Any) -> Any:
        endpoint = _endpoint(CertPaths(self.files.paths.cert, key))
        config = os.path.join(self.directory, "node.json")
        with open(config, "w") as f:
            json.dump(
                node_data({"tls": account("child", endpoint=endpoint, token=TOKENS["a1"])}, **top),
                f,
            )
        node = start_twistd(self, self.directory, "--config", config)
        yield node.ended
        text = node.text()
        self.assertNotIn("Traceback", text)
        self.assertNotIn("stderr#error", text)
        return node.exit_code, text

    def critical(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if "#critical]" in line]

    @defer.inlineCallbacks
    def test_an_encrypted_key(self) -> Any:
        code, text = yield self.run_node(self.files.encrypted)
        self.assertEqual(code, 1, text)
        [line] = self.critical(text)
        self.assertIn("cannot start account 'tls': ", line)
        self.assertTrue(
            line.endswith(f"the private key in {self.files.encrypted!r} {ENCRYPTED}"), line
        )

    @defer.inlineCallbacks
    def test_a_key_that_is_not_the_certificates(self) -> Any:
        code, text = yield self.run_node(self.files.other)
        self.assertEqual(code, 1, text)
        [line] = self.critical(text)
        self.assertIn("cannot start account 'tls': ", line)
        self.assertTrue(
            line.endswith(
                f"the private key in {self.files.other!r} does not match the certificate"
                f" in {self.files.paths.cert!r}"
            ),
            line,
        )

    @defer.inlineCallbacks
    def test_metrics_over_tls_with_an_encrypted_key(self) -> Any:
        metrics = _endpoint(CertPaths(self.files.paths.cert, self.files.encrypted))
        code, text = yield self.run_node(self.files.paths.key, metrics=metrics)
        self.assertEqual(code, 2, text)
        self.assertIn(f"the private key in {self.files.encrypted!r} {ENCRYPTED}", text)
