"""Dashtam: a self-hosted, secure financial data aggregation API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dashtam")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
