"""Single-request interactions: read, vread, create, update, patch, delete and their
conditional forms (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhirhub.engine import crud, guard
from fhirhub.engine.clock import parse_instant
from fhirhub.engine.formats import JSON_TYPES, parse_body
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.responses import shaped, version_headers, written_response
from fhirhub.engine.router import Route, check_id
from fhirhub.errors import (
    GoneError,
    InvalidError,
    NotFoundError,
    UnsupportedMediaError,
)
from fhirhub.fhir import json as fjson

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

Json = dict[str, Any]


def _resource_body(req: FhirRequest) -> Json:
    body = req.parsed if req.parsed is not None else parse_body(req.body, req.header("content-type"))
    if not isinstance(body, dict):
        raise InvalidError("The body must be a FHIR resource (a JSON object)",
                           issue_code="structure", spine_code="INVALID_REQUEST")
    return body


def read(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type and route.id
    version = engine.store.read(route.resource_type, route.id)
    if version is None:
        raise NotFoundError(f"{route.resource_type}/{route.id} does not exist",
                            spine_code="RESOURCE_NOT_FOUND")
    headers = version_headers(version, req.base_url, location=False)
    if version.deleted:
        raise GoneError(f"{route.resource_type}/{route.id} was deleted",
                        spine_code="RESOURCE_NOT_FOUND", headers=headers)
    if _not_modified(req, version.version_id, version.last_updated):
        return FhirResponse(304, headers=headers)
    req.note_read((version,))
    return FhirResponse(200, json_body=version.body, headers=headers,
                        last_updated=version.last_updated)


def _not_modified(req: FhirRequest, version_id: int, last_updated: str) -> bool:
    inm = req.header("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in inm.split(",")}
        return "*" in tags or str(version_id) in tags
    ims = req.header("if-modified-since")
    if ims:
        from email.utils import parsedate_to_datetime

        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return parse_instant(last_updated).replace(microsecond=0) <= since
    return False


def vread(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type and route.id and route.version is not None
    if not route.version.isdigit():
        raise NotFoundError(f"'{route.version}' is not a version of {route.resource_type}/"
                            f"{route.id}: versions are whole numbers",
                            spine_code="RESOURCE_NOT_FOUND")
    version = engine.store.vread(route.resource_type, route.id, int(route.version))
    if version is None:
        raise NotFoundError(
            f"{route.resource_type}/{route.id} has no version {route.version}",
            spine_code="RESOURCE_NOT_FOUND",
        )
    headers = version_headers(version, req.base_url, location=False)
    if version.deleted:
        raise GoneError(f"Version {route.version} of {route.resource_type}/{route.id} is a "
                        "deletion", spine_code="RESOURCE_NOT_FOUND", headers=headers)
    req.note_read((version,))
    return FhirResponse(200, json_body=version.body, headers=headers,
                        last_updated=version.last_updated)


def create(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type
    rtype = route.resource_type
    resource = _resource_body(req)
    criteria = req.header("if-none-exist")
    keys = [crud.conditional_key(rtype, criteria)] if criteria else []
    prepared = crud.prepare_create(engine.ctx, resource, rtype, req.assigned_id)

    def work(tx: Any) -> FhirResponse:
        if criteria:
            existing = crud.single_match(engine.ctx, tx, rtype, criteria)
            if existing is not None:
                req.note_read((existing,))
                headers = version_headers(existing, req.base_url, location=True)
                found = FhirResponse(200, json_body=existing.body, headers=headers)
                return shaped(req, found, f"{rtype}/{existing.id} already matches; not created")
        return written_response(req, prepared.write(tx), status=201)

    return engine.write(req, keys, work)


def update(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type and route.id
    rtype, rid = route.resource_type, route.id
    resource = _resource_body(req)

    # The CPU work (checks, index, body) is done against the version read now; the write
    # lock is held only to confirm that version and write.
    prepared = crud.prepare_update(engine.ctx, rtype, rid, resource,
                                   engine.store.read(rtype, rid))

    def work(tx: Any) -> FhirResponse:
        written = crud.commit_update(tx, prepared, req.header("if-match"))
        return written_response(req, written)

    return engine.write(req, [crud.resource_key(rtype, rid)], work)


def conditional_update(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type
    rtype = route.resource_type
    criteria = _criteria(req)
    resource = _resource_body(req)

    def work(tx: Any) -> FhirResponse:
        found = crud.single_match(engine.ctx, tx, rtype, criteria)
        if found is None:
            rid = resource.get("id")
            if rid is not None:
                check_id(str(rid))
                guard.check_replaceable(tx, rtype, str(rid))
                written = crud.update(engine.ctx, tx, rtype, str(rid), resource)
            else:
                written = crud.create(engine.ctx, tx, resource, rtype)
            return written_response(req, written, status=201)
        if resource.get("id") not in (None, found.id):
            raise InvalidError(
                f"The criteria match {rtype}/{found.id} but the body has id "
                f"'{resource.get('id')}'", spine_code="INVALID_RESOURCE_ID",
            )
        body = {**resource, "id": found.id}
        written = crud.update(engine.ctx, tx, rtype, found.id, body, req.header("if-match"))
        return written_response(req, written)

    return engine.write(req, [crud.conditional_key(rtype, criteria)], work)


def delete(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type and route.id
    rtype, rid = route.resource_type, route.id

    if_match = req.header("if-match")

    def work(tx: Any) -> FhirResponse:
        if if_match is not None:
            crud.check_if_match(tx.read(rtype, rid), rtype, rid, if_match)
        written = crud.delete(tx, rtype, rid)
        headers = {} if written is None else {"ETag": crud.etag(written.version.version_id)}
        return FhirResponse(204, headers=headers)

    return engine.write(req, [crud.resource_key(rtype, rid)], work)


def conditional_delete(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type
    rtype = route.resource_type
    criteria = _criteria(req)

    def work(tx: Any) -> FhirResponse:
        found = crud.single_match(engine.ctx, tx, rtype, criteria)
        if found is not None:
            crud.delete(tx, rtype, found.id)
        return FhirResponse(204)

    return engine.write(req, [crud.conditional_key(rtype, criteria)], work)


def patch(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type and route.id
    rtype, rid = route.resource_type, route.id
    operations = _patch_body(req)

    def work(tx: Any) -> FhirResponse:
        return _patch_one(engine, req, tx, rtype, rid, operations)

    return engine.write(req, [crud.resource_key(rtype, rid)], work)


def conditional_patch(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    assert route.resource_type
    rtype = route.resource_type
    criteria = _criteria(req)
    operations = _patch_body(req)

    def work(tx: Any) -> FhirResponse:
        found = crud.single_match(engine.ctx, tx, rtype, criteria)
        if found is None:
            raise NotFoundError(f"No {rtype} matches '{criteria}', so there is nothing to patch",
                                spine_code="RESOURCE_NOT_FOUND")
        return _patch_one(engine, req, tx, rtype, found.id, operations)

    return engine.write(req, [crud.conditional_key(rtype, criteria)], work)


def _patch_body(req: FhirRequest) -> tuple[str, Any]:
    media = req.content_type
    if media in ("application/json-patch+json",):
        return "json-patch", fjson.loads(req.body) if req.body.strip() else _empty()
    if media in JSON_TYPES or media in ("application/fhir+xml", "application/xml", "xml"):
        body = req.parsed if req.parsed is not None else \
            parse_body(req.body, req.header("content-type"))
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            return "fhirpath-patch", body
        if isinstance(body, list) and media in JSON_TYPES:
            return "json-patch", body
        raise InvalidError(
            "A FHIRPath Patch body must be a Parameters resource", spine_code="INVALID_REQUEST"
        )
    raise UnsupportedMediaError(
        f"PATCH takes application/json-patch+json (JSON Patch) or a FHIR Parameters resource "
        f"(FHIRPath Patch) as application/fhir+json or application/fhir+xml, not {media!r}",
        spine_code="UNSUPPORTED_MEDIA_TYPE",
    )


def _empty() -> Any:
    raise InvalidError("The PATCH body is empty", spine_code="MISSING_VALUE")


def _patch_one(engine: Engine, req: FhirRequest, tx: Any, rtype: str, rid: str,
               operations: tuple[str, Any]) -> FhirResponse:
    from fhirhub.fhir.patch import apply_fhirpath_patch, apply_json_patch

    current, resource = crud.current_resource(tx, rtype, rid)
    if_match = req.header("if-match")
    if if_match is not None:
        crud.check_if_match(current, rtype, rid, if_match)
    kind, ops = operations
    patched = apply_json_patch(resource, ops) if kind == "json-patch" \
        else apply_fhirpath_patch(resource, ops)
    if patched.get("resourceType") != rtype or patched.get("id") != rid:
        raise InvalidError("A patch may not change the resource type or id",
                           spine_code="INVALID_VALUE")
    written = crud.update(engine.ctx, tx, rtype, rid, patched, method="PATCH")
    return written_response(req, written)


def _criteria(req: FhirRequest) -> str:
    from urllib.parse import urlencode

    params = [(k, v) for k, v in req.query if k not in ("_format", "_pretty")]
    if not params:
        raise InvalidError(
            "A conditional interaction needs search criteria in the URL, e.g. "
            "?identifier=system|value", spine_code="INVALID_SEARCH_DATA",
        )
    return urlencode(params)


__all__ = [
    "conditional_delete",
    "conditional_patch",
    "conditional_update",
    "create",
    "delete",
    "patch",
    "read",
    "update",
    "vread",
]
