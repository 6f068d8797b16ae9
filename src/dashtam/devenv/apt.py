"""Installing a Debian package the project needs (promtool, Prometheus), one install at a time.

Only as root with apt-get, and under a machine-wide lock: two test processes (xdist workers) or a
test and `make monitor` never run apt-get at the same moment.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from dashtam.core.errors import UserError

LOCK_FILE = Path("/tmp/dashtam-apt.lock")  # noqa: S108 - machine-wide by design


def ensure_debian_package(binary: str, package: str) -> str:
    """The path of `binary`, installing `package` first when it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise UserError(
            f"{binary} is not installed and cannot be installed here (needs root and apt-get).",
            hint=f"Install the Debian package: `sudo apt-get install {package}`.",
        )
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q"]
    install += ["--no-install-recommends", package]
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which(binary)  # another process may have installed it meanwhile
        if found:
            return found
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    found = shutil.which(binary)
    if result.returncode != 0 or found is None:
        raise UserError(
            f"`apt-get install {package}` failed: {result.stderr.strip()[-300:]}",
            hint=f"Install it yourself: `sudo apt-get install {package}`.",
        )
    return found
