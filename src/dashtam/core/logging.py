"""Structured JSON logs with a request id, and a filter that masks secrets."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_SECRET_KEYS = re.compile(
    r"(access_token|refresh_token|id_token|code|password|secret|authorization|token|state"
    r"|code_verifier|client_secret)",
    re.IGNORECASE,
)
_SECRET_IN_TEXT = re.compile(
    r"(?i)\b(code|state|access_token|refresh_token|password|token|code_verifier)=([^&\s\"']+)"
)
_BEARER = re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask `key=value` secrets and bearer/basic credentials inside free text (URLs, lines)."""
    text = _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}=[REDACTED]", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} [REDACTED]", text)


def redact_mapping(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: "[REDACTED]" if _SECRET_KEYS.search(key) and value not in (None, "") else value
        for key, value in values.items()
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        payload.update(redact_mapping(extras))
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
