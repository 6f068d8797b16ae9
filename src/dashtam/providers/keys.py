"""Key rotation as the CLI runs it (`dashtam keys rotate`, `make keys-rotate`)."""

from __future__ import annotations

from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
from dashtam.core.database import create_engine, create_session_factory
from dashtam.core.errors import UserError
from dashtam.providers.audit import background_context
from dashtam.providers.errors import TokenUnreadable
from dashtam.providers.tokens import reencrypt_all


async def rotate(settings: Settings) -> tuple[int, str]:
    """Re-encrypt every token row under the current key; (rows, key id)."""
    cipher = TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    engine = create_engine(settings, pool_size=1)
    try:
        async with create_session_factory(engine)() as session:
            count = await reencrypt_all(session, cipher, background_context())
    except TokenUnreadable:
        raise UserError(
            "A stored token decrypts under none of the keys in TOKEN_ENCRYPTION_KEYS; nothing "
            "was changed.",
            hint="Keep every old key in TOKEN_ENCRYPTION_KEYS (after the new first one) until "
            "the rotation succeeds.",
        ) from None
    finally:
        await engine.dispose()
    return count, cipher.current_key_id
