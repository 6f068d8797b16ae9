"""AES-256-GCM token encryption: bound to row and field, key ids, fail closed."""

from __future__ import annotations

import base64

import pytest

from dashtam.core.crypto import DecryptionError, TokenCipher, generate_key, token_binding
from dashtam.core.errors import ConfigurationError

# Fixed keys: parametrize ids must be the same in every xdist worker.
K1 = base64.urlsafe_b64encode(bytes(range(32))).decode()
K2 = base64.urlsafe_b64encode(bytes(range(32, 64))).decode()
BINDING = token_binding("c0ffee", "access_token")


def test_generated_keys_are_fresh_32_byte_keys() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32


def test_round_trip_and_format() -> None:
    cipher = TokenCipher.from_setting(f"k1:{K1}")
    stored = cipher.encrypt("I0.secret@", binding=BINDING)
    version, key_id, payload = stored.split(":")
    assert (version, key_id) == ("v1", "k1")
    assert "secret" not in stored
    assert len(base64.urlsafe_b64decode(payload)) == 12 + len("I0.secret@") + 16
    assert cipher.decrypt(stored, binding=BINDING) == "I0.secret@"


def test_nonces_are_random() -> None:
    cipher = TokenCipher.from_setting(f"k1:{K1}")
    assert cipher.encrypt("same", binding=BINDING) != cipher.encrypt("same", binding=BINDING)


@pytest.mark.parametrize(
    "binding",
    [token_binding("c0ffee", "refresh_token"), token_binding("another-row", "access_token")],
)
def test_a_ciphertext_moved_to_another_row_or_field_fails(binding: str) -> None:
    cipher = TokenCipher.from_setting(f"k1:{K1}")
    stored = cipher.encrypt("token", binding=BINDING)
    with pytest.raises(DecryptionError):
        cipher.decrypt(stored, binding=binding)


def test_tampering_fails_closed() -> None:
    cipher = TokenCipher.from_setting(f"k1:{K1}")
    prefix, payload = cipher.encrypt("token", binding=BINDING).rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 0x01
    tampered = f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    for value in (tampered, f"{prefix}:", "v1:k9:" + payload, "garbage", "v2" + tampered[2:]):
        with pytest.raises(DecryptionError):
            cipher.decrypt(value, binding=BINDING)


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    old = TokenCipher.from_setting(f"k1:{K1}")
    rotated = TokenCipher.from_setting(f"k2:{K2},k1:{K1}")
    stored_old = old.encrypt("token", binding=BINDING)
    assert rotated.decrypt(stored_old, binding=BINDING) == "token"
    assert rotated.encrypt("token", binding=BINDING).startswith("v1:k2:")
    with pytest.raises(DecryptionError):
        TokenCipher.from_setting(f"k2:{K2}").decrypt(stored_old, binding=BINDING)


def test_standard_base64_keys_are_accepted() -> None:
    standard = base64.b64encode(base64.urlsafe_b64decode(K1)).decode()
    a = TokenCipher.from_setting(f"k1:{K1}")
    b = TokenCipher.from_setting(f"k1:{standard}")
    assert b.decrypt(a.encrypt("token", binding=BINDING), binding=BINDING) == "token"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("change_me", "pairs"),
        (f"k1:{K1},k1:{K2}", "twice"),
        ("k1:c2hvcnQ=", "32 bytes"),
        (f"k-1:{K1}", "alphanumeric"),
    ],
)
def test_bad_key_settings_are_explained(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TokenCipher.from_setting(value)
