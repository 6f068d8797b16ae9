"""Reading and writing `KEY=value` env files, with errors that name the line."""

from __future__ import annotations

import re
from pathlib import Path

from dashtam.core.errors import UserError

_ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse an env file; a line that is not `KEY=value`, blank or a comment is an error."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if match is None:
            raise UserError(
                f"{path}:{number}: not a KEY=value line: {line[:40]!r}",
                hint="Fix or delete that line (comments start with '#').",
            )
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def check_env_file(path: Path) -> None:
    """Validate the file if it exists; a missing file just means defaults apply."""
    if path.is_file():
        parse_env_file(path)


def fill_template(template: str, values: dict[str, str], keys: set[str] | None = None) -> str:
    """The template's text with each assignment set to `values`; comments are kept, and with
    `keys` only those assignments are written, each with the comment lines just above it."""
    out: list[str] = []
    comments: list[str] = []
    for raw in template.splitlines():
        line = raw.strip()
        match = _ASSIGNMENT.match(line)
        if match is None:
            comments = [*comments, raw] if line else []
            if keys is None:
                out.append(raw)
            continue
        key = match.group(1)
        if keys is None:
            out.append(f"{key}={values[key]}")
        elif key in keys:
            out += [*comments, f"{key}={values[key]}"]
        comments = []
    return "\n".join(out) + "\n"


def write_env_text(path: Path, text: str) -> None:
    """Write atomically with owner-only permissions: the file holds secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


def write_env_file(path: Path, values: dict[str, str], header: str) -> None:
    body = "".join(f"{key}={value}\n" for key, value in values.items())
    write_env_text(path, f"{header}\n{body}")
