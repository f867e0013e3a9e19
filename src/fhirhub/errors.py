"""One error hierarchy for fhirhub, by category. No HTTP in here.

Every error a caller can cause is a :class:`FhirError` of one category; the API layer maps
the category to an HTTP status in exactly one function (``fhirhub.api.outcomes``).

    FhirError
    ├── InvalidError            incorrect input (syntax, values, parameters)
    │   └── UnprocessableError  well-formed but fails a rule (validation, business rule)
    ├── NotFoundError           no such resource, version or route
    │   └── GoneError           the resource was deleted
    ├── ConflictError           the change clashes with the current state
    │   └── PreconditionFailedError   If-Match / conditional criteria not met
    ├── NotAllowedError         this interaction is not allowed on this target
    ├── UnsupportedMediaError   a body in a format we do not read
    ├── NotAcceptableError      a response format we do not write
    ├── TooLargeError           a body over the configured limit
    ├── UnauthenticatedError    no or bad credentials
    ├── ForbiddenError          credentials that do not allow this
    ├── ThrottledError          rate limit reached
    ├── BusyError               temporarily unable (e.g. database locked for too long)
    └── FaultError              our fault: a bug or a broken dependency
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Category(Enum):
    INVALID = "invalid"
    UNPROCESSABLE = "unprocessable"
    NOT_FOUND = "not-found"
    GONE = "gone"
    CONFLICT = "conflict"
    PRECONDITION_FAILED = "precondition-failed"
    NOT_ALLOWED = "not-allowed"
    UNSUPPORTED_MEDIA = "unsupported-media"
    NOT_ACCEPTABLE = "not-acceptable"
    TOO_LARGE = "too-large"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    THROTTLED = "throttled"
    BUSY = "busy"
    FAULT = "fault"


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue, independent of any wire format."""

    severity: str  # fatal | error | warning | information
    code: str  # FHIR IssueType code, e.g. "invalid", "not-found"
    diagnostics: str
    expression: tuple[str, ...] = ()
    spine_code: str | None = None  # https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode


class FhirError(Exception):
    """Base of every error a request can end in."""

    category: Category = Category.FAULT
    issue_code: str = "exception"
    spine_code: str = "INTERNAL_SERVER_ERROR"

    def __init__(
        self,
        diagnostics: str,
        *,
        issue_code: str | None = None,
        spine_code: str | None = None,
        expression: tuple[str, ...] | list[str] = (),
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        if issue_code is not None:
            self.issue_code = issue_code
        if spine_code is not None:
            self.spine_code = spine_code
        self.expression = tuple(expression)
        self.extra_issues = list(issues or [])
        self.headers = dict(headers or {})

    @property
    def issues(self) -> list[Issue]:
        first = Issue(
            severity="error" if self.category is not Category.FAULT else "fatal",
            code=self.issue_code,
            diagnostics=self.diagnostics,
            expression=self.expression,
            spine_code=self.spine_code,
        )
        return [first, *self.extra_issues]


class InvalidError(FhirError):
    category = Category.INVALID
    issue_code = "invalid"
    spine_code = "INVALID_VALUE"


class UnprocessableError(InvalidError):
    category = Category.UNPROCESSABLE
    issue_code = "processing"
    spine_code = "INVALID_RESOURCE"


class NotFoundError(FhirError):
    category = Category.NOT_FOUND
    issue_code = "not-found"
    spine_code = "RESOURCE_NOT_FOUND"


class GoneError(NotFoundError):
    category = Category.GONE
    issue_code = "deleted"
    spine_code = "RESOURCE_DELETED"


class ConflictError(FhirError):
    category = Category.CONFLICT
    issue_code = "conflict"
    spine_code = "VERSION_CONFLICT"


class PreconditionFailedError(ConflictError):
    category = Category.PRECONDITION_FAILED
    issue_code = "conflict"
    spine_code = "PRECONDITION_FAILED"


class NotAllowedError(FhirError):
    category = Category.NOT_ALLOWED
    issue_code = "not-supported"
    spine_code = "METHOD_NOT_ALLOWED"


class UnsupportedMediaError(FhirError):
    category = Category.UNSUPPORTED_MEDIA
    issue_code = "not-supported"
    spine_code = "UNSUPPORTED_MEDIA_TYPE"


class NotAcceptableError(FhirError):
    category = Category.NOT_ACCEPTABLE
    issue_code = "not-supported"
    spine_code = "NOT_ACCEPTABLE"


class TooLargeError(FhirError):
    category = Category.TOO_LARGE
    issue_code = "too-costly"
    spine_code = "INVALID_REQUEST"


class UnauthenticatedError(FhirError):
    category = Category.UNAUTHENTICATED
    issue_code = "login"
    spine_code = "ACCESS_DENIED"


class ForbiddenError(FhirError):
    category = Category.FORBIDDEN
    issue_code = "forbidden"
    spine_code = "ACCESS_DENIED"


class ThrottledError(FhirError):
    category = Category.THROTTLED
    issue_code = "throttled"
    spine_code = "TOO_MANY_REQUESTS"


class BusyError(FhirError):
    category = Category.BUSY
    issue_code = "transient"
    spine_code = "SERVICE_UNAVAILABLE"


class FaultError(FhirError):
    category = Category.FAULT
    issue_code = "exception"
    spine_code = "INTERNAL_SERVER_ERROR"


@dataclass
class Outcome:
    """Issues gathered without raising (warnings from a successful write, validation)."""

    issues: list[Issue] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(i.severity in ("error", "fatal") for i in self.issues)


__all__ = [
    "BusyError",
    "Category",
    "ConflictError",
    "FaultError",
    "FhirError",
    "ForbiddenError",
    "GoneError",
    "InvalidError",
    "Issue",
    "NotAcceptableError",
    "NotAllowedError",
    "NotFoundError",
    "Outcome",
    "PreconditionFailedError",
    "ThrottledError",
    "TooLargeError",
    "UnauthenticatedError",
    "UnprocessableError",
    "UnsupportedMediaError",
]
