"""The terminology operations, over the packaged R4 and UK Core content
(https://hl7.org/fhir/R4/terminology-service.html):

- ``CodeSystem/$lookup`` (codesystem-operation-lookup.html)
- ``CodeSystem/$validate-code`` and ``CodeSystem/[id]/$validate-code``
  (codesystem-operation-validate-code.html)
- ``ValueSet/$expand`` and ``ValueSet/[id]/$expand`` (valueset-operation-expand.html)
- ``ValueSet/$validate-code`` and ``ValueSet/[id]/$validate-code``
  (valueset-operation-validate-code.html)
- ``ConceptMap/$translate`` and ``ConceptMap/[id]/$translate``
  (conceptmap-operation-translate.html)

Each takes GET with query parameters or POST with a ``Parameters`` body; the instance level
reads the resource from the store, the type level takes a canonical ``url`` of a packaged
definition or the resource itself as a parameter (or as the whole POSTed body).

When this server cannot tell (the code's system is not packaged, e.g. SNOMED CT), the
``$validate-code`` operations answer 200 with ``result`` false, a ``message`` saying the code "could
not be checked" and why, and ``x-caused-by-unknown-system`` naming the system, as the
HL7 terminology servers do: ``result`` is a required boolean, and a 4xx would say the request
was wrong, which it was not. A display that matches none of the code's designations also gives
``result`` false (the profile validator only warns about it). The target of the operation
itself being unknown (a value set, code system or concept map this server does not have) is
404; a value set that cannot be expanded here is 422 ``not-supported``; a missing or
contradictory input is 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhirhub.engine.operations._parameters import OperationInput, operation_input
from fhirhub.engine.operations._registry import Operation
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route
from fhirhub.errors import GoneError, InvalidError, NotFoundError
from fhirhub.fhir import json as fjson
from fhirhub.fhir.terminology import CodeCheck, terminology

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

Json = dict[str, Any]
Coded = tuple[str | None, str, str | None]  # system, code, display
_OD = "http://hl7.org/fhir/OperationDefinition/"


def _missing(message: str, name: str) -> InvalidError:
    return InvalidError(message, issue_code="required", spine_code="MISSING_VALUE",
                        expression=(name,))


def _stored(engine: Engine, route: Route) -> Json:
    """The resource ``[type]/[id]`` names, from the store."""
    assert route.resource_type is not None and route.id is not None
    where = f"{route.resource_type}/{route.id}"
    version = engine.store.read(route.resource_type, route.id)
    if version is None:
        raise NotFoundError(f"{where} is not on this server")
    if version.deleted or version.body is None:
        raise GoneError(f"{where} has been deleted")
    loaded: Json = fjson.loads(version.body)
    return loaded


def _given(engine: Engine, route: Route, inp: OperationInput, name: str) -> Json | None:
    """The resource to work on when it is not named by url: ``[type]/[id]``, the parameter
    ``name``, or the whole POSTed body."""
    if route.id is not None:
        return _stored(engine, route)
    resource = inp.resource_param(name)
    if resource is None and inp.resource is not None:
        resource = inp.resource
    if resource is not None and resource.get("resourceType") != route.resource_type:
        raise InvalidError(f"The parameter '{name}' must be a {route.resource_type}, not a "
                           f"{resource.get('resourceType')}", spine_code="INVALID_PARAMETER",
                           expression=(name,))
    return resource


def _codings(inp: OperationInput, *, system_param: bool = True) -> list[Coded]:
    """The coded inputs: ``code`` (+ ``system``, ``display``), ``coding``, ``codeableConcept``."""
    found: list[Coded] = []
    code = inp.string("code")
    if code is not None:
        found.append((inp.string("system") if system_param else None, code, inp.string("display")))
    coding = inp.complex("coding", "Coding")
    concept = inp.complex("codeableConcept", "CodeableConcept") or {}
    items: list[Any] = [coding] if coding else []
    if isinstance(concept.get("coding"), list):
        items += concept["coding"]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            system, display = item.get("system"), item.get("display")
            found.append((system if isinstance(system, str) else None, item["code"],
                          display if isinstance(display, str) else None))
    if not found:
        raise _missing("A code is needed: give code (and system), coding or codeableConcept",
                       "code")
    return found


def _outcome(checks: list[tuple[Coded, CodeCheck]]) -> Json:
    """``$validate-code`` Parameters: valid if any coding is (with an acceptable display)."""
    good = [c for _, c in checks if c.result and c.display_ok]
    if good:
        params: list[Json] = [{"name": "result", "valueBoolean": True}]
        if good[0].display:
            params.append({"name": "display", "valueString": good[0].display})
        return {"resourceType": "Parameters", "parameter": params}
    params = [{"name": "result", "valueBoolean": False},
              {"name": "message", "valueString": "; ".join(c.message for _, c in checks)}]
    shown = next((c.display for _, c in checks if c.display), None)
    if shown:
        params.append({"name": "display", "valueString": shown})
    tx = terminology()
    unknown = sorted({s for (s, _, _), c in checks
                      if c.result is None and s is not None and not tx.is_known_system(s)})
    params += [{"name": "x-caused-by-unknown-system", "valueCanonical": s} for s in unknown]
    return {"resourceType": "Parameters", "parameter": params}


def lookup(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    inp = operation_input(req)
    coding = inp.complex("coding", "Coding") or {}
    code = inp.string("code") or coding.get("code")
    system = inp.string("system") or coding.get("system")
    if not isinstance(code, str):
        raise _missing("$lookup needs a code: give code and system, or coding", "code")
    if not isinstance(system, str):
        raise _missing("$lookup needs the code's system: give system, or coding", "system")
    version = inp.string("version") or coding.get("version")
    parameters = terminology().lookup(system, code, version if isinstance(version, str) else None,
                                      inp.strings("property") or None)
    return FhirResponse(200, resource=parameters)


def validate_in_code_system(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    inp = operation_input(req)
    tx = terminology()
    given = _given(engine, route, inp, "codeSystem")
    url = inp.string("url")
    if given is None and url is None:
        raise _missing("$validate-code needs the code system: give url, or call "
                       "CodeSystem/[id]/$validate-code", "url")
    if given is None:
        assert url is not None
        tx.code_system(url, inp.string("version"))  # a clear 404 when it is not here
    target: str | Json = given if given is not None else str(url).partition("|")[0]
    system = str(given.get("url", "")) if given is not None else str(target)
    checks: list[tuple[Coded, CodeCheck]] = []
    for coded in _codings(inp, system_param=False):
        other, code, display = coded
        if other is not None and system and other != system:
            checks.append((coded, CodeCheck(False, f"The coding's system is {other}, not {system}")))
        else:
            checks.append(((system or None, code, display), tx.in_code_system(target, code, display)))
    return FhirResponse(200, resource=_outcome(checks))


def _value_set(engine: Engine, route: Route, inp: OperationInput, operation: str) -> str | Json:
    """The value set an operation works on: the stored one ([id]), the ``valueSet``
    parameter, or the packaged one at ``url``."""
    target: str | Json | None = _given(engine, route, inp, "valueSet")
    if target is not None:
        return target
    url = inp.string("url")
    if url is None:
        raise _missing(f"{operation} needs the value set: give url or valueSet, or call "
                       f"ValueSet/[id]/{operation}", "url")
    found: str = terminology().value_set(url, inp.string("valueSetVersion"))["url"]
    return found


def expand(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    inp = operation_input(req)
    tx = terminology()
    target = _value_set(engine, route, inp, "$expand")
    expanded = tx.expand(target, filter=inp.string("filter"), count=inp.integer("count"),
                         offset=inp.integer("offset") or 0,
                         active_only=bool(inp.boolean("activeOnly")),
                         include_designations=bool(inp.boolean("includeDesignations")))
    return FhirResponse(200, resource=expanded)


def validate_in_value_set(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    inp = operation_input(req)
    tx = terminology()
    target = _value_set(engine, route, inp, "$validate-code")
    checks = [(coded, tx.validate_code(target, *coded)) for coded in _codings(inp)]
    return FhirResponse(200, resource=_outcome(checks))


def translate(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    inp = operation_input(req)
    tx = terminology()
    concept_map: str | Json | None = _given(engine, route, inp, "conceptMap")
    url = inp.string("url")
    if concept_map is None and url is not None:
        concept_map = tx.concept_map(url, inp.string("conceptMapVersion"))
    reverse = bool(inp.boolean("reverse"))
    found: list[Json] = []
    for system, code, _ in _codings(inp):
        answer = tx.translate(code, system, concept_map=concept_map, source=inp.string("source"),
                              target=inp.string("target"), target_system=inp.string("targetsystem"),
                              reverse=reverse)
        found += answer["parameter"]
    result = any(p["name"] == "result" and p["valueBoolean"] for p in found)
    params = [{"name": "result", "valueBoolean": result}]
    if not result:
        params += [p for p in found if p["name"] == "message"]
    params += [p for p in found if p["name"] == "match"]
    return FhirResponse(200, resource={"resourceType": "Parameters", "parameter": params})


OPERATIONS: tuple[Operation, ...] = (
    Operation("lookup", frozenset({"type"}), lookup, frozenset({"CodeSystem"}),
              definition=f"{_OD}CodeSystem-lookup"),
    Operation("validate-code", frozenset({"type", "instance"}), validate_in_code_system,
              frozenset({"CodeSystem"}), definition=f"{_OD}CodeSystem-validate-code"),
    Operation("expand", frozenset({"type", "instance"}), expand, frozenset({"ValueSet"}),
              definition=f"{_OD}ValueSet-expand"),
    Operation("validate-code", frozenset({"type", "instance"}), validate_in_value_set,
              frozenset({"ValueSet"}), definition=f"{_OD}ValueSet-validate-code"),
    Operation("translate", frozenset({"type", "instance"}), translate, frozenset({"ConceptMap"}),
              definition=f"{_OD}ConceptMap-translate"),
)

__all__ = ["OPERATIONS"]
