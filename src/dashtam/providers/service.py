"""Provider instances and their connections: the logic behind the thin router.

Functions take what they touch (session, settings, HTTP client, cipher) as arguments. The one
other packages call is ``get_access_token``: a live access token for a connection, refreshed
first when it is about to expire.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from dashtam.auth.audit import RequestContext
from dashtam.auth.dependencies import owned_or_404
from dashtam.auth.principal import Principal
from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
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
from dashtam.providers.audit import AuditAction, AuditOutcome, background_context
from dashtam.providers.events import connection_event
from dashtam.providers.registry import catalog, require_spec
from dashtam.providers.schemas import (
    AuthorizationStatus,
    ProviderOut,
    ProviderTypeOut,
)
from dashtam.providers.tokens import TokenDeps, fresh_access_token, load

REFRESH_WARNING_WINDOW = timedelta(hours=24)


@dataclass
class Instance:
    """A provider instance with its connection (always present: created together)."""

    provider: Provider
    connection: ProviderConnection

    def out(self) -> ProviderOut:
        return ProviderOut(
            id=self.provider.id,
            provider_key=self.provider.provider_key,
            alias=self.provider.alias,
            status=self.connection.status,
            created_at=self.provider.created_at,
            updated_at=self.provider.updated_at,
        )


def provider_types(settings: Settings) -> list[ProviderTypeOut]:
    return [
        ProviderTypeOut(
            key=spec.key,
            name=spec.name,
            auth_type=spec.auth_type,
            configured=bool(spec.client_id and spec.client_secret),
            mode="sandbox" if spec.sandbox else "live",
            pkce=spec.use_pkce,
        )
        for spec in catalog(settings)
    ]


def _alias_taken(alias: str) -> ProblemError:
    return ProblemError(409, f"You already have a provider named {alias!r}.", code="alias_taken")


async def _alias_in_use(
    session: AsyncSession, user: Principal, alias: str, exclude: uuid.UUID | None = None
) -> bool:
    query = select(col(Provider.id)).where(
        col(Provider.user_id) == user.id, col(Provider.alias) == alias
    )
    if exclude is not None:
        query = query.where(col(Provider.id) != exclude)
    return (await session.scalar(query)) is not None


async def _flush_or_alias_taken(session: AsyncSession, alias: str) -> None:
    """The unique constraint still decides when two requests race past the pre-check."""
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise _alias_taken(alias) from None


async def create_instance(
    session: AsyncSession,
    settings: Settings,
    user: Principal,
    provider_key: str,
    alias: str,
    context: RequestContext,
) -> Instance:
    require_spec(settings, provider_key)
    if await _alias_in_use(session, user, alias):
        raise _alias_taken(alias)
    provider = Provider(user_id=user.id, provider_key=provider_key, alias=alias)
    session.add(provider)
    await _flush_or_alias_taken(session, alias)  # the models have no relationships to order by
    connection = ProviderConnection(provider_id=provider.id)
    session.add(connection)
    audit.record(
        session,
        context,
        AuditAction.PROVIDER_CREATED,
        AuditOutcome.SUCCESS,
        provider_id=provider.id,
        user_id=user.id,
        provider_key=provider_key,
    )
    await session.commit()
    await session.refresh(provider)
    return Instance(provider, connection)


async def list_instances(session: AsyncSession, user: Principal) -> list[Instance]:
    rows = await session.execute(
        select(Provider, ProviderConnection)
        .join(ProviderConnection, col(ProviderConnection.provider_id) == Provider.id)
        .where(col(Provider.user_id) == user.id)
        .order_by(col(Provider.created_at), col(Provider.alias))
    )
    return [Instance(provider, connection) for provider, connection in rows.all()]


async def get_instance(session: AsyncSession, user: Principal, provider_id: uuid.UUID) -> Instance:
    provider = owned_or_404(await session.get(Provider, provider_id), user, "Provider")
    connection = await session.scalar(
        select(ProviderConnection).where(col(ProviderConnection.provider_id) == provider.id)
    )
    assert connection is not None, "a provider always has its connection"
    return Instance(provider, connection)


async def rename_instance(
    session: AsyncSession, user: Principal, instance: Instance, alias: str, context: RequestContext
) -> Instance:
    if await _alias_in_use(session, user, alias, exclude=instance.provider.id):
        raise _alias_taken(alias)
    instance.provider.alias = alias
    audit.record(
        session,
        context,
        AuditAction.PROVIDER_UPDATED,
        AuditOutcome.SUCCESS,
        provider_id=instance.provider.id,
        user_id=user.id,
    )
    await _flush_or_alias_taken(session, alias)
    await session.commit()
    await session.refresh(instance.provider)
    return instance


async def delete_instance(
    session: AsyncSession, instance: Instance, context: RequestContext
) -> None:
    """Delete the instance, its connection and tokens; its audit trail stays."""
    audit.record(
        session,
        context,
        AuditAction.PROVIDER_DELETED,
        AuditOutcome.SUCCESS,
        provider_id=instance.provider.id,
        user_id=instance.provider.user_id,
        alias=instance.provider.alias,
    )
    event = connection_event(instance.provider, EventType.CONNECTION_DISCONNECTED, deleted=True)
    await emit(session, event)
    await session.delete(instance.provider)
    await session.commit()


async def authorization_status(session: AsyncSession, instance: Instance) -> AuthorizationStatus:
    connection = instance.connection
    token = await session.scalar(
        select(ProviderToken).where(col(ProviderToken.connection_id) == connection.id)
    )
    refresh_expires_at = token.refresh_expires_at if token else None
    warning = None
    if (
        connection.status == ConnectionStatus.ACTIVE
        and refresh_expires_at is not None
        and refresh_expires_at - utcnow() < REFRESH_WARNING_WINDOW
    ):
        warning = (
            "The refresh token expires within 24 hours (Schwab allows 7 days per login). "
            "Connect again soon to avoid an interruption."
        )
    return AuthorizationStatus(
        provider_id=instance.provider.id,
        status=connection.status,
        connected_at=connection.connected_at,
        access_expires_at=token.access_expires_at if token else None,
        refresh_expires_at=refresh_expires_at,
        last_refresh_at=connection.last_refresh_at,
        last_error=connection.last_error,
        last_error_code=connection.last_error_code,
        last_error_at=connection.last_error_at,
        warning=warning,
    )


async def disconnect(session: AsyncSession, instance: Instance, context: RequestContext) -> None:
    """Destroy the tokens (under the refresh lock, so no refresh resurrects them)."""
    loaded = await load(session, instance.connection.id, lock=True)
    if loaded.token is not None:
        await session.delete(loaded.token)
    was = loaded.connection.status
    loaded.connection.status = ConnectionStatus.DISCONNECTED.value
    audit.record(
        session,
        context,
        AuditAction.DISCONNECTED,
        AuditOutcome.SUCCESS,
        provider_id=instance.provider.id,
        user_id=instance.provider.user_id,
        had_tokens=loaded.token is not None,
    )
    if was != ConnectionStatus.DISCONNECTED:
        event = connection_event(
            instance.provider, EventType.CONNECTION_DISCONNECTED, deleted=False
        )
        await emit(session, event)
    await session.commit()


async def get_access_token(
    session_factory: async_sessionmaker[AsyncSession],
    http_client: httpx.AsyncClient,
    settings: Settings,
    connection_id: uuid.UUID,
    *,
    context: RequestContext | None = None,
) -> str:
    """A live access token for ``connection_id``, refreshed first if it expires soon.

    Safe to call from many tasks and processes at once: one refresh reaches the provider.
    Raises ``ConnectionUnusable`` (409; status in ``connection_status``) when the person must
    connect again, ``ProviderUnavailable`` (502) when the provider is failing, and
    ``TokenUnreadable`` (500) when the stored tokens do not decrypt.
    """
    deps = TokenDeps(
        http_client, settings, TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    )
    async with session_factory() as session:
        return await fresh_access_token(
            session, deps, connection_id, context or background_context()
        )
