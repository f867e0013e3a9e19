"""batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction runs every entry in one store transaction, in the spec's order (DELETE,
POST, PUT/PATCH, then GET), after giving each POST its id and rewriting every reference
to an entry's ``fullUrl`` (``urn:uuid:…``) and every conditional reference
(``Patient?identifier=…``) to the resource it names. Any failure rolls everything back.
A batch runs each entry on its own; one failing does not stop the others.

Entries go through the same interaction functions as single requests, against a
:class:`_InTransaction` view whose ``store`` is the open transaction, so an entry behaves
exactly as the same request would alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from fhirhub.engine import auditing, crud
from fhirhub.engine.clock import now_instant
from fhirhub.engine.outcome import error_outcome, status_line, status_of
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route, route
from fhirhub.errors import FhirError, InvalidError
from fhirhub.fhir import json as fjson
from fhirhub.store.base import Transaction

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

Json = dict[str, Any]
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


class _InTransaction:
    """The engine as the interaction functions see it, inside one open transaction."""

    def __init__(self, engine: Engine, tx: Transaction) -> None:
        self._engine = engine
        self.store = tx
        self.ctx = engine.ctx
        self.settings = engine.settings

    def write(self, req: FhirRequest, keys: Sequence[str],
              work: Callable[[Transaction], FhirResponse]) -> FhirResponse:
        return work(auditing.recording(self.store, req.trail))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def shell(bundle: Json) -> Json:
    """The Bundle without its entries' resources: what is checked as the Bundle itself,
    each entry's resource being checked by the interaction it goes to (so that a batch can
    fail one entry and keep the others)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return bundle
    return {**bundle, "entry": [
        {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
        for e in entries]}


def process(engine: Engine, req: FhirRequest, bundle: Json) -> FhirResponse:
    kind = bundle.get("type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidError("Bundle.entry must be a list", spine_code="INVALID_VALUE",
                           expression=("Bundle.entry",))
    parsed = [_parse_entry(i, e) for i, e in enumerate(entries)]
    if kind == "transaction":
        return _transaction(engine, req, parsed)
    if kind == "batch":
        return _batch(engine, req, parsed)
    raise InvalidError(
        f"A Bundle POSTed to the base must be a batch or a transaction, not {kind!r}",
        spine_code="INVALID_VALUE", expression=("Bundle.type",),
    )


class _Entry:
    def __init__(self, index: int, method: str, url: str, full_url: str | None,
                 resource: Json | None, headers: dict[str, str]) -> None:
        self.index = index
        self.method = method
        self.url = url
        self.full_url = full_url
        self.resource = resource
        self.headers = headers
        parts = urlsplit(url)
        self.path = parts.path.strip("/")
        self.query = parse_qsl(parts.query, keep_blank_values=True)
        self.assigned_id: str | None = None


def _parse_entry(index: int, entry: Any) -> _Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise InvalidError(f"{where} must be an object", spine_code="INVALID_VALUE",
                           expression=(where,))
    request = entry.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise InvalidError(f"{where}.request needs a method and a url",
                           spine_code="MISSING_VALUE", expression=(f"{where}.request",))
    method = str(request["method"]).upper()
    if method not in _ORDER:
        raise InvalidError(f"{where}.request.method {method!r} is not a FHIR HTTP verb",
                           spine_code="INVALID_VALUE", expression=(f"{where}.request.method",))
    headers: dict[str, str] = {}
    for field, header in (("ifMatch", "if-match"), ("ifNoneExist", "if-none-exist"),
                          ("ifNoneMatch", "if-none-match"),
                          ("ifModifiedSince", "if-modified-since")):
        if request.get(field):
            headers[header] = str(request[field])
    resource = entry.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise InvalidError(f"{where} is a {method} and needs a resource",
                           spine_code="MISSING_VALUE", expression=(f"{where}.resource",))
    url = str(request["url"])
    return _Entry(index, method, url, entry.get("fullUrl"), resource, headers)


def _sub_request(req: FhirRequest, entry: _Entry, body: Json | None) -> FhirRequest:
    headers = {"content-type": "application/fhir+json", **entry.headers}
    for name in ("prefer", "user-agent"):
        if name in req.headers:
            headers[name] = req.headers[name]
    trail = req.trail.child(entry.index) if req.trail is not None else None
    return FhirRequest(
        method=entry.method, path=entry.path, query=entry.query, headers=headers,
        body=b"", base_url=req.base_url, request_id=req.request_id,
        correlation_id=req.correlation_id, client_ip=req.client_ip,
        assigned_id=entry.assigned_id, parsed=body, trail=trail,
    )


def _audit_entry(req: FhirRequest, sub: FhirRequest, route: Route | None,
                 response: FhirResponse) -> None:
    """Note a Bundle entry's record on the Bundle's trail, unless the entry's own
    transaction already committed it."""
    if req.trail is None or sub.trail is None or sub.trail.committed:
        return
    sub.trail.route = route
    req.trail.children.append(auditing.entry_exchange(sub, sub.trail, response))


def _entry_response(entry: _Entry, response: FhirResponse) -> Json:
    out: Json = {"status": status_line(response.status)}
    if "Location" in response.headers:
        out["location"] = response.headers["Location"]
    if "ETag" in response.headers:
        out["etag"] = response.headers["ETag"]
    if response.last_updated is not None:
        out["lastModified"] = response.last_updated
    result: Json = {"response": out}
    if response.resource is not None:
        result["resource"] = response.resource
    elif response.json_body is not None:
        result["resource"] = fjson.loads(response.json_body)
    if entry.full_url:
        result["fullUrl"] = entry.full_url
    return result


def _response_bundle(kind: str, entries: list[Json]) -> FhirResponse:
    bundle: Json = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                    "meta": {"lastUpdated": now_instant()}, "type": kind}
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, resource=bundle, elements_applicable=False)


# -- batch ---------------------------------------------------------------------------------------


def _batch(engine: Engine, req: FhirRequest, entries: list[_Entry]) -> FhirResponse:
    results: list[Json] = []
    for entry in entries:
        sub = _sub_request(req, entry, entry.resource)
        sub.headers.pop("x-request-id", None)
        r: Route | None = None
        try:
            r = _route(entry)
            if sub.trail is not None:
                sub.trail.route = r
            response = engine.dispatch(sub, r)
            results.append(_entry_response(entry, response))
        except FhirError as error:
            response = engine.error_response(error)
            results.append({"response": {"status": status_line(status_of(error)),
                                         "outcome": error_outcome(error)}})
        _audit_entry(req, sub, r, response)
    return _response_bundle("batch-response", results)


# -- transaction -------------------------------------------------------------------------------


def _route(entry: _Entry) -> Route:
    try:
        return route(entry.method, entry.path)
    except FhirError as error:
        error.diagnostics = f"Bundle.entry[{entry.index}]: {error.diagnostics}"
        raise


def lock_keys(entries: list[_Entry]) -> list[str]:
    """Keys a transaction must hold from its start (see :mod:`fhirhub.store.base`)."""
    keys: list[str] = []
    for entry in entries:
        parts = entry.path.split("/")
        if entry.query and entry.method in ("PUT", "DELETE", "PATCH"):
            keys.append(crud.conditional_key(parts[0], urlsplit(entry.url).query))
        elif len(parts) >= 2 and entry.method in ("PUT", "DELETE", "PATCH"):
            keys.append(crud.resource_key(parts[0], parts[1]))
        if entry.method == "POST" and "if-none-exist" in entry.headers:
            keys.append(crud.conditional_key(parts[0], entry.headers["if-none-exist"]))
    return keys


def _transaction(engine: Engine, req: FhirRequest, entries: list[_Entry]) -> FhirResponse:
    routes = [_route(e) for e in entries]
    _refuse_overlaps(entries, routes)

    def work(tx: Transaction) -> FhirResponse:
        view = _InTransaction(engine, tx)
        mapping = _assign_ids(engine, tx, entries, routes)
        order = sorted(range(len(entries)), key=lambda i: (_ORDER[entries[i].method], i))
        results: dict[int, Json] = {}
        for i in order:
            entry = entries[i]
            body = _rewrite(engine, tx, entry, mapping) if entry.resource is not None else None
            sub = _sub_request(req, entry, body)
            try:
                response = engine.dispatch(sub, routes[i], view)
            except FhirError as error:
                error.diagnostics = (f"Bundle.entry[{i}] ({entry.method} {entry.url}): "
                                     f"{error.diagnostics}; nothing in the transaction was saved")
                raise
            if response.status >= 400:
                raise InvalidError(f"Bundle.entry[{i}] failed with {response.status}")
            _audit_entry(req, sub, routes[i], response)
            results[i] = _entry_response(entry, response)
        return _response_bundle("transaction-response", [results[i] for i in range(len(entries))])

    return engine.write(req, lock_keys(entries), work)


def _refuse_overlaps(entries: list[_Entry], routes: list[Route]) -> None:
    """A transaction may change each resource once (http.html#trules)."""
    seen: dict[str, int] = {}
    for entry, r in zip(entries, routes, strict=True):
        if entry.method in ("PUT", "DELETE", "PATCH") and r.resource_type and r.id:
            key = f"{r.resource_type}/{r.id}"
            if key in seen:
                raise InvalidError(
                    f"Bundle.entry[{seen[key]}] and Bundle.entry[{entry.index}] both change "
                    f"{key}; a transaction may change each resource only once",
                    spine_code="INVALID_VALUE",
                )
            seen[key] = entry.index


def _assign_ids(engine: Engine, tx: Transaction, entries: list[_Entry],
                routes: list[Route]) -> dict[str, str]:
    """fullUrl -> ``Type/id`` for every entry a reference may point at."""
    mapping: dict[str, str] = {}
    seen_full_urls: set[str] = set()
    for entry, r in zip(entries, routes, strict=True):
        if entry.full_url:
            if entry.full_url in seen_full_urls:
                raise InvalidError(
                    f"Bundle.entry[{entry.index}].fullUrl {entry.full_url!r} appears twice",
                    spine_code="INVALID_VALUE", expression=(f"Bundle.entry[{entry.index}].fullUrl",),
                )
            seen_full_urls.add(entry.full_url)
        rtype = r.resource_type
        if entry.method == "POST" and rtype:
            target = None
            criteria = entry.headers.get("if-none-exist")
            if criteria:
                existing = crud.single_match(engine.ctx, tx, rtype, criteria)
                target = existing.id if existing else None
            if target is None:
                entry.assigned_id = str(uuid.uuid4())
                target = entry.assigned_id
            if entry.full_url:
                mapping[entry.full_url] = f"{rtype}/{target}"
        elif entry.method == "PUT" and rtype and r.id and entry.full_url:
            mapping[entry.full_url] = f"{rtype}/{r.id}"
        elif entry.method == "PUT" and rtype and entry.full_url and r.id is None:
            found = crud.single_match(engine.ctx, tx, rtype, urlsplit(entry.url).query)
            rid = found.id if found else (entry.resource or {}).get("id") or str(uuid.uuid4())
            if found is None and entry.resource is not None and "id" not in entry.resource:
                entry.resource = {**entry.resource, "id": rid}
            mapping[entry.full_url] = f"{rtype}/{rid}"
    return mapping


def _rewrite(engine: Engine, tx: Transaction, entry: _Entry, mapping: dict[str, str]) -> Json:
    assert entry.resource is not None
    cache: dict[str, str] = {}

    def fix(value: str, where: str) -> str:
        if value in mapping:
            return mapping[value]
        if value.startswith("urn:uuid:") or value.startswith("urn:oid:"):
            raise InvalidError(
                f"{where} refers to {value!r}, which is no entry's fullUrl in this transaction",
                spine_code="INVALID_VALUE", issue_code="not-found",
            )
        if "?" in value and "/" not in value.split("?", maxsplit=1)[0]:
            if value not in cache:
                rtype, _, criteria = value.partition("?")
                found = crud.matches(engine.ctx, tx, rtype, criteria)
                if len(found) != 1:
                    raise InvalidError(
                        f"{where}: the conditional reference {value!r} matches "
                        f"{'no' if not found else 'more than one'} {rtype}; it must match "
                        "exactly one", spine_code="INVALID_VALUE", issue_code="not-found"
                        if not found else "multiple-matches",
                    )
                cache[value] = f"{rtype}/{found[0].id}"
            return cache[value]
        return value

    out = _walk(entry.resource, f"Bundle.entry[{entry.index}].resource", fix)
    assert isinstance(out, dict)
    return out


def _walk(node: Any, where: str, fix: Callable[[str, str], str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out[key] = fix(value, f"{where}.reference")
            else:
                out[key] = _walk(value, f"{where}.{key}", fix)
        return out
    if isinstance(node, list):
        return [_walk(v, f"{where}[{i}]", fix) for i, v in enumerate(node)]
    return node


__all__ = ["lock_keys", "process", "shell"]
