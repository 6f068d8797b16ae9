"""The docs send nobody astray: links and cited files exist, README paths are real routes."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from starlette.routing import Match
from tests.test_config import TestSettings

from dashtam.core.config import PROJECT_ROOT
from dashtam.main import create_app

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CITED_FILE = re.compile(r"(?<![\w/.-])([\w./-]+\.md)\b")
API_PATH = re.compile(r"`(?:(GET|POST|PUT|PATCH|DELETE) )?(/[^`\s]*)`")
PARAMETER = re.compile(r"\{[^}]+\}")


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_link_and_cited_file_exists(doc: Path) -> None:
    text = doc.read_text()
    for target in LINK.findall(text):
        if "://" not in target:
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
    for name in CITED_FILE.findall(text):
        found = [base / name for base in (doc.parent, PROJECT_ROOT) if (base / name).exists()]
        assert found, f"{doc.name} cites {name}, which is not in the repository"


def test_every_path_in_the_readme_is_a_route() -> None:
    """`/positions` once stood beside `/api/v1/accounts`; it is under `/accounts/{id}/`."""
    app = create_app(TestSettings())

    def routed(method: str, path: str) -> bool:
        concrete = PARAMETER.sub(str(uuid.uuid4()), path)
        scope = {"type": "http", "method": method, "path": concrete, "root_path": ""}
        return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)

    cited = API_PATH.findall((PROJECT_ROOT / "README.md").read_text())
    assert len(cited) >= 8
    for method, path in cited:
        assert routed(method or "GET", path), f"{method} {path}"
