"""Test helpers live in tests/helpers (on the path through pyproject's pytest settings)."""
