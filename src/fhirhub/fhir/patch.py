"""FHIR ``patch``: JSON Patch and FHIRPath Patch, applied to a copy of a resource.

* JSON Patch: RFC 6902 (https://www.rfc-editor.org/rfc/rfc6902), as FHIR R4 allows it
  (https://hl7.org/fhir/R4/http.html#patch), applied with the ``jsonpatch`` library.
* FHIRPath Patch: https://hl7.org/fhir/R4/fhirpatch.html, a ``Parameters`` resource of
  ``operation`` parameters (add, insert, delete, replace, move), applied by locating the
  elements with :func:`fhirhub.fhir.fhirpath.locate` and acting on them by the R4 element
  model (repeating or not, choice types, types of values).

FHIRPath Patch works on whole elements, as the spec's model does: ``replace`` of a
primitive replaces its id and extensions too (``_birthDate`` goes unless the value part
carries its own ``_valueDate``); ``delete`` removes what it leaves empty above the element
(FHIR JSON has no empty objects); lists of primitives keep ``_name`` aligned.

Both return a new dict and never change their inputs. Errors, with diagnostics that name
the operation (its 0-based index in the document) and its path:

* :class:`InvalidError` (400): a malformed patch: not a list / not a Parameters resource,
  an unknown operation, a missing or wrongly typed member, a FHIRPath path that does not
  parse, cannot be evaluated or names no element of its type.
* :class:`UnprocessableError` (422): a well-formed patch that cannot apply to this resource:
  a failed JSON Patch ``test``, a path that does not exist, a FHIRPath path matching no
  element (except for ``delete``, where that is no change) or several, a value of the wrong
  type, ``add`` to a non-repeating element that already has a value, an index out of range.

Neither checks that the result is a valid resource: the caller validates it, as it does
any resource it stores (the spec requires an error when the outcome is not valid).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jsonpatch

from fhirhub.errors import InvalidError, UnprocessableError
from fhirhub.fhir.fhirpath import FhirPathError, Location, Node, Place, locate, nodes
from fhirhub.fhir.model import Element, element_model

# -- JSON Patch (RFC 6902) ----------------------------------------------------------------

_JSON_PATCH_MEMBERS = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}


def apply_json_patch(resource: dict[str, Any], operations: object) -> dict[str, Any]:
    """``resource`` with the RFC 6902 ``operations`` applied, in order, all or nothing."""
    if not isinstance(operations, list):
        raise InvalidError(
            "A JSON Patch document must be a JSON array of operations, not "
            f"{_json_kind(operations)}"
        )
    for index, operation in enumerate(operations):
        _check_json_operation(index, operation)
    document: Any = copy.deepcopy(resource)
    for index, operation in enumerate(operations):
        document = _apply_json_operation(index, operation, document)
    if not isinstance(document, dict):
        raise UnprocessableError(
            f"The JSON Patch leaves {_json_kind(document)}, not a resource (a JSON object)"
        )
    return document


def _json_where(index: int, operation: dict[str, Any]) -> str:
    return f"JSON Patch operation {index} ({operation['op']} at {operation['path']!r})"


def _check_json_operation(index: int, operation: object) -> None:
    if not isinstance(operation, dict):
        raise InvalidError(
            f"JSON Patch operation {index} must be a JSON object, not {_json_kind(operation)}"
        )
    op = operation.get("op")
    if op not in _JSON_PATCH_MEMBERS:
        raise InvalidError(
            f"JSON Patch operation {index} has op {op!r}; it must be one of "
            + ", ".join(_JSON_PATCH_MEMBERS)
        )
    for member in _JSON_PATCH_MEMBERS[op]:
        if member not in operation:
            raise InvalidError(f"JSON Patch operation {index} ({op}) has no {member!r} member")
    for member in ("path", "from"):
        if member in operation and _pointer_parts(operation[member]) is None:
            raise InvalidError(
                f"JSON Patch operation {index} ({op}): {member} {operation[member]!r} is not a "
                "JSON Pointer ('' or '/'-separated, with ~0 and ~1 as the only escapes)"
            )
    if op == "move" and operation["path"].startswith(operation["from"] + "/"):
        raise InvalidError(
            f"{_json_where(index, operation)}: cannot move {operation['from']!r} into itself"
        )


def _apply_json_operation(index: int, operation: dict[str, Any], document: Any) -> Any:
    where = _json_where(index, operation)
    op = operation["op"]
    if "from" in operation:
        problem = _pointer_problem(document, operation["from"], new_member=False)
        if problem:
            raise UnprocessableError(f"{where}: from {operation['from']!r}: {problem}")
    problem = _pointer_problem(document, operation["path"], new_member=op in ("add", "move",
                                                                              "copy"))
    if problem:
        raise UnprocessableError(f"{where}: {problem}")
    if op == "test":
        actual = jsonpatch.JsonPointer(operation["path"]).resolve(document)
        if not _same_json(actual, operation["value"]):
            raise UnprocessableError(
                f"{where}: test failed: the value is {_short(actual)}, "
                f"not {_short(operation['value'])}"
            )
        return document
    try:
        # A copy, so that the result shares nothing with the patch document.
        return jsonpatch.JsonPatch([copy.deepcopy(operation)]).apply(document, in_place=True)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        # Checked above; the library's own wording means nothing to a client.
        raise UnprocessableError(f"{where}: the operation cannot be applied") from None


def _pointer_parts(pointer: object) -> list[str] | None:
    if not isinstance(pointer, str):
        return None
    try:
        parts: list[str] = jsonpatch.JsonPointer(pointer).parts
    except jsonpatch.JsonPointerException:
        return None
    return parts


def _pointer_problem(document: Any, pointer: str, *, new_member: bool) -> str:
    """Why ``pointer`` does not reach a value (its last step may be new if ``new_member``)."""
    parts = _pointer_parts(pointer) or []
    current = document
    for depth, part in enumerate(parts):
        here = "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts[:depth + 1])
        last = depth == len(parts) - 1
        if isinstance(current, dict):
            if part not in current:
                if last and new_member:
                    return ""
                return f"{here!r} does not exist"
            current = current[part]
        elif isinstance(current, list):
            if last and new_member and part == "-":
                return ""
            if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
                return f"{here!r}: {part!r} is not an array index"
            limit = len(current) + (1 if last and new_member else 0)
            if int(part) >= limit:
                return f"{here!r} is beyond the end of the array ({len(current)} items)"
            if last:
                return ""
            current = current[int(part)]
        else:
            return f"{here!r} does not exist: its parent is {_json_kind(current)}"
    return ""


def _same_json(a: Any, b: Any) -> bool:
    """RFC 6902 equality: same JSON type and value (``true`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             type(None): "null"}
    return kinds.get(type(value), "a number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- FHIRPath Patch ------------------------------------------------------------------------

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
class _Value:
    """The ``value`` part: a value[x] (or a resource), or nested parts (anonymous type)."""

    type: str | None  # FHIR type of a value[x]; "Resource"; None for nested parts
    json: Any = None
    extension: Any = None  # the _value[x] of a primitive: its id and extensions
    parts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class _Operation:
    number: int  # index of the parameter in Parameters.parameter
    type: str
    path: str
    name: str | None
    value: _Value | None
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


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """``resource`` with the FHIRPath Patch ``parameters`` applied, in order."""
    operations = _operations(parameters)
    patched = copy.deepcopy(resource)
    for operation in operations:
        _APPLY[operation.type](patched, operation)
    return patched


# ---- reading the Parameters resource

def _operations(parameters: object) -> list[_Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidError("A FHIRPath Patch must be a Parameters resource")
    found = parameters.get("parameter", [])
    if not isinstance(found, list):
        raise InvalidError("Parameters.parameter must be an array")
    return [_operation(number, parameter) for number, parameter in enumerate(found)]


def _operation(number: int, parameter: object) -> _Operation:
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
    return _Operation(
        number=number,
        type=kind,
        path=_simple_part(parts, "path", at),
        name=_simple_part(parts, "name", at),
        value=_value_part(parts["value"], f"{at}.part") if "value" in parts else None,
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


def _value_part(part: dict[str, Any], at: str) -> _Value:
    keys = [k for k in part if k.startswith("value") and k[5:6].isupper()]
    nested = part.get("part")
    if len(keys) + ("resource" in part) + (nested is not None) != 1:
        raise InvalidError(f"{at}: the 'value' part needs exactly one value[x], resource or "
                           "nested parts", expression=(at,))
    if "resource" in part:
        return _Value("Resource", json=part["resource"])
    if nested is not None:
        if not isinstance(nested, list) or not all(isinstance(p, dict) and "name" in p
                                                   for p in nested):
            raise InvalidError(f"{at}: nested parts must each have a name", expression=(at,))
        return _Value(None, parts=tuple(nested))
    element = element_model().child("Parameters.parameter", keys[0])
    if element is None:
        raise InvalidError(f"{at}: {keys[0]!r} is not a value[x] of Parameters",
                           expression=(at,))
    return _Value(element.type, json=part[keys[0]], extension=part.get("_" + keys[0]))


# ---- the operations

def _add(resource: dict[str, Any], op: _Operation) -> None:
    found = _nodes(resource, op)
    if not found:
        raise op.unprocessable("the path matches nothing; add needs the element to add to")
    if len(found) > 1:
        raise op.unprocessable(f"the path matches {len(found)} elements; add needs exactly one")
    container = _container(resource, found[0], op)
    assert op.name is not None and op.value is not None  # required parts, checked on reading
    key, element = _target(found[0].type, op.name, op.value, op)
    value, extension = _build(op.value, element, op)
    if element.is_array:
        _list_insert(container, key, len(container.get(key) or []), value, extension)
        return
    present = [k for k in container if k.removeprefix("_") in _variants(found[0].type, element)]
    if present:
        raise op.unprocessable(f"{element.path} already has a value and does not repeat; "
                               "use replace to change it")
    _set_single(container, key, value, extension)


def _insert(resource: dict[str, Any], op: _Operation) -> None:
    parent, key, element = _list_of(resource, op)
    assert op.value is not None and op.index is not None  # required parts
    items = parent.get(key) or []
    if not 0 <= op.index <= len(items):
        raise op.unprocessable(f"index {op.index} is out of range: the list has "
                               f"{len(items)} item(s), so it must be 0 to {len(items)}")
    value, extension = _build(op.value, element, op)
    _list_insert(parent, key, op.index, value, extension)


def _delete(resource: dict[str, Any], op: _Operation) -> None:
    found = _locate(resource, op).locations
    if not found:
        return  # deleting what is not there changes nothing
    if len(found) > 1:
        raise op.unprocessable(f"the path matches {len(found)} elements; only a single "
                               "element can be deleted")
    location = found[0]
    ancestry = _ancestry(resource, location.parent, op)
    if location.index is None:
        location.parent.pop(location.key, None)
        location.parent.pop("_" + location.key, None)
    else:
        _list_pop(location.parent, location.key, location.index)
    _prune(ancestry)


def _replace(resource: dict[str, Any], op: _Operation) -> None:
    found = _locate(resource, op).locations
    if not found:
        raise op.unprocessable("the path matches nothing; replace needs an element to replace")
    if len(found) > 1:
        raise op.unprocessable(f"the path matches {len(found)} elements; replace needs "
                               "exactly one")
    location = found[0]
    _ancestry(resource, location.parent, op)
    assert op.value is not None  # required part
    key, element = _replacement_target(location, op.value, op)
    value, extension = _build(op.value, element, op)
    if location.index is None:
        location.parent.pop(location.key, None)
        location.parent.pop("_" + location.key, None)
        _set_single(location.parent, key, value, extension)
    else:
        _list_pop(location.parent, location.key, location.index)
        _list_insert(location.parent, key, location.index, value, extension)


def _move(resource: dict[str, Any], op: _Operation) -> None:
    parent, key, _ = _list_of(resource, op)
    assert op.source is not None and op.destination is not None  # required parts
    size = max(len(parent.get(key) or []), len(parent.get("_" + key) or []))
    for role, index in (("source", op.source), ("destination", op.destination)):
        if not 0 <= index < size:
            raise op.unprocessable(f"{role} {index} is out of range: the list has {size} "
                                   f"item(s), so it must be 0 to {size - 1}")
    value, extension = _list_pop(parent, key, op.source)
    _list_insert(parent, key, op.destination, value, extension)


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace,
          "move": _move}


# ---- locating, by FHIRPath

def _nodes(resource: dict[str, Any], op: _Operation) -> list[Node]:
    try:
        return nodes(resource, op.path)
    except FhirPathError as exc:
        raise InvalidError(f"{op.where}: {exc.diagnostics}", expression=op.expression) from None


def _locate(resource: dict[str, Any], op: _Operation) -> Place:
    try:
        return locate(resource, op.path)
    except FhirPathError as exc:
        raise InvalidError(f"{op.where}: {exc.diagnostics}", expression=op.expression) from None


def _container(resource: dict[str, Any], node: Node, op: _Operation) -> dict[str, Any]:
    if not isinstance(node.value, dict):
        raise op.unprocessable(f"the path selects a {node.type or 'computed'} value; add "
                               "needs an element that has children")
    _ancestry(resource, node.value, op)
    return node.value


def _list_of(resource: dict[str, Any], op: _Operation) -> tuple[dict[str, Any], str, Element]:
    """The one list a path names, for insert and move: its parent, property and element."""
    place = _locate(resource, op)
    if not place.whole:
        raise InvalidError(f"{op.where}: the path must name the list itself (such as "
                           "Patient.identifier), not select items of it",
                           expression=op.expression)
    if len(place.parents) != 1:
        raise op.unprocessable(f"the path must name one list; {len(place.parents)} elements "
                               f"have a {place.name!r}")
    parent = _container(resource, place.parents[0], op)
    element = element_model().child(place.parents[0].type or "", place.name)
    if element is None or not element.is_array:
        raise op.unprocessable(f"{place.name!r} does not repeat; {op.type} works on lists")
    return parent, element.name, element


def _ancestry(resource: dict[str, Any], target: dict[str, Any],
              op: _Operation) -> list[tuple[Any, Any]]:
    """The (holder, key) steps from the resource down to ``target``, found by identity.

    Refuses a target outside the resource: FHIRPath Patch must not cross into other
    resources (``resolve()`` answers with stand-ins, not with parts of this resource).
    """
    found = _path_to(resource, target)
    if found is None:
        raise op.unprocessable("the path leads outside the resource being patched")
    return found


def _path_to(holder: Any, target: dict[str, Any]) -> list[tuple[Any, Any]] | None:
    if holder is target:
        return []
    steps: Any = holder.items() if isinstance(holder, dict) else enumerate(holder)
    for key, child in steps:
        if isinstance(child, dict | list):
            below = _path_to(child, target)
            if below is not None:
                return [(holder, key), *below]
    return None


def _prune(ancestry: list[tuple[Any, Any]]) -> None:
    """Remove the objects a delete left empty: FHIR JSON has no empty objects or arrays."""
    for holder, key in reversed(ancestry):
        child = holder[key]
        if child not in ({}, []):
            return
        del holder[key]


# ---- the element model: where a value goes, and what it must be

def _target(container_type: str | None, name: str, value: _Value,
            op: _Operation) -> tuple[str, Element]:
    """The property ``name`` names under ``container_type`` for ``value`` (choices typed)."""
    model = element_model()
    if container_type is None or not model.children(container_type):
        raise op.unprocessable("the path does not select an element of the resource")
    element = model.child(container_type, name)
    if element is None and _choice_base(container_type, name):
        if value.type in (None, "Resource"):
            raise op.unprocessable(f"{name}[x] of {container_type} needs a value[x] that "
                                   "says which type it is")
        element = model.child(container_type, name + _capital(value.type))
        if element is None:
            raise op.unprocessable(f"{name}[x] of {container_type} cannot be a {value.type}")
    if element is None:
        raise op.unprocessable(f"{container_type} has no element {name!r}")
    _check_type(element, value, op)
    return element.name, element


def _replacement_target(location: Location, value: _Value,
                        op: _Operation) -> tuple[str, Element]:
    element = element_model().child(location.parent_type or "", location.key)
    if element is None:
        raise op.unprocessable("the path does not select an element of the resource")
    if element.is_choice:
        base = element.path.rpartition(".")[2].removesuffix("[x]")
        return _target(location.parent_type, base, value, op)
    _check_type(element, value, op)
    return element.name, element


def _check_type(element: Element, value: _Value, op: _Operation) -> None:
    if value.type is None:  # nested parts: an anonymous (complex) value
        if element.is_primitive:
            raise op.unprocessable(f"{element.path} is a {element.type}; it needs a "
                                   f"value{_capital(element.type)}, not nested parts")
        return
    fits = value.type == element.type or (
        # Parameters has no valueXhtml: a narrative div comes as a string.
        element.type == "xhtml" and value.type == "string"
    ) or (element.is_resource and value.type == "Resource")
    if not fits:
        expected = "resource" if element.is_resource else f"value{_capital(element.type)}"
        raise op.unprocessable(f"{element.path} is a {element.type}, so the value must be a "
                               f"{expected}, not a value{_capital(value.type)}")


def _variants(container_type: str | None, element: Element) -> set[str]:
    """Every property the element may appear as (all the types of a choice)."""
    if not element.is_choice:
        return {element.name}
    return {e.name for e in element_model().children(container_type or "").values()
            if e.path == element.path}


def _choice_base(container_type: str, name: str) -> bool:
    return any(e.is_choice and e.path.endswith(f".{name}[x]")
               for e in element_model().children(container_type).values())


def _build(value: _Value, element: Element, op: _Operation) -> tuple[Any, Any]:
    """The JSON for ``value`` placed as ``element``, and its primitive extension if any."""
    if value.type is not None:
        return copy.deepcopy(value.json), copy.deepcopy(value.extension)
    built: dict[str, Any] = {}
    for part in value.parts:
        child_value = _value_part(part, f"{op.expression[0]}: part {part['name']!r}")
        key, child = _target(element.children_key, part["name"], child_value, op)
        json_value, extension = _build(child_value, child, op)
        if child.is_array:
            _list_insert(built, key, len(built.get(key) or []), json_value, extension)
        elif key in built or "_" + key in built:
            raise op.unprocessable(f"{child.path} does not repeat, but the value has it twice")
        else:
            _set_single(built, key, json_value, extension)
    return built, None


def _capital(type_name: str) -> str:
    return type_name[0].upper() + type_name[1:]


# ---- JSON shapes: primitives keep their id/extensions in "_name", aligned in lists

def _set_single(container: dict[str, Any], key: str, value: Any, extension: Any) -> None:
    if value is not None:
        container[key] = value
    if extension is not None:
        container["_" + key] = extension


def _list_insert(container: dict[str, Any], key: str, index: int, value: Any,
                 extension: Any) -> None:
    items = container.setdefault(key, [])
    extensions = container.get("_" + key)
    if extensions is not None or extension is not None:
        extensions = container.setdefault("_" + key, [])
        extensions.extend([None] * (len(items) - len(extensions)))
        extensions.insert(index, extension)
    items.insert(index, value)


def _list_pop(container: dict[str, Any], key: str, index: int) -> tuple[Any, Any]:
    items = container.get(key) or []
    extensions = container.get("_" + key) or []
    value = items.pop(index) if index < len(items) else None
    extension = extensions.pop(index) if index < len(extensions) else None
    for name in (key, "_" + key):
        _drop_empty_list(container, name)
    return value, extension


def _drop_empty_list(container: dict[str, Any], name: str) -> None:
    found = container.get(name)
    if isinstance(found, list) and all(item is None for item in found):
        del container[name]


__all__ = ["apply_fhirpath_patch", "apply_json_patch"]
