"""Session fixtures for outside tools the tests read real formats with."""

from __future__ import annotations

import pytest

from dashtam.core.errors import UserError
from dashtam.devenv.apt import ensure_debian_package


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's own checker (Debian's `prometheus` package), installed when missing."""
    try:
        return ensure_debian_package("promtool", "prometheus")
    except UserError as error:
        pytest.skip(str(error))
