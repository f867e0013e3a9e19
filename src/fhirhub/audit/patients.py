"""Which patients a resource concerns: the Patient compartment, by its definition.

A Patient is its own patient (with its NHS number); any other resource is about the
patients its Patient-compartment search parameters point at (an Observation's
``subject`` and ``performer``, an Encounter's ``subject``, ...), as R4's
CompartmentDefinition for Patient says. Written resources already have their search
index rows, so nothing is evaluated twice; read ones are parsed from their stored JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson

from fhirhub.audit.record import PatientRef
from fhirhub.fhir.definitions import compartment_params
from fhirhub.search.registry import SearchParamDef, registry
from fhirhub.search.types import IndexRows

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
Json = dict[str, Any]


@cache
def _params(resource_type: str) -> tuple[SearchParamDef, ...]:
    codes = compartment_params("Patient").get(resource_type, ())
    reg = registry()
    found = (reg.get(resource_type, code) for code in codes if code != "{def}")
    return tuple(p for p in found if p is not None)


@cache
def _codes(resource_type: str) -> frozenset[str]:
    return frozenset(compartment_params("Patient").get(resource_type, ()))


def of_body(resource_type: str, resource_id: str, body: bytes | None) -> list[PatientRef]:
    """The patients of a stored resource (its JSON body)."""
    if body is None:
        return [PatientRef(f"Patient/{resource_id}")] if resource_type == "Patient" else []
    if resource_type != "Patient" and not _params(resource_type):
        return []
    try:
        resource = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    return of_resource(resource) if isinstance(resource, dict) else []


def of_resource(resource: Json) -> list[PatientRef]:
    rtype = str(resource.get("resourceType", ""))
    if rtype == "Patient":
        return [PatientRef(f"Patient/{resource.get('id')}", _nhs(resource.get("identifier")))]
    found: list[PatientRef] = []
    for param in _params(rtype):
        for _kind, value in param.extract(resource):
            ref = _patient_ref(value)
            if ref is not None:
                found.append(ref)
    return unique(found)


def of_index(resource_type: str, resource_id: str, index: IndexRows | None) -> list[PatientRef]:
    """The patients of a resource being written, from its search index rows."""
    if resource_type == "Patient":
        nhs = None
        if index is not None:
            nhs = next((t.code for t in index.token
                        if t.param == "identifier" and t.system == NHS_NUMBER), None)
        return [PatientRef(f"Patient/{resource_id}", nhs)]
    if index is None:
        return []
    codes = _codes(resource_type)
    return unique([PatientRef(f"Patient/{r.ref_id}") for r in index.reference
                   if r.param in codes and r.ref_type == "Patient" and r.ref_id])


def unique(refs: Iterable[PatientRef]) -> list[PatientRef]:
    """One entry per patient, keeping the NHS number where any entry knew it."""
    merged: dict[str, PatientRef] = {}
    for ref in refs:
        key = ref.reference or f"nhs:{ref.nhs_number}"
        prior = merged.get(key)
        if prior is None or (prior.nhs_number is None and ref.nhs_number is not None):
            merged[key] = ref
    return list(merged.values())


def _patient_ref(value: Any) -> PatientRef | None:
    if not isinstance(value, dict):
        return None
    nhs = None
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER:
        nhs = str(identifier.get("value") or "") or None
    reference = value.get("reference")
    ref = None
    if isinstance(reference, str):
        parts = reference.split("?")[0].rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2 and parts[-2] == "Patient":
            ref = f"Patient/{parts[-1]}"
    if ref is None and nhs is None:
        return None
    if ref is None and value.get("type") not in (None, "Patient"):
        return None
    return PatientRef(ref, nhs)


def _nhs(identifiers: Any) -> str | None:
    if isinstance(identifiers, list):
        for ident in identifiers:
            if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER and ident.get("value"):
                return str(ident["value"])
    return None


__all__ = ["NHS_NUMBER", "of_body", "of_index", "of_resource", "unique"]
