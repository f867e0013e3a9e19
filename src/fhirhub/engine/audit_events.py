"""``AuditEvent`` over the FHIR API: the audit log, read-only.

AuditEvents are not stored as resources: each is rendered from its audit record
(:mod:`fhirhub.audit.balp`) when it is read or found. They can be read (version 1 is
the only one), searched (``AuditEvent?…``, ``Patient/123/AuditEvent``) and their
one-entry history read; creating, updating, patching or deleting one is refused with
405, and the refusal is audited like any other request.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fhirhub.audit import search as audit_search
from fhirhub.audit.balp import audit_event
from fhirhub.audit.record import AuditRecord
from fhirhub.engine.clock import http_date, now_instant
from fhirhub.engine.outcome import operation_outcome
from fhirhub.engine.reading import last_param, page_url
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route
from fhirhub.errors import InvalidError, Issue, NotAllowedError, NotFoundError
from fhirhub.store.audit import AuditQuery, AuditRow

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

Json = dict[str, Any]
READ_ONLY = frozenset({"read", "vread", "search-type", "history-instance", "compartment"})


def handle(engine: Engine, req: FhirRequest, r: Route) -> FhirResponse:
    if r.interaction not in READ_ONLY:
        raise NotAllowedError(
            "AuditEvents are the server's audit log: they can be read and searched, never "
            "created, changed or deleted through the API", spine_code="METHOD_NOT_ALLOWED",
            headers={"Allow": "GET, HEAD"})
    if r.interaction in ("search-type", "compartment"):
        return search(engine, req, r)
    assert r.id is not None
    row = _one(engine, r.id)
    if r.interaction == "vread" and r.version != "1":
        raise NotFoundError(f"AuditEvent/{r.id} has one version, 1",
                            spine_code="RESOURCE_NOT_FOUND")
    event = _event(row, req.base_url)
    if r.interaction == "history-instance":
        return FhirResponse(200, resource=_history(req, event), elements_applicable=False)
    headers = {"ETag": 'W/"1"', "Last-Modified": http_date(row.recorded)}
    return FhirResponse(200, resource=event, headers=headers, last_updated=row.recorded)


def _one(engine: Engine, audit_id: str) -> AuditRow:
    rows = engine.store.audit_search(AuditQuery(ids=(audit_id,), count=1)).rows
    if not rows:
        raise NotFoundError(f"AuditEvent/{audit_id} does not exist",
                            spine_code="RESOURCE_NOT_FOUND")
    return rows[0]


def _event(row: AuditRow, base_url: str) -> Json:
    return audit_event(AuditRecord.from_json(row.record), base_url)


def search(engine: Engine, req: FhirRequest, r: Route) -> FhirResponse:
    params = list(req.query)
    strict = req.prefer.get("handling") == "strict"
    if r.interaction == "compartment":
        if r.resource_type != "Patient":
            raise InvalidError("AuditEvents are searched by patient: Patient/[id]/AuditEvent",
                               spine_code="INVALID_REQUEST")
        params.append(("patient", f"Patient/{r.id}"))
    parsed = audit_search.parse(
        params, count=engine.page_size(last_param(params, "_count")), strict=strict,
        patients_with_nhs=lambda number: audit_search.patients_with_nhs(engine.store, number))
    query = parsed.query
    summary_count = last_param(params, "_summary") == "count"
    try:
        page = engine.store.audit_search(query) if not summary_count else None
    except ValueError:
        raise InvalidError("The paging cursor is not one this server issued",
                           spine_code="INVALID_VALUE") from None
    bundle: Json = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                    "meta": {"lastUpdated": now_instant()}, "type": "searchset"}
    if parsed.total:
        bundle["total"] = engine.store.audit_count(query)
    used = [(k, v) for k, v in params if k not in ("_cursor",) and k not in parsed.ignored]

    def url(params: list[tuple[str, str]]) -> str:
        return page_url(req.base_url, req.path, params)

    links = [{"relation": "self", "url": url([*used, *_cursor(query.cursor)])},
             {"relation": "first", "url": url(used)}]
    entries: list[Json] = []
    if page is not None:
        if page.next_cursor:
            links.append({"relation": "next",
                          "url": url([*used, ("_cursor", page.next_cursor)])})
        entries = [{"fullUrl": f"{req.base_url}/AuditEvent/{row.id}",
                    "resource": _event(row, req.base_url), "search": {"mode": "match"}}
                   for row in page.rows]
    if parsed.ignored:
        issues = [Issue("warning", "not-supported",
                        f"The parameter '{p}' is not supported for AuditEvent and was ignored")
                  for p in parsed.ignored]
        entries.append({"resource": operation_outcome(issues), "search": {"mode": "outcome"}})
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, resource=bundle)


def _history(req: FhirRequest, event: Json) -> Json:
    entry = {"fullUrl": f"{req.base_url}/AuditEvent/{event['id']}", "resource": event,
             "request": {"method": "POST", "url": "AuditEvent"},
             "response": {"status": "201 Created", "etag": 'W/"1"',
                          "lastModified": event["meta"]["lastUpdated"]}}
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": now_instant()}, "type": "history",
            "link": [{"relation": "self", "url": page_url(req.base_url, req.path, list(req.query))}],
            "entry": [entry]}


def _cursor(cursor: str | None) -> list[tuple[str, str]]:
    return [("_cursor", cursor)] if cursor else []


__all__ = ["READ_ONLY", "handle", "search"]
