"""FHIR R4 ``AuditEvent`` resources rendered from audit records, after IHE BALP.

:func:`audit_event` turns one :class:`~fhirhub.audit.record.AuditRecord` into an AuditEvent
following the IHE ITI *Basic Audit Log Patterns* (BALP) implementation guide, version 1.1.3
(the published version, https://profiles.ihe.net/ITI/BALP/), read in its FSH sources
(github.com/IHE/ITI.BasicAudit) and the 1.1.5 continuous build's pages (older sources had
only a PatientDelete, with closed slicing; the current Delete/PatientDelete pair is followed).
A pure function building plain dicts (no copies of the record's data beyond a shallow one of
its OperationOutcome), because it runs for every AuditEvent read or found (1000 a page).

Profiles (``meta.profile``)
    A BALP profile is claimed only when the event meets it, so a claim can be trusted:
    a successful (``outcome`` 0: BALP fixes it, "failures are recorded differently") REST
    create, read/vread, update/patch, delete or search, with the client's address and this
    server's base URL known (both agents' ``network`` are 1..1), and, for everything but a
    search, exactly one resource acted on (BALP's ``data`` entity is 1..1). The Patient*
    variant is claimed when exactly one patient is concerned; with several, BALP wants one
    event per patient, and one record is one event here, so the plain profile is claimed
    (its entity slicing is open: the patient entities are still there). History, operation,
    transaction, batch, capabilities, outbound and system events, failures, and events
    missing an address claim nothing beyond core R4: BALP has no pattern for them, and
    its RESTful profiles fix the interaction, the outcome or both.

``type`` and ``subtype``
    REST: ``rest`` (audit-event-type), the restful-interaction code as subtype (``history``
    is resolved to history-instance/-type/-system from the path, ``search`` to search-type
    or search-system from the type addressed), plus a system-less coding with the operation
    name (``$validate``) for operations: R4 has no code system of operation names. Outbound
    (``send``, ``ack``): DICOM 110106 *Export*, the ATNA event for data leaving the system,
    which BALP's Privacy Disclosure profile also uses; a send adds ISO 21089 *transmit*.
    System ``import``: DICOM 110107 *Import* with ISO 21089 *receive*; other system events
    DICOM 110100 *Application Activity*. Every non-REST event also carries the record's
    interaction as a system-less subtype coding, the code fhirhub's ``subtype`` search uses.

Agents
    BALP's client/server pattern, with its direction: for reads (action R) the client is
    the *Destination Role ID* (110152) and the server the *Source Role ID* (110153); for
    create, update, delete and search (and everything else) the other way round (BALP:
    "the query parameters are flowing from the client to the server"). The client agent
    also has the coding 110150 *Application* (the one BALP's Delete profile slices on),
    ``who.identifier.value`` = the client id, ``network`` = its IP address (type 2), and is
    the requestor when there is no user. The server's ``who.display`` is "fhirhub",
    ``network`` its base URL (type 5, URI) when given; for a delete it also has the coding
    *custodian* (provenance-participant-type), as BALP's Delete profile wants. The user
    (requestor) has the type BALP gives users for the interaction (IRCP *information
    recipient* for reads and searches, AUT *author* for create/update/delete, *human user*
    otherwise), ``who.identifier.value`` = the user id, ``role`` = the CIS2 role as text
    (no published code system URI is known for it) and ``purposeOfUse``. Their ODS
    organisation is an agent of its own, typed v3-RoleClass PROV as BALP's SAML profile
    types the user's organisation, with the ODS code identifier. Outbound: this server is
    the source (and requestor), ``record.destination`` the destination (network type URI
    or e-mail address when it is one). System: this server as the application.

Entities
    * The resources: ``what.reference`` Type/id[/_history/v] and ``what.type``; type
      *System Object* (audit-entity-type 2) as BALP's ``data`` slice wants, role from the
      record's role (domain: 4 *Domain Resource*). A search's results are typed with their
      resource type (resource-types) instead: BALP's Query profile takes every System
      Object entity for its single query entity and records no results, but fhirhub
      records them (``AuditEvent?entity=`` finds the searches that returned a resource).
    * Patients: *Person* (1), role 1 *Patient*, ``what.reference`` when known and the NHS
      number as ``what.identifier``.
    * The search: *System Object*, role 24 *Query*, ``query`` = base64 of the raw search
      request as the record knows it (``GET Observation?code=…``) and ``description`` the
      same as text. BALP's examples encode the request line, and ``query`` is 1..1 there
      while a search may have no query string (base64Binary cannot be empty), so the line,
      not the bare query string, is encoded.
    * X-Request-ID: BALP's ``transaction`` entity (BasicAuditEntityType ``XrequestId``,
      ``what.identifier.value``). BALP defines no code for X-Correlation-ID, and fhirhub
      does not mint code systems, so it is an entity of type 4 *Other* with the id as
      ``what.identifier`` (``type.text`` and ``description`` "X-Correlation-ID").
    * The parent record: ``what.reference`` AuditEvent/[parent], type AuditEvent.
    * A failure's OperationOutcome: contained (``#outcome``) and referenced from an entity
      typed OperationOutcome; a contained resource keeps it structured and checked, where
      an ``entity.detail`` could only hold it as an opaque string. ``outcomeDesc`` is its
      first issue's diagnostics (or, for outbound failures, the record's detail).
    * Everything else of the exchange (method, path, status, user agent, channel, Bundle
      entry, request and response SHA-256 digests; a destination or role no agent holds)
      as ``detail`` of one entity named "exchange" (type 4 *Other*; ``description`` = the
      record's own description): BALP forbids ``detail`` on its data, patient, query and
      transaction entities.

``source``: observer "fhirhub", type 4 *Application Server*, ``site`` the base URL's host.
``purposeOfEvent``: a v3 PurposeOfUse code when the stated purpose is one, else text.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from fhirhub.audit.record import SUCCESS, AuditRecord, Entity, PatientRef

Json = dict[str, Any]

SERVER = "fhirhub"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
PROVENANCE_ROLE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORGANIZATION = "https://fhir.nhs.uk/Id/ods-organization-code"

# network-type (AuditEvent.agent.network.type)
IP_ADDRESS, EMAIL_ADDRESS, URI = "2", "4", "5"
SOURCE_ROLE, DESTINATION_ROLE, APPLICATION = "110153", "110152", "110150"
_DCM = {SOURCE_ROLE: "Source Role ID", DESTINATION_ROLE: "Destination Role ID",
        APPLICATION: "Application", "110100": "Application Activity", "110106": "Export",
        "110107": "Import"}

# BALP profile of each interaction (its Patient* variant adds "Patient")
_PROFILES = {"create": "Create", "read": "Read", "vread": "Read", "update": "Update",
             "patch": "Update", "delete": "Delete", "search": "Query"}
_RESTFUL = frozenset({"read", "vread", "update", "patch", "delete", "create", "capabilities",
                      "transaction", "batch", "operation"})
_LIFECYCLE = {"send": ("transmit", "Transmit Record Lifecycle Event"),
              "import": ("receive", "Receive/Retain Record Lifecycle Event")}
# object-role codes for the record's entity roles; BALP's RestObjectRoles are 4, 3 and 20
_ROLES = {"domain": ("4", "Domain Resource"), "query": ("24", "Query"),
          "patient": ("1", "Patient"), "report": ("3", "Report"), "job": ("20", "Job"),
          "location": ("2", "Location"), "list": ("7", "List"), "user": ("6", "User")}
_REST_OBJECT_ROLES = frozenset({"4", "3", "20"})
# http://terminology.hl7.org/ValueSet/v3-PurposeOfUse (R4 expansion)
_PURPOSE_OF_USE = frozenset({
    "HMARKT", "HOPERAT", "CAREMGT", "DONAT", "FRAUD", "GOV", "HACCRED", "HCOMPL", "HDECD",
    "HDIRECT", "HDM", "HLEGAL", "HOUTCOMS", "HPRGRP", "HQUALIMP", "HSYSADMIN", "LABELING",
    "METAMGT", "MEMADMIN", "MILCDM", "PATADMIN", "PATSFTY", "PERFMSR", "RECORDMGT", "SYSDEV",
    "HTEST", "TRAIN", "HPAYMT", "CLMATTCH", "COVAUTH", "COVERAGE", "ELIGDTRM", "ELIGVER",
    "ENROLLM", "MILDCRG", "REMITADV", "HRESCH", "BIORCH", "CLINTRCH", "CLINTRCHNPC", "CLINTRCHPC",
    "PRECLINTRCH", "DSRCH", "POARCH", "TRANSRCH", "PATRQT", "FAMRQT", "PWATRNY", "SUPNWK",
    "PUBHLTH", "DISASTER", "THREAT", "TREAT", "CLINTRL", "COC", "ETREAT", "BTG", "ERTREAT",
    "POPHLTH",
})
OUTCOME_ID = "outcome"


def audit_event(record: AuditRecord, base_url: str | None = None) -> dict[str, Any]:
    """The AuditEvent for ``record``; ``base_url`` is this server's FHIR base, when known
    (the server agent's network address, and needed for a BALP profile claim)."""
    outcome = _outcome_resource(record)
    entities = _entities(record, outcome is not None)
    # One version, never updated: it was last updated when it was recorded.
    meta: Json = {"versionId": "1", "lastUpdated": record.recorded}
    event: Json = {"resourceType": "AuditEvent", "id": record.id, "meta": meta}
    profile = _profile(record, base_url, entities)
    if profile is not None:
        meta["profile"] = [profile]
    if outcome is not None:
        event["contained"] = [outcome]
    event["type"] = _type(record)
    event["subtype"] = _subtypes(record)
    event["action"] = record.action
    event["recorded"] = record.recorded
    event["outcome"] = record.outcome
    description = _outcome_desc(record)
    if description:
        event["outcomeDesc"] = description
    if record.purpose:
        event["purposeOfEvent"] = [_purpose(record.purpose)]
    event["agent"] = _agents(record, base_url)
    event["source"] = _source(base_url)
    if entities:
        event["entity"] = entities
    return event


# --- meta.profile ---------------------------------------------------------------------------

def _profile(record: AuditRecord, base_url: str | None, entities: list[Json]) -> str | None:
    name = _PROFILES.get(record.interaction)
    if (name is None or record.kind != "rest" or record.outcome != SUCCESS
            or not record.source_ip or not base_url):
        return None
    objects = [e for e in entities if _is(e, ENTITY_TYPE, "2")]
    if len(objects) != 1:
        return None
    if name != "Query" and objects[0].get("role", {}).get("code") not in _REST_OBJECT_ROLES:
        return None
    patients = sum(1 for e in entities if _is(e, ENTITY_TYPE, "1"))
    return f"{BALP}Patient{name}" if patients == 1 else f"{BALP}{name}"


def _is(entity: Json, system: str, code: str) -> bool:
    kind = entity.get("type")
    return kind is not None and kind.get("system") == system and kind.get("code") == code


# --- type, subtype, purpose, outcome ----------------------------------------------------------

def _coding(system: str, code: str, display: str | None = None) -> Json:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _dcm(code: str) -> Json:
    return _coding(DCM, code, _DCM[code])


def _type(record: AuditRecord) -> Json:
    if record.kind == "outbound":
        return _dcm("110106")
    if record.kind == "system":
        return _dcm("110107" if record.interaction == "import" else "110100")
    return _coding(EVENT_TYPE, "rest", "RESTful Operation")


def _subtypes(record: AuditRecord) -> list[Json]:
    if record.kind == "rest":
        code = _restful(record)
        out = [_coding(RESTFUL, code, code) if code else {"code": record.interaction}]
        if record.interaction == "operation" and record.operation:
            out.append({"code": record.operation, "display": record.operation})
        return out
    lifecycle = _LIFECYCLE.get(record.interaction)
    own = {"code": record.interaction}
    return [_coding(LIFECYCLE, *lifecycle), own] if lifecycle else [own]


def _restful(record: AuditRecord) -> str | None:
    interaction = record.interaction
    if interaction in _RESTFUL:
        return interaction
    if interaction == "search":
        return "search-type" if record.resource_type else "search-system"
    if interaction == "history":
        return _history(record)
    return None


def _history(record: AuditRecord) -> str:
    """history-instance (``Patient/1/_history``), -type (``Patient/_history``) or -system
    (``_history``), from the path."""
    if record.path is None:
        return "history-type" if record.resource_type else "history-system"
    head, _, rest = record.path.partition("/")
    if head == "_history":
        return "history-system"
    return "history-type" if rest.partition("/")[0] == "_history" else "history-instance"


def _purpose(purpose: str) -> Json:
    if purpose in _PURPOSE_OF_USE:
        return {"coding": [_coding(ACT_REASON, purpose)]}
    return {"text": purpose}


def _outcome_resource(record: AuditRecord) -> Json | None:
    found = record.outcome_resource
    if not isinstance(found, dict) or found.get("resourceType") != "OperationOutcome":
        return None
    contained = {**found, "id": OUTCOME_ID}
    contained.pop("meta", None)  # dom-4/dom-5: no versionId, lastUpdated or security there
    return contained


def _outcome_desc(record: AuditRecord) -> str | None:
    found = record.outcome_resource
    issues = found.get("issue") if isinstance(found, dict) else None
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        first = issues[0]
        details = first.get("details")
        text = first.get("diagnostics") or (details.get("text") if isinstance(details, dict)
                                            else None)
        if isinstance(text, str) and text:
            return text
    if record.outcome != SUCCESS and record.kind != "rest" and record.detail:
        return record.detail
    return None


# --- agents -------------------------------------------------------------------------------

def _agents(record: AuditRecord, base_url: str | None) -> list[Json]:
    if record.kind == "outbound":
        agents = _outbound_agents(record, base_url)
    elif record.kind == "system":
        agents = [_agent([_dcm(APPLICATION)], {"display": SERVER}, requestor=not record.user)]
    else:
        agents = _rest_agents(record, base_url)
    if record.kind != "rest" and (record.client or record.source_ip):
        agents.append(_client(record, [_dcm(APPLICATION)], requestor=False))
    if record.user:
        agents.append(_user(record))
    if record.organization:
        agents.append(_agent([_coding(ROLE_CLASS, "PROV", "healthcare provider")],
                             {"type": "Organization", "identifier": {
                                 "system": ODS_ORGANIZATION, "value": record.organization}},
                             requestor=False))
    return agents


def _agent(types: list[Json], who: Json, *, requestor: bool) -> Json:
    return {"type": {"coding": types}, "who": who, "requestor": requestor}


def _rest_agents(record: AuditRecord, base_url: str | None) -> list[Json]:
    reads = record.action == "R"  # data flows to the client: it is the destination
    client_role, server_role = ((DESTINATION_ROLE, SOURCE_ROLE) if reads
                                else (SOURCE_ROLE, DESTINATION_ROLE))
    client = _client(record, [_dcm(client_role), _dcm(APPLICATION)],
                     requestor=not record.user)
    server_types = [_dcm(server_role)]
    if record.interaction == "delete":
        server_types.append(_coding(PROVENANCE_ROLE, "custodian", "Custodian"))
    return [client, _server(server_types, base_url, requestor=False)]


def _client(record: AuditRecord, types: list[Json], *, requestor: bool) -> Json:
    who = ({"identifier": {"value": record.client}} if record.client
           else {"display": "unidentified client"})
    agent = _agent(types, who, requestor=requestor)
    if record.source_ip:
        agent["network"] = {"address": record.source_ip, "type": IP_ADDRESS}
    return agent


def _server(types: list[Json], base_url: str | None, *, requestor: bool) -> Json:
    agent = _agent(types, {"display": SERVER}, requestor=requestor)
    if base_url:
        agent["network"] = {"address": base_url, "type": URI}
    return agent


def _outbound_agents(record: AuditRecord, base_url: str | None) -> list[Json]:
    agents = [_server([_dcm(SOURCE_ROLE), _dcm(APPLICATION)], base_url,
                      requestor=not record.user)]
    destination = record.destination
    if destination:
        agent = _agent([_dcm(DESTINATION_ROLE)], {"display": destination}, requestor=False)
        kind = URI if "://" in destination else EMAIL_ADDRESS if "@" in destination else None
        if kind is not None:
            agent["network"] = {"address": destination, "type": kind}
        agents.append(agent)
    return agents


def _user(record: AuditRecord) -> Json:
    assert record.user is not None
    if record.action == "R" or record.interaction == "search":
        kind = _coding(PARTICIPATION, "IRCP", "information recipient")
    elif record.action in ("C", "U", "D"):
        kind = _coding(PARTICIPATION, "AUT", "author (originator)")
    else:
        kind = _coding(SECURITY_ROLE, "humanuser", "human user")
    agent = _agent([kind], {"identifier": {"value": record.user}}, requestor=True)
    if record.role:
        agent["role"] = [{"text": record.role}]
    if record.purpose:
        agent["purposeOfUse"] = [_purpose(record.purpose)]
    return agent


@lru_cache(maxsize=16)
def _site(base_url: str) -> str | None:
    return urlsplit(base_url).netloc or None


def _source(base_url: str | None) -> Json:
    source: Json = {}
    site = _site(base_url) if base_url else None
    if site:
        source["site"] = site
    source["observer"] = {"display": SERVER}
    source["type"] = [_coding(SOURCE_TYPE, "4", "Application Server")]
    return source


# --- entities -----------------------------------------------------------------------------

def _entities(record: AuditRecord, contained_outcome: bool) -> list[Json]:
    results = record.interaction == "search"
    out = [_resource(e, results=results) for e in record.entities]
    out += [_patient(p) for p in record.patients if p.reference or p.nhs_number]
    if record.interaction == "search" and record.kind == "rest":
        out.append(_query(record))
    if record.request_id:
        out.append({"what": {"identifier": {"value": record.request_id}},
                    "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "transport specific unique "
                                    "identifier where http X-Request-Id is used")})
    if record.correlation_id:
        out.append({"what": {"identifier": {"type": {"text": "X-Correlation-ID"},
                                            "value": record.correlation_id}},
                    "type": _coding(ENTITY_TYPE, "4", "Other"),
                    "description": "X-Correlation-ID"})
    if record.parent:
        out.append({"what": {"reference": f"AuditEvent/{record.parent}", "type": "AuditEvent"},
                    "type": _coding(RESOURCE_TYPES, "AuditEvent", "AuditEvent"),
                    "description": "The audit event this one is part of or was caused by"})
    if contained_outcome:
        out.append({"what": {"reference": f"#{OUTCOME_ID}", "type": "OperationOutcome"},
                    "type": _coding(RESOURCE_TYPES, "OperationOutcome", "OperationOutcome"),
                    "description": "The OperationOutcome of the failure"})
    exchange = _exchange(record)
    if exchange is not None:
        out.append(exchange)
    return out


def _resource(entity: Entity, *, results: bool) -> Json:
    rtype = entity.reference.partition("/")[0]
    reference = (entity.reference if entity.version is None
                 else f"{entity.reference}/_history/{entity.version}")
    if entity.role == "patient":
        kind = _coding(ENTITY_TYPE, "1", "Person")
    elif results:
        kind = _coding(RESOURCE_TYPES, rtype, rtype)
    else:
        kind = _coding(ENTITY_TYPE, "2", "System Object")
    out: Json = {"what": {"reference": reference, "type": rtype}, "type": kind}
    role = _ROLES.get(entity.role)
    out["role"] = _coding(OBJECT_ROLE, *role) if role else {"display": entity.role}
    return out


def _patient(patient: PatientRef) -> Json:
    what: Json = {}
    if patient.reference:
        what["reference"] = patient.reference
    what["type"] = "Patient"
    if patient.nhs_number:
        what["identifier"] = {"system": NHS_NUMBER, "value": patient.nhs_number}
    return {"what": what, "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient")}


def _query(record: AuditRecord) -> Json:
    line = f"{record.method or 'GET'} {record.path or ''}"
    if record.query:
        line = f"{line}?{record.query}"
    return {"type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "24", "Query"), "description": line,
            "query": base64.b64encode(line.encode()).decode("ascii")}


def _exchange(record: AuditRecord) -> Json | None:
    """The rest of the record, as ``detail`` of an entity named "exchange"."""
    values = (("method", record.method), ("path", record.path),
              ("status", None if record.status is None else str(record.status)),
              ("user-agent", record.user_agent), ("channel", record.channel),
              ("entry", None if record.entry is None else str(record.entry)),
              ("request-sha256", record.request_sha256),
              ("response-sha256", record.response_sha256),
              # kept here when no agent holds them
              ("destination", None if record.kind == "outbound" else record.destination),
              ("role", None if record.user else record.role))
    details = [{"type": name, "valueString": value} for name, value in values if value]
    if not details and not record.detail:
        return None
    out: Json = {"type": _coding(ENTITY_TYPE, "4", "Other"), "name": "exchange"}
    if record.detail:
        out["description"] = record.detail
    if details:
        out["detail"] = details
    return out


__all__ = ["audit_event"]
