"""Encrypted token storage and the serialized, proactive refresh of access tokens.

Refresh is serialized per connection with ``SELECT ... FOR UPDATE`` on the connection row, so
it holds across processes: the first caller refreshes, everyone queued behind it re-reads the
row after the lock and finds a fresh token. A permanent refusal (``invalid_grant``) turns the
connection into ``needs_reauth``, which later callers see before calling the provider again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dashtam.auth.audit import RequestContext
from dashtam.core.config import Settings
from dashtam.core.crypto import DecryptionError, TokenCipher, token_binding
from dashtam.core.errors import ProblemError
from dashtam.events.outbox import EventType, emit
from dashtam.models.base import utcnow
from dashtam.models.provider import (
    ConnectionStatus,
    Provider,
    ProviderConnection,
    ProviderToken,
)
from dashtam.providers import audit
from dashtam.providers.audit import AuditAction, AuditOutcome
from dashtam.providers.errors import (
    ConnectionUnusable,
    ProviderNotFound,
    ProviderUnavailable,
    TokenUnreadable,
    reauthorize_hint,
)
from dashtam.providers.events import connection_event
from dashtam.providers.oauth import ProviderOAuthError, TokenGrant, refresh_grant
from dashtam.providers.registry import ProviderSpec, require_spec

ACCESS_TOKEN = "access_token"  # noqa: S105 - field names, not secrets
REFRESH_TOKEN = "refresh_token"  # noqa: S105
ID_TOKEN = "id_token"  # noqa: S105
TOKEN_FIELDS = {
    ACCESS_TOKEN: "access_token_encrypted",
    REFRESH_TOKEN: "refresh_token_encrypted",
    ID_TOKEN: "id_token_encrypted",
}
REFRESH_UNAVAILABLE = "refresh_unavailable"


@dataclass(frozen=True)
class TokenDeps:
    """What token operations talk to; built per request or per job, never global."""

    http: httpx.AsyncClient
    settings: Settings
    cipher: TokenCipher

    @property
    def leeway(self) -> timedelta:
        return timedelta(seconds=self.settings.PROVIDER_REFRESH_LEEWAY_SECONDS)

    def spec(self, provider: Provider) -> ProviderSpec:
        return require_spec(self.settings, provider.provider_key)


@dataclass
class Loaded:
    provider: Provider
    connection: ProviderConnection
    token: ProviderToken | None


def seal(cipher: TokenCipher, token: ProviderToken, field: str, value: str | None) -> None:
    encrypted = (
        None
        if value is None
        else cipher.encrypt(value, binding=token_binding(token.connection_id, field))
    )
    setattr(token, TOKEN_FIELDS[field], encrypted)


def store_grant(
    cipher: TokenCipher,
    token: ProviderToken,
    grant: TokenGrant,
    now: datetime,
    *,
    refresh_ttl: timedelta,
    previous_refresh_token: str | None,
) -> None:
    """Encrypt a grant into ``token``; the refresh expiry moves only for a new refresh token.

    Schwab answers a refresh with the same refresh token, which still dies 7 days after the
    login, so re-stamping its expiry on every refresh would hide the real deadline.
    """
    seal(cipher, token, ACCESS_TOKEN, grant.access_token)
    token.access_expires_at = now + timedelta(seconds=grant.expires_in)
    token.token_type = grant.token_type[:20]
    token.scope = grant.scope[:255] if grant.scope else None
    if grant.id_token is not None:
        seal(cipher, token, ID_TOKEN, grant.id_token)
    if grant.refresh_token is not None and grant.refresh_token != previous_refresh_token:
        seal(cipher, token, REFRESH_TOKEN, grant.refresh_token)
        token.refresh_expires_at = now + refresh_ttl


def reveal(cipher: TokenCipher, token: ProviderToken, field: str) -> str | None:
    stored: str | None = getattr(token, TOKEN_FIELDS[field])
    if stored is None:
        return None
    try:
        return cipher.decrypt(stored, binding=token_binding(token.connection_id, field))
    except DecryptionError:
        raise TokenUnreadable() from None


async def load(session: AsyncSession, connection_id: uuid.UUID, *, lock: bool) -> Loaded:
    """The connection with its provider and tokens; ``lock`` takes the connection's row lock
    and re-reads everything, whatever this session had cached."""
    query = select(ProviderConnection).where(col(ProviderConnection.id) == connection_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    connection = await session.scalar(query)
    if connection is None:
        raise ProviderNotFound()
    provider = await session.get(Provider, connection.provider_id)
    if provider is None:
        raise ProviderNotFound()
    token = await session.scalar(
        select(ProviderToken)
        .where(col(ProviderToken.connection_id) == connection_id)
        .execution_options(populate_existing=True)
    )
    return Loaded(provider, connection, token)


def unusable(connection: ProviderConnection) -> ConnectionUnusable:
    messages = {
        ConnectionStatus.PENDING: "This connection has not been authorized yet.",
        ConnectionStatus.DISCONNECTED: "This connection was disconnected.",
        ConnectionStatus.NEEDS_REAUTH: "The provider no longer accepts this connection's login "
        "(the refresh token expired or was revoked).",
        ConnectionStatus.ERROR: f"The last authorization failed: {connection.last_error or '-'}",
    }
    status = ConnectionStatus(connection.status)
    reason = messages.get(status, f"This connection is {status.value}.")
    return ConnectionUnusable(status.value, reason, connection.provider_id)


def record_error(
    connection: ProviderConnection, code: str, message: str, *, status: ConnectionStatus | None
) -> None:
    connection.last_error_code = code
    connection.last_error = message[:500]
    connection.last_error_at = utcnow()
    if status is not None:
        connection.status = status.value


async def fresh_access_token(
    session: AsyncSession,
    deps: TokenDeps,
    connection_id: uuid.UUID,
    context: RequestContext,
    *,
    force: bool = False,
) -> str:
    """A live access token, refreshed first (at most once at a time) if it expires soon."""
    if not force:
        loaded = await load(session, connection_id, lock=False)
        token = _require_tokens(loaded)
        if _fresh_enough(token, deps.leeway):
            return await _reveal_access(session, deps, loaded, context)
    waited_since = utcnow()
    loaded = await load(session, connection_id, lock=True)
    try:
        value = await _refresh_locked(session, deps, loaded, context, waited_since, force=force)
    except ProblemError:
        await session.commit()  # keep the recorded failure; ends the transaction and the lock
        raise
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return value


def _require_tokens(loaded: Loaded) -> ProviderToken:
    if loaded.connection.status != ConnectionStatus.ACTIVE or loaded.token is None:
        raise unusable(loaded.connection)
    return loaded.token


def _fresh_enough(token: ProviderToken, leeway: timedelta) -> bool:
    return token.access_expires_at is not None and token.access_expires_at > utcnow() + leeway


async def _reveal_access(
    session: AsyncSession, deps: TokenDeps, loaded: Loaded, context: RequestContext
) -> str:
    assert loaded.token is not None
    try:
        value = reveal(deps.cipher, loaded.token, ACCESS_TOKEN)
    except TokenUnreadable:
        await _audit_unreadable(session, loaded, context)
        raise
    if value is None:
        raise TokenUnreadable()
    return value


async def _audit_unreadable(session: AsyncSession, loaded: Loaded, context: RequestContext) -> None:
    audit.record(
        session,
        context,
        AuditAction.TOKEN_UNREADABLE,
        AuditOutcome.FAILURE,
        provider_id=loaded.provider.id,
        user_id=loaded.provider.user_id,
    )
    await session.commit()


async def _refresh_locked(
    session: AsyncSession,
    deps: TokenDeps,
    loaded: Loaded,
    context: RequestContext,
    waited_since: datetime,
    *,
    force: bool,
) -> str:
    token = _require_tokens(loaded)
    connection, provider = loaded.connection, loaded.provider
    if not force and _fresh_enough(token, deps.leeway):
        return await _reveal_access(session, deps, loaded, context)  # refreshed while we waited
    if (
        connection.last_error_code == REFRESH_UNAVAILABLE
        and connection.last_error_at is not None
        and connection.last_error_at >= waited_since
    ):
        return await _still_valid_or_raise(session, deps, loaded, context)  # no pile-on
    now = utcnow()

    async def failed(
        code: str, message: str, status: ConnectionStatus | None, error: ProviderOAuthError | None
    ) -> None:
        if status is ConnectionStatus.NEEDS_REAUTH:  # the connection was active until now
            event = connection_event(provider, EventType.CONNECTION_NEEDS_REAUTH, reason=code)
            await emit(session, event)
        record_error(connection, code, message, status=status)
        audit.record(
            session,
            context,
            AuditAction.REFRESH_FAILED,
            AuditOutcome.FAILURE,
            provider_id=provider.id,
            user_id=provider.user_id,
            call=error.call if error else None,
            reason=code,
            provider_error=error.error if error else None,
        )

    try:
        refresh_token = reveal(deps.cipher, token, REFRESH_TOKEN)
    except TokenUnreadable:
        await _audit_unreadable(session, loaded, context)
        raise
    if refresh_token is None or token.refresh_expires_at is None or token.refresh_expires_at <= now:
        await failed(
            "refresh_token_expired",
            "The refresh token expired (Schwab allows 7 days after a login). "
            + reauthorize_hint(provider.id),
            ConnectionStatus.NEEDS_REAUTH,
            None,
        )
        raise unusable(connection)
    spec = deps.spec(provider)
    try:
        grant = await refresh_grant(deps.http, spec, refresh_token)
    except ProviderOAuthError as exc:
        if exc.permanent:
            await failed(
                "refresh_rejected",
                f"{spec.name} rejected the refresh ({exc.error}). " + reauthorize_hint(provider.id),
                ConnectionStatus.NEEDS_REAUTH,
                exc,
            )
            raise unusable(connection) from None
        await failed(
            REFRESH_UNAVAILABLE,
            f"{spec.name} could not refresh the token right now ({exc.error}); it will be "
            "retried on the next use.",
            None,
            exc,
        )
        return await _still_valid_or_raise(session, deps, loaded, context)
    store_grant(
        deps.cipher,
        token,
        grant,
        now,
        refresh_ttl=timedelta(seconds=spec.refresh_token_ttl_seconds),
        previous_refresh_token=refresh_token,
    )
    connection.status = ConnectionStatus.ACTIVE.value
    connection.last_refresh_at = now
    connection.last_error = connection.last_error_code = connection.last_error_at = None
    audit.record(
        session,
        context,
        AuditAction.TOKEN_REFRESHED,
        AuditOutcome.SUCCESS,
        provider_id=provider.id,
        user_id=provider.user_id,
        call=grant.call,
        expires_in=grant.expires_in,
        forced=force,
    )
    return grant.access_token


async def _still_valid_or_raise(
    session: AsyncSession, deps: TokenDeps, loaded: Loaded, context: RequestContext
) -> str:
    """After a transient failure the current access token is still good until it expires."""
    token = loaded.token
    if token is not None and token.access_expires_at and token.access_expires_at > utcnow():
        return await _reveal_access(session, deps, loaded, context)
    raise ProviderUnavailable(
        "The provider could not refresh this connection's access token right now. "
        "Try again in a few minutes; the connection is kept."
    )


async def reencrypt_all(session: AsyncSession, cipher: TokenCipher, context: RequestContext) -> int:
    """Re-encrypt every stored token under the current key, in one transaction; audited.

    All or nothing: a token that decrypts under no configured key aborts the rotation, so an
    old key is never dropped while something still depends on it.
    """
    tokens = list(await session.scalars(select(ProviderToken).with_for_update()))
    for token in tokens:
        for field in TOKEN_FIELDS:
            seal(cipher, token, field, reveal(cipher, token, field))
    audit.record(
        session,
        context,
        AuditAction.KEYS_ROTATED,
        AuditOutcome.SUCCESS,
        tokens=len(tokens),
        key_id=cipher.current_key_id,
    )
    await session.commit()
    return len(tokens)
