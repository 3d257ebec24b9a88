"""The one place the version is written; setup.py reads it without importing ilphttp."""

__version__ = "0.1.0"
