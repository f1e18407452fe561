"""Key-encryption keys of the registry's encryption at rest, and the envelope that carries a blob's data key.

The keyring's first key wraps new data keys and every key unwraps (old ones stay during a rotation);
envelopes store a KEK's fingerprint, never the key. How blobs are sealed is in ``encryption.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aiaas_services.runtime.errors import DigestMismatch, FailedPrecondition

KEY_BYTES = 32


class EncryptionConfigError(ValueError):
    """The encryption settings cannot work (no keys in the file, a key that is not 32 bytes, ...)."""


class KeyUnavailable(FailedPrecondition):
    """A blob's data key cannot be unwrapped: its KEK is not in this registry's keyring."""


def generate_key() -> str:
    """A fresh KEK, base64 (what a key file line or AIAAS_REGISTRY_ENCRYPTION_KEYS holds)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    """A KEK's public fingerprint, stored in envelopes so the right key is picked (never the key itself)."""
    return hashlib.sha256(b"aiaas-kek-id\0" + key).hexdigest()[:16]


class Keyring:
    """Key-encryption keys: the first wraps new data keys, all of them unwrap (old ones during a rotation)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise EncryptionConfigError("the encryption keyring is empty")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise EncryptionConfigError(f"a key-encryption key must be {KEY_BYTES} bytes, got {len(key)}")
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self.primary = key_id(keys[0])

    @property
    def ids(self) -> list[str]:
        """Fingerprints of the keys, the primary first."""
        return list(self._keys)

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """Keys as base64, one per line or comma-separated; ``#`` starts a comment."""
        keys = []
        for line in text.replace(",", "\n").splitlines():
            item = line.split("#", 1)[0].strip()
            if not item:
                continue
            try:
                keys.append(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError):
                raise EncryptionConfigError(f"{source}: a key is not valid base64") from None
        if not keys:
            raise EncryptionConfigError(f"{source} holds no keys (generate one: aiaas-registry generate-key)")
        try:
            return cls(keys)
        except EncryptionConfigError as exc:
            raise EncryptionConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_settings(cls, key_file: str, keys: str) -> Keyring | None:
        """The keyring the settings name, or None when encryption is off (both empty)."""
        if key_file:
            path = Path(key_file).expanduser()
            try:
                text = path.read_text()
            except OSError as exc:
                raise EncryptionConfigError(f"cannot read the encryption key file {path}: {exc.strerror}") from None
            return cls.parse(text, f"encryption key file {path}")
        if keys:
            return cls.parse(keys, "AIAAS_REGISTRY_ENCRYPTION_KEYS")
        return None

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes, bytes]:
        """(KEK id, nonce, wrapped DEK) under the primary key."""
        nonce = os.urandom(12)
        return self.primary, nonce, self._keys[self.primary].encrypt(nonce, dek, aad)

    def unwrap(self, kek: str, nonce: bytes, wrapped: bytes, aad: bytes, what: str) -> bytes:
        """The DEK, or KeyUnavailable when its KEK is not here / DigestMismatch when the envelope was altered."""
        cipher = self._keys.get(kek)
        if cipher is None:
            raise KeyUnavailable(
                f"{what} is encrypted with key {kek}, which this registry's keyring does not hold (it has "
                f"{', '.join(self.ids)}); configure that key in encryption_key_file. Nothing was served."
            )
        try:
            return cipher.decrypt(nonce, wrapped, aad)
        except InvalidTag:
            raise DigestMismatch(f"the key envelope of {what} fails authentication (altered or corrupt)") from None


@dataclass(frozen=True)
class Envelope:
    """A blob's wrapped data key and the layout needed to decrypt it."""

    blob_id: str
    kek: str
    nonce: bytes
    wrapped: bytes
    segment_bytes: int
    size: int

    def aad(self, digest: str) -> bytes:
        """What the wrapped key is bound to: this blob, its id and layout (a swapped envelope fails)."""
        return f"aiaas-dek-v1|{digest}|{self.blob_id}|{self.segment_bytes}|{self.size}".encode()

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": 1,
                "blob_id": self.blob_id,
                "kek": self.kek,
                "nonce": base64.b64encode(self.nonce).decode(),
                "wrapped_dek": base64.b64encode(self.wrapped).decode(),
                "segment_bytes": self.segment_bytes,
                "size": self.size,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> Envelope:
        try:
            doc = json.loads(data)
            return cls(
                doc["blob_id"],
                doc["kek"],
                base64.b64decode(doc["nonce"]),
                base64.b64decode(doc["wrapped_dek"]),
                int(doc["segment_bytes"]),
                int(doc["size"]),
            )
        except (ValueError, KeyError, TypeError):
            raise DigestMismatch(f"the key envelope of {what} is unreadable (corrupt)") from None

    def rewrapped(self, keyring: Keyring, digest: str) -> Envelope:
        """The same data key wrapped by the keyring's primary KEK."""
        dek = keyring.unwrap(self.kek, self.nonce, self.wrapped, self.aad(digest), f"blob {digest}")
        kek, nonce, wrapped = keyring.wrap(dek, self.aad(digest))
        return Envelope(self.blob_id, kek, nonce, wrapped, self.segment_bytes, self.size)
