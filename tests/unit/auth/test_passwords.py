"""Password policy and argon2id hashing."""

from __future__ import annotations

import pytest
from argon2 import extract_parameters
from tests.test_config import get_test_settings

from dashtam.auth.passwords import (
    MIN_LENGTH,
    Passwords,
    common_passwords,
    password_problems,
    passwords_for,
)

EMAIL = "ada.lovelace@example.com"


def test_a_long_uncommon_password_is_accepted() -> None:
    assert password_problems("violet-harbour-engine-7", EMAIL) == []


def test_short_password_says_the_minimum_length() -> None:
    problems = password_problems("short-pw1", EMAIL)
    assert problems == [f"Use at least {MIN_LENGTH} characters."]


@pytest.mark.parametrize(
    "password", ["password1234", "PASSWORD1234", "Qwertyuiop123", "123456789012"]
)
def test_common_passwords_are_refused_whatever_the_case(password: str) -> None:
    assert any("common" in problem for problem in password_problems(password, EMAIL))


@pytest.mark.parametrize("password", [EMAIL, EMAIL.upper(), "ada.lovelace"])
def test_password_equal_to_the_email_is_refused(password: str) -> None:
    assert "The password must not be your email address." in password_problems(password, EMAIL)


def test_every_reason_is_reported_at_once() -> None:
    assert len(password_problems("x" * 300, "x" * 300 + "@example.com")) == 2


def test_shipped_list_is_loaded_lower_case_without_comments() -> None:
    words = common_passwords()
    assert len(words) > 100
    assert all(word == word.lower() and not word.startswith("#") for word in words)


async def test_hash_verifies_only_the_right_password() -> None:
    passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
    stored = await passwords.hash("violet-harbour-engine-7")
    assert stored.startswith("$argon2id$")
    assert "violet" not in stored
    assert await passwords.verify(stored, "violet-harbour-engine-7")
    assert not await passwords.verify(stored, "violet-harbour-engine-8")


async def test_unknown_user_never_verifies() -> None:
    passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
    assert not await passwords.verify(None, "dashtam-dummy-password")
    assert not await passwords.verify(None, "violet-harbour-engine-7")


async def test_a_corrupt_stored_hash_does_not_verify() -> None:
    passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
    assert not await passwords.verify("not-an-argon2-hash", "violet-harbour-engine-7")


async def test_changed_parameters_ask_for_a_rehash() -> None:
    old = await Passwords(time_cost=1, memory_kib=1024, parallelism=1).hash("violet-harbour-7")
    assert Passwords(time_cost=2, memory_kib=1024, parallelism=1).needs_rehash(old)
    assert not Passwords(time_cost=1, memory_kib=1024, parallelism=1).needs_rehash(old)


async def test_parameters_come_from_settings() -> None:
    settings = get_test_settings(
        PASSWORD_HASH_TIME_COST=2, PASSWORD_HASH_MEMORY_KIB=2048, PASSWORD_HASH_PARALLELISM=1
    )
    passwords = passwords_for(settings)
    parameters = extract_parameters(await passwords.hash("violet-harbour-engine-7"))
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (2, 2048, 1)
    assert passwords_for(settings) is passwords
