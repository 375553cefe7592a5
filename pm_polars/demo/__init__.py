"""Synthetic demo feed and the end-to-end demo runner."""
