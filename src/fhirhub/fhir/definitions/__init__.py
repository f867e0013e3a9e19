"""Loader for the packaged FHIR definitions (see README.md beside this file)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson

R4_DIR = Path(__file__).parent / "r4"

Json = dict[str, Any]


def iter_r4(kind: str) -> Iterator[Json]:
    """Every resource of one packaged R4 file, e.g. ``iter_r4("SearchParameter")``."""
    path = R4_DIR / f"{kind}.ndjson.gz"
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


@cache
def structure_definitions() -> dict[str, Json]:
    """R4 StructureDefinitions by canonical URL."""
    return {sd["url"]: sd for sd in iter_r4("StructureDefinition")}


@cache
def search_parameters() -> tuple[Json, ...]:
    return tuple(iter_r4("SearchParameter"))


@cache
def compartment_definitions() -> dict[str, Json]:
    return {cd["code"]: cd for cd in iter_r4("CompartmentDefinition")}


@cache
def compartment_params(code: str) -> dict[str, tuple[str, ...]]:
    """For a compartment (``Patient``, ``Encounter``, ...): each resource type that can be
    in it, with the search parameters that put it there."""
    definition = compartment_definitions().get(code)
    if definition is None:
        return {}
    return {r["code"]: tuple(r["param"]) for r in definition.get("resource", []) if r.get("param")}


from fhirhub.fhir.definitions._canonical import (  # noqa: E402  (uses iter_r4 above)
    CANONICAL_TYPES,
    Definitions,
    packaged,
    ukcore_resources,
)

__all__ = [
    "CANONICAL_TYPES",
    "Definitions",
    "compartment_definitions",
    "compartment_params",
    "iter_r4",
    "packaged",
    "search_parameters",
    "structure_definitions",
    "ukcore_resources",
]
