"""Validation of import lines in worker processes, ahead of the writer.

Validating every resource is most of an import's CPU, and the import is one process: one
core validates while the other waits on the database. Here, worker processes validate each
line as the engine would (each resource against its definition, the profiles it claims and
the deployment's required profiles; a transaction's ``urn:uuid`` references stand for the
types of the entries they name) and say whether all of it passes. The writer then writes a
line that passed with the engine's *trusted* view (shape checks only); a line that did not
pass goes the ordinary way, so the engine refuses it with exactly the errors it would have
given. Nothing is ever written that the engine would have refused.
"""

from __future__ import annotations

from typing import Any

from fhirhub.bulk._references import rewrite_references
from fhirhub.config import Settings
from fhirhub.engine import Engine
from fhirhub.engine.bundles import shell
from fhirhub.fhir import json as fjson
from fhirhub.fhir.validation import Validator

Json = dict[str, Any]
Job = tuple[int, bytes]
Verdict = tuple[int, bytes, bool]

# The worker's validator, set once by start(); a dict, as a worker process holds one.
_WORKER: dict[str, Validator] = {}


def start(settings: Settings, stored: list[Json]) -> None:
    """Pool initializer: this worker's validator, configured as the engine's is."""
    _WORKER["validator"] = Engine.make_validator(settings, stored, warm=False)


def verdict(job: Job) -> Verdict:
    """(line number, line, True when every resource in the line passes validation)."""
    number, line = job
    try:
        item = fjson.loads(line)
    except Exception:  # a line that does not parse is the writer's to report
        return number, line, False
    return number, line, passes(item)


def passes(item: Any) -> bool:
    validator = _WORKER["validator"]  # start() runs in every worker first
    if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
        return False
    if item["resourceType"] != "Bundle" or item.get("type") not in (
            "transaction", "batch", "collection"):
        return _clean(validator.validate(item))
    entries = item.get("entry")
    if not isinstance(entries, list):
        return False
    if item.get("type") != "collection" and not _clean(
            validator.validate(shell(item), expected_type="Bundle")):
        return False
    types = {e["fullUrl"]: f"{e['resource'].get('resourceType')}/{e['resource'].get('id') or 'x'}"
             for e in entries if isinstance(e, dict) and isinstance(e.get("fullUrl"), str)
             and isinstance(e.get("resource"), dict)}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue
        if not isinstance(resource, dict):
            return False
        # as the engine rewrites them before it validates (only the type is checked here)
        rewritten = rewrite_references(resource, types)
        if not _clean(validator.validate(rewritten, expected_type=resource.get("resourceType"))):
            return False
    return True


def _clean(issues: list[Any]) -> bool:
    return not any(i.severity in ("error", "fatal") for i in issues)
