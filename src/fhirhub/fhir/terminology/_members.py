"""What a value set holds, as far as this server can know it: the codes it lists, and the
code systems for which a code that is not listed may still be in it.

This is what makes ``validate_code`` O(1) once a value set has been compiled: membership is a
dict lookup on ``(system, code)``, and "cannot tell" is a lookup of the system in ``open``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

ANY = "*"  # in ``open``: a code of any system may be in the value set (an unknown import)


def normal_display(text: str) -> str:
    """Displays compare ignoring case and runs of white space (as the reference validator)."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class Member:
    system: str
    code: str
    display: str | None = None
    version: str | None = None
    inactive: bool = False
    abstract: bool = False
    designations: tuple[Json, ...] = ()
    other_displays: tuple[str, ...] = ()  # e.g. the value set's own display for the code

    def has_display(self, text: str) -> bool:
        wanted = normal_display(text)
        known = [self.display, *self.other_displays,
                 *(d.get("value") for d in self.designations)]
        return any(isinstance(k, str) and normal_display(k) == wanted for k in known)


@dataclass
class Membership:
    """Members by ``(system, code)`` in expansion order, and where that list is not closed.

    ``open`` maps a system (or ``ANY``) to why a code of it that is not listed may still be in
    the value set; ``unlisted`` is the part of ``open`` whose codes cannot be listed at all
    (so it cannot be expanded here), the rest being fragments and examples.
    """

    members: dict[tuple[str, str], Member] = field(default_factory=dict)
    open: dict[str, str] = field(default_factory=dict)
    unlisted: dict[str, str] = field(default_factory=dict)
    insensitive: set[str] = field(default_factory=set)  # systems matched ignoring case
    _folded: dict[tuple[str, str], Member] = field(default_factory=dict)
    _by_code: dict[str, list[Member]] = field(default_factory=dict)
    listed_systems: frozenset[str] = frozenset()  # filled by freeze()

    def add(self, member: Member) -> None:
        self.members.setdefault((member.system, member.code), member)

    def mark_open(self, system: str, why: str, *, listable: bool) -> None:
        self.open.setdefault(system, why)
        if not listable:
            self.unlisted.setdefault(system, why)

    def systems(self) -> set[str]:
        return {system for system, _ in self.members}

    def may_have(self, system: str) -> bool:
        """Could a code of ``system`` be in here at all?"""
        if system == ANY:
            return bool(self.members or self.open)
        return system in self.open or ANY in self.open or system in self.systems()

    def why_open(self, system: str | None) -> str | None:
        if system is None:
            return next(iter(self.open.values()), None)
        return self.open.get(system) or self.open.get(ANY)

    def freeze(self) -> Membership:
        """Build the lookup tables; call once, after the last change."""
        self._folded = {(m.system, m.code.casefold()): m for m in self.members.values()
                        if m.system in self.insensitive}
        self._by_code = {}
        self.listed_systems = frozenset(self.systems())
        for m in self.members.values():
            key = m.code.casefold() if m.system in self.insensitive else m.code
            self._by_code.setdefault(key, []).append(m)
        return self

    def find(self, system: str | None, code: str) -> Member | None:
        """The member for ``code`` (in any system when ``system`` is None)."""
        if system is None:
            found = self._by_code.get(code) or self._by_code.get(code.casefold())
            if not found:
                return None
            exact = [m for m in found if m.code == code or m.system in self.insensitive]
            return exact[0] if exact else None
        member = self.members.get((system, code))
        if member is None and system in self.insensitive:
            member = self._folded.get((system, code.casefold()))
        return member


def union(into: Membership, other: Membership) -> None:
    for member in other.members.values():
        into.add(member)
    for system, why in other.open.items():
        into.mark_open(system, why, listable=system not in other.unlisted)
    into.insensitive |= other.insensitive


def intersect(a: Membership, b: Membership) -> Membership:
    """What is in both. A member of one whose system the other leaves open is uncertain: it
    is dropped, and the system stays open, so that it answers "cannot tell"."""
    out = Membership(insensitive=a.insensitive | b.insensitive)
    for key, member in a.members.items():
        if key in b.members:
            out.add(member)
    for first, second in ((a, b), (b, a)):
        for system, why in first.open.items():
            if second.may_have(system):
                out.mark_open(system, why, listable=system not in first.unlisted
                              and system not in second.unlisted)
    return out


def subtract(a: Membership, b: Membership) -> None:
    """Remove from ``a`` what ``b`` holds. Where ``b`` is open, the members of ``a`` of that
    system may or may not be excluded: they become uncertain."""
    for key in b.members:
        a.members.pop(key, None)
    for system, why in b.open.items():
        doubtful = [k for k in a.members if system in (ANY, k[0])]
        if not doubtful and not a.may_have(system):
            continue
        for key in doubtful:
            del a.members[key]
        a.mark_open(system, f"{why}, so an exclusion from it cannot be applied", listable=False)


__all__ = ["ANY", "Member", "Membership", "intersect", "normal_display", "subtract", "union"]
