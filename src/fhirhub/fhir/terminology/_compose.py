"""A ValueSet's ``compose`` as a :class:`Membership`: includes, excludes, imported value sets
and filters, over the packaged code systems.

https://hl7.org/fhir/R4/valueset.html#compose: an include's parts (system, concepts or
filters, value sets) are intersected; the includes are united; then the excludes removed.
A part that this server cannot compute (SNOMED CT by filter, an unknown imported value set)
leaves its system open: codes of that system answer "cannot tell", the rest are still
checked. When such a value set has a packaged pre-computed expansion, its codes are added as
known members (the negatives stay "cannot tell": a 2019 expansion of SNOMED CT does not prove
a code absent today).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from fhirhub.fhir.terminology._codesystems import CodeSystemIndex, Concept
from fhirhub.fhir.terminology._filters import FilterError, describe, select
from fhirhub.fhir.terminology._members import ANY, Member, Membership, intersect, subtract, union

Json = dict[str, Any]


class Source(Protocol):
    """Where compilation finds code systems and the value sets it imports."""

    def code_system_index(self, url: str) -> CodeSystemIndex | None: ...

    def membership_of(self, url: str, chain: tuple[str, ...] = ()) -> Membership | None: ...


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def unavailable(system: str, index: CodeSystemIndex | None) -> str:
    """Why the codes of ``system`` cannot be known here."""
    if index is None:
        return f"the code system {system} is not available on this server"
    return (f"the code system {system} is known, but its content is not available on this "
            f"server (content = {index.content})")


def compile_value_set(vs: Json, source: Source, chain: tuple[str, ...] = ()) -> Membership:
    """The membership ``vs`` defines (not frozen: the caller may add to it)."""
    compose = vs.get("compose")
    out = Membership()
    if not isinstance(compose, dict):
        out.mark_open(ANY, f"the value set {vs.get('url', '')} has no compose to compute",
                      listable=False)
        return out
    for item in _list(compose.get("include")):
        if isinstance(item, dict):
            union(out, _include(item, source, chain))
    for item in _list(compose.get("exclude")):
        if isinstance(item, dict):
            subtract(out, _include(item, source, chain))
    if compose.get("inactive") is False:
        out.members = {k: m for k, m in out.members.items() if not m.inactive}
    return out


def whole_system(system: str, source: Source) -> Membership:
    """The implicit value set of every code of ``system``."""
    return _system_part({"system": system}, system, source)


def _include(item: Json, source: Source, chain: tuple[str, ...]) -> Membership:
    parts: list[Membership] = []
    system = item.get("system")
    if isinstance(system, str):
        parts.append(_system_part(item, system, source))
    parts += [_imported(url, source, chain) for url in _list(item.get("valueSet"))
              if isinstance(url, str)]
    if not parts:
        return Membership()
    result = parts[0]
    for part in parts[1:]:
        result = intersect(result, part)
    return result


def _imported(url: str, source: Source, chain: tuple[str, ...]) -> Membership:
    found = None if url in chain else source.membership_of(url, chain)
    if found is not None:
        return found
    out = Membership()
    why = (f"the value set {url} includes itself" if url in chain else
           f"the value set {url} that it includes is not available on this server")
    out.mark_open(ANY, why, listable=False)
    return out


def _system_part(item: Json, system: str, source: Source) -> Membership:
    index = source.code_system_index(system)
    out = Membership()
    if index is not None and not index.case_sensitive:
        out.insensitive.add(system)
    concepts = [c for c in _list(item.get("concept")) if isinstance(c, dict)
                and isinstance(c.get("code"), str)]
    if concepts:
        for entry in concepts:
            member = _listed(entry, system, index)
            if member is not None:
                out.add(member)
        return out
    if index is None or not index.listed:
        out.mark_open(system, unavailable(system, index), listable=False)
        return out
    try:
        codes = set(index.concepts)
        for flt in _list(item.get("filter")):
            codes &= select(index, flt if isinstance(flt, dict) else {})
    except FilterError as exc:
        out.mark_open(system, f"its filter '{describe(flt)}' on {system} cannot be applied: "
                      f"{exc}", listable=False)
        return out
    for concept in index.in_order(codes):
        out.add(member_of(index, concept))
    if not index.complete:
        out.mark_open(system, f"the code system {system} is {index.partial} here, so "
                      "it may have codes that are not listed", listable=True)
    return out


def _listed(entry: Json, system: str, index: CodeSystemIndex | None) -> Member | None:
    """A concept listed in ``compose.include.concept`` (None if the system lacks it)."""
    code: str = entry["code"]
    display = entry.get("display") if isinstance(entry.get("display"), str) else None
    designations = tuple(d for d in _list(entry.get("designation")) if isinstance(d, dict))
    concept = index.find(code) if index is not None and index.listed else None
    if concept is not None and index is not None:
        return member_of(index, concept, display, designations)
    if index is not None and index.complete:
        return None  # a complete code system that does not define the code: not a member
    return Member(system, code, display, designations=designations)


def member_of(index: CodeSystemIndex, concept: Concept, display: str | None = None,
              designations: tuple[Json, ...] = ()) -> Member:
    """A member for a concept of a packaged system; a value set's own display comes first
    (https://hl7.org/fhir/R4/valueset-definitions.html#ValueSet.compose.include.concept.display)."""
    others = tuple(d for d in (concept.display,) if d is not None and d != display)
    return Member(index.url, concept.code, display or concept.display, index.version,
                  concept.inactive, concept.abstract, concept.designations + designations,
                  others)


def expansion_members(expansion_vs: Json) -> Iterator[Member]:
    """Each entry of a packaged expansion, nested ones included."""
    expansion = expansion_vs.get("expansion")
    todo = list(_list(expansion.get("contains"))) if isinstance(expansion, dict) else []
    while todo:
        entry = todo.pop(0)
        if not isinstance(entry, dict):
            continue
        todo[:0] = _list(entry.get("contains"))
        system, code = entry.get("system"), entry.get("code")
        if isinstance(system, str) and isinstance(code, str):
            display = entry.get("display")
            version = entry.get("version")
            yield Member(system, code, display if isinstance(display, str) else None,
                         version if isinstance(version, str) else None,
                         entry.get("inactive") is True, entry.get("abstract") is True,
                         tuple(d for d in _list(entry.get("designation")) if isinstance(d, dict)))


def add_packaged(membership: Membership, expansion_vs: Json) -> None:
    """Add the codes of a packaged expansion for the systems the compose could not list."""
    every = ANY in membership.unlisted
    for member in expansion_members(expansion_vs):
        if every or member.system in membership.unlisted:
            membership.add(member)


__all__ = ["Source", "add_packaged", "compile_value_set", "expansion_members", "member_of",
           "unavailable", "whole_system"]
