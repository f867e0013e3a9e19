"""How clients discover the authorisation this server wants: the SMART configuration
document (https://hl7.org/fhir/smart-app-launch/conformance.html) and the
CapabilityStatement's ``rest.security``."""

from __future__ import annotations

from typing import Any

from fhirhub.auth.assertion import ALGORITHMS

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OFF_NOTE = ("AUTHORISATION IS SWITCHED OFF on this server (FHIRHUB_AUTH=off): every request "
            "is accepted without a token. This is for local development or a sandbox only.")


def token_url(base_url: str) -> str:
    return f"{base_url}/auth/token"


def jwks_url(base_url: str) -> str:
    return f"{base_url}/auth/jwks"


def smart_configuration(base_url: str, user_issuers: list[str]) -> dict[str, Any]:
    return {
        "issuer": base_url,
        "jwks_uri": jwks_url(base_url),
        "token_endpoint": token_url(base_url),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs",
                             "patient/*.cruds", "patient/*.rs"],
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2",
                         "permission-patient", "permission-user"],
        # Not a SMART field: the OpenID Connect providers whose user tokens (patients,
        # staff) this server accepts directly.
        "user_token_issuers": user_issuers,
    }


def capability_security(base_url: str, enabled: bool) -> dict[str, Any]:
    """``CapabilityStatement.rest.security``."""
    if not enabled:
        return {"cors": False, "description": OFF_NOTE}
    return {
        "cors": False,
        "extension": [{"url": OAUTH_URIS, "extension": [
            {"url": "token", "valueUri": token_url(base_url)}]}],
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR",
                                 "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 with SMART scopes"}],
        "description": (
            "Every request needs a bearer token. Applications: SMART Backend Services "
            f"(client_credentials with a private_key_jwt assertion, {', '.join(ALGORITHMS)}) "
            f"at {token_url(base_url)}, system/ scopes. Patients (NHS login) and staff "
            "(CIS2): the identity provider's token, patient/ or user/ scopes as configured. "
            f"Discovery: {base_url}/.well-known/smart-configuration."),
    }


__all__ = ["OFF_NOTE", "capability_security", "jwks_url", "smart_configuration", "token_url"]
