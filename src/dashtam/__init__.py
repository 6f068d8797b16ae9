"""Dashtam: a self-hosted, secure financial data aggregation API."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`__version__`, read from the package metadata on first use: the lookup scans every
    installed distribution, which `dashtam --help` should not pay for."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("dashtam")
    except PackageNotFoundError:  # running from a source tree without an install
        found = "0.0.0"
    globals()["__version__"] = found
    return found
