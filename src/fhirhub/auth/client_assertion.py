"""Making a client assertion, as a client application does (RFC 7523 §2.2): what
``fhirhub clients token`` signs, for developers trying the server out."""

from __future__ import annotations

import json
import time
import uuid

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fhirhub.auth.keys import thumbprint

LIFETIME_SECONDS = 120


def make_assertion(pem: bytes, client_id: str, token_url: str, kid: str | None = None) -> str:
    """A client assertion signed with the private key ``pem``: ES384 for an EC P-384
    key, RS384 for an RSA key. ValueError when the key is neither."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        alg, jwk = "ES384", ECAlgorithm.to_jwk(key.public_key())
    elif isinstance(key, rsa.RSAPrivateKey):
        alg, jwk = "RS384", RSAAlgorithm.to_jwk(key.public_key())
    else:
        raise ValueError("the key must be EC P-384 (ES384) or RSA (RS384)")
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now,
              "exp": now + LIFETIME_SECONDS, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm=alg,
                      headers={"kid": kid or thumbprint(json.loads(jwk))})


__all__ = ["make_assertion"]
