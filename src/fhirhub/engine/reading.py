"""Search and history interactions and the Bundles they answer with
(https://hl7.org/fhir/R4/search.html, https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fhirhub.engine import guard
from fhirhub.engine.clock import now_instant
from fhirhub.engine.code_sets import resolve_code_sets
from fhirhub.engine.crud import etag
from fhirhub.engine.formats import apply_view, parse_elements, summary_mode
from fhirhub.engine.outcome import operation_outcome, status_line
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route
from fhirhub.errors import InvalidError
from fhirhub.fhir import json as fjson
from fhirhub.fhir.model import element_model
from fhirhub.search.types import Access
from fhirhub.store.base import StoredVersion

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

Json = dict[str, Any]

_RESULT_PARAMS = ("_format", "_pretty", "_summary", "_elements")


def search(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    params = list(req.query)
    if req.method == "POST":
        if req.content_type not in ("application/x-www-form-urlencoded", ""):
            from fhirhub.errors import UnsupportedMediaError

            raise UnsupportedMediaError(
                "POST _search takes its parameters as application/x-www-form-urlencoded",
                spine_code="UNSUPPORTED_MEDIA_TYPE",
            )
        params += parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
    types = _searched_types(route, params)
    strict = req.prefer.get("handling") == "strict"
    query, issues = engine.parse_search(types, params, strict)
    if route.interaction == "compartment":
        assert route.resource_type and route.id
        query = replace(query, compartment=(route.resource_type, route.id))
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise InvalidError(errors[0].diagnostics, issue_code=errors[0].code,
                           spine_code=errors[0].spine_code or "INVALID_PARAMETER",
                           issues=errors[1:])
    summary = summary_mode(last_param(params, "_summary"))
    if summary == "count":
        query = replace(query, total="accurate", count=0)
    query = resolve_code_sets(query, engine.store)
    page = engine.store.search(query)
    req.note_read(page.matches)
    req.note_read(page.included)
    elements = parse_elements(last_param(params, "_elements"))
    entries = [_entry(req, v, "match", summary, elements) for v in page.matches]
    entries += [_entry(req, v, "include", summary, elements) for v in page.included]
    warnings = [i for i in issues if i.severity not in ("error", "fatal")]
    if warnings:
        entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    used = engine.used_params(query, params)
    path = req.path.removesuffix("/_search") if req.method == "POST" else req.path
    # search.html#paging: self (this page), first, previous and next. Pages are keyset
    # positions, so a cursor link stays valid while data changes.
    here = [*used, ("_cursor", query.cursor)] if query.cursor else used
    links = [{"relation": "self", "url": page_url(req.base_url, path, here)},
             {"relation": "first", "url": page_url(req.base_url, path, used)}]
    if page.previous_cursor:
        links.append({"relation": "previous", "url": page_url(
            req.base_url, path, [*used, ("_cursor", page.previous_cursor)])})
    if page.next_cursor:
        links.append({"relation": "next",
                      "url": page_url(req.base_url, path, [*used, ("_cursor", page.next_cursor)])})
    bundle: Json = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                    "meta": {"lastUpdated": now_instant()}, "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, resource=bundle, elements_applicable=False)


def _searched_types(route: Route, params: list[tuple[str, str]]) -> tuple[str, ...]:
    """The types a search looks at; at system level and in a whole compartment, only
    those the caller may search (() means every type)."""
    if route.resource_type and route.interaction != "compartment":
        return (route.resource_type,)
    if route.interaction == "compartment":
        if route.compartment_type != "*":
            return (route.compartment_type or "",)
        return guard.searchable_types(guard.current(), ())
    types = _type_param(params)
    if "AuditEvent" in types:
        raise InvalidError("AuditEvents (the audit log) are searched at their own endpoint, "
                           "[base]/AuditEvent?…, not in a system search",
                           spine_code="INVALID_PARAMETER")
    return guard.searchable_types(guard.current(), types)


def _type_param(params: list[tuple[str, str]]) -> tuple[str, ...]:
    types: list[str] = []
    for key, value in params:
        if key == "_type":
            for name in value.split(","):
                if not element_model().is_resource_type(name.strip()):
                    raise InvalidError(f"_type names '{name}', which is not a resource type",
                                       spine_code="INVALID_PARAMETER")
                types.append(name.strip())
    return tuple(types)


def last_param(params: list[tuple[str, str]], name: str) -> str | None:
    found = None
    for key, value in params:
        if key == name:
            found = value
    return found


def _entry(req: FhirRequest, version: StoredVersion, mode: str, summary: Any,
           elements: frozenset[str] | None) -> Json:
    resource: Any = fjson.RawJson(version.body or b"{}")
    if summary is not None or elements is not None:
        resource = apply_view(resource.load(), summary, elements)
    return {"fullUrl": f"{req.base_url}/{version.resource_type}/{version.id}",
            "resource": resource, "search": {"mode": mode}}


def page_url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    url = f"{base}/{path}" if path else base
    return f"{url}?{urlencode(params)}" if params else url


def history(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    count = engine.page_size(req.param("_count"))
    since = _instant_param(req, "_since")
    at = _instant_param(req, "_at")
    cursor = req.param("_cursor")
    if cursor is not None and not cursor.isdigit():
        raise InvalidError("The paging cursor is not one this server issued",
                           spine_code="INVALID_VALUE")
    page = engine.store.history(route.resource_type, route.id, since=since, at=at,
                                count=count, cursor=cursor, access=_history_access(route))
    if route.interaction == "history-instance" and not page.versions and cursor is None:
        assert route.resource_type and route.id
        if engine.store.read(route.resource_type, route.id) is None:
            from fhirhub.errors import NotFoundError

            raise NotFoundError(f"{route.resource_type}/{route.id} does not exist",
                                spine_code="RESOURCE_NOT_FOUND")
    req.note_read(v for v in page.versions if not v.deleted)
    entries = [_history_entry(req.base_url, v) for v in page.versions]
    kept = [(k, v) for k, v in req.query if k in ("_count", "_since", "_at", "_format")]
    links = [{"relation": "self", "url": page_url(req.base_url, req.path, list(req.query))}]
    if page.next_cursor:
        links.append({"relation": "next",
                      "url": page_url(req.base_url, req.path, [*kept, ("_cursor", page.next_cursor)])})
    bundle: Json = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                    "meta": {"lastUpdated": now_instant()}, "type": "history", "link": links}
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, resource=bundle, elements_applicable=False)


def _history_access(route: Route) -> Access | None:
    """What a history may show the caller: for a patient, only resources now in their
    compartment; at system level, only the types they may search (at type and instance
    level the type was authorised before)."""
    grant = guard.current()
    if grant is None or grant.access is None:
        return None
    types = guard.searchable_types(grant, ()) if route.resource_type is None else ()
    return replace(grant.access, types=frozenset(types) if types else None)


def _instant_param(req: FhirRequest, name: str) -> str | None:
    value = req.param(name)
    if value is None:
        return None
    from fhirhub.engine.clock import parse_instant

    try:
        parsed = parse_instant(value if "T" in value else value + "T00:00:00Z")
    except ValueError:
        raise InvalidError(f"{name}={value!r} is not a FHIR instant such as "
                           "2026-01-31T12:00:00Z", spine_code="INVALID_VALUE") from None
    if parsed.tzinfo is None:
        raise InvalidError(f"{name} needs a time zone, e.g. 2026-01-31T12:00:00Z",
                           spine_code="INVALID_VALUE")
    from datetime import UTC

    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _history_entry(base: str, v: StoredVersion) -> Json:
    entry: Json = {"fullUrl": f"{base}/{v.resource_type}/{v.id}"}
    if v.body is not None:
        entry["resource"] = fjson.loads(v.body)
    method = "DELETE" if v.deleted else ("POST" if v.method == "POST" else "PUT")
    url = v.resource_type if method == "POST" else f"{v.resource_type}/{v.id}"
    entry["request"] = {"method": method, "url": url}
    status = 204 if v.deleted else (201 if v.version_id == 1 else 200)
    entry["response"] = {"status": status_line(status), "etag": etag(v.version_id),
                         "lastModified": v.last_updated}
    return entry


__all__ = ["history", "last_param", "page_url", "search"]
