"""Integration tests talk to real services; their fixtures live in
``tests/integration/fixtures/`` and are loaded by the top-level ``tests/conftest.py``."""
