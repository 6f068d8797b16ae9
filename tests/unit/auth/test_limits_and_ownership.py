"""Rate settings, rate-limit headers, and the not-yours-is-404 rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from pydantic import ValidationError
from tests.test_config import get_test_settings

from dashtam.auth.dependencies import owned_or_404
from dashtam.auth.ratelimit import Decision, Limit, Rate
from dashtam.core.errors import ProblemError
from dashtam.models.user import User


def test_rates_are_read_from_settings() -> None:
    settings = get_test_settings(RATE_LIMIT_LOGIN="7/30", RATE_LIMIT_REFRESH="100/3600")
    assert Rate.for_limit(settings, Limit.LOGIN) == Rate(7, 30)
    assert Rate.for_limit(settings, Limit.REFRESH) == Rate(100, 3600)


@pytest.mark.parametrize("spec", ["10 per minute", "0/60", "10/0", "10", "/60"])
def test_malformed_rate_settings_stop_start_up(spec: str) -> None:
    with pytest.raises(ValidationError):
        get_test_settings(RATE_LIMIT_LOGIN=spec)


def test_allowed_decision_has_no_retry_after() -> None:
    decision = Decision.from_script(Rate(5, 60), [1, 4, 0, 12_000_000])
    assert decision.headers() == {
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "4",
        "RateLimit-Reset": "12",
        "RateLimit-Policy": "5;w=60",
    }


def test_refused_decision_says_when_to_retry_in_whole_seconds() -> None:
    headers = Decision.from_script(Rate(5, 60), [0, 0, 11_000_001, 59_000_001]).headers()
    assert headers["Retry-After"] == "12"
    assert headers["RateLimit-Reset"] == "60"
    assert headers["RateLimit-Remaining"] == "0"


@pytest.mark.parametrize(
    ("limit", "fails_closed"),
    [
        (Limit.AUTHENTICATED, False),
        (Limit.ANONYMOUS, False),
        (Limit.LOGIN, False),
        (Limit.REFRESH, False),
        (Limit.REGISTER, True),
        (Limit.PASSWORD_RESET, True),
        (Limit.VERIFY_EMAIL_RESEND, True),
        (Limit.OAUTH_CALLBACK, True),
        (Limit.PASSWORD_CHANGE, True),
    ],
)
def test_each_route_class_decides_what_a_redis_outage_means(
    limit: Limit, fails_closed: bool
) -> None:
    assert limit.fails_closed is fails_closed


def test_every_limit_has_a_setting() -> None:
    settings = get_test_settings()
    assert all(Rate.for_limit(settings, limit).requests > 0 for limit in Limit)


@dataclass
class _Thing:
    user_id: uuid.UUID


def _user() -> User:
    return User(id=uuid.uuid4(), email="a@example.com", name="A", password_hash="x")


def test_own_resource_is_returned() -> None:
    user = _user()
    thing = _Thing(user.id)
    assert owned_or_404(thing, user) is thing


@pytest.mark.parametrize("thing", [None, _Thing(uuid.uuid4())])
def test_missing_or_foreign_resource_is_404(thing: _Thing | None) -> None:
    with pytest.raises(ProblemError) as raised:
        owned_or_404(thing, _user(), "Account")
    assert raised.value.status == 404
    assert raised.value.detail == "Account not found."
