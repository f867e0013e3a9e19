"""``ConceptMap/$translate``: a code through one or more ConceptMaps.

https://hl7.org/fhir/R4/conceptmap-operation-translate.html. Forward, a code of a group's
``source`` system maps to each ``target`` of its element; with ``reverse``, a code of a group's
``target`` system maps back to the element's code, with the equivalence turned round (wider
becomes narrower). ``result`` is true when a match has an equivalence other than
``unmatched`` or ``disjoint``. A code a group does not list follows ``group.unmapped``:
``provided`` gives the same code in the target system (equivalence ``equal``), ``fixed`` the
given code (``inexact``: a catch-all is never an exact mapping), ``other-map`` the other map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

_REVERSED = {"wider": "narrower", "narrower": "wider", "subsumes": "specializes",
             "specializes": "subsumes"}
_NO_MATCH = frozenset({"unmatched", "disjoint"})
_MAX_DEPTH = 5  # other-map chains


@dataclass(frozen=True)
class Translation:
    """What to translate, and where to."""

    code: str
    system: str | None = None
    source: str | None = None  # value set the code comes from
    target: str | None = None  # value set to translate into
    target_system: str | None = None
    reverse: bool = False


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _ends(cm: Json) -> tuple[str | None, str | None]:
    source = cm.get("sourceUri") or cm.get("sourceCanonical")
    target = cm.get("targetUri") or cm.get("targetCanonical")
    return (source if isinstance(source, str) else None, target if isinstance(target, str) else None)


def map_applies(cm: Json, t: Translation) -> bool:
    """Does ``cm`` go from ``t.source`` to ``t.target`` (when they are given)?"""
    source, target = _ends(cm)
    if t.reverse:
        source, target = target, source
    return ((t.source is None or (source or "").split("|")[0] == t.source.split("|")[0])
            and (t.target is None or (target or "").split("|")[0] == t.target.split("|")[0]))


def groups(cm: Json, t: Translation) -> Iterator[Json]:
    for group in _list(cm.get("group")):
        start, end = group.get("source"), group.get("target")
        if t.reverse:
            start, end = end, start
        if (t.system is None or start == t.system) and (t.target_system is None or end == t.target_system):
            yield group


def has_group(cm: Json, t: Translation) -> bool:
    return next(groups(cm, t), None) is not None


def _match(equivalence: str, system: Any, code: Any, display: Any, cm: Json,
           products: list[Json]) -> Json:
    parts: list[Json] = [{"name": "equivalence", "valueCode": equivalence}]
    if isinstance(code, str):
        coding = {k: v for k, v in (("system", system), ("code", code), ("display", display))
                  if isinstance(v, str)}
        parts.append({"name": "concept", "valueCoding": coding})
    for product in products:
        coding = {k: v for k, v in (("system", product.get("system")), ("code", product.get("value")),
                                    ("display", product.get("display"))) if isinstance(v, str)}
        parts.append({"name": "product", "part": [
            {"name": "element", "valueUri": str(product.get("property", ""))},
            {"name": "concept", "valueCoding": coding}]})
    if isinstance(cm.get("url"), str):
        parts.append({"name": "source", "valueUri": cm["url"]})
    return {"name": "match", "part": parts}


Same = Callable[[str | None, str, str], bool]  # (system, listed code, asked code) -> same code?
Resolve = Callable[[str], Json | None]  # ConceptMap by url


def matches_in(cm: Json, t: Translation, same: Same, resolve: Resolve, depth: int = 0) -> list[Json]:
    """Every match ``cm`` gives for ``t``."""
    found: list[Json] = []
    for group in groups(cm, t):
        if t.reverse:
            found += [_match(_REVERSED.get(str(tg.get("equivalence")), str(tg.get("equivalence",
                                                                            "equivalent"))),
                             group.get("source"), el.get("code"), el.get("display"), cm, [])
                      for el in _list(group.get("element")) for tg in _list(el.get("target"))
                      if isinstance(tg.get("code"), str) and same(group.get("target"), tg["code"], t.code)]
            continue
        elements = [el for el in _list(group.get("element"))
                    if isinstance(el.get("code"), str) and same(group.get("source"), el["code"], t.code)]
        found += [_match(str(tg.get("equivalence", "equivalent")), group.get("target"), tg.get("code"),
                         tg.get("display"), cm, _list(tg.get("product")))
                  for el in elements for tg in _list(el.get("target"))]
        if not elements:
            found += _unmapped(group, cm, t, same, resolve, depth)
    return found


def _unmapped(group: Json, cm: Json, t: Translation, same: Same, resolve: Resolve,
              depth: int) -> list[Json]:
    unmapped = group.get("unmapped")
    if not isinstance(unmapped, dict):
        return []
    mode = unmapped.get("mode")
    if mode == "provided":
        return [_match("equal", group.get("target"), t.code, None, cm, [])]
    if mode == "fixed":
        return [_match("inexact", group.get("target"), unmapped.get("code"), unmapped.get("display"),
                       cm, [])]
    other = resolve(str(unmapped.get("url"))) if mode == "other-map" else None
    if other is None or depth >= _MAX_DEPTH:
        return []
    return matches_in(other, Translation(t.code, t.system), same, resolve, depth + 1)


def translate_parameters(maps: list[Json], t: Translation, same: Same, resolve: Resolve) -> Json:
    """The $translate Parameters for ``t`` through ``maps``."""
    found = [m for cm in maps for m in matches_in(cm, t, same, resolve)]
    result = any(p["part"][0]["valueCode"] not in _NO_MATCH for p in found)
    params: list[Json] = [{"name": "result", "valueBoolean": result}]
    if not result:
        system = f" from {t.system}" if t.system else ""
        into = f" into {t.target_system}" if t.target_system else ""
        where = ", ".join(str(cm.get("url")) for cm in maps)
        text = (f"No mapping was found for the code '{t.code}'{system}{into} in {where}" if maps
                else f"No ConceptMap on this server maps codes{system}{into}")
        params.append({"name": "message", "valueString": text})
    params += found
    return {"resourceType": "Parameters", "parameter": params}


__all__ = ["Translation", "groups", "has_group", "map_applies", "matches_in", "translate_parameters"]
