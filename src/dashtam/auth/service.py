"""Authentication logic; built per request with everything it needs handed in."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, and_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dashtam.auth import audit
from dashtam.auth.audit import RequestContext
from dashtam.auth.dependencies import owned_or_404, unauthorized
from dashtam.auth.mailer import Mailer, compose
from dashtam.auth.passwords import password_problems, passwords_for
from dashtam.auth.principal import Principal, PrincipalCache
from dashtam.auth.ratelimit import Lockout
from dashtam.auth.schemas import (
    LoginRequest,
    PasswordChange,
    PasswordResetConfirm,
    RegisterRequest,
    SessionOut,
    TokenPair,
)
from dashtam.auth.tokens import (
    AccessClaims,
    SessionStates,
    hash_token,
    issue_access_token,
    new_opaque_token,
)
from dashtam.core.config import Settings
from dashtam.core.errors import ProblemError
from dashtam.models.auth import AuthSession, EmailToken, EmailTokenPurpose, RefreshToken
from dashtam.models.user import User

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "The email or password is incorrect."
INVALID_REFRESH = "The refresh token is invalid or expired; sign in again."


def _now() -> datetime:
    return datetime.now(UTC)


def check_new_password(password: str, email: str) -> None:
    problems = password_problems(password, email)
    if problems:
        raise ProblemError(
            422,
            "The password is too weak: " + " ".join(problems),
            code="weak_password",
            extra={"problems": problems},
        )


@dataclass(frozen=True)
class MailLinks:
    """Where mailed tokens are redeemed; built from settings, never from the Host header."""

    verify_email: str
    reset_password: str


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        sessions: SessionStates,
        principals: PrincipalCache,
        lockout: Lockout,
        mailer: Mailer,
        links: MailLinks,
        context: RequestContext,
    ) -> None:
        self.session = session
        self.settings = settings
        self.sessions = sessions
        self.principals = principals
        self.lockout = lockout
        self.mailer = mailer
        self.links = links
        self.context = context
        self.passwords = passwords_for(settings)

    # ---- registration and sign-in ----------------------------------------------------------

    async def register(self, body: RegisterRequest) -> User:
        check_new_password(body.password, body.email)
        if await self._user_by_email(body.email) is not None:
            raise self._duplicate()
        user = User(
            email=body.email, name=body.name, password_hash=await self.passwords.hash(body.password)
        )
        self.session.add(user)
        try:
            await self.session.flush()
        except IntegrityError:  # registered concurrently between the check and the insert
            await self.session.rollback()
            raise self._duplicate() from None
        audit.record(self.session, self.context, "register", "success", user_id=user.id)
        token = await self._email_token(user, EmailTokenPurpose.VERIFY_EMAIL)
        await self.session.commit()
        await self._send_verification(user, token)
        return user

    async def login(self, body: LoginRequest) -> TokenPair:
        locked_for = await self.lockout.seconds_left(body.email)
        if locked_for:
            user = await self._user_by_email(body.email)
            await self._fail("login", user, email=body.email, reason="locked")
            raise self._locked(locked_for)
        user = await self._user_by_email(body.email)
        valid = await self.passwords.verify(user.password_hash if user else None, body.password)
        if user is None or not valid or not user.is_active:
            reason = "unknown_email" if user is None else "inactive" if valid else "wrong_password"
            if await self._wrong_password("login", user, body.email, reason):
                raise self._locked(self.settings.LOGIN_LOCKOUT_SECONDS)
            raise unauthorized(INVALID_CREDENTIALS, "invalid_credentials")
        if self.settings.REQUIRE_EMAIL_VERIFICATION and user.email_verified_at is None:
            await self._fail("login", user, email=body.email, reason="email_not_verified")
            raise self._unverified()
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.passwords.hash(body.password)
        await self.lockout.clear(body.email)
        auth_session = AuthSession(
            user_id=user.id, user_agent=self.context.user_agent, ip_address=self.context.ip
        )
        self.session.add(auth_session)
        await self.session.flush()
        audit.record(
            self.session,
            self.context,
            "login",
            "success",
            user_id=user.id,
            session_id=str(auth_session.id),
        )
        pair = self._issue(user.id, auth_session.id, self._session_end(_now()))
        await self.session.commit()
        return pair

    async def refresh(self, presented: str) -> TokenPair:
        """Exchange a refresh token once; a second use means it leaked: end the whole session.

        The user is checked again (an account deactivated, or unverified once verification is
        required, gets nothing new), and the session never outlives SESSION_LIFETIME_SECONDS
        from its sign-in: the new tokens expire by then at the latest.
        """
        token_hash = hash_token(presented)
        now = _now()
        claimed = (
            await self.session.execute(
                update(RefreshToken)
                .where(
                    col(RefreshToken.token_hash) == token_hash, col(RefreshToken.used_at).is_(None)
                )
                .values(used_at=now)
                .returning(col(RefreshToken.session_id), col(RefreshToken.expires_at))
            )
        ).first()
        if claimed is None:
            await self._detect_reuse(token_hash)
            raise unauthorized(INVALID_REFRESH)
        session_id, expires_at = claimed
        auth_session = await self.session.get(AuthSession, session_id)
        user = await self.session.get(User, auth_session.user_id) if auth_session else None
        ends = self._session_end(auth_session.created_at) if auth_session else now
        if (
            auth_session is None
            or auth_session.revoked_at is not None
            or expires_at <= now
            or ends <= now
            or user is None
            or not user.is_active
        ):
            await self.session.commit()
            raise unauthorized(INVALID_REFRESH)
        if self.settings.REQUIRE_EMAIL_VERIFICATION and user.email_verified_at is None:
            await self.session.commit()
            raise self._unverified()
        auth_session.last_used_at = now
        pair = self._issue(user.id, auth_session.id, ends)
        await self.session.commit()
        return pair

    async def _detect_reuse(self, token_hash: str) -> None:
        used = await self.session.scalar(
            select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash)
        )
        if used is None:
            return
        auth_session = await self.session.get(AuthSession, used.session_id)
        assert auth_session is not None  # the foreign key cascades
        revoked = await self._revoke(
            col(AuthSession.id) == auth_session.id, reason="refresh_token_reuse"
        )
        audit.record(
            self.session,
            self.context,
            "refresh.reuse",
            "denied",
            user_id=auth_session.user_id,
            session_id=str(auth_session.id),
            session_was_active=bool(revoked),
        )
        await self.session.commit()
        await self._deny(revoked)

    # ---- sessions ----------------------------------------------------------------------------

    async def logout(self, claims: AccessClaims) -> None:
        revoked = await self._revoke(col(AuthSession.id) == claims.session_id, reason="logout")
        audit.record(
            self.session,
            self.context,
            "logout",
            "success",
            user_id=claims.user_id,
            session_id=str(claims.session_id),
        )
        await self.session.commit()
        await self._deny(revoked)

    async def list_sessions(self, user: Principal, current: uuid.UUID) -> list[SessionOut]:
        rows = await self.session.scalars(
            select(AuthSession)
            .where(self._live_sessions(user.id))
            .order_by(col(AuthSession.last_used_at).desc())
        )
        return [
            SessionOut(
                id=row.id,
                user_agent=row.user_agent,
                ip_address=str(row.ip_address) if row.ip_address is not None else None,
                created_at=row.created_at,
                last_used_at=row.last_used_at,
                current=row.id == current,
            )
            for row in rows
        ]

    async def revoke_session(self, user: Principal, session_id: uuid.UUID) -> None:
        """Another user's session, or one already ended, is simply not found."""
        auth_session = owned_or_404(
            await self.session.get(AuthSession, session_id), user, "Session"
        )
        revoked = await self._revoke(
            col(AuthSession.id) == auth_session.id, reason="revoked_by_user"
        )
        if not revoked:
            raise ProblemError(404, "Session not found.", code="not_found")
        audit.record(
            self.session,
            self.context,
            "session.revoke",
            "success",
            user_id=user.id,
            session_id=str(session_id),
        )
        await self.session.commit()
        await self._deny(revoked)

    # ---- account -----------------------------------------------------------------------------

    async def rename(self, principal: Principal, name: str) -> User:
        user = await self._signed_in(principal)
        user.name = name
        await self.session.commit()
        await self._forget_principal(user.id)
        return user

    async def change_password(
        self, principal: Principal, claims: AccessClaims, body: PasswordChange
    ) -> None:
        """Keeps the current session; every other one ends, and so do pending reset tokens (a
        reset mailed earlier must not undo the change). A wrong current password counts towards
        the account's lockout, the same count as failed sign-ins."""
        user = await self._signed_in(principal)
        locked_for = await self.lockout.seconds_left(user.email)
        if locked_for:
            await self._fail("password.change", user, reason="locked")
            raise self._locked(locked_for)
        if not await self.passwords.verify(user.password_hash, body.current_password):
            if await self._wrong_password("password.change", user, user.email, "wrong_password"):
                raise self._locked(self.settings.LOGIN_LOCKOUT_SECONDS)
            raise ProblemError(403, "The current password is incorrect.", code="wrong_password")
        check_new_password(body.new_password, user.email)
        user.password_hash = await self.passwords.hash(body.new_password)
        await self._void_reset_tokens(user.id)
        revoked = await self._revoke(
            and_(col(AuthSession.user_id) == user.id, col(AuthSession.id) != claims.session_id),
            reason="password_changed",
        )
        audit.record(
            self.session,
            self.context,
            "password.change",
            "success",
            user_id=user.id,
            sessions_revoked=len(revoked),
        )
        await self.session.commit()
        await self._deny(revoked)
        await self.lockout.clear(user.email)

    async def verify_email(self, presented: str) -> User:
        user = await self._consume(presented, EmailTokenPurpose.VERIFY_EMAIL)
        if user.email_verified_at is None:
            user.email_verified_at = _now()
        audit.record(self.session, self.context, "email.verify", "success", user_id=user.id)
        await self.session.commit()
        await self._forget_principal(user.id)
        return user

    async def resend_verification(self, email: str) -> None:
        """Same outcome for any address; only an active, still unverified account gets mail.

        Earlier verification tokens stay valid until they expire: whichever mail the person
        opens works.
        """
        user = await self._user_by_email(email)
        if user is None or not user.is_active or user.email_verified_at is not None:
            return
        token = await self._email_token(user, EmailTokenPurpose.VERIFY_EMAIL)
        audit.record(self.session, self.context, "email.verify.resend", "success", user_id=user.id)
        await self.session.commit()
        await self._send_verification(user, token)

    async def request_password_reset(self, email: str) -> None:
        """Same outcome whether or not the address is known; only a known one gets mail."""
        user = await self._user_by_email(email)
        if user is None or not user.is_active:
            return
        token = await self._email_token(user, EmailTokenPurpose.PASSWORD_RESET)
        audit.record(
            self.session, self.context, "password.reset_request", "success", user_id=user.id
        )
        await self.session.commit()
        minutes = self.settings.PASSWORD_RESET_TOKEN_TTL_SECONDS // 60
        await self.mailer.send(
            compose(
                self.settings,
                user.email,
                "Reset your Dashtam password",
                f"Someone (hopefully you) asked to reset the password of {user.email}.\n\n"
                f"Reset token (valid for {minutes} minutes, once):\n{token}\n\n"
                f"Send it with your new password: POST {self.links.reset_password}"
                ' {"token": "<token>", "new_password": "<new password>"}\n\n'
                "If you did not ask for this, ignore this mail; your password stays the same.\n",
            )
        )

    async def confirm_password_reset(self, body: PasswordResetConfirm) -> None:
        """Sets the password, ends every session, and (the mailbox answered) verifies the email."""
        user = await self._consume(
            body.token, EmailTokenPurpose.PASSWORD_RESET, check=body.new_password
        )
        user.password_hash = await self.passwords.hash(body.new_password)
        if user.email_verified_at is None:
            user.email_verified_at = _now()
        await self._void_reset_tokens(user.id)
        revoked = await self._revoke(col(AuthSession.user_id) == user.id, reason="password_reset")
        audit.record(
            self.session,
            self.context,
            "password.reset",
            "success",
            user_id=user.id,
            sessions_revoked=len(revoked),
        )
        await self.session.commit()
        await self._deny(revoked)
        await self.lockout.clear(user.email)

    # ---- helpers -----------------------------------------------------------------------------

    async def _signed_in(self, principal: Principal) -> User:
        user = await self.session.get(User, principal.id)
        if user is None:
            raise unauthorized("The account no longer exists.")
        return user

    async def _forget_principal(self, user_id: uuid.UUID) -> None:
        """After commit, so the next request caches the changed user."""
        try:
            await self.principals.forget(user_id)
        except RedisError:
            logger.warning(
                "could not forget the cached user; it may show old details for a few minutes",
                extra={"user_id": str(user_id)},
            )

    async def _user_by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(col(User.email) == email))

    def _duplicate(self) -> ProblemError:
        return ProblemError(409, "An account with this email already exists.", code="email_taken")

    def _unverified(self) -> ProblemError:
        return ProblemError(
            403,
            "Verify your email address first: open the link in the mail we sent you.",
            code="email_not_verified",
        )

    def _session_end(self, signed_in_at: datetime | None) -> datetime:
        return (signed_in_at or _now()) + timedelta(seconds=self.settings.SESSION_LIFETIME_SECONDS)

    def _locked(self, seconds: int) -> ProblemError:
        minutes = max(1, -(-seconds // 60))
        return ProblemError(
            423,
            "Too many wrong passwords for this account; it is locked for "
            f"{minutes} minute(s). Try again later or reset your password.",
            code="account_locked",
            headers={"Retry-After": str(seconds)},
        )

    async def _wrong_password(
        self, action: str, user: User | None, email: str, reason: str
    ) -> bool:
        """Record a failed password check and count it towards the lockout of `email` (one
        count for sign-in and password change alike); True when this failure locks it."""
        locks = await self.lockout.record_failure(email)
        if locks:
            audit.record(
                self.session,
                self.context,
                "login.lockout",
                "denied",
                user_id=user.id if user else None,
                email=email,
                after=action,
                seconds=self.settings.LOGIN_LOCKOUT_SECONDS,
            )
        details = {"email": email} if action == "login" else {}
        await self._fail(action, user, reason=reason, **details)
        return locks

    async def _void_reset_tokens(self, user_id: uuid.UUID) -> None:
        """The password just changed: no reset mailed before may set it again."""
        await self.session.execute(
            update(EmailToken)
            .where(
                col(EmailToken.user_id) == user_id,
                col(EmailToken.purpose) == EmailTokenPurpose.PASSWORD_RESET.value,
                col(EmailToken.used_at).is_(None),
            )
            .values(used_at=_now())
        )

    async def _fail(self, action: str, user: User | None, **details: Any) -> None:
        """Record a refusal and commit it, since the caller is about to raise."""
        audit.record(
            self.session,
            self.context,
            action,
            "failure",
            user_id=user.id if user else None,
            **details,
        )
        await self.session.commit()

    def _issue(self, user_id: uuid.UUID, session_id: uuid.UUID, ends: datetime) -> TokenPair:
        """A new pair for the session, neither of which outlives the session's end."""
        refresh = new_opaque_token()
        now = _now()
        self.session.add(
            RefreshToken(
                session_id=session_id,
                token_hash=hash_token(refresh),
                expires_at=min(
                    now + timedelta(seconds=self.settings.REFRESH_TOKEN_TTL_SECONDS), ends
                ),
            )
        )
        access_ends = min(now + timedelta(seconds=self.settings.ACCESS_TOKEN_TTL_SECONDS), ends)
        return TokenPair(
            access_token=issue_access_token(self.settings, user_id, session_id, not_after=ends),
            refresh_token=refresh,
            expires_in=int((access_ends - now).total_seconds()),
        )

    def _live_sessions(self, user_id: uuid.UUID) -> ColumnElement[bool]:
        """Not revoked, refreshed recently enough that a refresh token can still be valid, and
        within its lifetime."""
        now = _now()
        return and_(
            col(AuthSession.user_id) == user_id,
            col(AuthSession.revoked_at).is_(None),
            col(AuthSession.last_used_at)
            > now - timedelta(seconds=self.settings.REFRESH_TOKEN_TTL_SECONDS),
            col(AuthSession.created_at)
            > now - timedelta(seconds=self.settings.SESSION_LIFETIME_SECONDS),
        )

    async def _revoke(self, where: ColumnElement[bool], *, reason: str) -> list[uuid.UUID]:
        result = await self.session.execute(
            update(AuthSession)
            .where(where, col(AuthSession.revoked_at).is_(None))
            .values(revoked_at=_now(), revoked_reason=reason)
            .returning(col(AuthSession.id))
        )
        return list(result.scalars())

    async def _deny(self, session_ids: list[uuid.UUID]) -> None:
        """After commit: their access tokens stop working at once, whatever Redis can take
        (see `SessionStates.revoke`)."""
        await self.sessions.revoke(session_ids)

    async def _email_token(self, user: User, purpose: EmailTokenPurpose) -> str:
        ttl = (
            self.settings.PASSWORD_RESET_TOKEN_TTL_SECONDS
            if purpose is EmailTokenPurpose.PASSWORD_RESET
            else self.settings.EMAIL_VERIFICATION_TOKEN_TTL_SECONDS
        )
        token = new_opaque_token()
        self.session.add(
            EmailToken(
                user_id=user.id,
                purpose=purpose.value,
                token_hash=hash_token(token),
                expires_at=_now() + timedelta(seconds=ttl),
            )
        )
        return token

    async def _consume(
        self, presented: str, purpose: EmailTokenPurpose, *, check: str | None = None
    ) -> User:
        """Use a mailed token once. With `check`, the new password is vetted before it is spent."""
        where = (
            col(EmailToken.token_hash) == hash_token(presented),
            col(EmailToken.purpose) == purpose.value,
            col(EmailToken.used_at).is_(None),
            col(EmailToken.expires_at) > _now(),
        )
        token = await self.session.scalar(select(EmailToken).where(*where))
        user = await self.session.get(User, token.user_id) if token else None
        if token is None or user is None:
            raise ProblemError(
                400, "The token is invalid, expired or already used.", code="invalid_token"
            )
        if check is not None:
            check_new_password(check, user.email)
        spent = await self.session.execute(
            update(EmailToken).where(*where).values(used_at=_now()).returning(col(EmailToken.id))
        )
        if spent.first() is None:  # a concurrent request used it first
            raise ProblemError(
                400, "The token is invalid, expired or already used.", code="invalid_token"
            )
        return user

    async def _send_verification(self, user: User, token: str) -> None:
        hours = self.settings.EMAIL_VERIFICATION_TOKEN_TTL_SECONDS // 3600
        await self.mailer.send(
            compose(
                self.settings,
                user.email,
                "Verify your Dashtam email address",
                f"Welcome to Dashtam, {user.name}.\n\n"
                f"Verification token (valid for {hours} hours, once):\n{token}\n\n"
                f"Confirm with: POST {self.links.verify_email}"
                ' {"token": "<token>"}\n',
            )
        )
