"""Provider HTTP endpoints: thin wrappers over ``service`` and ``flow``."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Response, status

from dashtam.auth.dependencies import CurrentUser, DbSession, get_current_user
from dashtam.auth.ratelimit import Limit, RateLimiter, get_rate_limiter
from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
from dashtam.providers import audit, flow, service
from dashtam.providers.dependencies import (
    Cipher,
    Context,
    Deps,
    HttpClient,
    OAuthStore,
    OwnedInstance,
    SettingsDep,
    require_callback_secret,
)
from dashtam.providers.registry import check_redirect_uri, require_spec
from dashtam.providers.schemas import (
    AuditLogOut,
    AuditLogPage,
    AuthorizationStart,
    AuthorizationStatus,
    CallbackPayload,
    CallbackResult,
    ProviderCreate,
    ProviderOut,
    ProviderTypeOut,
    ProviderUpdate,
)
from dashtam.providers.tokens import fresh_access_token

router = APIRouter(prefix="/providers", tags=["providers"])
internal_router = APIRouter(
    prefix="/internal/oauth",
    tags=["internal"],
    include_in_schema=False,
    # Before the body is even parsed: a forged call learns nothing about the payload format.
    dependencies=[Depends(require_callback_secret)],
)


def install(app: FastAPI, settings: Settings, api_prefix: str) -> None:
    """Check the provider settings (fail at start-up, not at first login) and add the routes."""
    check_redirect_uri(settings)
    app.state.token_cipher = TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    app.include_router(router, prefix=api_prefix)
    app.include_router(internal_router, prefix=api_prefix)


@router.get("/types", dependencies=[Depends(get_current_user)])
async def provider_types(settings: SettingsDep) -> list[ProviderTypeOut]:
    return service.provider_types(settings)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_provider(
    body: ProviderCreate,
    user: CurrentUser,
    session: DbSession,
    settings: SettingsDep,
    context: Context,
) -> ProviderOut:
    instance = await service.create_instance(
        session, settings, user, body.provider_key, body.alias, context
    )
    return instance.out()


@router.get("")
async def list_providers(user: CurrentUser, session: DbSession) -> list[ProviderOut]:
    return [instance.out() for instance in await service.list_instances(session, user)]


@router.get("/{provider_id}")
async def get_provider(instance: OwnedInstance) -> ProviderOut:
    return instance.out()


@router.patch("/{provider_id}")
async def update_provider(
    body: ProviderUpdate,
    instance: OwnedInstance,
    user: CurrentUser,
    session: DbSession,
    context: Context,
) -> ProviderOut:
    return (await service.rename_instance(session, user, instance, body.alias, context)).out()


@router.delete("/{provider_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_provider(
    instance: OwnedInstance, session: DbSession, context: Context
) -> Response:
    await service.delete_instance(session, instance, context)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{provider_id}/authorization")
async def start_authorization(
    instance: OwnedInstance,
    session: DbSession,
    settings: SettingsDep,
    store: OAuthStore,
    context: Context,
) -> AuthorizationStart:
    spec = require_spec(settings, instance.provider.provider_key)
    url, expires_at = await flow.start_authorization(
        session, store, spec, instance.provider, instance.connection, context
    )
    return AuthorizationStart(authorization_url=url, expires_at=expires_at)


@router.get("/{provider_id}/authorization")
async def authorization_status(instance: OwnedInstance, session: DbSession) -> AuthorizationStatus:
    return await service.authorization_status(session, instance)


@router.post("/{provider_id}/authorization/refresh")
async def refresh_authorization(
    instance: OwnedInstance, session: DbSession, deps: Deps, context: Context
) -> AuthorizationStatus:
    await fresh_access_token(session, deps, instance.connection.id, context, force=True)
    return await service.authorization_status(session, instance)


@router.delete("/{provider_id}/authorization")
async def disconnect(
    instance: OwnedInstance, session: DbSession, context: Context
) -> AuthorizationStatus:
    await service.disconnect(session, instance, context)
    return await service.authorization_status(session, instance)


@router.get("/{provider_id}/audit-logs")
async def audit_logs(
    instance: OwnedInstance,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditLogPage:
    rows, total = await audit.list_for_provider(
        session, instance.provider.id, limit=limit, offset=offset
    )
    items = [AuditLogOut.model_validate(row) for row in rows]
    return AuditLogPage(items=items, total=total, limit=limit, offset=offset)


@internal_router.post("/callback")
async def oauth_callback(
    body: CallbackPayload,
    session: DbSession,
    settings: SettingsDep,
    store: OAuthStore,
    http: HttpClient,
    cipher: Cipher,
    context: Context,
    limiter: Annotated[RateLimiter, Depends(get_rate_limiter)],
) -> CallbackResult:
    """Called by the callback server only (shared secret); answers with what to show.

    The callback server names the browser it serves, so the rate limit and the audit trail
    see that address rather than the callback server's own.
    """
    browser = replace(context, ip=str(body.client_ip)) if body.client_ip else context
    await limiter.hit(Limit.OAUTH_CALLBACK, browser.ip or "unknown")
    provider, connection = await flow.complete_callback(
        session, store, http, cipher, settings, body, browser
    )
    return CallbackResult(
        status=connection.status,
        message=f"Your account “{provider.alias}” is connected. You can close this window.",
        provider_id=provider.id,
    )
