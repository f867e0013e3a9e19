"""Small builders shared by the HTTP tests."""

from __future__ import annotations

from typing import Any

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(nhs: str = "9000000009", family: str = "Smith", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": family, "given": ["Jane"]}],
        "gender": "female",
        "birthDate": "1980-02-29",
        **extra,
    }


def outcome_codes(body: dict[str, Any]) -> tuple[str, str | None]:
    """(FHIR issue code, Spine code) of an OperationOutcome's first issue."""
    assert body["resourceType"] == "OperationOutcome", body
    issue = body["issue"][0]
    codings = issue.get("details", {}).get("coding", [])
    return issue["code"], (codings[0]["code"] if codings else None)
