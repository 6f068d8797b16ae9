"""How strong a configured secret is: production refuses guessable ones at start-up.

A secret is text, so its strength is estimated from what it is made of: the characters it
uses (hex, base64url, or any printable) times its length must amount to at least 32 random
bytes, and a string with too few distinct characters ("aaaa…", "abab…") is refused however
long it is. `secrets.token_urlsafe(32)` (what `make setup` writes) passes with room to spare.
"""

from __future__ import annotations

import math
import string

import jwt

MIN_SECRET_BYTES = 32
# Text of 32 random bytes has this many distinct characters with overwhelming probability.
MIN_DISTINCT_CHARACTERS = 16
MIN_DISTINCT_KEY_BYTES = 16
GENERATE_HINT = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"

_HEX = frozenset(string.hexdigits)
_BASE64URL = frozenset(string.ascii_letters + string.digits + "-_=")
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/=")


def _bits_per_character(value: str) -> float:
    characters = set(value)
    if characters <= _HEX:
        return 4.0
    if characters <= _BASE64URL or characters <= _BASE64:
        return 6.0
    return math.log2(len(string.printable.strip()))


def weak_secret_reason(value: str) -> str | None:
    """Why `value` is not worth 32 random bytes, or None when it is."""
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"it uses fewer than {MIN_DISTINCT_CHARACTERS} distinct characters"
    estimated_bytes = len(value) * _bits_per_character(value) / 8
    if estimated_bytes < MIN_SECRET_BYTES:
        return (
            f"it is worth about {int(estimated_bytes)} random bytes; at least "
            f"{MIN_SECRET_BYTES} are needed"
        )
    return None


def weak_key_reason(key: bytes) -> str | None:
    """Why a 32-byte AES key does not look random (all zeros, a repeated pattern), or None."""
    if len(set(key)) < MIN_DISTINCT_KEY_BYTES:
        return f"it has fewer than {MIN_DISTINCT_KEY_BYTES} distinct bytes, so it is not random"
    return None


def jwt_key_problem(key: str, algorithm: str) -> str | None:
    """PyJWT's own verdict on an HMAC key: shorter than the hash's output (RFC 7518 §3.2)."""
    try:
        verifier = jwt.get_algorithm_by_name(algorithm)
    except NotImplementedError:
        return f"{algorithm!r} is not an algorithm PyJWT supports"
    return verifier.check_key_length(verifier.prepare_key(key))
