"""SMART scopes: what a token lets its holder do
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

A resource scope is ``context/Type.permissions``: the context is ``patient`` (only the
patient's own compartment), ``user`` (what the signed-in user may see) or ``system``
(an application on its own account); the type is a resource type or ``*``; the
permissions are SMART v2 letters in order, ``c`` create, ``r`` read, ``u`` update,
``d`` delete, ``s`` search (``system/Patient.rs``). The v1 forms are read as their v2
equivalents: ``.read`` = ``rs``, ``.write`` = ``cud``, ``.*`` = ``cruds``. Other scopes
(``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``) grant no resource
access and are kept as they are. Granular v2 scopes (``patient/Observation.rs?category=…``)
are not supported and refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

LETTERS = "cruds"
CONTEXTS = ("patient", "user", "system")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)")
_OTHER = re.compile(r"[A-Za-z][A-Za-z0-9_:/.\-]*")


class ScopeError(ValueError):
    """A scope string that is not one this server understands; the message says why."""


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope, in its v2 form."""

    context: str  # patient | user | system
    resource: str  # a resource type, or "*"
    permissions: str  # a subset of "cruds", in that order

    def __str__(self) -> str:
        return f"{self.context}/{self.resource}.{self.permissions}"

    def covers(self, other: Scope) -> bool:
        """Does this scope grant everything ``other`` asks?"""
        return (self.context == other.context
                and self.resource in ("*", other.resource)
                and set(other.permissions) <= set(self.permissions))


def parse_scope(text: str) -> Scope | str:
    """A resource scope as a :class:`Scope`; any other well-formed scope as its text."""
    if "?" in text:
        raise ScopeError(f"the granular scope {text!r} is not supported; ask for the whole "
                         "resource type (e.g. patient/Observation.rs)")
    m = _RESOURCE.fullmatch(text)
    if m is None:
        if "/" in text and text.split("/", 1)[0] in CONTEXTS:
            raise ScopeError(f"{text!r} is not a SMART resource scope such as "
                             "system/Patient.rs or user/*.cruds")
        if not _OTHER.fullmatch(text):
            raise ScopeError(f"{text!r} is not a scope")
        return text
    context, resource, perms = m.groups()
    letters = _V1.get(perms, perms)
    if not letters or any(c not in LETTERS for c in letters) or \
            "".join(c for c in LETTERS if c in letters) != letters:
        raise ScopeError(f"{text!r}: the permissions must be SMART v2 letters in the order "
                         "c, r, u, d, s (e.g. .rs, .cruds) or v1 .read, .write or .*")
    return Scope(context, resource, letters)


def parse_scopes(text: str) -> tuple[Scope | str, ...]:
    """Space-separated scopes (as OAuth sends them), each parsed; duplicates dropped."""
    seen: dict[str, Scope | str] = {}
    for part in text.split():
        parsed = parse_scope(part)
        seen.setdefault(str(parsed), parsed)
    return tuple(seen.values())


@dataclass(frozen=True)
class Grants:
    """The resource scopes a caller holds, asked as questions."""

    scopes: tuple[Scope, ...]

    @classmethod
    def of(cls, scopes: Iterable[Scope | str]) -> Grants:
        return cls(tuple(s for s in scopes if isinstance(s, Scope)))

    def allows(self, resource_type: str, letter: str) -> bool:
        """May the holder do ``letter`` (one of c r u d s) on ``resource_type``?"""
        return any(s.resource in ("*", resource_type) and letter in s.permissions
                   for s in self.scopes)

    def types_with(self, letters: str) -> frozenset[str] | None:
        """The resource types on which the holder has any of ``letters``; None when a
        wildcard scope gives them on every type."""
        types: set[str] = set()
        for s in self.scopes:
            if any(c in s.permissions for c in letters):
                if s.resource == "*":
                    return None
                types.add(s.resource)
        return frozenset(types)

    def covers(self, wanted: Scope) -> bool:
        return any(s.covers(wanted) for s in self.scopes)

    def __str__(self) -> str:
        return " ".join(str(s) for s in self.scopes)


def beyond(requested: Iterable[Scope | str], allowed: Iterable[Scope | str]) -> list[str]:
    """The scopes ``requested`` that ``allowed`` does not cover (an escalation when any)."""
    allow = list(allowed)
    grants = Grants.of(allow)
    plain = {str(a) for a in allow if not isinstance(a, Scope)}
    return [str(r) for r in requested
            if (isinstance(r, Scope) and not grants.covers(r))
            or (not isinstance(r, Scope) and r not in plain)]


__all__ = ["CONTEXTS", "LETTERS", "Grants", "Scope", "ScopeError", "beyond", "parse_scope",
           "parse_scopes"]
