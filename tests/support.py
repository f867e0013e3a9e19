"""Small helpers the test modules share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhirhub.engine import FhirRequest, FhirResponse
from fhirhub.fhir import json as fjson
from fhirhub.fhir.validation import nhs_number_problem


def nhs_numbers(start: int = 900_000_000) -> Iterator[str]:
    """Valid NHS numbers (Modulus 11 check digit), from the nine-digit stem ``start`` on;
    the 9xx range is the one reserved for test data."""
    stem = start
    while True:
        for check in range(10):
            candidate = f"{stem:09d}{check}"
            if nhs_number_problem(candidate) is None:
                yield candidate
                break
        stem += 1


def engine_request(method: str, path: str, body: Any = None, *,
                   headers: dict[str, str] | None = None,
                   query: list[tuple[str, str]] | None = None,
                   request_id: str = "req-1") -> FhirRequest:
    """A FhirRequest as the web layer would make it, with a FHIR JSON body when given."""
    raw = b"" if body is None else fjson.dumps(body)
    all_headers = {**({"content-type": "application/fhir+json"} if body is not None else {}),
                   **(headers or {})}
    return FhirRequest(method=method, path=path, query=query or [], headers=all_headers,
                       body=raw, base_url="http://fhir.example.org/fhir", request_id=request_id)


def body_of(response: FhirResponse) -> dict[str, Any]:
    """A response's body as a dict, whether the engine kept it as a dict or as JSON."""
    if response.resource is not None:
        materialized: dict[str, Any] = fjson.materialize(response.resource)
        return materialized
    assert response.json_body is not None, response
    loaded: dict[str, Any] = fjson.loads(response.json_body)
    return loaded
