"""Auth API fixtures: mail is captured in memory instead of written to the state folder."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from tests.support.auth import Outbox

from dashtam.auth.mailer import get_mailer


@pytest.fixture(autouse=True)
def outbox(app: FastAPI) -> Outbox:
    box = Outbox()
    app.dependency_overrides[get_mailer] = lambda: box
    return box
