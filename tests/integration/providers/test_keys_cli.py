"""`dashtam keys rotate` (what `make keys-rotate` runs) on committed rows, and back again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.providers import delete_owner, seed_connection
from tests.test_config import TestSettings

from dashtam.core.crypto import TokenCipher, generate_key
from dashtam.models import ProviderConnection, ProviderToken
from dashtam.providers.keys import rotate
from dashtam.providers.oauth import TokenGrant
from dashtam.providers.tokens import ACCESS_TOKEN, reveal


@pytest.fixture
async def committed(
    engine: AsyncEngine, cipher: TokenCipher, grant: TokenGrant
) -> AsyncIterator[ProviderConnection]:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        connection = await seed_connection(
            session, cipher, grant, access_expires_in=timedelta(hours=1)
        )
    yield connection
    await delete_owner(engine, connection)


async def _token(engine: AsyncEngine, connection: ProviderConnection) -> ProviderToken:
    async with AsyncSession(engine) as session:
        token = await session.scalar(
            select(ProviderToken).where(ProviderToken.connection_id == connection.id)
        )
    assert token is not None
    return token


async def test_rotate_and_rotate_back(
    settings: TestSettings,
    engine: AsyncEngine,
    committed: ProviderConnection,
    grant: TokenGrant,
) -> None:
    new_key = f"k9:{generate_key()}"
    count, key_id = await rotate(
        settings.model_copy(
            update={"TOKEN_ENCRYPTION_KEYS": f"{new_key},{settings.TOKEN_ENCRYPTION_KEYS}"}
        )
    )
    assert (key_id, count >= 1) == ("k9", True)
    token = await _token(engine, committed)
    assert reveal(TokenCipher.from_setting(new_key), token, ACCESS_TOKEN) == grant.access_token

    back = f"{settings.TOKEN_ENCRYPTION_KEYS},{new_key}"
    await rotate(settings.model_copy(update={"TOKEN_ENCRYPTION_KEYS": back}))
    original = TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    assert reveal(original, await _token(engine, committed), ACCESS_TOKEN) == grant.access_token
