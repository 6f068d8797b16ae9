"""Access JWTs: pinned algorithm, required claims, expiry; opaque tokens and their hashes."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from tests.test_config import TestSettings, get_test_settings

from dashtam.auth.tokens import (
    AccessTokenVerifier,
    InvalidTokenError,
    decode_access_token,
    hash_token,
    issue_access_token,
    new_opaque_token,
)

KEY = "unit-test-signing-key-" + "k" * 48  # 70 bytes: long enough for HS512 too


@pytest.fixture
def settings() -> TestSettings:
    return get_test_settings(JWT_SECRET_KEY=KEY, ACCESS_TOKEN_TTL_SECONDS=300)


def _claims(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


def test_issued_token_decodes_to_its_claims(settings: TestSettings) -> None:
    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    token = issue_access_token(settings, user_id, session_id)
    claims = decode_access_token(settings, token)
    assert (claims.user_id, claims.session_id) == (user_id, session_id)
    assert claims.expires_at - datetime.now(UTC) <= timedelta(seconds=300)
    raw = jwt.decode(token, KEY, algorithms=["HS256"])
    assert set(raw) == {"sub", "sid", "exp", "iat", "jti"}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_each_token_has_its_own_jti(settings: TestSettings) -> None:
    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    first = decode_access_token(settings, issue_access_token(settings, user_id, session_id))
    second = decode_access_token(settings, issue_access_token(settings, user_id, session_id))
    assert first.jti != second.jti


def test_expired_token_is_refused(settings: TestSettings) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    token = jwt.encode(_claims(exp=past, iat=past - timedelta(minutes=5)), KEY, algorithm="HS256")
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, token)


def test_tampered_payload_is_refused(settings: TestSettings) -> None:
    header, payload, signature = issue_access_token(settings, uuid.uuid4(), uuid.uuid4()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(uuid.uuid4())
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, f"{header}.{forged}.{signature}")


def test_unsigned_alg_none_token_is_refused(settings: TestSettings) -> None:
    token = jwt.encode(_claims(), key=None, algorithm="none")
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, token)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_the_right_key(
    settings: TestSettings, algorithm: str
) -> None:
    token = jwt.encode(_claims(), KEY, algorithm=algorithm)
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, token)


def test_token_signed_with_another_key_is_refused(settings: TestSettings) -> None:
    token = jwt.encode(_claims(), "another-key-" + "x" * 40, algorithm="HS256")
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, token)


@pytest.mark.parametrize("missing", ["sub", "sid", "exp", "iat", "jti"])
def test_every_claim_is_required(settings: TestSettings, missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, jwt.encode(claims, KEY, algorithm="HS256"))


@pytest.mark.parametrize("bad", [{"sub": "not-a-uuid"}, {"sid": 42}])
def test_ids_must_be_uuids(settings: TestSettings, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, jwt.encode(_claims(**bad), KEY, algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_refused(settings: TestSettings, garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        decode_access_token(settings, garbage)


def test_verifier_remembers_a_token_but_still_enforces_its_expiry(settings: TestSettings) -> None:
    expires = int(time.time()) + 1
    token = jwt.encode(_claims(exp=expires), KEY, algorithm="HS256")
    verifier = AccessTokenVerifier(settings)
    assert verifier.verify(token) is verifier.verify(token)
    time.sleep(expires - time.time() + 0.05)
    with pytest.raises(InvalidTokenError):
        verifier.verify(token)


def test_verifier_refuses_a_token_whose_signature_was_altered(settings: TestSettings) -> None:
    token = issue_access_token(settings, uuid.uuid4(), uuid.uuid4())
    verifier = AccessTokenVerifier(settings)
    verifier.verify(token)
    head, body, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidTokenError):
        verifier.verify(f"{head}.{body}.{flipped}")


def test_opaque_tokens_are_256_bit_and_unique() -> None:
    tokens = {new_opaque_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(base64.urlsafe_b64decode(t + "=")) == 32 for t in tokens)


def test_hash_is_sha256_hex_and_never_the_token() -> None:
    token = new_opaque_token()
    digest = hash_token(token)
    assert digest == hash_token(token)
    assert len(digest) == 64
    assert token not in digest
    assert int(digest, 16) >= 0
