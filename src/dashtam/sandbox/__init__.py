"""Schwab-compatible OAuth + Trader API emulator, so Dashtam runs end to end with no credentials.

Start it with ``python -m dashtam.sandbox`` or mount ``create_app()`` in-process for tests.
"""
