"""The CapabilityStatement, generated from what this server really implements
(https://hl7.org/fhir/R4/capabilitystatement.html)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fhirhub import FHIR_VERSION, __version__
from fhirhub.fhir.model import element_model
from fhirhub.search.registry import Registry, registry

if TYPE_CHECKING:
    from fhirhub.engine.operations import Operation

Json = dict[str, Any]

INSTANCE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance")
TYPE_INTERACTIONS = ("create", "search-type", "history-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")


def capability_statement(base_url: str, date: str, *, operations: Sequence[Operation] = (),
                         profiles: Mapping[str, Sequence[str]] | None = None,
                         required: Mapping[str, Sequence[str]] | None = None,
                         search: Registry | None = None,
                         search_documentation: Mapping[str, str] | None = None) -> Json:
    """``profiles``: the profiles the server can validate against, by resource type
    (``supportedProfile``); ``required``: those every resource of a type must meet;
    ``search``: the search parameters in force (the official ones by default), and
    ``search_documentation`` a text for some of them (the server's own), by URL."""
    params = _SearchParams(search or registry(), search_documentation or {})
    resources = [_audit_event() if rtype == "AuditEvent" else
                 _resource(rtype, operations, (profiles or {}).get(rtype, ()),
                           (required or {}).get(rtype, ()), params)
                 for rtype in sorted(element_model().resource_types)]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhirhub",
        "kind": "instance",
        "software": {"name": "fhirhub", "version": __version__},
        "implementation": {"description": "fhirhub FHIR R4 server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json",
                        "application/fhir+xml"],
        "rest": [{
            "mode": "server",
            "documentation": (
                "Every write is committed durably before its response is sent and is visible "
                "to every reader at once. A POST with an X-Request-ID is idempotent: a retry "
                "with the same id and body within the idempotency window returns the "
                "original response."
            ),
            "resource": resources,
            "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
            "operation": [_operation(op) for op in operations if "system" in op.levels],
            "searchParam": [
                {"name": "_type", "type": "token",
                 "documentation": "Resource types to search at system level"},
                {"name": "_list", "type": "special",
                 "documentation": "The resources a List has as its items (_list=[List id]); "
                                  "on every type"},
            ],
        }],
    }


def _audit_event() -> Json:
    """AuditEvent is the audit log: read and search only (fhirhub.engine.audit_events)."""
    from fhirhub.audit.search import PARAMS

    types = {"_id": "token", "date": "date", "_lastUpdated": "date", "patient": "reference",
             "entity": "reference"}
    return {
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": "The server's audit log: one AuditEvent (IHE BALP) for every request "
                         "received and every message sent, tamper-evident. Read-only: "
                         "create, update, patch and delete are refused with 405.",
        "interaction": [{"code": c} for c in ("read", "vread", "search-type",
                                              "history-instance")],
        "versioning": "versioned",
        "readHistory": True,
        "searchParam": [{"name": name, "type": types.get(name, "token"), "documentation": doc}
                        for name, doc in sorted(PARAMS.items())],
    }


def _operation(op: Operation) -> Json:
    return {"name": op.name, "definition": op.definition}


class _SearchParams:
    def __init__(self, search: Registry, documentation: Mapping[str, str]) -> None:
        self.search = search
        self.documentation = documentation

    def of(self, rtype: str) -> list[Json]:
        """``rest.resource.searchParam``: every parameter of ``rtype`` in force."""
        found = []
        for code, p in sorted(self.search.for_type(rtype).items()):
            entry: Json = {"name": code}
            if p.url:
                entry["definition"] = p.url
            entry["type"] = p.type
            if p.url in self.documentation:
                entry["documentation"] = self.documentation[p.url]
            found.append(entry)
        return found


def _resource(rtype: str, operations: Sequence[Operation], profiles: Sequence[str],
              required: Sequence[str], search: _SearchParams) -> Json:
    search_params = search.of(rtype)
    found: Json = {
        "type": rtype,
        "profile": required[0] if len(required) == 1
        else f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        "interaction": [{"code": c} for c in (*INSTANCE_INTERACTIONS, *TYPE_INTERACTIONS)],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical", "local"],
        "searchInclude": ["*"],
        "searchRevInclude": ["*"],
        "searchParam": search_params,
    }
    if profiles:
        found["supportedProfile"] = list(profiles)
    if required:
        found["documentation"] = ("Every resource of this type must conform to "
                                  + ", ".join(required) + " (checked on every write).")
    ops = [_operation(op) for op in operations
           if op.levels & {"type", "instance"} and (not op.types or rtype in op.types)]
    if ops:
        found["operation"] = ops
    return found


__all__ = ["capability_statement"]
