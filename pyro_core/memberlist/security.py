# memberlist's symmetric encryption: the keyring and the AES-GCM envelope around packets and streams.
# Owns: key validation and rotation (primary first, every key tried on decrypt), the envelope
# `[vsn][12-byte nonce][ciphertext + 16-byte tag]` and its two versions (0 = PKCS7-padded, 1 = plain).
# Must not know: message types, labels, framing or where the bytes travel. The caller supplies the
# associated data (the packet label, or the stream prefix + label) and, in tests, the nonce.
from __future__ import annotations

import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_SIZES",
    "MAX_ENCRYPTION_VERSION",
    "NONCE_SIZE",
    "TAG_SIZE",
    "DecryptError",
    "Keyring",
    "encrypt_overhead",
    "encrypted_length",
    "validate_key",
]

KEY_SIZES = (16, 24, 32)  # AES-128, AES-192, AES-256
VERSION_SIZE = 1
NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16  # AES block, the PKCS7 unit of version 0
MAX_ENCRYPTION_VERSION = 1  # 0 = AES-GCM + PKCS7 padding (protocol 1), 1 = AES-GCM, no padding


class DecryptError(ValueError):
    """An envelope no installed key could open (or that is not an envelope at all)."""


def validate_key(key: bytes) -> None:
    """Raise ValueError unless ``key`` is an AES key of 16, 24 or 32 bytes."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) not in KEY_SIZES:
        raise ValueError(f"key size must be 16, 24 or 32 bytes, got {len(key)}")


def encrypted_length(vsn: int, plaintext_len: int) -> int:
    """Size of the envelope for ``plaintext_len`` bytes (version byte, nonce, padding, tag)."""
    _check_version(vsn)
    padding = BLOCK_SIZE - plaintext_len % BLOCK_SIZE if vsn == 0 else 0
    return VERSION_SIZE + NONCE_SIZE + plaintext_len + padding + TAG_SIZE


def encrypt_overhead(vsn: int) -> int:
    """Worst-case bytes the envelope adds (memberlist budgets piggyback space with this): 45 or 29."""
    _check_version(vsn)
    return VERSION_SIZE + NONCE_SIZE + TAG_SIZE + (BLOCK_SIZE if vsn == 0 else 0)


def _check_version(vsn: int) -> None:
    if vsn not in (0, 1):
        raise ValueError(f"unsupported encryption version {vsn}")


class Keyring:
    """The installed keys, primary first: the primary encrypts, every key is tried to decrypt.

    Mirrors memberlist's ``Keyring``: adding an installed key is a no-op, ``use_key`` promotes an
    installed key to primary, removing the primary is refused, removing an unknown key is a no-op.
    A keyring always holds at least one key; pass ``keyring=None`` to the codecs for no encryption.
    """

    __slots__ = ("_ciphers", "_keys")

    def __init__(self, keys: Iterable[bytes], primary: int = 0) -> None:
        keys = [bytes(k) for k in keys]
        if not keys:
            raise ValueError("a keyring needs at least one key")
        if not 0 <= primary < len(keys):
            raise ValueError(f"primary index {primary} out of range for {len(keys)} keys")
        for key in keys:
            validate_key(key)
        self._keys: list[bytes] = []
        self._ciphers: list[AESGCM] = []
        self._install(keys, keys[primary])

    def _install(self, keys: list[bytes], primary: bytes) -> None:
        ordered = [primary]
        for key in keys:
            if key not in ordered:
                ordered.append(key)
        self._keys = ordered
        self._ciphers = [AESGCM(k) for k in ordered]

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every installed key, the primary first."""
        return tuple(self._keys)

    @property
    def primary_key(self) -> bytes:
        return self._keys[0]

    def add_key(self, key: bytes) -> None:
        """Install ``key`` (validated) as a secondary key; the primary is unchanged."""
        key = bytes(key)
        validate_key(key)
        if key not in self._keys:
            self._install([*self._keys, key], self._keys[0])

    def use_key(self, key: bytes) -> None:
        """Make an installed key the primary; ValueError if it is not installed."""
        key = bytes(key)
        if key not in self._keys:
            raise ValueError("requested key is not in the keyring")
        self._install(self._keys, key)

    def remove_key(self, key: bytes) -> None:
        """Uninstall a secondary key; ValueError for the primary; unknown keys are ignored."""
        key = bytes(key)
        if key == self._keys[0]:
            raise ValueError("removing the primary key is not allowed")
        if key in self._keys:
            self._install([k for k in self._keys if k != key], self._keys[0])

    def encrypt(self, plaintext: bytes, aad: bytes, vsn: int = 1, *, nonce: bytes | None = None) -> bytes:
        """Seal ``plaintext`` with the primary key: ``[vsn][nonce][ciphertext + tag]``.

        ``nonce`` defaults to 12 fresh random bytes; inject one only for deterministic tests.
        """
        _check_version(vsn)
        if nonce is None:
            nonce = os.urandom(NONCE_SIZE)
        elif len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
        data = bytes(plaintext)
        if vsn == 0:
            pad = BLOCK_SIZE - len(data) % BLOCK_SIZE
            data += bytes([pad]) * pad
        sealed = self._ciphers[0].encrypt(bytes(nonce), data, bytes(aad))
        return bytes([vsn]) + bytes(nonce) + sealed

    def decrypt(self, data: bytes, aad: bytes) -> bytes:
        """Open an envelope with the first key that authenticates it; DecryptError if none does."""
        data = bytes(data)
        if not data:
            raise DecryptError("cannot decrypt empty payload")
        vsn = data[0]
        if vsn > MAX_ENCRYPTION_VERSION:
            raise DecryptError(f"unsupported encryption version {vsn}")
        if len(data) < encrypted_length(vsn, 0):
            raise DecryptError(f"payload is too small to decrypt: {len(data)} bytes")
        nonce = data[VERSION_SIZE : VERSION_SIZE + NONCE_SIZE]
        sealed = data[VERSION_SIZE + NONCE_SIZE :]
        aad = bytes(aad)
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            return _unpad(plain) if vsn == 0 else plain
        raise DecryptError("no installed keys could decrypt the message")

    def __repr__(self) -> str:  # never show key material
        return f"Keyring({len(self._keys)} keys)"


def _unpad(plain: bytes) -> bytes:
    pad = plain[-1] if plain else 0
    if not 1 <= pad <= BLOCK_SIZE or pad > len(plain):
        raise DecryptError(f"invalid PKCS7 padding byte {pad}")
    return plain[:-pad]
