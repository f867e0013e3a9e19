"""The plain request and response objects the engine works on (no web framework)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FhirRequest:
    method: str  # GET, POST, PUT, PATCH, DELETE, HEAD
    path: str  # below the FHIR base, without leading slash: "Patient/123/_history/2"
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    base_url: str = "http://127.0.0.1:8080/fhir"
    request_id: str = ""
    correlation_id: str | None = None
    client_ip: str | None = None
    assigned_id: str | None = None  # a transaction's id for a POST entry (urn:uuid targets)
    parsed: Any = None  # the body already parsed (Bundle entries), so it is not parsed twice
    trail: Any = None  # the request's engine.auditing.AuditTrail, once the engine has it
    grant: Any = None  # the caller and what they may see (engine.guard.Grant), once known
    # The caller, when an in-process command (``fhirhub import``) makes the request: its
    # operator. The HTTP adapter never sets it; every HTTP request is authenticated.
    principal: Any = None

    def note_read(self, versions: Any, *, role: str = "domain") -> None:
        """Tell the audit trail which versions this request returned."""
        if self.trail is not None:
            self.trail.read(versions, role=role)

    @property
    def client_request_id(self) -> str | None:
        """The X-Request-ID the client sent (not one the server made up)."""
        return self.headers.get("x-request-id")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def prefer(self) -> dict[str, str]:
        """Prefer header tokens: ``return=minimal`` -> {"return": "minimal"}."""
        found: dict[str, str] = {}
        for part in (self.header("prefer") or "").split(","):
            for token in part.split(";"):
                name, _, value = token.strip().partition("=")
                if name:
                    found[name.strip().lower()] = value.strip().strip('"')
        return found


@dataclass
class FhirResponse:
    """A status, headers, and the body as a resource dict or as ready FHIR JSON bytes."""

    status: int
    resource: dict[str, Any] | None = None
    json_body: bytes | None = None  # pre-serialised FHIR JSON (a stored resource), if no dict
    headers: dict[str, str] = field(default_factory=dict)
    elements_applicable: bool = True  # _summary/_elements apply to this body
    last_updated: str | None = None  # the instant of the version answered, if one
    media_type: str | None = None  # a body that is not FHIR (OAuth, SMART): sent as it is

    @property
    def has_body(self) -> bool:
        return self.resource is not None or self.json_body is not None


@dataclass
class WireResponse:
    """A response as it goes on the wire: status, headers, body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


__all__ = ["FhirRequest", "FhirResponse", "WireResponse"]
