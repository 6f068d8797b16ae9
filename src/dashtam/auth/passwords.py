"""Password hashing (argon2id, parameters from settings) and the strength policy."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dashtam.core.config import Settings

MIN_LENGTH = 12
MAX_LENGTH = 256  # argon2 accepts more, but a megabyte "password" is only a way to burn CPU


class Passwords:
    """Hashing runs in a worker thread: argon2 is deliberately slow and would stall the loop."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """False on mismatch; with no hash (unknown user) a dummy is checked so timing matches."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("dashtam-dummy-password")
        target = password_hash if password_hash is not None else self._dummy_hash
        try:
            await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=4)
def _passwords(time_cost: int, memory_kib: int, parallelism: int) -> Passwords:
    return Passwords(time_cost, memory_kib, parallelism)


def passwords_for(settings: Settings) -> Passwords:
    """One hasher per parameter set, so the dummy hash is computed once, not per request."""
    return _passwords(
        settings.PASSWORD_HASH_TIME_COST,
        settings.PASSWORD_HASH_MEMORY_KIB,
        settings.PASSWORD_HASH_PARALLELISM,
    )


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of breached/common passwords (lower case, one a line)."""
    text = files("dashtam.auth").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def password_problems(password: str, email: str) -> list[str]:
    """Why a new password is refused (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        problems.append(f"Use at most {MAX_LENGTH} characters.")
    folded = password.strip().lower()
    if folded in common_passwords():
        problems.append("This password is on a list of common or breached passwords.")
    if folded in {email.lower(), email.lower().partition("@")[0]}:
        problems.append("The password must not be your email address.")
    return problems
