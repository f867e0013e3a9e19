"""``ValueSet.expansion``: the members of a value set, filtered and paged.

https://hl7.org/fhir/R4/valueset-operation-expand.html and
https://hl7.org/fhir/R4/valueset.html#expansion. The expansion is flat (no nested
``contains``). ``filter`` matches a concept when the text starts its code, or when each word of
the text starts a word of its display, ignoring case ("male" finds Male, not Female).
``expansion.total`` counts the matches before paging, so ``count``/``offset`` page through it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhirhub.errors import UnprocessableError
from fhirhub.fhir.terminology._compose import expansion_members
from fhirhub.fhir.terminology._members import Member, Membership

Json = dict[str, Any]

MAX_EXPANSION = 10_000  # concepts in one response; more must be paged with count/offset
_UNCLOSED = "http://hl7.org/fhir/StructureDefinition/valueset-unclosed"
_TOO_COSTLY = "http://hl7.org/fhir/StructureDefinition/valueset-toocostly"
_CUT_SHORT = frozenset({_UNCLOSED, _TOO_COSTLY})
_WORD = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class Paging:
    """The $expand inputs that shape the expansion."""

    filter: str | None = None
    count: int | None = None
    offset: int = 0
    active_only: bool = False
    include_designations: bool = False

    def parameters(self) -> list[Json]:
        """The inputs, echoed in ``expansion.parameter``."""
        found: list[Json] = []
        if self.filter is not None:
            found.append({"name": "filter", "valueString": self.filter})
        if self.count is not None:
            found.append({"name": "count", "valueInteger": self.count})
        if self.offset:
            found.append({"name": "offset", "valueInteger": self.offset})
        if self.active_only:
            found.append({"name": "activeOnly", "valueBoolean": True})
        if self.include_designations:
            found.append({"name": "includeDesignations", "valueBoolean": True})
        return found


def matches(member: Member, text: str) -> bool:
    """Does ``member`` match the $expand ``filter`` text?"""
    wanted = text.casefold().strip()
    if not wanted or member.code.casefold().startswith(wanted):
        return True
    words = [w for w in _WORD.split((member.display or "").casefold()) if w]
    return all(any(w.startswith(part) for w in words) for part in _WORD.split(wanted) if part)


@dataclass(frozen=True)
class Source:
    """Where the expansion's members come from, and what that says about them."""

    members: list[Member]
    closed: bool  # no code outside these can be in the value set (no fragment, no stub)
    total_known: bool = True  # false for a packaged expansion that was cut short
    packaged: Json | None = None  # the packaged expansion used, if any


def source_of(vs: Json, membership: Membership, packaged: Json | None) -> Source:
    """What to expand ``vs`` from: its compose when that could be computed, else its packaged
    expansion (``packaged``), else nothing (a 422 saying why)."""
    if not membership.unlisted:
        return Source(list(membership.members.values()), closed=not membership.open)
    if packaged is None:
        reasons = "; ".join(sorted(set(membership.unlisted.values())))
        raise UnprocessableError(f"The value set {vs.get('url', '')} cannot be expanded on this "
                                 f"server: {reasons}", issue_code="not-supported",
                                 spine_code="UNSUPPORTED_VALUE")
    # A packaged expansion is a snapshot of content this server does not have (SNOMED CT in
    # 2019...): it is never closed, and its total only holds if it was not cut short.
    members = list(expansion_members(packaged))
    element = packaged.get("expansion", {})
    cut = (any(e.get("url") in _CUT_SHORT for e in element.get("extension", []))
           or element.get("total") != len(members))
    return Source(members, closed=False, total_known=not cut, packaged=packaged)


def expansion(vs: Json, source: Source, paging: Paging) -> Json:
    """``vs`` with its ``expansion`` for ``paging``."""
    chosen = [m for m in source.members
              if (not paging.active_only or not m.inactive)
              and (paging.filter is None or matches(m, paging.filter))]
    rest = max(len(chosen) - paging.offset, 0)
    size = rest if paging.count is None else min(paging.count, rest)
    if size > MAX_EXPANSION:
        raise UnprocessableError(
            f"The expansion of {vs.get('url', 'the value set')} has {len(chosen)} concepts, "
            f"more than the {MAX_EXPANSION} this server returns at once: page through it with "
            "count and offset", issue_code="too-costly", spine_code="UNSUPPORTED_VALUE")
    page = chosen[paging.offset:paging.offset + size]
    out: Json = {k: v for k, v in vs.items() if k not in ("text", "expansion")}
    out["resourceType"] = "ValueSet"
    out["expansion"] = _expansion_element(source, paging, len(chosen), page)
    return out


def _expansion_element(source: Source, paging: Paging, total: int, page: list[Member]) -> Json:
    packaged = (source.packaged or {}).get("expansion") or {}
    found: Json = {}
    if not source.closed:
        found["extension"] = [{"url": _UNCLOSED, "valueBoolean": True}]
        found["extension"] += [e for e in packaged.get("extension", []) if e.get("url") == _TOO_COSTLY]
    # A packaged expansion keeps its identity: it is that expansion, filtered and paged.
    found["identifier"] = packaged.get("identifier") or f"urn:uuid:{uuid.uuid4()}"
    found["timestamp"] = packaged.get("timestamp") or datetime.now(UTC).isoformat(
        timespec="seconds")
    if source.total_known:
        found["total"] = total
    if paging.count is not None or paging.offset:
        found["offset"] = paging.offset
    if paging.parameters():
        found["parameter"] = paging.parameters()
    if page:
        found["contains"] = [_entry(m, paging.include_designations) for m in page]
    return found


def _entry(member: Member, designations: bool) -> Json:
    entry: Json = {"system": member.system}
    if member.version:
        entry["version"] = member.version
    if member.abstract:
        entry["abstract"] = True
    if member.inactive:
        entry["inactive"] = True
    entry["code"] = member.code
    if member.display is not None:
        entry["display"] = member.display
    if designations and member.designations:
        entry["designation"] = list(member.designations)
    return entry


__all__ = ["MAX_EXPANSION", "Paging", "Source", "expansion", "matches", "source_of"]
