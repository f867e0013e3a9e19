"""The FHIR R4 functions the engine lacks: ``resolve()``, ``hasValue()``, ``getValue()``.

See https://hl7.org/fhir/R4/fhirpath.html#functions. ``resolve()`` needs the resource the
evaluation started from; :func:`evaluation_root` provides it for the length of one run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from fhirhub.fhir.fhirpath._engine import create_node
from fhirhub.fhir.model import element_model

# A ContextVar, so that concurrent evaluations (threads, tasks) never see each other's root.
_ROOT: ContextVar[Any] = ContextVar("fhirpath_root", default=None)

_LITERAL_REFERENCE = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


@contextmanager
def evaluation_root(resource: Any) -> Iterator[None]:
    """Make ``resource`` the one that ``resolve()`` looks in while the block runs."""
    token = _ROOT.set(resource)
    try:
        yield
    finally:
        _ROOT.reset(token)


def resolve(inputs: list[Any]) -> list[Any]:
    """``resolve()``: references inside the resource being evaluated, else a typed stub.

    Looked up in order: ``#id`` among the root resource's contained resources (``#`` is the
    root itself); a Bundle root's entries by ``fullUrl`` or by type and id. A literal
    reference that is not found there (``Patient/1``, or an absolute URL ending so)
    resolves to a stub ``{"resourceType": "Patient", "id": "1"}``: it carries only what the
    reference says, so that type tests such as ``resolve() is Patient`` (common in search
    parameter expressions) work without a database. Anything else resolves to nothing.
    """
    root = _ROOT.get()
    out = []
    for item in inputs:
        reference = item.get("reference") if isinstance(item, dict) else item
        if isinstance(reference, str) and reference:
            target = _find_target(root, reference)
            if target is not None:
                out.append(create_node(target, None))
    return out


def has_value(inputs: list[Any]) -> bool:
    """``hasValue()``: one item that is a primitive with a value (not only extensions)."""
    return len(inputs) == 1 and isinstance(inputs[0], str | bool | int | Decimal)


def get_value(inputs: list[Any]) -> list[Any]:
    """``getValue()``: the value of a single primitive, else nothing."""
    return [inputs[0]] if has_value(inputs) else []


def _find_target(root: Any, reference: str) -> dict[str, Any] | None:
    if not isinstance(root, dict):
        root = {}
    if reference.startswith("#"):
        return _contained(root, reference[1:])
    match = _LITERAL_REFERENCE.search(reference)
    if root.get("resourceType") == "Bundle":
        found = _bundle_entry(root, reference, match)
        if found is not None:
            return found
    if match and element_model().is_resource_type(match["type"]):
        return {"resourceType": match["type"], "id": match["id"]}
    return None


def _contained(root: dict[str, Any], id_: str) -> dict[str, Any] | None:
    """The root's contained resource ``id_``; the root itself for an empty id (``#``)."""
    if not id_:
        return root or None
    return next((c for c in root.get("contained", []) if isinstance(c, dict)
                 and c.get("id") == id_), None)


def _bundle_entry(bundle: dict[str, Any], reference: str,
                  match: re.Match[str] | None) -> dict[str, Any] | None:
    """The entry's resource whose ``fullUrl`` is ``reference``, or whose type and id match."""
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        same_resource = match is not None and (
            resource.get("resourceType"), resource.get("id")
        ) == (match["type"], match["id"])
        if entry.get("fullUrl") == reference or same_resource:
            return resource
    return None
