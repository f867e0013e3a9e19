"""JSON Patch (RFC 6902, https://www.rfc-editor.org/rfc/rfc6902) for FHIR ``patch``.

FHIR R4 allows JSON Patch on a resource (https://hl7.org/fhir/R4/http.html#patch). The
``jsonpatch`` library applies each operation, but only after the document and each pointer
have been checked here: its own errors name Python internals, and a client needs to know
which operation failed and why (400 for a malformed patch, 422 for one that cannot apply).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import jsonpatch

from fhirhub.errors import InvalidError, UnprocessableError

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


__all__ = ["apply_json_patch"]
