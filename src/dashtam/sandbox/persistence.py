"""A sandbox's memory across restarts: dev keeps it in a file, tests keep it in memory only.

Schwab does not forget a login when its servers restart, so the dev sandbox must not either:
the file holds the codes, logins and access tokens it issued (as SHA-256 digests, never a
token), the transactions posted or removed through its controls, the faults scheduled, and the
reference date its synthetic data was made for (so a restart on another day shows the same
history). It is rewritten whole, atomically, after every change.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

VERSION = 1


class StateFile:
    """Where one sandbox keeps its state; with no path, nothing is kept."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        """The saved state, or {} (none yet, no file configured, or one that is unreadable)."""
        if self.path is None or not self.path.is_file():
            return {}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning(
                "sandbox state in %s is unreadable (%s); starting afresh", self.path, exc
            )
            return {}
        if not isinstance(document, dict) or document.get("version") != VERSION:
            logger.warning("sandbox state in %s has another format; starting afresh", self.path)
            return {}
        return document

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": VERSION, **state}, separators=(",", ":"))
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(body)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
