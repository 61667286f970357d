# Tests of pyro_core.memberlist.security: memberlist's keyring and AES-GCM envelope.
# Owns: the envelope layout checked against published AES-GCM test vectors (McGrew & Viega, the GCM
# spec's test cases 1-4, and a 256-bit one), versions 0 (PKCS7) and 1, every key size, wrong keys,
# tampering, associated data, and key rotation with memberlist's Keyring rules. Interop of the
# envelope with Go (memberlist.NewKeyring + crypto/cipher) runs in test_wire.py's packet/stream tests.
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_core.memberlist.security import (
    DecryptError,
    Keyring,
    encrypt_overhead,
    encrypted_length,
    validate_key,
)

K16, K24, K32 = bytes(range(16)), bytes(range(24)), bytes(range(32))

# (key, nonce, plaintext, ciphertext + tag), from "The Galois/Counter Mode of Operation (GCM)",
# McGrew & Viega, appendix B, test cases 1, 2, 3 (AES-128) and 15 (AES-256); no associated data.
TC3_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308")
TC3_NONCE = bytes.fromhex("cafebabefacedbaddecaf888")
TC3_PLAIN = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
    "b16aedf5aa0de657ba637b391aafd255"
)
VECTORS = [
    (bytes(16), bytes(12), b"", bytes.fromhex("58e2fccefa7e3061367f1d57a4e7455a")),
    (bytes(16), bytes(12), bytes(16),
     bytes.fromhex("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf")),
    (TC3_KEY, TC3_NONCE, TC3_PLAIN, bytes.fromhex(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05"
        "1ba30b396a0aac973d58e091473f5985" "4d5c2af327cd64a62cf35abd2ba6fab4")),
    (TC3_KEY + TC3_KEY, TC3_NONCE, TC3_PLAIN, bytes.fromhex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
        "c5f61e6393ba7a0abcc9f662898015ad" "b094dac5d93471bdec1a502270e3cc6c")),
]  # fmt: skip
# Test case 4: the same key, nonce and shorter plaintext, with associated data.
TC4_AAD = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
TC4_SEALED = bytes.fromhex(
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05"
    "1ba30b396a0aac973d58e091" "5bc94fbc3221a5db94fae95ae7121a47"
)  # fmt: skip


@pytest.mark.parametrize(("key", "nonce", "plain", "sealed"), VECTORS)
def test_version_1_envelope_matches_published_gcm_vectors(
    key: bytes, nonce: bytes, plain: bytes, sealed: bytes
) -> None:
    ring = Keyring([key])
    data = ring.encrypt(plain, b"", vsn=1, nonce=nonce)
    assert data == b"\x01" + nonce + sealed
    assert len(data) == encrypted_length(1, len(plain))
    assert ring.decrypt(data, b"") == plain


def test_associated_data_is_authenticated() -> None:
    ring = Keyring([TC3_KEY])
    data = ring.encrypt(TC3_PLAIN[:60], TC4_AAD, nonce=TC3_NONCE)
    assert data == b"\x01" + TC3_NONCE + TC4_SEALED
    assert ring.decrypt(data, TC4_AAD) == TC3_PLAIN[:60]
    with pytest.raises(DecryptError):
        ring.decrypt(data, TC4_AAD[:-1])
    with pytest.raises(DecryptError):
        ring.decrypt(data, b"")


def test_version_0_pads_with_pkcs7_before_sealing() -> None:
    ring = Keyring([bytes(16)])
    data = ring.encrypt(b"", b"", vsn=0, nonce=bytes(12))
    # a whole block of padding (16 × 0x10) is sealed: check against AES-GCM of that block directly
    assert data[0] == 0 and len(data) == 1 + 12 + 16 + 16 == encrypted_length(0, 0)
    assert data == b"\x00" + Keyring([bytes(16)]).encrypt(bytes([16]) * 16, b"", vsn=1, nonce=bytes(12))[1:]
    assert ring.decrypt(data, b"") == b""
    for n in range(0, 49):
        plain = bytes(range(n))
        sealed = ring.encrypt(plain, b"aad", vsn=0)
        assert len(sealed) == encrypted_length(0, n) == 1 + 12 + (n // 16 + 1) * 16 + 16
        assert ring.decrypt(sealed, b"aad") == plain


def test_bad_padding_is_refused() -> None:
    ring = Keyring([K16])
    for pad_block in (bytes(16), bytes([17]) * 16, bytes(15) + b"\x20"):
        data = b"\x00" + ring.encrypt(pad_block, b"", vsn=1)[1:]
        with pytest.raises(DecryptError, match="padding"):
            ring.decrypt(data, b"")


@pytest.mark.parametrize("key", [K16, K24, K32])
@pytest.mark.parametrize("vsn", [0, 1])
def test_each_key_size_and_version_round_trips(key: bytes, vsn: int) -> None:
    ring = Keyring([key])
    for plain in (b"", b"x", bytes(range(256)) * 10):
        data = ring.encrypt(plain, b"label", vsn=vsn)
        assert data[0] == vsn and len(data) == encrypted_length(vsn, len(plain))
        assert ring.decrypt(data, b"label") == plain


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([K16, K24, K32]), st.binary(max_size=300), st.binary(max_size=40), st.sampled_from([0, 1])
)
def test_round_trip_property(key: bytes, plain: bytes, aad: bytes, vsn: int) -> None:
    ring = Keyring([key])
    assert ring.decrypt(ring.encrypt(plain, aad, vsn=vsn), aad) == plain


def test_wrong_key_and_tampering_are_detected() -> None:
    data = Keyring([K16]).encrypt(b"secret", b"")
    with pytest.raises(DecryptError, match="no installed keys"):
        Keyring([K24, K32]).decrypt(data, b"")
    with pytest.raises(DecryptError, match="no installed keys"):
        Keyring([bytes(range(1, 17))]).decrypt(data, b"")
    for i in range(1, len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptError):
            Keyring([K16]).decrypt(bytes(tampered), b"")


def test_malformed_envelopes() -> None:
    ring = Keyring([K16])
    with pytest.raises(DecryptError, match="empty"):
        ring.decrypt(b"", b"")
    with pytest.raises(DecryptError, match="version 2"):
        ring.decrypt(b"\x02" + bytes(40), b"")
    with pytest.raises(DecryptError, match="too small"):
        ring.decrypt(b"\x01" + bytes(27), b"")
    with pytest.raises(DecryptError, match="too small"):
        ring.decrypt(b"\x00" + bytes(43), b"")  # version 0 needs at least one padded block
    assert issubclass(DecryptError, ValueError)


def test_nonces_are_fresh_unless_injected() -> None:
    ring = Keyring([K16])
    assert len({ring.encrypt(b"same", b"")[1:13] for _ in range(50)}) == 50
    assert ring.encrypt(b"same", b"", nonce=bytes(12)) == ring.encrypt(b"same", b"", nonce=bytes(12))
    with pytest.raises(ValueError, match="nonce"):
        ring.encrypt(b"x", b"", nonce=bytes(11))
    with pytest.raises(ValueError, match="version"):
        ring.encrypt(b"x", b"", vsn=2)


def test_overheads_match_memberlist() -> None:
    assert encrypt_overhead(1) == 29 and encrypt_overhead(0) == 45
    assert encrypted_length(1, 100) == 129 and encrypted_length(0, 100) == 1 + 12 + 112 + 16
    with pytest.raises(ValueError):
        encrypt_overhead(2)


@pytest.mark.parametrize("size", [0, 1, 8, 15, 17, 23, 25, 31, 33, 64])
def test_key_sizes_other_than_16_24_32_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="16, 24 or 32"):
        validate_key(bytes(size))
    with pytest.raises(ValueError, match="16, 24 or 32"):
        Keyring([bytes(size)])
    with pytest.raises(ValueError, match="16, 24 or 32"):
        Keyring([K16]).add_key(bytes(size))


def test_keyring_construction() -> None:
    assert Keyring([K16, K24, K32]).keys == (K16, K24, K32)
    assert Keyring([K16, K24, K32], primary=2).keys == (K32, K16, K24)
    assert Keyring([K16, K24, K16]).keys == (K16, K24)  # duplicates collapse
    assert Keyring([K24], 0).primary_key == K24
    with pytest.raises(ValueError, match="at least one"):
        Keyring([])
    with pytest.raises(ValueError, match="out of range"):
        Keyring([K16], primary=1)
    with pytest.raises(TypeError):
        Keyring(["not bytes"])  # type: ignore[list-item]
    assert repr(Keyring([K16, K24, K32])) == "Keyring(3 keys)"  # key material never shown


def test_key_rotation_follows_memberlist_rules() -> None:
    ring = Keyring([K16])
    old = ring.encrypt(b"sealed with K16", b"")
    # 1. install the new key everywhere: the primary is unchanged, adding twice is a no-op
    ring.add_key(K32)
    ring.add_key(K32)
    ring.add_key(K16)
    assert ring.keys == (K16, K32)
    assert ring.encrypt(b"x", b"", nonce=bytes(12)) == Keyring([K16]).encrypt(b"x", b"", nonce=bytes(12))
    # 2. switch the primary: new messages use K32, old ones still open
    ring.use_key(K32)
    assert ring.keys == (K32, K16) and ring.primary_key == K32
    new = ring.encrypt(b"sealed with K32", b"")
    assert Keyring([K32]).decrypt(new, b"") == b"sealed with K32"
    assert ring.decrypt(old, b"") == b"sealed with K16"
    with pytest.raises(ValueError, match="not in the keyring"):
        ring.use_key(K24)
    # 3. retire the old key: the primary cannot go, unknown keys are ignored
    with pytest.raises(ValueError, match="primary"):
        ring.remove_key(K32)
    ring.remove_key(K24)
    ring.remove_key(K16)
    assert ring.keys == (K32,)
    with pytest.raises(DecryptError):
        ring.decrypt(old, b"")
    assert ring.decrypt(new, b"") == b"sealed with K32"


def test_secondary_keys_are_tried_after_the_primary() -> None:
    sender = Keyring([K24])
    receiver = Keyring([K16, K32, K24])
    assert receiver.decrypt(sender.encrypt(b"m", b"a", vsn=0), b"a") == b"m"
    assert receiver.decrypt(sender.encrypt(b"m", b"a", vsn=1), b"a") == b"m"
