"""Building the responses of single-resource interactions: headers and ``Prefer``."""

from __future__ import annotations

from fhirhub.engine.clock import http_date
from fhirhub.engine.crud import Written, etag
from fhirhub.engine.outcome import information
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.store.base import StoredVersion


def version_headers(version: StoredVersion, base_url: str, location: bool) -> dict[str, str]:
    headers = {"ETag": etag(version.version_id), "Last-Modified": http_date(version.last_updated)}
    if location:
        headers["Location"] = (
            f"{base_url}/{version.resource_type}/{version.id}/_history/{version.version_id}"
        )
    return headers


def written_response(req: FhirRequest, written: Written, *, status: int | None = None,
                     message: str | None = None) -> FhirResponse:
    """The answer to a create/update/patch, honouring ``Prefer: return=``."""
    code = status if status is not None else (201 if written.created else 200)
    version = written.version
    headers = version_headers(version, req.base_url, location=True)
    # The stored bytes are the representation: no second serialisation.
    response = FhirResponse(code, json_body=version.body, headers=headers,
                            last_updated=version.last_updated)
    verb = "created" if code == 201 else "updated"
    return shaped(req, response, message or f"{version.resource_type}/{version.id} {verb}")


def shaped(req: FhirRequest, response: FhirResponse, message: str | None = None) -> FhirResponse:
    wanted = req.prefer.get("return", "representation")
    if wanted == "minimal":
        response.resource = None
        response.json_body = None
    elif wanted.lower() == "operationoutcome":
        response.resource = information(message or "Done")
        response.json_body = None
        response.elements_applicable = False
    return response


__all__ = ["shaped", "version_headers", "written_response"]
