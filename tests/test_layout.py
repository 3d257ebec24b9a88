"""The layout of tests/: test modules share code only through tests.support."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, relative imports resolved against ``tests``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "tests" if node.level == 1 else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                # ``from . import x`` imports the module tests.x
                found += [f"{module}.{a.name}" for a in node.names] if not node.module else [module]
            else:
                found.append(node.module or "")
    return found


def forbidden(module: str) -> bool:
    """Within tests, only tests.support and its modules may be imported."""
    if module != "tests" and not module.startswith("tests."):
        return False
    return not (module == "tests.support" or module.startswith("tests.support."))


class LayoutTests(SynchronousTestCase):
    def test_test_modules_import_only_tests_support(self) -> None:
        modules = sorted(TESTS.glob("test_*.py"))
        self.assertTrue(modules)
        offenders = [
            f"{path.name} imports {module}"
            for path in modules
            for module in imported_modules(path)
            if forbidden(module)
        ]
        self.assertEqual(offenders, [])

    def test_the_checker_sees_the_old_paths(self) -> None:
        for module in ("tests.helpers", "tests.jsinterop", "tests.certs", "tests.test_http2"):
            self.assertTrue(forbidden(module), module)
        for module in ("tests.support", "tests.support.packets", "ilphttp.tests", "twisted"):
            self.assertFalse(forbidden(module), module)

    def test_no_loose_helpers(self) -> None:
        """Shared code lives in tests/support/, not beside the test modules."""
        loose = sorted(
            p.name
            for p in TESTS.glob("*.py")
            if not p.name.startswith("test_") and p.name != "__init__.py"
        )
        self.assertEqual(loose, [])
