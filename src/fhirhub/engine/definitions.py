"""The packaged conformance resources, installed into the database so that they can be read
and searched like any other resource (``GET StructureDefinition?url=...``,
``GET ValueSet/administrative-gender``): R4 and UK Core StructureDefinitions, ValueSets,
CodeSystems, ConceptMaps and SearchParameters.

Installed once per database and package version: the install is skipped when the marker
resources of each package are there in their packaged version. Installing writes with
``PUT Type/id`` in transactions, so that it is all-or-nothing per group and a repeat changes
nothing.
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fhirhub.auth.principal import operator
from fhirhub.engine.request import FhirRequest
from fhirhub.fhir import json as fjson
from fhirhub.fhir.definitions import CANONICAL_TYPES, packaged

if TYPE_CHECKING:
    from fhirhub.engine.engine import Engine

log = logging.getLogger("fhirhub.definitions")

Json = dict[str, Any]
GROUP = 200
# One resource of each package: both there in their packaged versions, all installed.
MARKERS = (("StructureDefinition", "http://hl7.org/fhir/StructureDefinition/Patient"),
           ("StructureDefinition", "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"))
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def packaged_resources() -> list[Json]:
    """Every packaged conformance resource once, by type and id (a later package wins)."""
    definitions = packaged()
    found: dict[tuple[str, str], Json] = {}
    for rtype in CANONICAL_TYPES:
        for resource in definitions.all(rtype):
            rid = resource.get("id")
            if isinstance(rid, str) and _ID.fullmatch(rid):
                found[(rtype, rid)] = resource
            else:  # one R4 SearchParameter's id is longer than FHIR ids may be
                log.debug("packaged %s %s has no valid id; not installed", rtype, rid)
    return list(found.values())


def installed(engine: Engine) -> bool:
    for rtype, url in MARKERS:
        marker = packaged().get(rtype, url)
        if marker is None:
            continue
        stored = engine.store.read(rtype, marker["id"])
        if (stored is None or stored.deleted or stored.body is None
                or fjson.loads(stored.body).get("version") != marker.get("version")):
            return False
    return True


def install(engine: Engine, progress: Callable[[int, int], None] | None = None) -> int:
    """Install the packaged definitions unless they are there; how many were written.
    ``progress(done, total)`` is called after each group."""
    if installed(engine):
        return 0
    resources = packaged_resources()
    trusted = engine.trusted()
    failures = 0
    for done, group in _groups(resources):
        failures += _write(trusted, group)
        if progress is not None:
            progress(done, len(resources))
    if failures:
        log.warning("%d packaged definitions could not be installed (see above)", failures)
    return len(resources) - failures


def _groups(resources: list[Json]) -> Iterator[tuple[int, list[Json]]]:
    for start in range(0, len(resources), GROUP):
        group = resources[start:start + GROUP]
        yield start + len(group), group


def _write(engine: Engine, group: list[Json]) -> int:
    response = engine.handle(_transaction(group))
    if response.status < 400:
        return 0
    failures = 0
    for resource in group:  # find the ones that cannot go in; keep the others
        single = engine.handle(_transaction([resource]))
        if single.status >= 400:
            failures += 1
            outcome = single.resource or {}
            reason = (outcome.get("issue") or [{}])[0].get("diagnostics", single.status)
            log.warning("packaged %s/%s not installed: %s", resource["resourceType"],
                        resource["id"], reason)
    return failures


def _transaction(resources: list[Json]) -> FhirRequest:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]}
    return FhirRequest(method="POST", path="", parsed=bundle, base_url="",
                       headers={"content-type": "application/fhir+json",
                                "prefer": "return=minimal"},
                       request_id="install-definitions",
                       principal=operator(getpass.getuser()))  # who started the server


__all__ = ["MARKERS", "install", "installed", "packaged_resources"]
