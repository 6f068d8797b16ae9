"""AES-256-GCM encryption of provider tokens, with key ids so keys can be rotated.

A stored value is ``v1:<key id>:<base64url(nonce || ciphertext+tag)>``. The associated data
names the row and field the value belongs to, so a ciphertext copied to another connection or
column fails to decrypt: the cipher fails closed instead of handing out someone else's token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dashtam.core.errors import ConfigurationError

FORMAT_VERSION = "v1"
NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """A stored value cannot be decrypted: unknown key, wrong binding, or tampered."""


def _decode_key(key_id: str, encoded: str) -> bytes:
    """Standard or URL-safe base64 (``make setup`` writes URL-safe), exactly 32 bytes."""
    text = encoded.strip().replace("+", "-").replace("/", "_")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigurationError(
            f"TOKEN_ENCRYPTION_KEYS: key {key_id!r} is not base64 of 32 bytes. "
            "Generate one with `dashtam keys generate`."
        )
    return raw


def parse_keys(value: str) -> dict[str, bytes]:
    """Parse ``kid:base64key,kid2:...``; order is kept (the first one encrypts)."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key_id, separator, encoded = item.partition(":")
        key_id = key_id.strip()
        if not separator or not key_id or not key_id.isalnum():
            raise ConfigurationError(
                "TOKEN_ENCRYPTION_KEYS must be comma-separated `<key id>:<base64 key>` pairs "
                "with alphanumeric key ids, e.g. `k2:<new key>,k1:<old key>`; run `make setup`."
            )
        if key_id in keys:
            raise ConfigurationError(f"TOKEN_ENCRYPTION_KEYS names key {key_id!r} twice.")
        keys[key_id] = _decode_key(key_id, encoded)
    if not keys:
        raise ConfigurationError(
            "TOKEN_ENCRYPTION_KEYS is empty; run `make setup` to generate a key."
        )
    return keys


@dataclass(frozen=True)
class TokenCipher:
    """Encrypts under the current (first) key; decrypts under any configured key."""

    current_key_id: str
    keys: dict[str, AESGCM]

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        parsed = parse_keys(value)
        return cls(next(iter(parsed)), {kid: AESGCM(raw) for kid, raw in parsed.items()})

    def encrypt(self, plaintext: str, *, binding: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keys[self.current_key_id].encrypt(nonce, plaintext.encode(), binding.encode())
        payload = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{FORMAT_VERSION}:{self.current_key_id}:{payload}"

    def decrypt(self, stored: str, *, binding: str) -> str:
        version, key_id, payload = _parts(stored)
        aead = self.keys.get(key_id)
        if version != FORMAT_VERSION or aead is None:
            raise DecryptionError(f"Unknown format or key id {key_id!r}.")
        try:
            raw = base64.urlsafe_b64decode(payload)
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], binding.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise DecryptionError("Ciphertext does not authenticate for this binding.") from exc


def _parts(stored: str) -> tuple[str, str, str]:
    """A stored value is `<format>:<key id>:<base64 nonce+ciphertext>`."""
    version, _, rest = stored.partition(":")
    key_id, _, payload = rest.partition(":")
    return version, key_id, payload


def stored_key_id(stored: str) -> str:
    """The id of the key a stored value needs (what a backup's manifest lists)."""
    return _parts(stored)[1]


def key_fingerprint(key: bytes) -> str:
    """Tells two keys apart without revealing either (SHA-256 of a 256-bit random key)."""
    return hashlib.sha256(b"dashtam token key\0" + key).hexdigest()


def token_binding(connection_id: object, field: str) -> str:
    """The associated data of one token field of one connection."""
    return f"provider_tokens/{connection_id}/{field}"


def generate_key() -> str:
    """A new random key, base64url, for TOKEN_ENCRYPTION_KEYS."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()
