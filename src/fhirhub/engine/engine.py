"""The engine: one :class:`FhirRequest` in, one :class:`FhirResponse` out, with every
error turned into an OperationOutcome here (nothing escapes to the web layer)."""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from fhirhub.audit.auditor import Auditor
from fhirhub.audit.outbound import Cause
from fhirhub.audit.search import patients_with_nhs
from fhirhub.auth import Authenticator
from fhirhub.auth.smart import capability_security
from fhirhub.config import ConfigError, Settings
from fhirhub.engine import audit_events, auth_endpoints, bundles, guard, interactions, reading
from fhirhub.engine.answering import Answering
from fhirhub.engine.capabilities import capability_statement
from fhirhub.engine.clock import instant_ago, now_instant
from fhirhub.engine.crud import WriteContext
from fhirhub.engine.formats import (
    CONTENT_TYPE,
    apply_view,
    parse_body,
    render,
)
from fhirhub.engine.outcome import error_outcome, status_of
from fhirhub.engine.profiles import StoredProfiles
from fhirhub.engine.request import FhirRequest, FhirResponse, WireResponse
from fhirhub.engine.router import Route, route
from fhirhub.engine.search_params import StoredSearchParameters, check_search_parameter
from fhirhub.errors import (
    ConflictError,
    FaultError,
    FhirError,
    InvalidError,
    Issue,
    UnprocessableError,
)
from fhirhub.fhir import json as fjson
from fhirhub.fhir.structure import check_resource
from fhirhub.fhir.validation import Validator
from fhirhub.search.index import index_resource
from fhirhub.search.parse import canonical_params, parse_search
from fhirhub.search.registry import Registry
from fhirhub.search.types import IndexRows, SearchQuery
from fhirhub.store import Store, open_store
from fhirhub.store.base import RememberedResponse, Transaction

log = logging.getLogger("fhirhub.engine")

View = tuple[Any, frozenset[str] | None]  # (_summary mode, _elements)
PATIENTS_SECONDS = 5.0


class Engine(Answering):
    """FHIR interactions over one store. Thread-safe."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else open_store(settings)
        self.auditor = Auditor(self.store, settings)
        self.authenticator = Authenticator(settings, self.store)
        self._patients: dict[str, tuple[float, tuple[str, ...]]] = {}
        # Called after each write commits, with the request's audit Cause: what sends
        # something out because of a change (notifications) starts here, and audits what
        # it sends with fhirhub.audit.outbound.send(engine.auditor, channel, message, cause).
        self.listeners: list[Callable[[Cause, FhirRequest, FhirResponse], None]] = []
        self.profiles = StoredProfiles(self.store)
        self.profiles.refresh()
        self.validator = self.make_validator(settings, self.profiles.resources())
        self.search_params = StoredSearchParameters(self.store)
        self.search_params.refresh()
        self._capability_cache: tuple[Registry, bytes] | None = None
        self.ctx = WriteContext(check=self._check_write, index=self.index,
                                parse_criteria=self._criteria_query)
        warm_up()
        self._handlers: dict[str, Callable[..., FhirResponse]] = {
            "read": interactions.read,
            "vread": interactions.vread,
            "create": interactions.create,
            "update": interactions.update,
            "conditional-update": interactions.conditional_update,
            "delete": interactions.delete,
            "conditional-delete": interactions.conditional_delete,
            "patch": interactions.patch,
            "conditional-patch": interactions.conditional_patch,
            "search-type": reading.search,
            "search-system": reading.search,
            "compartment": reading.search,
            "history-instance": reading.history,
            "history-type": reading.history,
            "history-system": reading.history,
            "capabilities": self._capabilities,
            "transaction": self._bundle,
            "operation": self._operation,
            "token": auth_endpoints.token,
            "jwks": auth_endpoints.jwks,
            "smart-configuration": auth_endpoints.smart,
        }

    # -- the request cycle -----------------------------------------------------------------------

    def handle(self, req: FhirRequest) -> FhirResponse:
        try:
            r = route(req.method, req.path)
            if req.trail is not None:
                req.trail.route = r
            req.grant = self.authenticate(req, r)
            with guard.granted(req.grant):
                response = self.dispatch(req, r)
            if response.status < 300 and _may_change_definitions(req, r):
                self.refresh_definitions()
            return response
        except FhirError as error:
            return self.error_response(error)
        except Exception:
            log.exception("unhandled error for request %s", req.request_id)
            return self.fault(req)

    def authenticate(self, req: FhirRequest, r: Route) -> guard.Grant | None:
        """Who is calling and what they may see (None for the public endpoints); a
        refusal (401, 429) when the token is not accepted or the rate limit is spent."""
        if r.interaction in guard.PUBLIC:
            return None
        principal = req.principal  # an in-process command's operator, or the token's
        if principal is None:
            principal = self.authenticator.authenticate(req.header("authorization"),
                                                        req.base_url)
        if req.trail is not None:
            req.trail.principal = principal
        if req.principal is None:
            self.authenticator.limit(principal)
        return guard.grant_for(self, principal)

    def patients_of(self, nhs_number: str) -> tuple[str, ...]:
        """The ids of the Patient resources holding ``nhs_number`` (a patient's own
        compartment), looked up again at most every few seconds."""
        now = time.monotonic()
        cached = self._patients.get(nhs_number)
        if cached is not None and now - cached[0] < PATIENTS_SECONDS:
            return cached[1]
        found = tuple(ref.removeprefix("Patient/")
                      for ref in patients_with_nhs(self.store, nhs_number))
        if len(self._patients) > 10_000:
            self._patients.clear()
        self._patients[nhs_number] = (now, found)
        return found

    def dispatch(self, req: FhirRequest, r: Route, view: Any = None) -> FhirResponse:
        guard.authorize(self, req, r)
        if r.resource_type == "AuditEvent" or r.compartment_type == "AuditEvent":
            return audit_events.handle(self, req, r)
        handler = self._handlers[r.interaction]
        return handler(view if view is not None else self, req, r)

    def error_response(self, error: FhirError) -> FhirResponse:
        return FhirResponse(status_of(error), resource=error_outcome(error),
                            headers=dict(error.headers), elements_applicable=False)

    def fault(self, req: FhirRequest) -> FhirResponse:
        error = FaultError(
            f"The server failed to handle this request; quote X-Request-ID {req.request_id} "
            "when reporting it"
        )
        return self.error_response(error)

    def _render(self, req: FhirRequest, response: FhirResponse, fmt: Any,
                view: View) -> WireResponse:
        headers = dict(response.headers)
        if not response.has_body or response.status == 304:
            return WireResponse(response.status, headers, b"")
        if response.media_type is not None:  # OAuth and SMART JSON, as it is
            headers["Content-Type"] = f"{response.media_type}; charset=utf-8"
            return WireResponse(response.status, headers, response.json_body or b"")
        resource, raw = response.resource, response.json_body
        summary, elements = view
        if response.elements_applicable and (summary is not None or elements is not None):
            data = resource if resource is not None else fjson.loads(raw or b"{}")
            resource, raw = apply_view(data, summary, elements), None
        pretty = (req.param("_pretty") or "").lower() == "true"
        headers["Content-Type"] = CONTENT_TYPE[fmt]
        return WireResponse(response.status, headers, render(resource, raw, fmt, pretty))

    # -- writes ------------------------------------------------------------------------------------

    def write(self, req: FhirRequest, keys: Sequence[str],
              work: Callable[[Transaction], FhirResponse]) -> FhirResponse:
        """Run ``work`` in one transaction, with the request's audit record (a POST
        carrying an X-Request-ID is idempotent)."""
        request_id = req.client_request_id if req.method == "POST" else None
        if not request_id:
            return self.store.run(keys, self._audited_write(req, work))
        digest, window = self._idempotency(req)

        def idempotent(tx: Transaction) -> FhirResponse:
            prior = tx.remembered(request_id, window)
            if prior is not None:
                return self._replay(prior, digest, request_id)
            response = work(tx)
            tx.remember(_remembrance(request_id, digest, response))
            return response

        return self.store.run([*keys, f"idem:{request_id}"], self._audited_write(req, idempotent))

    def _idempotency(self, req: FhirRequest) -> tuple[str, str]:
        """The body digest a retry must match, and the oldest instant still remembered."""
        digest = hashlib.sha256(req.body).hexdigest()
        return digest, instant_ago(self.settings.idempotency_window_seconds)

    def _replay(self, prior: RememberedResponse, digest: str, request_id: str) -> FhirResponse:
        if prior.body_digest != digest:
            raise ConflictError(
                f"X-Request-ID {request_id} was already used within the last "
                f"{self.settings.idempotency_window_seconds // 3600} hours for a request with "
                "a different body; send a new X-Request-ID for a new request",
                spine_code="DUPLICATE_REJECTED", issue_code="duplicate",
            )
        headers = {**prior.headers, "X-Idempotent-Replay": "true"}
        return FhirResponse(prior.status, json_body=prior.body or None, headers=headers)

    def purge_expired(self) -> int:
        """Forget remembered responses older than the idempotency window."""
        return self.store.purge_remembered(instant_ago(self.settings.idempotency_window_seconds))

    def purge_jtis(self) -> int:
        """Forget the client assertion ids whose lifetime has ended."""
        return self.store.purge_jtis(now_instant())

    def check(self, resource: Any, expected_type: str | None) -> None:
        """Refuse a resource that is not valid: 400 when it is not well-formed FHIR JSON of
        the expected type, 422 when it breaks its definition or a profile (R4 http.html:
        "422 Unprocessable Entity - the proposed resource violated applicable FHIR profiles
        or server business rules", such as a SearchParameter of this server's own whose
        expression does not compile). Every error issue is carried."""
        _refuse(check_resource(resource, expected_type=expected_type), InvalidError)
        _refuse(self.validator.check_profiles(resource), UnprocessableError)
        check_search_parameter(resource)

    def _check_write(self, resource: Any, expected_type: str | None) -> None:
        """:meth:`check`, and that a patient writes only into their own compartment."""
        self.check(resource, expected_type)
        if isinstance(resource, dict) and expected_type:
            guard.check_written(resource, expected_type, self.index)

    @property
    def registry(self) -> Registry:
        """The search parameters in force: the official R4 ones and this server's own."""
        return self.search_params.registry

    def index(self, resource: dict[str, Any]) -> IndexRows:
        """A resource's search index rows, by the parameters in force now."""
        return index_resource(resource, using=self.search_params.registry)

    def refresh_definitions(self) -> None:
        """Use the StructureDefinitions and SearchParameters written since the last look
        (by this process or another) for validation, search and indexing from now on."""
        if self.profiles.refresh():
            self.validator = self.make_validator(self.settings, self.profiles.resources(),
                                                 warm=False)
        self.search_params.refresh()

    @staticmethod
    def make_validator(settings: Settings, stored: list[dict[str, Any]], *,
                       warm: bool = True) -> Validator:
        """The validator this engine uses: packaged definitions plus ``stored`` ones, and
        the profile and extension rules of ``settings``."""
        return _validator(settings, stored, warm=warm)

    def trusted(self) -> Engine:
        """This engine with writes checked for their JSON shape only: for installing the
        packaged definitions (published content this server does not second-guess; some of
        the published R4 definitions break their own rules, docs/conformance.md), and for
        import lines that worker processes have already validated in full."""
        view = copy.copy(self)
        view.ctx = WriteContext(check=_check_shape, index=self.index,
                                parse_criteria=self._criteria_query)
        return view

    # -- search helpers -----------------------------------------------------------------------------

    def parse_search(self, types: tuple[str, ...], params: list[tuple[str, str]],
                     strict: bool) -> tuple[SearchQuery, list[Issue]]:
        query, issues = parse_search(types, params, strict=strict,
                                     default_count=self.settings.default_page_size,
                                     max_count=self.settings.max_page_size,
                                     using=self.search_params.registry)
        return guard.restrict(query), issues

    def _criteria_query(self, rtype: str, criteria: str) -> SearchQuery:
        from dataclasses import replace
        from urllib.parse import parse_qsl

        params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        query, issues = self.parse_search((rtype,), params, strict=True)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            raise InvalidError(f"Conditional criteria '{criteria}': {errors[0].diagnostics}",
                               spine_code="INVALID_SEARCH_DATA")
        return replace(query, count=2, total="none", includes=(), sort=())

    def page_size(self, raw: str | None) -> int:
        if raw is None:
            return self.settings.default_page_size
        if not raw.isdigit():
            raise InvalidError(f"_count={raw!r} is not a whole number", spine_code="INVALID_VALUE")
        return max(1, min(int(raw), self.settings.max_page_size))

    def used_params(self, query: SearchQuery, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The parameters the search really applied, for its self link: the query written
        back (unknown or dropped parameters do not appear), plus the result parameters."""
        kept = [(k, v) for k, v in params if k in ("_type", "_summary", "_elements", "_format")]
        return [*canonical_params(query), *kept]

    # -- system level -------------------------------------------------------------------------------

    def _capability_json(self) -> bytes:
        """The CapabilityStatement, built again only when the search parameters change."""
        from fhirhub.engine.operations import operations

        reg, docs = self.search_params.current()
        cached = self._capability_cache
        if cached is None or cached[0] is not reg:
            cached = self._capability_cache = (reg, fjson.dumps(capability_statement(
                "", now_instant(), operations=operations(), profiles=_supported_profiles(),
                required=self.settings.profile_requirements, search=reg,
                search_documentation=docs)))
        return cached[1]

    def _capabilities(self, engine: Any, req: FhirRequest, r: Route) -> FhirResponse:
        statement = fjson.loads(self._capability_json())
        statement["implementation"]["url"] = req.base_url
        statement["rest"][0]["security"] = capability_security(
            req.base_url, self.authenticator.enabled)
        return FhirResponse(200, resource=statement)

    def _bundle(self, engine: Any, req: FhirRequest, r: Route) -> FhirResponse:
        body = req.parsed if req.parsed is not None else \
            parse_body(req.body, req.header("content-type"))
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise InvalidError("POST to the server base takes a batch or transaction Bundle",
                               spine_code="INVALID_REQUEST")
        engine.check(bundles.shell(body), "Bundle")
        if req.trail is not None:
            req.trail.bundle_type = str(body.get("type"))
        request_id = req.client_request_id
        if body.get("type") != "batch" or not request_id:
            return bundles.process(engine, req, body)
        # A batch's entries commit one by one, so its remembered response cannot share their
        # transaction (a transaction's does, in write()): it is looked up first and kept last.
        digest, window = self._idempotency(req)
        prior = self.store.run([f"idem:{request_id}"],
                               lambda tx: tx.remembered(request_id, window))
        if prior is not None:
            return self._replay(prior, digest, request_id)
        response = bundles.process(engine, req, body)
        remembered = _remembrance(request_id, digest, response)
        self.store.run([f"idem:{request_id}"], lambda tx: tx.remember(remembered))
        return response

    def _operation(self, engine: Any, req: FhirRequest, r: Route) -> FhirResponse:
        from fhirhub.engine.operations import dispatch

        return dispatch(engine, req, r)


_DEFINITION_TYPES = ("StructureDefinition", "SearchParameter")


def _may_change_definitions(req: FhirRequest, r: Route) -> bool:
    """Could this write have changed a StructureDefinition (so validation must look) or
    a SearchParameter (so search and indexing must)?"""
    if req.method in ("GET", "HEAD"):
        return False
    if r.resource_type in _DEFINITION_TYPES:
        return True
    if r.interaction != "transaction":
        return False
    if isinstance(req.parsed, dict):
        return any(isinstance(e, dict) and any(t in str((e.get("request") or {}).get("url", ""))
                                               for t in _DEFINITION_TYPES)
                   for e in req.parsed.get("entry") or [])
    return any(t.encode() in req.body for t in _DEFINITION_TYPES)


def _validator(settings: Settings, stored: list[dict[str, Any]], *,
               warm: bool = True) -> Validator:
    from fhirhub.fhir.definitions import packaged
    from fhirhub.fhir.terminology import terminology

    definitions = packaged().extended(stored) if stored else packaged()
    validator = Validator(definitions, terminology(),
                          required_profiles=settings.profile_requirements,
                          unknown_profile=settings.unknown_profiles,
                          unknown_extension=settings.unknown_extensions)
    unknown = validator.unknown_profiles(
        url for urls in settings.profile_requirements.values() for url in urls)
    if unknown:
        raise ConfigError(f"FHIRHUB_REQUIRED_PROFILES names profiles this server does not "
                          f"know: {', '.join(unknown)}")
    if warm:
        validator.warm_up()
    return validator


def _supported_profiles() -> dict[str, list[str]]:
    """The packaged profiles of each resource type (R4's own and UK Core's)."""
    from fhirhub.fhir.definitions import packaged

    found: dict[str, list[str]] = {}
    for sd in packaged().all("StructureDefinition"):
        if sd.get("derivation") == "constraint" and sd.get("kind") == "resource":
            found.setdefault(str(sd.get("type")), []).append(str(sd["url"]))
    return {rtype: sorted(urls) for rtype, urls in found.items()}


def _check_shape(resource: Any, expected_type: str | None) -> None:
    _refuse(check_resource(resource, expected_type=expected_type), InvalidError)
    check_search_parameter(resource)


def _refuse(issues: list[Issue], error: type[InvalidError]) -> None:
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        first = errors[0]
        raise error(first.diagnostics, issue_code=first.code,
                    spine_code=first.spine_code or "INVALID_RESOURCE",
                    expression=first.expression, issues=errors[1:])


def warm_up() -> None:
    """Load the definitions now (start-up), not on the first request."""
    from fhirhub.fhir.model import element_model
    from fhirhub.search.registry import registry

    element_model()
    registry()


def _remembrance(request_id: str, digest: str, response: FhirResponse) -> RememberedResponse:
    return RememberedResponse(request_id=request_id, body_digest=digest, status=response.status,
                              headers=response.headers, body=_json_of(response),
                              created=now_instant())


def _json_of(response: FhirResponse) -> bytes:
    if response.resource is not None:
        return fjson.dumps(response.resource)
    return response.json_body or b""


__all__ = ["Engine", "WireResponse"]
