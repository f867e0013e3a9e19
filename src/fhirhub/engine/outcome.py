"""Errors to HTTP statuses and OperationOutcomes: the one place that mapping lives.

The statuses belong to FHIR as much as to HTTP (a batch-response entry carries
``response.status``), so the engine and the HTTP adapter both use this map.
"""

from __future__ import annotations

from typing import Any

from fhirhub.errors import Category, FhirError, Issue

SPINE_SYSTEM = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"

STATUS: dict[Category, int] = {
    Category.INVALID: 400,
    Category.UNPROCESSABLE: 422,
    Category.NOT_FOUND: 404,
    Category.GONE: 410,
    Category.CONFLICT: 409,
    Category.PRECONDITION_FAILED: 412,
    Category.NOT_ALLOWED: 405,
    Category.UNSUPPORTED_MEDIA: 415,
    Category.NOT_ACCEPTABLE: 406,
    Category.TOO_LARGE: 413,
    Category.UNAUTHENTICATED: 401,
    Category.FORBIDDEN: 403,
    Category.THROTTLED: 429,
    Category.BUSY: 503,
    Category.FAULT: 500,
}

REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 409: "Conflict", 410: "Gone", 412: "Precondition Failed",
    413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}


def status_of(error: FhirError) -> int:
    return STATUS[error.category]


def status_line(status: int) -> str:
    """``"201 Created"``, as Bundle ``entry.response.status`` wants it."""
    reason = REASONS.get(status)
    return f"{status} {reason}" if reason else str(status)


def issue_json(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": issue.severity, "code": issue.code}
    if issue.spine_code:
        out["details"] = {
            "coding": [{"system": SPINE_SYSTEM, "code": issue.spine_code,
                        "display": issue.spine_code.replace("_", " ").capitalize()}]
        }
    out["diagnostics"] = issue.diagnostics
    if issue.expression:
        out["expression"] = list(issue.expression)
    return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue_json(i) for i in issues]}


def error_outcome(error: FhirError) -> dict[str, Any]:
    return operation_outcome(error.issues)


def information(text: str) -> dict[str, Any]:
    return operation_outcome([Issue("information", "informational", text)])


__all__ = [
    "SPINE_SYSTEM",
    "error_outcome",
    "information",
    "issue_json",
    "operation_outcome",
    "status_line",
    "status_of",
]
