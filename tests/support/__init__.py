"""Helpers and fakes the tests share; fixtures live in conftest.py."""
