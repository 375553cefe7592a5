"""Benchmark scripts, run as modules from the repository root (``make bench``, or
``python -m bench.pipeline``) so they import the test harness as ``tests.support``."""
