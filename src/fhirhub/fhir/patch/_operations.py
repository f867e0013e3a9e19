"""The operations of a FHIRPath Patch, read from its ``Parameters`` resource and checked.

https://hl7.org/fhir/R4/fhirpatch.html: each ``operation`` parameter has parts ``type``,
``path``, ``name``, ``value``, ``index``, ``source`` and ``destination``; which ones an
operation needs depends on its type. Those parts are checked here, for every operation
before any runs. A ``value`` is kept as given (:class:`Value`): what it must be depends on
where it goes, which only the resource can tell, so its nested parts are read (with
:func:`value_part`) only when it is placed, and the path is parsed only when evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhirhub.errors import InvalidError, UnprocessableError
from fhirhub.fhir.model import element_model

_OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_PART_VALUE_TYPES = {"type": "code", "path": "string", "name": "string", "index": "integer",
                     "source": "integer", "destination": "integer"}
_REQUIRED_PARTS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}


@dataclass(frozen=True)
class Value:
    """The ``value`` part: a value[x] (or a resource), or nested parts (anonymous type)."""

    type: str | None  # FHIR type of a value[x]; "Resource"; None for nested parts
    json: Any = None
    extension: Any = None  # the _value[x] of a primitive: its id and extensions
    parts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Operation:
    """One ``operation`` parameter; its errors name it by its index and path."""

    number: int  # index of the parameter in Parameters.parameter
    type: str
    path: str
    name: str | None
    value: Value | None
    index: int | None
    source: int | None
    destination: int | None

    @property
    def where(self) -> str:
        return f"FHIRPath Patch operation {self.number} ({self.type} at {self.path!r})"

    @property
    def expression(self) -> tuple[str]:
        return (f"Parameters.parameter[{self.number}]",)

    def unprocessable(self, problem: str) -> UnprocessableError:
        return UnprocessableError(f"{self.where}: {problem}", expression=self.expression)


def read_operations(parameters: object) -> list[Operation]:
    """Every operation of the patch, in order; :class:`InvalidError` if one is malformed."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidError("A FHIRPath Patch must be a Parameters resource")
    found = parameters.get("parameter", [])
    if not isinstance(found, list):
        raise InvalidError("Parameters.parameter must be an array")
    return [_operation(number, parameter) for number, parameter in enumerate(found)]


def _operation(number: int, parameter: object) -> Operation:
    at = f"Parameters.parameter[{number}]"
    if not isinstance(parameter, dict) or parameter.get("name") != "operation":
        name = parameter.get("name") if isinstance(parameter, dict) else None
        raise InvalidError(f"{at}: every parameter of a FHIRPath Patch is named 'operation', "
                           f"not {name!r}", expression=(at,))
    found = parameter.get("part", [])
    if not isinstance(found, list):
        raise InvalidError(f"{at}.part must be an array", expression=(at,))
    parts: dict[str, dict[str, Any]] = {}
    for i, part in enumerate(found):
        name = part.get("name") if isinstance(part, dict) else None
        if name not in (*_PART_VALUE_TYPES, "value"):
            raise InvalidError(f"{at}.part[{i}]: unknown part {name!r}; a FHIRPath Patch "
                               "operation has type, path, name, value, index, source and "
                               "destination", expression=(at,))
        if name in parts:
            raise InvalidError(f"{at}: the part {name!r} appears twice", expression=(at,))
        parts[name] = part
    kind = _simple_part(parts, "type", at)
    if kind not in _OPERATION_TYPES:
        raise InvalidError(f"{at}: the operation type is {kind!r}; it must be one of "
                           + ", ".join(_OPERATION_TYPES), expression=(at,))
    for required in _REQUIRED_PARTS[kind]:
        if required not in parts:
            raise InvalidError(f"{at}: a FHIRPath Patch {kind} needs a {required!r} part",
                               expression=(at,))
    return Operation(
        number=number,
        type=kind,
        path=_simple_part(parts, "path", at),
        name=_simple_part(parts, "name", at),
        value=value_part(parts["value"], f"{at}.part") if "value" in parts else None,
        index=_simple_part(parts, "index", at),
        source=_simple_part(parts, "source", at),
        destination=_simple_part(parts, "destination", at),
    )


def _simple_part(parts: dict[str, dict[str, Any]], name: str, at: str) -> Any:
    if name not in parts:
        return None
    value_type = _PART_VALUE_TYPES[name]
    key = "value" + value_type[0].upper() + value_type[1:]
    value = parts[name].get(key)
    python_type = int if value_type == "integer" else str
    if not isinstance(value, python_type) or isinstance(value, bool):
        raise InvalidError(f"{at}: the {name!r} part needs a {key}", expression=(at,))
    return value


def value_part(part: dict[str, Any], at: str) -> Value:
    keys = [k for k in part if k.startswith("value") and k[5:6].isupper()]
    nested = part.get("part")
    if len(keys) + ("resource" in part) + (nested is not None) != 1:
        raise InvalidError(f"{at}: the 'value' part needs exactly one value[x], resource or "
                           "nested parts", expression=(at,))
    if "resource" in part:
        return Value("Resource", json=part["resource"])
    if nested is not None:
        if not isinstance(nested, list) or not all(isinstance(p, dict) and "name" in p
                                                   for p in nested):
            raise InvalidError(f"{at}: nested parts must each have a name", expression=(at,))
        return Value(None, parts=tuple(nested))
    element = element_model().child("Parameters.parameter", keys[0])
    if element is None:
        raise InvalidError(f"{at}: {keys[0]!r} is not a value[x] of Parameters",
                           expression=(at,))
    return Value(element.type, json=part[keys[0]], extension=part.get("_" + keys[0]))


__all__ = ["Operation", "Value", "read_operations", "value_part"]
