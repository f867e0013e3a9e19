"""Redacted audit bodies: the shape kept, personal data masked (FHIRHUB_AUDIT_BODIES)."""

from __future__ import annotations

import orjson

from fhirhub.audit.redact import MASK, redact


def test_names_identifiers_and_dates_are_masked_and_codes_kept() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"},
               "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                               "value": "9434765919"}],
               "name": [{"family": "Smith", "given": ["Jane"]}], "birthDate": "1980-02-29",
               "gender": "female", "active": True,
               "generalPractitioner": [{"reference": "Organization/o1"}]}
    out = orjson.loads(redact(orjson.dumps(patient)))
    assert out["resourceType"] == "Patient" and out["id"] == "p1"
    assert out["identifier"][0] == {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": MASK}
    assert out["name"] == [{"family": MASK, "given": [MASK]}]
    assert out["birthDate"] == MASK and out["gender"] == MASK
    assert out["active"] is True
    assert out["generalPractitioner"] == [{"reference": "Organization/o1"}]
    assert out["meta"] == {"versionId": "2"}


def test_binary_content_is_masked_whole() -> None:
    out = orjson.loads(redact(orjson.dumps({"resourceType": "Binary", "contentType": "text/plain",
                                            "data": "aGVsbG8="})))
    assert out == {"resourceType": "Binary", "contentType": "text/plain", "data": MASK}


def test_a_body_that_is_not_json_keeps_only_its_length() -> None:
    assert orjson.loads(redact(b"<Patient/>")) == {"redacted": "10 bytes, not JSON"}
    assert redact(b"") == b""
