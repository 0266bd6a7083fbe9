"""Token encryption keys rotate (several keys, the first encrypts) and every ciphertext is bound to its account."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from services.mapping.adapters.procore_links import TokenCipher, UndecryptableSecret
from services.mapping.config import MappingSettings

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
BASE = {
    "kafka_bootstrap_servers": "k:9092",
    "database_url": "postgresql://x",
    "procore_base_url": "http://p",
    "procore_login_url": "http://login",
    "procore_client_id": "c",
    "procore_client_secret": "s",
}


def test_a_ciphertext_copied_into_another_accounts_row_does_not_decrypt_there() -> None:
    cipher = TokenCipher([NEW])
    sealed = cipher.encrypt("access-token-of-a", "acc-a")
    with pytest.raises(UndecryptableSecret, match="another account"):
        cipher.decrypt(sealed, "acc-b")
    with pytest.raises(UndecryptableSecret):
        cipher.rotate(sealed, "acc-b")  # rotation does not launder it either
    assert cipher.decrypt(sealed, "acc-a") == "access-token-of-a"


def test_the_binding_is_authenticated_not_a_label() -> None:
    """Flipping bytes of the sealed account (or anything else) breaks the HMAC: no key opens it."""
    cipher = TokenCipher([NEW])
    sealed = cipher.encrypt("x", "acc-a")
    body = sealed.removeprefix("v2.")
    tampered = "v2." + body[:-8] + ("A" if body[-8] != "A" else "B") + body[-7:]
    with pytest.raises(UndecryptableSecret):
        cipher.decrypt(tampered, "acc-a")


def test_several_keys_the_first_encrypts_every_one_decrypts() -> None:
    under_old = TokenCipher([OLD]).encrypt("refresh-1", "acc-a")
    both = TokenCipher([NEW, OLD])
    assert both.decrypt(under_old, "acc-a") == "refresh-1"
    fresh = both.encrypt("refresh-2", "acc-a")
    assert TokenCipher([NEW]).decrypt(fresh, "acc-a") == "refresh-2"
    with pytest.raises(UndecryptableSecret):
        TokenCipher([OLD]).decrypt(fresh, "acc-a")


def test_rotate_re_encrypts_under_the_first_key_once() -> None:
    both = TokenCipher([NEW, OLD])
    under_old = TokenCipher([OLD]).encrypt("refresh-1", "acc-a")
    rotated = both.rotate(under_old, "acc-a")
    assert rotated is not None
    assert TokenCipher([NEW]).decrypt(rotated, "acc-a") == "refresh-1"
    assert both.rotate(rotated, "acc-a") is None, "already current: nothing to do (idempotent)"


def test_a_ciphertext_from_before_binding_still_opens_and_rotate_binds_it() -> None:
    legacy = Fernet(OLD.encode()).encrypt(b"legacy-token").decode()  # how tokens were stored before
    both = TokenCipher([NEW, OLD])
    assert both.decrypt(legacy, "acc-a") == "legacy-token"
    bound = both.rotate(legacy, "acc-a")
    assert bound is not None
    assert bound.startswith("v2.")
    assert TokenCipher([NEW]).decrypt(bound, "acc-a") == "legacy-token"
    with pytest.raises(UndecryptableSecret):
        both.decrypt(bound, "acc-b")
    # Even under the first key already, an unbound ciphertext is rewritten (bound).
    assert TokenCipher([OLD]).rotate(legacy, "acc-a") is not None


def test_keys_from_settings_new_list_first_then_the_older_single_key() -> None:
    settings = MappingSettings.model_validate(
        BASE | {"token_encryption_keys": f" {NEW} , {OLD}", "token_encryption_key": OLD}
    )
    assert settings.encryption_keys == [NEW, OLD]
    assert MappingSettings.model_validate(BASE | {"token_encryption_key": OLD}).encryption_keys == [OLD]
    assert (
        MappingSettings.model_validate(BASE).encryption_keys == []
    )  # the service refuses to start: tests/unit/test_settings.py
    assert NEW not in repr(settings)
    assert OLD not in repr(settings)


def test_a_key_that_is_not_a_fernet_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="token_encryption_keys"):
        MappingSettings.model_validate(BASE | {"token_encryption_keys": f"{NEW},not-a-key"})
