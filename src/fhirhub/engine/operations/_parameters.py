"""An operation's input, however it was sent: query parameters (GET, or a form POST), a
``Parameters`` resource (POST), or a bare resource (POST, for operations that take one).

https://hl7.org/fhir/R4/operations.html#request: "If the operation has only primitive
parameters, it may be invoked with GET, the parameters in the URL"; otherwise a
``Parameters`` resource is POSTed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fhirhub.engine.formats import parse_body
from fhirhub.engine.request import FhirRequest
from fhirhub.errors import InvalidError

Json = dict[str, Any]

# Parameters that shape the response, not the operation's input.
_RESULT_PARAMS = frozenset({"_format", "_pretty", "_summary", "_elements"})


@dataclass
class OperationInput:
    """Named input parameters (each a ``Parameters.parameter`` element) and, when the body
    was a resource other than ``Parameters``, that resource."""

    parameters: list[Json] = field(default_factory=list)
    resource: Json | None = None

    def all(self, name: str) -> list[Json]:
        return [p for p in self.parameters if p.get("name") == name]

    def names(self) -> list[str]:
        return [str(p.get("name")) for p in self.parameters]

    def value(self, name: str) -> Any:
        """The ``value[x]`` of the first parameter called ``name`` (None if absent)."""
        for p in self.all(name):
            for key, value in p.items():
                if key.startswith("value"):
                    return value
        return None

    def string(self, name: str) -> str | None:
        """A primitive parameter as text (codes, uris, strings, numbers given as text)."""
        value = self.value(name)
        if value is None:
            return None
        if isinstance(value, (dict, list)):
            raise InvalidError(f"The parameter '{name}' must be a primitive value",
                               spine_code="INVALID_PARAMETER", expression=(name,))
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def strings(self, name: str) -> list[str]:
        found: list[str] = []
        for p in self.all(name):
            for key, value in p.items():
                if key.startswith("value") and not isinstance(value, (dict, list)):
                    found.append(str(value).lower() if isinstance(value, bool) else str(value))
        return found

    def integer(self, name: str, *, minimum: int = 0) -> int | None:
        text = self.string(name)
        if text is None:
            return None
        if not text.lstrip("-").isdigit() or int(text) < minimum:
            raise InvalidError(f"The parameter '{name}' must be a whole number of at least "
                               f"{minimum}, not '{text}'", spine_code="INVALID_PARAMETER",
                               expression=(name,))
        return int(text)

    def boolean(self, name: str) -> bool | None:
        text = self.string(name)
        if text is None:
            return None
        if text not in ("true", "false"):
            raise InvalidError(f"The parameter '{name}' must be true or false, not '{text}'",
                               spine_code="INVALID_PARAMETER", expression=(name,))
        return text == "true"

    def complex(self, name: str, type_name: str) -> Json | None:
        """A complex parameter (``Coding``, ``CodeableConcept``) as its JSON object."""
        for p in self.all(name):
            value = p.get(f"value{type_name}")
            if isinstance(value, dict):
                return value
            if any(k.startswith("value") for k in p):
                raise InvalidError(f"The parameter '{name}' must be a {type_name}",
                                   spine_code="INVALID_PARAMETER", expression=(name,))
        return None

    def resource_param(self, name: str) -> Json | None:
        """A parameter that carries a resource (``Parameters.parameter.resource``)."""
        for p in self.all(name):
            resource = p.get("resource")
            if isinstance(resource, dict):
                return resource
            raise InvalidError(f"The parameter '{name}' must carry a resource",
                               spine_code="INVALID_PARAMETER", expression=(name,))
        return None


def operation_input(req: FhirRequest) -> OperationInput:
    """The input of an operation request: URL parameters, then the body's."""
    found = OperationInput([{"name": k, "valueString": v} for k, v in req.query
                            if k not in _RESULT_PARAMS])
    if req.method != "POST":
        return found
    if req.content_type == "application/x-www-form-urlencoded":
        form = parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        found.parameters += [{"name": k, "valueString": v} for k, v in form]
        return found
    if not req.body.strip() and req.parsed is None:
        return found
    body = req.parsed if req.parsed is not None else parse_body(req.body, req.header("content-type"))
    if not isinstance(body, dict):
        raise InvalidError("The body of an operation must be a Parameters resource or a "
                           "resource", spine_code="INVALID_REQUEST", issue_code="structure")
    if body.get("resourceType") == "Parameters":
        params = body.get("parameter", [])
        if not isinstance(params, list) or not all(isinstance(p, dict) and
                                                   isinstance(p.get("name"), str)
                                                   for p in params):
            raise InvalidError("Parameters.parameter must be a list of named parameters",
                               spine_code="INVALID_REQUEST", issue_code="structure")
        found.parameters += params
    else:
        found.resource = body
    return found
