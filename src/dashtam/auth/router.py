"""`/auth/*` and `/users/me*`: thin routes over `AuthService`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request, status

from dashtam.auth.audit import RequestContext
from dashtam.auth.dependencies import (
    Authentication,
    CurrentUser,
    DbSession,
    user_rate_limited,
)
from dashtam.auth.mailer import BackgroundMailer, Mailer, get_mailer
from dashtam.auth.ratelimit import Limit, Lockout, rate_limited
from dashtam.auth.schemas import (
    LoginRequest,
    Message,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    SessionOut,
    TokenPair,
    UserOut,
    UserUpdate,
    VerificationResendRequest,
    VerifyEmailRequest,
)
from dashtam.auth.service import AuthService, MailLinks
from dashtam.core.config import Settings

router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"])


async def get_auth_service(
    request: Request,
    session: DbSession,
    background: BackgroundTasks,
    mailer: Annotated[Mailer, Depends(get_mailer)],
) -> AuthService:
    state = request.app.state
    settings: Settings = state.settings
    links = MailLinks(
        verify_email=settings.app_base_url + request.app.url_path_for("verify_email"),
        reset_password=settings.app_base_url + request.app.url_path_for("confirm_password_reset"),
    )
    return AuthService(
        session,
        settings,
        state.session_states,
        state.principals,
        Lockout(state.redis, state.redis_keys, settings),
        BackgroundMailer(mailer, background),
        links,
        RequestContext.from_request(request),
    )


Service = Annotated[AuthService, Depends(get_auth_service)]


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(rate_limited(Limit.REGISTER))],
)
async def register(body: RegisterRequest, service: Service) -> UserOut:
    """Create an account and mail a verification token."""
    return UserOut.model_validate(await service.register(body))


@router.post("/login", dependencies=[Depends(rate_limited(Limit.LOGIN))])
async def login(body: LoginRequest, service: Service) -> TokenPair:
    return await service.login(body)


@router.post("/refresh", dependencies=[Depends(rate_limited(Limit.REFRESH))])
async def refresh(body: RefreshRequest, service: Service) -> TokenPair:
    """Exchange a refresh token for a new pair; the presented one is spent."""
    return await service.refresh(body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(auth: Authentication, service: Service) -> None:
    """End this session: its refresh token and access token stop working."""
    await service.logout(auth.claims)


@router.get("/sessions")
async def list_sessions(auth: Authentication, service: Service) -> list[SessionOut]:
    return await service.list_sessions(auth.user, auth.claims.session_id)


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(session_id: uuid.UUID, user: CurrentUser, service: Service) -> None:
    await service.revoke_session(user, session_id)


@router.post(
    "/verify-email", name="verify_email", dependencies=[Depends(rate_limited(Limit.ANONYMOUS))]
)
async def verify_email(body: VerifyEmailRequest, service: Service) -> UserOut:
    return UserOut.model_validate(await service.verify_email(body.token))


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(rate_limited(Limit.VERIFY_EMAIL_RESEND))],
)
async def resend_verification(body: VerificationResendRequest, service: Service) -> Message:
    """The same answer whether the address is unknown, unverified or already verified."""
    await service.resend_verification(body.email)
    return Message(
        detail="If an account with this address still needs verifying, a new verification "
        "token has been mailed to it."
    )


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(rate_limited(Limit.PASSWORD_RESET))],
)
async def request_password_reset(body: PasswordResetRequest, service: Service) -> Message:
    """The same answer whether or not the address has an account."""
    await service.request_password_reset(body.email)
    return Message(detail="If an account uses this address, a reset token has been mailed to it.")


@router.post(
    "/password-reset/confirm",
    name="confirm_password_reset",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(rate_limited(Limit.PASSWORD_RESET))],
)
async def confirm_password_reset(body: PasswordResetConfirm, service: Service) -> None:
    """Set a new password with a mailed token; every session ends."""
    await service.confirm_password_reset(body)


@users_router.get("/me")
async def read_me(user: CurrentUser) -> UserOut:
    return user


@users_router.patch("/me")
async def update_me(body: UserUpdate, user: CurrentUser, service: Service) -> UserOut:
    return UserOut.model_validate(await service.rename(user, body.name))


@users_router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(user_rate_limited(Limit.PASSWORD_CHANGE))],
)
async def change_password(body: PasswordChange, auth: Authentication, service: Service) -> None:
    """Change the password; every other session ends."""
    await service.change_password(auth.user, auth.claims, body)
