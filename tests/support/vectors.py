"""The official test vectors kept as data under ``tests/vectors/``."""

from __future__ import annotations

import json
import os
from typing import Any

VECTORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vectors")


def load_vector(*parts: str) -> Any:
    with open(os.path.join(VECTORS, *parts), encoding="utf-8") as f:
        return json.load(f)
