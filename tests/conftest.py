"""Loads the one set of fixtures (``tests/support/fixtures.py``); ``tests/`` is on the
import path through ``pythonpath`` in ``pyproject.toml`` (``support``, ``reference``)."""

pytest_plugins = ["support.fixtures"]
