"""The authorization-code flow: start (state + PKCE in Redis) and finish (the callback).

``state`` is random, single use and bound to the user, the instance and its connection. Redis
holds it under its SHA-256 digest only, for ``OAUTH_STATE_TTL_SECONDS``; the newest state of a
connection is the only one accepted, and a consumed state leaves a marker so a replay is told
apart from a stranger's guess.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.auth.audit import RequestContext
from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
from dashtam.core.redis import RedisKeys
from dashtam.events.outbox import EventType, emit
from dashtam.models.base import utcnow
from dashtam.models.provider import ConnectionStatus, Provider, ProviderConnection, ProviderToken
from dashtam.providers import audit
from dashtam.providers.audit import AnonymousFailures, AuditAction, AuditOutcome
from dashtam.providers.errors import CallbackFailed, ProviderNotFound
from dashtam.providers.events import connection_event
from dashtam.providers.oauth import ProviderCall, ProviderOAuthError, exchange_code, pkce_pair
from dashtam.providers.registry import ProviderSpec, require_spec
from dashtam.providers.schemas import CallbackPayload
from dashtam.providers.tokens import load, record_error, store_grant

STATE_INVALID = (
    "This authorization link has expired or is not known. Start the connection again from "
    "Dashtam (links are valid for 10 minutes and can be used once)."
)
STATE_REPLAYED = (
    "This authorization link was already used, and each one works once. If you approved access "
    "a moment ago, the connection is probably complete: check its status in Dashtam "
    "(GET /api/v1/providers/{id}/authorization). Otherwise start the connection again."
)


@dataclass(frozen=True)
class OAuthRedis:
    """Where pending authorizations live; the key prefix is per app (and per test)."""

    redis: Redis
    keys: RedisKeys
    ttl_seconds: int

    def state_key(self, digest: str) -> str:
        return self.keys("oauth", "state", digest)

    def used_key(self, digest: str) -> str:
        return self.keys("oauth", "used", digest)

    def latest_key(self, connection_id: uuid.UUID) -> str:
        return self.keys("oauth", "latest", str(connection_id))

    @property
    def failures(self) -> AnonymousFailures:
        return AnonymousFailures(self.redis, self.keys)


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


async def start_authorization(
    session: AsyncSession,
    store: OAuthRedis,
    spec: ProviderSpec,
    provider: Provider,
    connection: ProviderConnection,
    context: RequestContext,
) -> tuple[str, datetime]:
    """A fresh authorization URL; any earlier, unused one for this connection stops working."""
    state = secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair() if spec.use_pkce else (None, None)
    digest = _digest(state)
    pending = {
        "user_id": str(provider.user_id),
        "provider_id": str(provider.id),
        "connection_id": str(connection.id),
        "code_verifier": verifier,
    }
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.set(store.state_key(digest), json.dumps(pending), ex=store.ttl_seconds)
        pipe.set(store.latest_key(connection.id), digest, ex=store.ttl_seconds)
        await pipe.execute()
    audit.record(
        session,
        context,
        AuditAction.AUTHORIZE_STARTED,
        AuditOutcome.SUCCESS,
        provider_id=provider.id,
        user_id=provider.user_id,
        pkce=verifier is not None,
        sandbox=spec.sandbox,
    )
    await session.commit()
    expires_at = utcnow() + timedelta(seconds=store.ttl_seconds)
    return spec.authorization_url(state, challenge), expires_at


@dataclass(frozen=True)
class PendingAuthorization:
    user_id: uuid.UUID
    provider_id: uuid.UUID
    connection_id: uuid.UUID
    code_verifier: str | None


async def _consume_state(
    session: AsyncSession, store: OAuthRedis, state: str, context: RequestContext
) -> PendingAuthorization:
    """Take the state out of Redis (GETDEL: exactly one caller can), or fail, audited."""
    digest = _digest(state)
    raw = await store.redis.getdel(store.state_key(digest))
    if raw is None:
        replayed_for = await store.redis.get(store.used_key(digest))
        reason = "state_replayed" if replayed_for else "state_unknown"
        await store.failures.count(
            context,
            AuditAction.CALLBACK_RECEIVED,
            reason,
            provider_id=uuid.UUID(replayed_for) if replayed_for else None,
        )
        raise CallbackFailed(400, reason, STATE_REPLAYED if replayed_for else STATE_INVALID)
    data = json.loads(raw)
    pending = PendingAuthorization(
        user_id=uuid.UUID(data["user_id"]),
        provider_id=uuid.UUID(data["provider_id"]),
        connection_id=uuid.UUID(data["connection_id"]),
        code_verifier=data["code_verifier"],
    )
    await store.redis.set(store.used_key(digest), str(pending.provider_id), ex=store.ttl_seconds)
    latest = await store.redis.get(store.latest_key(pending.connection_id))
    if latest != digest:
        await _deny(session, context, pending, "state_superseded")
        raise CallbackFailed(
            400,
            "state_superseded",
            "A newer connection attempt was started for this account, so this one was "
            "cancelled. Finish the newest attempt, or start again from Dashtam.",
        )
    await store.redis.delete(store.latest_key(pending.connection_id))
    return pending


async def _deny(
    session: AsyncSession, context: RequestContext, pending: PendingAuthorization, reason: str
) -> None:
    audit.record(
        session,
        context,
        AuditAction.CALLBACK_RECEIVED,
        AuditOutcome.DENIED,
        provider_id=pending.provider_id,
        user_id=pending.user_id,
        reason=reason,
    )
    await session.commit()


def _fail_connection(connection: ProviderConnection, code: str, message: str) -> None:
    """Record why; a connection that still has working tokens keeps its status."""
    keep = connection.status in (ConnectionStatus.ACTIVE, ConnectionStatus.NEEDS_REAUTH)
    record_error(connection, code, message, status=None if keep else ConnectionStatus.ERROR)


def _exchange_failure(spec: ProviderSpec, exc: ProviderOAuthError) -> tuple[int, str, str]:
    if exc.error == "invalid_grant":
        return (
            400,
            "code_rejected",
            f"{spec.name} did not accept the authorization code (it is single use and expires "
            "after about a minute). Start the connection again from Dashtam.",
        )
    if exc.call.http_status is None or exc.call.http_status >= 500 or exc.call.http_status == 429:
        status = f"HTTP {exc.call.http_status}" if exc.call.http_status else "no answer"
        return (
            502,
            "provider_unavailable",
            f"{spec.name} is not answering correctly right now ({status}). Nothing was "
            "connected; try again in a few minutes.",
        )
    return (
        400,
        "exchange_rejected",
        f"{spec.name} refused the token exchange ({exc.error}). Check that the client id, "
        "secret and redirect URI registered with the provider match Dashtam's settings.",
    )


async def complete_callback(
    session: AsyncSession,
    store: OAuthRedis,
    http: httpx.AsyncClient,
    cipher: TokenCipher,
    settings: Settings,
    payload: CallbackPayload,
    context: RequestContext,
) -> tuple[Provider, ProviderConnection]:
    """Check the state, exchange the code, store the tokens: the connection becomes active.

    Every failure is recorded on the connection and audited, then raised as a
    ``CallbackFailed`` whose detail tells the person what happened and what to do.
    """
    pending = await _consume_state(session, store, payload.state, context)
    try:
        loaded = await load(session, pending.connection_id, lock=True)
    except ProviderNotFound:
        loaded = None  # deleted since the authorization started
    if (
        loaded is None
        or loaded.provider.id != pending.provider_id
        or loaded.provider.user_id != pending.user_id
    ):
        await _deny(session, context, pending, "state_mismatch")
        raise CallbackFailed(400, "state_mismatch", STATE_INVALID)
    provider, connection = loaded.provider, loaded.connection
    spec = require_spec(settings, provider.provider_key)

    def audited(
        action: AuditAction, outcome: AuditOutcome, call: ProviderCall | None, **details: object
    ) -> None:
        audit.record(
            session,
            context,
            action,
            outcome,
            provider_id=provider.id,
            user_id=provider.user_id,
            call=call,
            **details,
        )

    async def fail(status: int, code: str, message: str) -> NoReturn:
        _fail_connection(connection, code, message)
        await session.commit()
        raise CallbackFailed(status, code, message)

    ok = payload.code is not None and payload.error is None
    audited(
        AuditAction.CALLBACK_RECEIVED,
        AuditOutcome.SUCCESS if ok else AuditOutcome.FAILURE,
        None,
        provider_error=payload.error,
    )
    if payload.error == "access_denied":
        await fail(
            400,
            "consent_denied",
            f"You declined access at {spec.name}, so nothing was connected. To connect, start "
            "again from Dashtam and choose Allow.",
        )
    if payload.code is None or payload.error is not None:
        await fail(
            400,
            "provider_error",
            f"{spec.name} did not complete the authorization ({payload.error or 'no code'}). "
            "Start the connection again from Dashtam.",
        )
    try:
        grant = await exchange_code(http, spec, payload.code, pending.code_verifier)
    except ProviderOAuthError as exc:
        status, code, message = _exchange_failure(spec, exc)
        audited(
            AuditAction.TOKEN_EXCHANGED,
            AuditOutcome.FAILURE,
            exc.call,
            reason=code,
            provider_error=exc.error,
        )
        await fail(status, code, message)
    now = utcnow()
    token = loaded.token or ProviderToken(connection_id=connection.id, access_token_encrypted="")
    store_grant(
        cipher,
        token,
        grant,
        now,
        refresh_ttl=timedelta(seconds=spec.refresh_token_ttl_seconds),
        previous_refresh_token=None,
    )
    session.add(token)
    reauthorized = connection.connected_at is not None
    connection.status = ConnectionStatus.ACTIVE.value
    connection.connected_at = connection.last_refresh_at = now
    connection.last_error = connection.last_error_code = connection.last_error_at = None
    audited(
        AuditAction.TOKEN_EXCHANGED,
        AuditOutcome.SUCCESS,
        grant.call,
        expires_in=grant.expires_in,
        pkce=pending.code_verifier is not None,
    )
    kind = EventType.CONNECTION_REAUTHORIZED if reauthorized else EventType.CONNECTION_CONNECTED
    await emit(
        session, connection_event(provider, kind, refresh_expires_at=token.refresh_expires_at)
    )
    await session.commit()
    return provider, connection


async def reject_forged_callback(store: OAuthRedis, context: RequestContext) -> CallbackFailed:
    """Count a call to the internal endpoint without the shared secret (never its value)."""
    await store.failures.count(context, AuditAction.CALLBACK_REJECTED, "bad_secret")
    return CallbackFailed(
        401, "callback_secret_invalid", "This endpoint is for Dashtam's callback server only."
    )
