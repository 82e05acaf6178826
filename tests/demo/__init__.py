"""Tests of the reference service in demo/ (a package, so its conftest does not shadow tests/conftest.py)."""
