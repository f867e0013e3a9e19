"""``$validate``: would this resource be accepted? Nothing is ever stored.

https://hl7.org/fhir/R4/operation-resource-validate.html — at type level
(``POST [type]/$validate``) and instance level (``[type]/[id]/$validate``), with the resource
as the body or as the ``resource`` parameter of a ``Parameters`` body, an optional ``mode``
(``create``, ``update``, ``delete``) and an optional ``profile``. The answer is 200 with an
OperationOutcome listing every issue found, errors, warnings and information alike
(a single information issue when there is nothing to say); a 4xx means the validation
itself could not be done (no resource, an unknown profile, a mode that needs an id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhirhub.engine.operations._parameters import OperationInput, operation_input
from fhirhub.engine.operations._registry import Operation
from fhirhub.engine.outcome import operation_outcome
from fhirhub.engine.request import FhirRequest, FhirResponse
from fhirhub.engine.router import Route
from fhirhub.errors import InvalidError, Issue, NotFoundError
from fhirhub.fhir import json as fjson
from fhirhub.fhir.structure import check_resource

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

Json = dict[str, Any]
MODES = ("create", "update", "delete")


def validate(engine: Engine, req: FhirRequest, route: Route) -> FhirResponse:
    params = operation_input(req)
    mode = params.string("mode")
    if mode is not None and mode not in MODES:
        raise InvalidError(f"mode '{mode}' is not one of {', '.join(MODES)}",
                           spine_code="INVALID_PARAMETER", expression=("mode",))
    if mode in ("update", "delete") and route.id is None:
        raise InvalidError(f"mode={mode} validates against an existing resource: call "
                           f"[type]/[id]/$validate", spine_code="INVALID_PARAMETER",
                           expression=("mode",))
    profile = params.string("profile")
    if profile is not None and engine.validator.unknown_profiles([profile]):
        raise NotFoundError(f"The profile {profile} is not known to this server",
                            spine_code="INVALID_PARAMETER", expression=("profile",))
    if mode == "delete":
        return _outcome(_delete_issues(engine, route))
    resource = _resource(engine, req, route, params)
    issues = _mode_issues(resource, route, mode)
    structural = check_resource(resource, expected_type=route.resource_type)
    issues += structural
    if not structural:
        issues += engine.validator.check_profiles(resource, profiles=[profile] if profile else [])
    return _outcome(issues)


def _resource(engine: Engine, req: FhirRequest, route: Route, params: OperationInput) -> Any:
    resource = params.resource if params.resource is not None else params.resource_param("resource")
    if resource is not None:
        return resource
    if route.id is not None and req.method == "GET":
        return _stored(engine, route)
    raise InvalidError("$validate needs the resource to check: send it as the body, or as the "
                       "'resource' parameter of a Parameters body", spine_code="MISSING_VALUE",
                       expression=("resource",))


def _stored(engine: Engine, route: Route) -> Json:
    assert route.resource_type is not None and route.id is not None
    version = engine.store.read(route.resource_type, route.id)
    if version is None or version.deleted or version.body is None:
        raise NotFoundError(f"{route.resource_type}/{route.id} does not exist",
                            spine_code="RESOURCE_NOT_FOUND")
    loaded: Json = fjson.loads(version.body)
    return loaded


def _mode_issues(resource: Any, route: Route, mode: str | None) -> list[Issue]:
    if not isinstance(resource, dict):
        return []
    rid = resource.get("id")
    if mode == "update" and rid != route.id:
        return [Issue("error", "invalid", f"For an update of {route.resource_type}/{route.id} "
                      f"the resource's id must be '{route.id}', not {rid!r}",
                      (f"{resource.get('resourceType')}.id",), "INVALID_RESOURCE_ID")]
    if route.id is not None and mode is None and rid is not None and rid != route.id:
        return [Issue("error", "invalid", f"The resource's id '{rid}' is not the id in the "
                      f"URL, '{route.id}'", (f"{resource.get('resourceType')}.id",),
                      "INVALID_RESOURCE_ID")]
    return []


def _delete_issues(engine: Engine, route: Route) -> list[Issue]:
    _stored(engine, route)  # 404 when there is nothing to delete
    # Deletes are not refused for being referenced (R4 http.html#delete leaves it to the
    # server; this one keeps references dangling, as most do), so a delete that finds the
    # resource would succeed.
    return []


def _outcome(issues: list[Issue]) -> FhirResponse:
    if not issues:
        issues = [Issue("information", "informational", "No issues were found: the resource "
                        "is valid", (), None)]
    return FhirResponse(200, resource=operation_outcome(issues), elements_applicable=False)


OPERATIONS = (
    Operation("validate", frozenset({"type", "instance"}), validate,
              definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
              needs="cur"),  # checking what one would create or update
)
