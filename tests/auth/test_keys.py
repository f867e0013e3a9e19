"""The server's access-token signing key (fhirhub.auth.keys): an ES256 (P-256) key kept
owner-only, whose ``kid`` is its RFC 7638 JWK thumbprint
(https://www.rfc-editor.org/rfc/rfc7638#section-3), published as a JWK Set for anyone
checking a token (SMART Backend Services,
https://hl7.org/fhir/smart-app-launch/backend-services.html).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm

from fhirhub.auth.keys import ALGORITHM, load_or_create_signing_key, thumbprint

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
    "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
    "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQF"
    "h6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_key_file_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "auth-key.pem"
    load_or_create_signing_key(path)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_created_key_is_a_p256_key(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "k.pem")
    assert key.private.curve.name == "secp256r1"
    assert ALGORITHM == "ES256"


def test_key_reloaded_from_its_file_has_the_same_kid(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    first = load_or_create_signing_key(path)
    content = path.read_bytes()
    again = load_or_create_signing_key(path)
    assert again.kid == first.kid
    assert path.read_bytes() == content  # not replaced


def test_two_new_keys_have_different_kids(tmp_path: Path) -> None:
    assert (load_or_create_signing_key(tmp_path / "a.pem").kid
            != load_or_create_signing_key(tmp_path / "b.pem").kid)


def test_existing_p256_key_file_is_used_as_it_is(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "k.pem"
    path.write_bytes(pem(private))
    key = load_or_create_signing_key(path)
    assert key.public.public_numbers() == private.public_key().public_numbers()


def test_kid_is_the_rfc7638_thumbprint_of_the_public_key(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "k.pem")
    jwk = json.loads(ECAlgorithm.to_jwk(key.public))
    assert key.kid == thumbprint(jwk)
    assert key.kid == thumbprint(key.jwk())


def test_thumbprint_of_the_rfc7638_example_key() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert thumbprint(jwk) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members_and_their_order() -> None:
    bare = {"e": "AQAB", "kty": "RSA", "n": RFC7638_N}
    decorated = {"use": "sig", "n": RFC7638_N, "kid": "x", "kty": "RSA", "e": "AQAB",
                 "alg": "RS512"}
    assert thumbprint(bare) == thumbprint(decorated) == RFC7638_THUMBPRINT


def test_ec_thumbprint_hashes_crv_kty_x_y_only() -> None:
    import base64
    import hashlib

    jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    canonical = (f'{{"crv":"{jwk["crv"]}","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}')
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    assert thumbprint({**jwk, "kid": "ignored"}) == expected.decode()


def test_thumbprint_of_an_unsupported_key_type_is_refused() -> None:
    with pytest.raises(KeyError):
        thumbprint({"kty": "oct", "k": "c2VjcmV0"})


def test_published_jwk_is_the_public_half_with_kid_use_and_alg(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "k.pem")
    jwk = key.jwk()
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert jwk["kid"] == key.kid and jwk["use"] == "sig" and jwk["alg"] == "ES256"
    assert "d" not in jwk


def other_key(kind: str) -> bytes:
    if kind == "P-384":
        return pem(ec.generate_private_key(ec.SECP384R1()))
    if kind == "RSA":
        return pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return pem(ed25519.Ed25519PrivateKey.generate())


@pytest.mark.parametrize("kind", ["P-384", "RSA", "Ed25519"])
def test_key_file_of_another_key_type_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(other_key(kind))
    with pytest.raises(ValueError, match="does not hold an ECDSA P-256 private key") as info:
        load_or_create_signing_key(path)
    assert str(path) in str(info.value)


def test_key_file_that_is_not_a_pem_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("not a key")
    with pytest.raises(ValueError, match="is not an unencrypted PEM private key"):
        load_or_create_signing_key(path)


def test_encrypted_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ValueError, match="is not an unencrypted PEM private key"):
        load_or_create_signing_key(path)
