"""The load-balancer configurations in examples/ parse with the real HAProxy and nginx."""

from __future__ import annotations

import os
import subprocess
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests.support.balancers import HAPROXY_CFG, NGINX_CONF, haproxy_env, require_tool

DOCS = os.path.join(os.path.dirname(HAPROXY_CFG), os.pardir, "docs", "deployment.rst")


def check(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(argv, capture_output=True, timeout=60, env=env)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


class HAProxyConfigTests(SynchronousTestCase):
    def test_the_example_is_valid_as_shipped(self) -> None:
        haproxy = require_tool("haproxy", "haproxy")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ILP_")}
        code, text = check([haproxy, "-c", "-f", HAPROXY_CFG], env)
        self.assertEqual(code, 0, text)
        self.assertIn("Configuration file is valid", text)

    def test_the_example_is_valid_with_the_test_addresses(self) -> None:
        haproxy = require_tool("haproxy", "haproxy")
        with tempfile.TemporaryDirectory() as tmp:
            env = haproxy_env(18080, (18001, 18002), os.path.join(tmp, "s.sock"))
            code, text = check([haproxy, "-c", "-f", HAPROXY_CFG], env)
        self.assertEqual(code, 0, text)

    def test_retries_only_when_nothing_was_received(self) -> None:
        # not junk-response, response-timeout or a status: the node answered
        with open(HAPROXY_CFG) as f:
            lines = [line.split("#")[0].split() for line in f]
        retry_on = [words[1:] for words in lines if words[:1] == ["retry-on"]]
        self.assertEqual(retry_on, [["conn-failure", "empty-response"]])


class NginxConfigTests(SynchronousTestCase):
    def test_the_example_is_valid(self) -> None:
        nginx = require_tool("nginx", "nginx-light")
        code, text = check([nginx, "-t", "-c", os.path.abspath(NGINX_CONF)])
        self.assertEqual(code, 0, text)
        self.assertIn("test is successful", text)

    def test_a_sent_post_is_never_passed_to_another_node(self) -> None:
        with open(NGINX_CONF) as f:
            words = [line.split("#")[0].split() for line in f]
        next_upstream = [w for w in words if w[:1] == ["proxy_next_upstream"]]
        self.assertEqual(next_upstream, [["proxy_next_upstream", "error", "timeout;"]])


class DeploymentDocTests(SynchronousTestCase):
    def test_the_docs_include_the_tested_files(self) -> None:
        with open(DOCS) as f:
            text = f.read()
        for name in ("haproxy.cfg", "nginx.conf"):
            directive = f".. literalinclude:: ../examples/{name}"
            self.assertTrue(directive in text, f"{directive} is not in docs/deployment.rst")
