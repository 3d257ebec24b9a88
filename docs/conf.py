"""Sphinx configuration for the ilphttp documentation.

Build with warnings as errors (what ``tox -e docs`` runs)::

    sphinx-build -W -q -b html docs /tmp/ilphttp-docs

Only extensions that ship with Sphinx are used, and nothing is fetched from
the network (no intersphinx).
"""

from __future__ import annotations

import os
import sys

# autodoc imports the package from this checkout, not from site-packages.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

project = "ilphttp"
author = "the ilphttp authors"
copyright = "the ilphttp authors; Apache-2.0"

try:
    from ilphttp import __version__ as release
except ImportError:  # pragma: no cover - the API page then fails loudly anyway
    release = "0.1.0"
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]

root_doc = master_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
language = "en"
pygments_style = "sphinx"
highlight_language = "python"

# autodoc: signatures keep the annotations as written (``from __future__ import
# annotations`` everywhere); members appear in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"ilphttp {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Interledger (ILPv4) over HTTP, on Twisted",
    "fixed_sidebar": True,
}
