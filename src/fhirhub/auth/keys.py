"""The key this server signs its access tokens with, and its public JWK Set.

An ECDSA P-256 key (tokens are ES256 JWTs), kept in a PEM file created owner-only on
first start (``FHIRHUB_AUTH_SIGNING_KEY``; by default beside the SQLite database, or
``data/auth-signing-key.pem``). Every server process of a deployment reads the same file,
so a token issued by one is accepted by all. The key id is the key's RFC 7638 thumbprint,
so a rotated key gets a new ``kid`` without anyone choosing one. The public half is
published at ``[base]/auth/jwks`` for anyone who wants to check a token themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from fhirhub.audit.signing import create_key_file

ALGORITHM = "ES256"


@dataclass(frozen=True)
class SigningKey:
    private: ec.EllipticCurvePrivateKey
    kid: str

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK, with its id, use and algorithm."""
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.public))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def load_or_create_signing_key(path: Path) -> SigningKey:
    """The key in the PEM file ``path``, created (owner-only) when missing.

    Raises OSError when the file cannot be read or written, ValueError when it does not
    hold an unencrypted P-256 private key."""
    if not path.exists():
        create_key_file(path, ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path} does not hold an ECDSA P-256 private key")
    return SigningKey(key, thumbprint(json.loads(ECAlgorithm.to_jwk(key.public_key()))))


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (EC or RSA), base64url."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"),
                           sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


__all__ = ["ALGORITHM", "SigningKey", "load_or_create_signing_key", "thumbprint"]
