"""The OAuth 2.0 and SMART endpoints below the FHIR base: the token endpoint
(``POST [base]/auth/token``), the public keys its tokens are signed with
(``GET [base]/auth/jwks``) and the SMART configuration
(``GET [base]/.well-known/smart-configuration``).

They answer in OAuth's own JSON, not FHIR, because OAuth clients expect it: a refused
token request is ``{"error": ..., "error_description": ...}`` (RFC 6749 §5.2), with
the same refusal as a FHIR OperationOutcome in ``outcome`` for FHIR tooling and the audit
log. Token requests are audited like everything else, without their bodies (an access
token is a secret).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fhirhub.auth.assertion import ClientRefused, TokenRequestError
from fhirhub.auth.smart import smart_configuration, token_url
from fhirhub.auth.token_endpoint import claimed_client, token_response
from fhirhub.engine.outcome import error_outcome, status_of
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route
from fhirhub.errors import FhirError, ThrottledError
from fhirhub.fhir import json as fjson

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

JSON = "application/json"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    form = parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
    if req.trail is not None:
        req.trail.sensitive = True
        req.trail.client = claimed_client(form)
    try:
        if req.content_type != "application/x-www-form-urlencoded":
            raise TokenRequestError("invalid_request", "A token request is a form "
                                    "(application/x-www-form-urlencoded)")
        body, client = token_response(engine.authenticator, form, token_url(req.base_url),
                                      req.base_url)
    except (TokenRequestError, ClientRefused) as error:
        return _refused(error, error.oauth_error)
    except ThrottledError as error:
        return _refused(error, "temporarily_unavailable")
    if req.trail is not None:
        req.trail.client = client
    return FhirResponse(200, json_body=fjson.dumps(body), media_type=JSON,
                        headers=dict(_NO_STORE), elements_applicable=False)


def _refused(error: FhirError, oauth_error: str) -> FhirResponse:
    outcome = error_outcome(error)
    body: dict[str, Any] = {"error": oauth_error, "error_description": error.diagnostics,
                            "outcome": outcome}
    return FhirResponse(status_of(error), resource=outcome, json_body=fjson.dumps(body),
                        media_type=JSON, headers={**_NO_STORE, **error.headers},
                        elements_applicable=False)


def jwks(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    keys = {"keys": [engine.authenticator.key.jwk()]}
    return FhirResponse(200, json_body=fjson.dumps(keys), media_type=JSON,
                        headers={"Cache-Control": "public, max-age=300"},
                        elements_applicable=False)


def smart(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    document = smart_configuration(req.base_url, sorted(engine.authenticator.issuers))
    return FhirResponse(200, json_body=fjson.dumps(document), media_type=JSON,
                        elements_applicable=False)


__all__ = ["jwks", "smart", "token"]
