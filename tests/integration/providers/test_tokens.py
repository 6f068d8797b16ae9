"""Token storage and refresh against real PostgreSQL: fail closed, rotation, refresh limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.support.audit import assert_append_only
from tests.support.providers import seed_connection
from tests.test_config import TestSettings

from dashtam.core.crypto import TokenCipher, generate_key
from dashtam.models import ProviderAuditLog, ProviderConnection, ProviderToken
from dashtam.models.base import utcnow
from dashtam.providers.audit import background_context
from dashtam.providers.errors import ConnectionUnusable, ProviderUnavailable, TokenUnreadable
from dashtam.providers.oauth import TokenGrant
from dashtam.providers.tokens import (
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    TokenDeps,
    fresh_access_token,
    reencrypt_all,
    reveal,
)
from dashtam.sandbox.app import SandboxState
from dashtam.sandbox.faults import parse_fault


def _flip_one_character(stored: str) -> str:
    """Change one base64 character in the middle of the sealed payload."""
    middle = len(stored) // 2
    return stored[:middle] + ("A" if stored[middle] != "A" else "B") + stored[middle + 1 :]


async def _token(session: AsyncSession, connection: ProviderConnection) -> ProviderToken:
    token = await session.scalar(
        select(ProviderToken)
        .where(ProviderToken.connection_id == connection.id)
        .execution_options(populate_existing=True)
    )
    assert token is not None
    return token


async def _actions(session: AsyncSession, connection: ProviderConnection) -> list[str]:
    rows = await session.scalars(
        select(ProviderAuditLog.action)
        .where(ProviderAuditLog.provider_id == connection.provider_id)
        .order_by(ProviderAuditLog.created_at)
    )
    return list(rows)


async def test_tampered_ciphertext_fails_closed_and_is_audited(
    session: AsyncSession, deps: TokenDeps, cipher: TokenCipher, grant: TokenGrant
) -> None:
    connection = await seed_connection(session, cipher, grant, access_expires_in=timedelta(hours=1))
    token = await _token(session, connection)
    token.access_token_encrypted = _flip_one_character(token.access_token_encrypted)
    await session.commit()
    with pytest.raises(TokenUnreadable):
        await fresh_access_token(session, deps, connection.id, background_context())
    assert await _actions(session, connection) == ["token_unreadable"]


async def test_a_ciphertext_copied_to_another_connection_does_not_decrypt(
    session: AsyncSession, deps: TokenDeps, cipher: TokenCipher, grant: TokenGrant
) -> None:
    one = await seed_connection(session, cipher, grant, access_expires_in=timedelta(hours=1))
    two = await seed_connection(session, cipher, grant, access_expires_in=timedelta(hours=1))
    token_one, token_two = await _token(session, one), await _token(session, two)
    token_two.access_token_encrypted = token_one.access_token_encrypted
    await session.commit()
    with pytest.raises(TokenUnreadable):
        await fresh_access_token(session, deps, two.id, background_context())
    token_one.refresh_token_encrypted = token_one.access_token_encrypted  # field swap
    with pytest.raises(TokenUnreadable):
        reveal(cipher, token_one, REFRESH_TOKEN)


async def test_key_rotation_round_trip(
    session: AsyncSession, cipher: TokenCipher, grant: TokenGrant, settings: TestSettings
) -> None:
    connection = await seed_connection(session, cipher, grant, access_expires_in=timedelta(hours=1))
    new_key = generate_key()
    rotated = TokenCipher.from_setting(f"k9:{new_key},{settings.TOKEN_ENCRYPTION_KEYS}")
    count = await reencrypt_all(session, rotated, background_context())
    assert count >= 1
    token = await _token(session, connection)
    assert token.access_token_encrypted.startswith("v1:k9:")
    only_new = TokenCipher.from_setting(f"k9:{new_key}")
    assert reveal(only_new, token, ACCESS_TOKEN) == grant.access_token
    assert reveal(only_new, token, REFRESH_TOKEN) == grant.refresh_token
    audit_row = await session.scalar(
        select(ProviderAuditLog)
        .where(ProviderAuditLog.action == "keys_rotated")
        .order_by(ProviderAuditLog.created_at.desc())
        .limit(1)
    )
    assert audit_row is not None
    assert audit_row.details == {"tokens": count, "key_id": "k9"}


async def test_rotation_without_the_old_key_changes_nothing(
    session: AsyncSession, cipher: TokenCipher, grant: TokenGrant
) -> None:
    connection = await seed_connection(session, cipher, grant, access_expires_in=timedelta(hours=1))
    token = await _token(session, connection)
    token_id, before = token.id, token.access_token_encrypted
    with pytest.raises(TokenUnreadable):
        await reencrypt_all(
            session, TokenCipher.from_setting(f"k9:{generate_key()}"), background_context()
        )
    await session.rollback()
    after = await session.scalar(
        select(ProviderToken.access_token_encrypted).where(ProviderToken.id == token_id)
    )
    assert after == before


async def test_expired_refresh_token_needs_reauth_without_asking(
    session: AsyncSession,
    deps: TokenDeps,
    cipher: TokenCipher,
    grant: TokenGrant,
    sandbox_state: SandboxState,
) -> None:
    connection = await seed_connection(session, cipher, grant, access_expires_in=timedelta(0))
    token = await _token(session, connection)
    token.refresh_expires_at = utcnow() - timedelta(seconds=1)
    await session.commit()
    with pytest.raises(ConnectionUnusable):
        await fresh_access_token(session, deps, connection.id, background_context())
    assert sandbox_state.stats.token_requests == 0
    refreshed = await session.get(ProviderConnection, connection.id, populate_existing=True)
    assert refreshed is not None
    assert (refreshed.status, refreshed.last_error_code) == (
        "needs_reauth",
        "refresh_token_expired",
    )


async def test_provider_outage_keeps_a_still_valid_token_and_fails_an_expired_one(
    session: AsyncSession,
    deps: TokenDeps,
    cipher: TokenCipher,
    grant: TokenGrant,
    sandbox_state: SandboxState,
) -> None:
    sandbox_state.faults.schedule(parse_fault("server_error"), 2, "token")
    soon = await seed_connection(session, cipher, grant, access_expires_in=timedelta(minutes=1))
    value = await fresh_access_token(session, deps, soon.id, background_context())
    assert value == grant.access_token
    gone = await seed_connection(session, cipher, grant, access_expires_in=timedelta(seconds=-1))
    with pytest.raises(ProviderUnavailable):
        await fresh_access_token(session, deps, gone.id, background_context())
    status = await session.get(ProviderConnection, gone.id, populate_existing=True)
    assert status is not None
    assert (status.status, status.last_error_code) == ("active", "refresh_unavailable")
    assert await _actions(session, gone) == ["refresh_failed"]


async def test_refresh_outcomes_are_counted(
    session: AsyncSession,
    deps: TokenDeps,
    cipher: TokenCipher,
    grant: TokenGrant,
    sandbox_state: SandboxState,
) -> None:
    def refreshes(outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "dashtam_provider_token_refreshes_total", {"outcome": outcome}
        )
        return value or 0.0

    success, failure = refreshes("success"), refreshes("failure")
    due = await seed_connection(session, cipher, grant, access_expires_in=timedelta(0))
    await fresh_access_token(session, deps, due.id, background_context())
    assert (refreshes("success") - success, refreshes("failure") - failure) == (1, 0)
    sandbox_state.faults.schedule(parse_fault("server_error"), 1, "token")
    gone = await seed_connection(session, cipher, grant, access_expires_in=timedelta(seconds=-1))
    with pytest.raises(ProviderUnavailable):
        await fresh_access_token(session, deps, gone.id, background_context())
    assert (refreshes("success") - success, refreshes("failure") - failure) == (1, 1)


async def test_audit_rows_cannot_be_changed_or_deleted(
    session_factory: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    cipher: TokenCipher,
    grant: TokenGrant,
    settings: TestSettings,
) -> None:
    connection = await seed_connection(session, cipher, grant, access_expires_in=timedelta(hours=1))
    session.add(
        ProviderAuditLog(provider_id=connection.provider_id, action="probe", outcome="success")
    )
    await session.commit()
    await assert_append_only(
        session_factory,
        ProviderAuditLog,
        ProviderAuditLog.provider_id == connection.provider_id,
        settings.owner_database_url,
    )
    await session.execute(
        text("DELETE FROM providers WHERE id = :id"), {"id": connection.provider_id}
    )
    assert await _actions(session, connection) == ["probe"]
