"""Which patients a resource concerns, by R4's Patient CompartmentDefinition."""

from __future__ import annotations

import orjson

from fhirhub.audit.patients import NHS_NUMBER, of_body, of_index, of_resource, unique
from fhirhub.audit.record import PatientRef
from fhirhub.search.index import index_resource


def test_a_patient_is_its_own_patient_with_its_nhs_number() -> None:
    patient = {"resourceType": "Patient", "id": "p1",
               "identifier": [{"system": NHS_NUMBER, "value": "9434765919"}]}
    assert of_resource(patient) == [PatientRef("Patient/p1", "9434765919")]
    assert of_index("Patient", "p1", index_resource(patient)) == [
        PatientRef("Patient/p1", "9434765919")]


def test_an_observation_concerns_its_subject_and_performer_patients() -> None:
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/p1"},
           "performer": [{"reference": "http://elsewhere/fhir/Patient/p2/_history/3"},
                         {"reference": "Practitioner/d1"}]}
    assert of_resource(obs) == [PatientRef("Patient/p1"), PatientRef("Patient/p2")]
    assert of_body("Observation", "o1", orjson.dumps(obs)) == of_resource(obs)
    assert PatientRef("Patient/p1") in of_index("Observation", "o1", index_resource(obs))


def test_a_reference_by_nhs_number_alone_is_kept() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"identifier": {"system": NHS_NUMBER, "value": "9434765919"}}}
    assert of_resource(obs) == [PatientRef(None, "9434765919")]


def test_resources_outside_the_patient_compartment_concern_nobody() -> None:
    assert of_body("Organization", "o", b'{"resourceType":"Organization"}') == []
    assert of_body("Patient", "gone", None) == [PatientRef("Patient/gone")]


def test_unique_keeps_one_entry_per_patient_with_the_nhs_number_known() -> None:
    refs = [PatientRef("Patient/p1"), PatientRef("Patient/p1", "9434765919"),
            PatientRef("Patient/p2")]
    assert unique(refs) == [PatientRef("Patient/p1", "9434765919"), PatientRef("Patient/p2")]
