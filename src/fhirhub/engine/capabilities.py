"""The CapabilityStatement, generated from what this server really implements
(https://hl7.org/fhir/R4/capabilitystatement.html)."""

from __future__ import annotations

from typing import Any

from fhirhub import FHIR_VERSION, __version__
from fhirhub.fhir.model import element_model
from fhirhub.search.registry import registry

Json = dict[str, Any]

INSTANCE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance")
TYPE_INTERACTIONS = ("create", "search-type", "history-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")


def capability_statement(base_url: str, date: str) -> Json:
    resources = [_resource(rtype) for rtype in sorted(element_model().resource_types)]
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
            "searchParam": [
                {"name": "_type", "type": "token",
                 "documentation": "Resource types to search at system level"},
            ],
        }],
    }


def _resource(rtype: str) -> Json:
    params = registry().for_type(rtype)
    search_params = [
        {"name": code, "definition": p.url, "type": p.type}
        for code, p in sorted(params.items()) if p.url and p.type != "composite"
    ]
    return {
        "type": rtype,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
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


__all__ = ["capability_statement"]
