"""AuditEvents rendered from audit records after IHE Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/, StructureDefinitions IHE.BasicAudit.*): one rule per
test, on the smallest record that shows it, and every render checked against R4."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from fhirhub.audit.balp import audit_event
from fhirhub.audit.record import (
    MAJOR_FAILURE,
    MINOR_FAILURE,
    SERIOUS_FAILURE,
    SUCCESS,
    AuditRecord,
    Entity,
    PatientRef,
)
from fhirhub.errors import Issue
from fhirhub.fhir.definitions import packaged
from fhirhub.fhir.structure import check_resource
from fhirhub.fhir.terminology import terminology
from fhirhub.fhir.validation import Validator

BASE = "https://fhir.example.org/fhir"
PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NOW = "2025-03-04T05:06:07.123456Z"
Json = dict[str, Any]

_PATHS = {"read": "Observation/o1", "vread": "Observation/o1/_history/2",
          "update": "Observation/o1", "patch": "Observation/o1", "delete": "Observation/o1",
          "create": "Observation", "search": "Observation"}
_METHODS = {"read": "GET", "vread": "GET", "update": "PUT", "patch": "PATCH",
            "delete": "DELETE", "create": "POST", "search": "GET"}


def rest(interaction: str, **extra: Any) -> AuditRecord:
    """A successful REST record of ``interaction`` on one Observation, from a known address."""
    values: Json = {
        "id": f"ae-{interaction}", "recorded": NOW, "kind": "rest", "interaction": interaction,
        "outcome": SUCCESS, "status": 200, "request_id": "req-1",
        "method": _METHODS.get(interaction, "POST"), "path": _PATHS.get(interaction, ""),
        "resource_type": "Observation", "source_ip": "192.0.2.7",
        "entities": (Entity("Observation/o1", 2),),
    }
    if interaction == "search":
        values["query"] = "code=http://loinc.org|1234-5&_count=10"
    values.update(extra)
    return AuditRecord(**values)


def outbound(**extra: Any) -> AuditRecord:
    values: Json = {
        "id": "ae-send", "recorded": NOW, "kind": "outbound", "interaction": "send",
        "outcome": SUCCESS, "status": 202, "request_id": "req-1", "correlation_id": "corr-1",
        "parent": "ae-create", "channel": "webhook", "destination": "https://hooks.example.net/x",
        "detail": "rest-hook notification", "request_sha256": "c" * 64,
    }
    values.update(extra)
    return AuditRecord(**values)


def system_import() -> AuditRecord:
    return AuditRecord(id="ae-import", recorded=NOW, kind="system", interaction="import",
                       outcome=MINOR_FAILURE, request_id="req-cli", user="alice",
                       user_agent="fhirhub-cli/0.1.0",
                       detail="fhirhub import obs.ndjson (10 bytes): 3 resources written, "
                              "1 line(s) refused")


def outcome_resource(diagnostics: str = "Observation.status is required") -> Json:
    return {"resourceType": "OperationOutcome", "meta": {"lastUpdated": NOW},
            "issue": [{"severity": "error", "code": "required", "diagnostics": diagnostics}]}


def profiles(event: Json) -> list[str]:
    return list(event.get("meta", {}).get("profile", []))


def codes(codings: list[Json]) -> list[tuple[str | None, str]]:
    return [(c.get("system"), c["code"]) for c in codings]


def agent_with(event: Json, system: str, code: str) -> Json:
    found: list[Json] = [a for a in event["agent"]
                         if any(c.get("system") == system and c["code"] == code
                                for c in a.get("type", {}).get("coding", []))]
    assert len(found) == 1, f"{len(found)} agents of type {code}"
    return found[0]


def entities_of(event: Json, system: str, code: str) -> list[Json]:
    return [e for e in event.get("entity", [])
            if e.get("type", {}).get("system") == system and e["type"]["code"] == code]


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


# --- profile, type, subtype and action of each interaction -------------------------------------

def test_read_of_a_patient_renders_the_balp_patient_read_profile() -> None:
    event = audit_event(rest("read", patients=(PatientRef("Patient/p1", "9434765919"),)), BASE)
    assert profiles(event) == [f"{PROFILE}PatientRead"]
    assert event["type"] == {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                             "code": "rest", "display": "RESTful Operation"}
    assert codes(event["subtype"]) == [(RESTFUL, "read")]
    assert (event["action"], event["outcome"], event["recorded"]) == ("R", "0", NOW)


@pytest.mark.parametrize(("interaction", "profile", "action"), [
    ("create", "Create", "C"), ("read", "Read", "R"), ("vread", "Read", "R"),
    ("update", "Update", "U"), ("patch", "Update", "U"), ("delete", "Delete", "D"),
    ("search", "Query", "E"),
])
def test_each_restful_interaction_claims_its_balp_profile(interaction: str, profile: str,
                                                           action: str) -> None:
    plain = audit_event(rest(interaction), BASE)
    with_patient = audit_event(rest(interaction, patients=(PatientRef("Patient/p1"),)), BASE)
    assert profiles(plain) == [f"{PROFILE}{profile}"]
    assert profiles(with_patient) == [f"{PROFILE}Patient{profile}"]
    assert plain["action"] == action
    expected = "search-type" if interaction == "search" else interaction
    assert codes(plain["subtype"]) == [(RESTFUL, expected)]


@pytest.mark.parametrize(("path", "resource_type", "code"), [
    ("Patient/p1/_history", "Patient", "history-instance"),
    ("Patient/p1/_history/3", "Patient", "history-instance"),
    ("Patient/_history", "Patient", "history-type"),
    ("_history", None, "history-system"),
])
def test_history_subtype_is_resolved_from_the_path(path: str, resource_type: str | None,
                                                   code: str) -> None:
    event = audit_event(rest("history", path=path, resource_type=resource_type), BASE)
    assert codes(event["subtype"]) == [(RESTFUL, code)]
    assert event["action"] == "R"


def test_search_subtype_is_system_level_when_no_type_is_addressed() -> None:
    event = audit_event(rest("search", path="", resource_type=None, query="_id=o1"), BASE)
    assert codes(event["subtype"]) == [(RESTFUL, "search-system")]
    assert profiles(event) == [f"{PROFILE}Query"]


def test_operation_carries_the_operation_name_beside_the_interaction() -> None:
    event = audit_event(rest("operation", operation="$validate", path="Observation/$validate",
                             entities=()), BASE)
    assert codes(event["subtype"]) == [(RESTFUL, "operation"), (None, "$validate")]
    assert event["action"] == "E"


@pytest.mark.parametrize("interaction", ["history", "operation", "transaction", "batch",
                                         "capabilities"])
def test_interactions_without_a_balp_pattern_claim_no_profile(interaction: str) -> None:
    event = audit_event(rest(interaction, path="Patient/p1/_history"), BASE)
    assert profiles(event) == []
    assert event["subtype"][0]["system"] == RESTFUL


def test_a_profile_is_claimed_only_when_both_network_addresses_are_known() -> None:
    assert profiles(audit_event(rest("read"))) == []  # no base URL: no server network
    assert profiles(audit_event(rest("read", source_ip=None), BASE)) == []


def test_a_conditional_delete_of_several_resources_claims_no_profile() -> None:
    record = rest("delete", entities=(Entity("Observation/o1", 3), Entity("Observation/o2", 5)))
    assert profiles(audit_event(record, BASE)) == []


def test_several_patients_claim_the_plain_profile_and_keep_every_patient() -> None:
    record = rest("read", patients=(PatientRef("Patient/p1"), PatientRef("Patient/p2")))
    event = audit_event(record, BASE)
    assert profiles(event) == [f"{PROFILE}Read"]
    assert [e["what"]["reference"] for e in entities_of(event, ENTITY_TYPE, "1")] == [
        "Patient/p1", "Patient/p2"]


# --- agents ----------------------------------------------------------------------------------

def test_a_read_has_the_client_as_destination_and_the_server_as_source() -> None:
    event = audit_event(rest("read", client="app-1"), BASE)
    client = agent_with(event, DCM, "110152")
    server = agent_with(event, DCM, "110153")
    assert codes(client["type"]["coding"]) == [(DCM, "110152"), (DCM, "110150")]
    assert client["who"] == {"identifier": {"value": "app-1"}}
    assert client["network"] == {"address": "192.0.2.7", "type": "2"}
    assert client["requestor"] is True  # no user: the application asked
    assert server["who"] == {"display": "fhirhub"}
    assert server["network"] == {"address": BASE, "type": "5"}
    assert server["requestor"] is False


@pytest.mark.parametrize("interaction", ["create", "update", "search"])
def test_a_write_or_search_has_the_client_as_source_and_the_server_as_destination(
        interaction: str) -> None:
    event = audit_event(rest(interaction), BASE)
    assert agent_with(event, DCM, "110153")["network"]["address"] == "192.0.2.7"
    assert agent_with(event, DCM, "110152")["network"]["address"] == BASE


def test_a_delete_types_the_client_as_application_and_the_server_as_custodian() -> None:
    event = audit_event(rest("delete"), BASE)
    assert agent_with(event, DCM, "110150")["network"]["type"] == "2"
    custodian = agent_with(event, "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                           "custodian")
    assert custodian["who"] == {"display": "fhirhub"}


def test_an_unidentified_client_is_still_an_agent() -> None:
    client = agent_with(audit_event(rest("read"), BASE), DCM, "110150")
    assert client["who"] == {"display": "unidentified client"}


@pytest.mark.parametrize(("interaction", "code"), [
    ("read", "IRCP"), ("search", "IRCP"), ("create", "AUT"), ("delete", "AUT"),
])
def test_the_user_is_the_requestor_with_role_organisation_and_purpose(interaction: str,
                                                                     code: str) -> None:
    record = rest(interaction, client="app-1", user="user-9", role="S0030:G0100:R0570",
                  organization="RX1", purpose="TREAT")
    event = audit_event(record, BASE)
    user = agent_with(event, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", code)
    assert user["who"] == {"identifier": {"value": "user-9"}}
    assert user["requestor"] is True
    assert user["role"] == [{"text": "S0030:G0100:R0570"}]
    assert agent_with(event, DCM, "110150")["requestor"] is False
    org = agent_with(event, "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV")
    assert org["who"] == {"type": "Organization", "identifier": {"system": ODS, "value": "RX1"}}
    assert org["requestor"] is False
    reason = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                          "code": "TREAT"}]}
    assert event["purposeOfEvent"] == [reason]
    assert user["purposeOfUse"] == [reason]


def test_a_purpose_that_is_not_a_purpose_of_use_code_is_kept_as_text() -> None:
    event = audit_event(rest("read", purpose="direct care of the patient"), BASE)
    assert event["purposeOfEvent"] == [{"text": "direct care of the patient"}]


def test_the_source_is_this_server_as_an_application_server() -> None:
    source = audit_event(rest("read"), BASE)["source"]
    assert source["observer"] == {"display": "fhirhub"}
    assert source["site"] == "fhir.example.org"
    assert codes(source["type"]) == [
        ("http://terminology.hl7.org/CodeSystem/security-source-type", "4")]


# --- entities --------------------------------------------------------------------------------

def test_the_resource_acted_on_is_a_versioned_domain_resource() -> None:
    event = audit_event(rest("update"), BASE)
    [data] = entities_of(event, ENTITY_TYPE, "2")
    assert data["what"] == {"reference": "Observation/o1/_history/2", "type": "Observation"}
    assert data["role"] == {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}


def test_a_patient_entity_carries_the_nhs_number_identifier() -> None:
    record = rest("read", patients=(PatientRef("Patient/p1", "9434765919"),
                                    PatientRef(None, "9000000009")))
    first, second = entities_of(audit_event(record, BASE), ENTITY_TYPE, "1")
    assert first["what"] == {"reference": "Patient/p1", "type": "Patient",
                             "identifier": {"system": NHS, "value": "9434765919"}}
    assert first["role"]["code"] == "1"
    assert second["what"] == {"type": "Patient",
                              "identifier": {"system": NHS, "value": "9000000009"}}


def test_the_x_request_id_is_the_balp_transaction_entity() -> None:
    event = audit_event(rest("read", request_id="5b7c0d8e"), BASE)
    [transaction] = entities_of(event, BALP_ENTITY_TYPE, "XrequestId")
    assert transaction["what"] == {"identifier": {"value": "5b7c0d8e"}}
    assert set(transaction) == {"what", "type"}  # BALP forbids detail etc. on it


def test_the_x_correlation_id_is_an_identifier_entity_of_its_own() -> None:
    event = audit_event(rest("read", correlation_id="corr-42"), BASE)
    [correlation] = [e for e in entities_of(event, ENTITY_TYPE, "4")
                     if e.get("description") == "X-Correlation-ID"]
    assert correlation["what"]["identifier"] == {"type": {"text": "X-Correlation-ID"},
                                                 "value": "corr-42"}


def test_a_search_records_the_raw_request_as_the_query_entity() -> None:
    event = audit_event(rest("search"), BASE)
    [query] = entities_of(event, ENTITY_TYPE, "2")
    line = "GET Observation?code=http://loinc.org|1234-5&_count=10"
    assert query["role"]["code"] == "24"
    assert query["description"] == line
    assert base64.b64decode(query["query"]).decode() == line
    assert "what" not in query and "detail" not in query


def test_a_search_without_parameters_still_has_a_query() -> None:
    event = audit_event(rest("search", query=None), BASE)
    [query] = entities_of(event, ENTITY_TYPE, "2")
    assert base64.b64decode(query["query"]).decode() == "GET Observation"


def test_search_results_are_typed_by_resource_type_beside_the_one_query_entity() -> None:
    record = rest("search", entities=(Entity("Observation/o1", 1), Entity("Observation/o2", 4)))
    event = audit_event(record, BASE)
    results = entities_of(event, "http://hl7.org/fhir/resource-types", "Observation")
    assert [e["what"]["reference"] for e in results] == ["Observation/o1/_history/1",
                                                         "Observation/o2/_history/4"]
    assert len(entities_of(event, ENTITY_TYPE, "2")) == 1
    assert profiles(event) == [f"{PROFILE}Query"]


def test_a_failure_contains_its_operation_outcome_and_claims_no_profile() -> None:
    record = rest("create", outcome=MINOR_FAILURE, status=422, entities=(),
                  outcome_resource=outcome_resource())
    event = audit_event(record, BASE)
    assert profiles(event) == []
    assert event["outcome"] == "4"
    assert event["outcomeDesc"] == "Observation.status is required"
    [contained] = event["contained"]
    assert contained["id"] == "outcome" and "meta" not in contained
    assert contained["issue"] == record.outcome_resource["issue"]  # type: ignore[index]
    [entity] = entities_of(event, "http://hl7.org/fhir/resource-types", "OperationOutcome")
    assert entity["what"]["reference"] == "#outcome"


def test_rendering_leaves_the_record_untouched() -> None:
    record = rest("create", outcome=MINOR_FAILURE, outcome_resource=outcome_resource())
    before = record.canonical()
    audit_event(record, BASE)
    assert record.canonical() == before
    assert record.outcome_resource is not None and "id" not in record.outcome_resource


def test_the_exchange_details_keep_digests_user_agent_and_transport() -> None:
    record = rest("read", status=200, user_agent="curl/8.5", entry=3,
                  request_sha256="a" * 64, response_sha256="b" * 64, detail="entry 3 of a batch")
    [exchange] = [e for e in audit_event(record, BASE)["entity"] if e.get("name") == "exchange"]
    assert exchange["description"] == "entry 3 of a batch"
    assert {d["type"]: d["valueString"] for d in exchange["detail"]} == {
        "method": "GET", "path": "Observation/o1", "status": "200", "user-agent": "curl/8.5",
        "entry": "3", "request-sha256": "a" * 64, "response-sha256": "b" * 64}


# --- outbound and system records ----------------------------------------------------------

def test_an_outbound_message_has_this_server_as_source_and_the_destination_as_destination() -> None:
    event = audit_event(outbound(), BASE)
    source = agent_with(event, DCM, "110153")
    destination = agent_with(event, DCM, "110152")
    assert source["who"] == {"display": "fhirhub"} and source["requestor"] is True
    assert source["network"] == {"address": BASE, "type": "5"}
    assert destination["who"] == {"display": "https://hooks.example.net/x"}
    assert destination["network"] == {"address": "https://hooks.example.net/x", "type": "5"}
    assert destination["requestor"] is False
    assert event["type"] == {"system": DCM, "code": "110106", "display": "Export"}
    assert codes(event["subtype"]) == [
        ("http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "transmit"), (None, "send")]
    assert (event["action"], profiles(event)) == ("E", [])
    [parent] = entities_of(event, "http://hl7.org/fhir/resource-types", "AuditEvent")
    assert parent["what"]["reference"] == "AuditEvent/ae-create"


def test_an_email_destination_is_an_email_address() -> None:
    destination = agent_with(audit_event(outbound(destination="gp@example.nhs.uk")), DCM, "110152")
    assert destination["network"] == {"address": "gp@example.nhs.uk", "type": "4"}


def test_a_failed_delivery_describes_the_error() -> None:
    record = outbound(outcome=MAJOR_FAILURE, status=None,
                      detail="rest-hook notification: ConnectError: refused")
    event = audit_event(record, BASE)
    assert event["outcome"] == "12"
    assert event["outcomeDesc"] == "rest-hook notification: ConnectError: refused"


def test_an_acknowledgement_has_no_destination_agent() -> None:
    event = audit_event(outbound(interaction="ack", destination=None, status=200))
    assert [a["who"] for a in event["agent"]] == [{"display": "fhirhub"}]
    assert codes(event["subtype"]) == [(None, "ack")]


def test_a_command_line_import_is_an_import_by_its_user() -> None:
    event = audit_event(system_import())
    assert event["type"] == {"system": DCM, "code": "110107", "display": "Import"}
    assert event["action"] == "C" and event["outcome"] == "4"
    user = agent_with(event, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "AUT")
    assert user["who"] == {"identifier": {"value": "alice"}} and user["requestor"] is True
    application = agent_with(event, DCM, "110150")
    assert application["who"] == {"display": "fhirhub"} and application["requestor"] is False


# --- nothing lost, and valid R4 --------------------------------------------------------------

FULL = rest(
    "search", request_id="req-77", correlation_id="corr-77", parent="ae-bundle", entry=4,
    query="name=smith", operation=None, client="app-77", user="user-77", role="R8000",
    organization="RX77", purpose="PATRQT", source_ip="198.51.100.9", user_agent="app/7.7",
    channel="https", destination="https://peer.example.org", status=200,
    patients=(PatientRef("Patient/p77", "9434765919"),),
    entities=(Entity("Observation/o77", 7), Entity("Observation/o78", None, "report")),
    request_sha256="d" * 64, response_sha256="e" * 64, detail="a search for smith")


FAILED_OPERATION = rest(
    "operation", operation="$validate", path="Observation/$validate", outcome=MINOR_FAILURE,
    status=422, entities=(), outcome_resource=outcome_resource("Observation.code is required"))


@pytest.mark.parametrize("record", [FULL, FAILED_OPERATION], ids=["search", "failed-operation"])
def test_no_record_field_is_lost(record: AuditRecord) -> None:
    event = audit_event(record, BASE)
    text = orjson.dumps(event).decode()
    queries = [base64.b64decode(e["query"]).decode() for e in event["entity"] if "query" in e]
    for name, value in record.to_json().items():
        if name == "patients":
            assert "Patient/p77" in text and "9434765919" in text
        elif name == "entities":
            assert "Observation/o77/_history/7" in text and '"Observation/o78"' in text
        elif name == "kind":
            assert event["type"]["code"] == "rest"
        elif name == "query":
            assert any(value in q for q in queries)
        elif name == "outcome_resource":
            assert event["contained"][0]["issue"] == value["issue"]
        else:
            assert str(value) in text, f"{name}={value!r} is not in the AuditEvent"


RECORDS = [
    *(rest(i) for i in ("create", "read", "vread", "update", "patch", "delete", "search")),
    *(rest(i, patients=(PatientRef("Patient/p1", "9434765919"),)) for i in ("read", "search")),
    rest("history", path="Patient/p1/_history"), rest("history", path="_history", entities=()),
    rest("operation", operation="$everything", path="Patient/p1/$everything"),
    rest("transaction", path="", entities=(Entity("Patient/p1", 1), Entity("Observation/o1", 1))),
    rest("batch", path="", entities=()), rest("capabilities", path="metadata", entities=()),
    rest("unknown", path="Nonsense/1", entities=(), outcome=MINOR_FAILURE, status=404,
         outcome_resource=outcome_resource("Unknown resource type 'Nonsense'")),
    rest("create", outcome=SERIOUS_FAILURE, status=500, entities=(),
         outcome_resource={"resourceType": "OperationOutcome", "id": "x1",
                           "issue": [{"severity": "fatal", "code": "exception",
                                      "details": {"text": "database unavailable"}}]}),
    rest("read", client="app-1", user="user-9", role="nurse in charge", organization="RX1",
         purpose="free-text reason", source_ip="2001:db8::7"),
    rest("read", source_ip=None, request_id=None, method=None, path=None, entities=()),
    FULL, FAILED_OPERATION, outbound(), outbound(destination="MAILBOX01"),
    outbound(interaction="ack", destination=None),
    outbound(outcome=MAJOR_FAILURE, status=None, detail="timed out"), system_import(),
    AuditRecord(id="ae-min", recorded=NOW, kind="system", interaction="purge", outcome=SUCCESS),
]


@pytest.mark.parametrize("base_url", [BASE, None])
@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r.id}-{r.interaction}")
def test_every_rendered_event_passes_the_structural_check(record: AuditRecord,
                                                          base_url: str | None) -> None:
    event = audit_event(record, base_url)
    assert errors(check_resource(event, expected_type="AuditEvent")) == []


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(packaged(), terminology(), unknown_profile="warning")


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r.id}-{r.interaction}")
def test_every_rendered_event_meets_the_r4_auditevent_definition(record: AuditRecord,
                                                                 validator: Validator) -> None:
    """Cardinality, required bindings and invariants (sev-1, dom-2/3/4/5) of R4; the BALP
    profiles themselves are not packaged, so they are only warned about."""
    assert errors(validator.validate(audit_event(record, BASE), expected_type="AuditEvent")) == []
