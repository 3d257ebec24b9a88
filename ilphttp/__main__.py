"""``python -m ilphttp``: see :mod:`ilphttp.cli`."""

from __future__ import annotations

from ilphttp.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
