"""The access tokens this server issues: short-lived ES256 JWTs.

Claims: ``iss`` and ``aud`` the FHIR base URL the token was asked for at (a token is good
only at the server that issued it), ``sub`` and ``client_id`` the client, ``scope`` the
granted scopes, ``iat``, ``exp`` (``FHIRHUB_AUTH_TOKEN_SECONDS``, 300 by default) and a
unique ``jti``. Checking one is PyJWT's, with the algorithm fixed to ES256: a token that
names another algorithm (``none``, ``HS256`` keyed with our public key) is refused before
any signature is looked at.
"""

from __future__ import annotations

import uuid
from typing import Any

import jwt

from fhirhub.auth.keys import ALGORITHM, SigningKey
from fhirhub.errors import UnauthenticatedError

TOKEN_TYPE = "Bearer"  # noqa: S105  (the OAuth token type, not a secret)


class TokenRefused(UnauthenticatedError):
    """A bearer token that is not accepted (401 with ``WWW-Authenticate``, RFC 6750 §3)."""

    def __init__(self, diagnostics: str, realm: str = "fhirhub", *,
                 missing: bool = False) -> None:
        challenge = f'Bearer realm="{realm}"'
        if not missing:
            safe = diagnostics.replace('"', "'").replace("\\", "/")
            challenge += f', error="invalid_token", error_description="{safe}"'
        super().__init__(diagnostics, issue_code="login" if missing else "security",
                         headers={"WWW-Authenticate": challenge})


class AccessTokens:
    def __init__(self, key: SigningKey, lifetime: int, skew: int) -> None:
        self.key = key
        self.lifetime = lifetime
        self.skew = skew

    def issue(self, client_id: str, scopes: str, base_url: str, now: int) -> str:
        claims = {"iss": base_url, "aud": base_url, "sub": client_id, "client_id": client_id,
                  "scope": scopes, "iat": now, "exp": now + self.lifetime,
                  "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key.private, algorithm=ALGORITHM,
                          headers={"kid": self.key.kid, "typ": "at+jwt"})

    def verify(self, token: str, base_url: str) -> dict[str, Any]:
        """The claims of a token this server issued for ``base_url``, or TokenRefused."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.key.public, algorithms=[ALGORITHM], audience=base_url,
                issuer=base_url, leeway=self.skew,
                options={"require": ["iss", "aud", "sub", "exp", "iat", "scope"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("The access token has expired; ask the token endpoint for "
                               "a new one") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("The access token is not valid yet") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise TokenRefused(f"The access token was not issued for {base_url}") from None
        except jwt.InvalidAlgorithmError:
            raise TokenRefused(f"The access token must be signed with {ALGORITHM}") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"The access token was refused: {exc}") from None
        return claims


__all__ = ["TOKEN_TYPE", "AccessTokens", "TokenRefused"]
