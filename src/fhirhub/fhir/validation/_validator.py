"""The validator: the structural check, then the base definition and every profile."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fhirhub.errors import Issue
from fhirhub.fhir.definitions import Definitions
from fhirhub.fhir.fhirpath import FhirPathError, compile_invariant
from fhirhub.fhir.structure import check_resource
from fhirhub.fhir.validation._bindings import CodeChecker
from fhirhub.fhir.validation._compile import Compiler
from fhirhub.fhir.validation._rules import Rule
from fhirhub.fhir.validation._walk import Plan, Walk, child_index, plan_of

log = logging.getLogger("fhirhub.validation")

MAX_ISSUES = 200
VITAL_SIGNS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"


class Validator:
    """Validates resources against R4 and the profiles they claim or are asked for.

    ``required_profiles`` maps a resource type to profiles every resource of that type must
    conform to (a deployment's rule, e.g. every Patient is a UKCore-Patient).
    ``unknown_profile`` is the severity of a ``meta.profile`` this server does not know.
    Thread-safe: compiled definitions are shared, each validation has its own walk.
    """

    def __init__(self, definitions: Definitions, terminology: CodeChecker, *,
                 required_profiles: Mapping[str, tuple[str, ...]] | None = None,
                 unknown_profile: str = "error", unknown_extension: str = "warning") -> None:
        self.definitions = definitions
        self.compiler = Compiler(definitions)
        self.terminology = terminology
        self.required_profiles = dict(required_profiles or {})
        self.unknown_profile = unknown_profile
        self.unknown_extension = unknown_extension
        self._vital_signs: dict[tuple[str, str], str] | None = None
        self._indexes: dict[int, tuple[tuple[dict[str, Rule], tuple[Rule, ...], frozenset[str]],
                                       dict[str, Rule]]] = {}
        self._plans: dict[int, tuple[Plan, Rule]] = {}

    def plan(self, rule: Rule) -> Plan:
        """:func:`~fhirhub.fhir.validation._walk.plan_of`, kept per rule."""
        found = self._plans.get(id(rule))
        if found is None or found[1] is not rule:
            found = self._plans[id(rule)] = (plan_of(rule), rule)
        return found[0]

    def child_index(self, children: dict[str, Rule]) -> tuple[dict[str, Rule], tuple[Rule, ...],
                                                               frozenset[str]]:
        """:func:`~fhirhub.fhir.validation._walk.child_index` of a compiled children dict,
        kept (compiled rules live as long as the validator)."""
        found = self._indexes.get(id(children))
        if found is None or found[1] is not children:
            found = self._indexes[id(children)] = (child_index(children), children)
        return found[0]

    def validate(self, resource: Any, *, profiles: Iterable[str] = (),
                 expected_type: str | None = None) -> list[Issue]:
        """Every issue with ``resource``: errors, warnings and information, at most
        :data:`MAX_ISSUES`. Structural errors stop the check there (the rest of it needs a
        well-formed resource)."""
        issues = check_resource(resource, expected_type=expected_type)
        if issues:
            return issues
        return self.check_profiles(resource, profiles=profiles)

    def check_profiles(self, resource: dict[str, Any], *,
                       profiles: Iterable[str] = ()) -> list[Issue]:
        """The issues beyond the JSON shape, for a resource that passed
        :func:`~fhirhub.fhir.structure.check_resource`."""
        rtype = resource["resourceType"]
        wanted = (*self.required_profiles.get(rtype, ()), *profiles)
        walk = Walk(self)
        walk.resource(resource, "", tuple(dict.fromkeys(wanted)))
        return _distinct(walk.issues)[:MAX_ISSUES]

    def implied_profiles(self, resource: dict[str, Any]) -> tuple[str, ...]:
        """Profiles a resource must meet because of what it is, claimed or not: an R4
        Observation coded as a vital sign "SHALL conform" to that vital sign's profile
        (https://hl7.org/fhir/R4/observation-vitalsigns.html)."""
        if resource.get("resourceType") != "Observation":
            return ()
        code = resource.get("code")
        codings = code.get("coding") if isinstance(code, dict) else None
        if not isinstance(codings, list):
            return ()
        table = self._vital_sign_profiles()
        keys = [(str(c.get("system")), str(c.get("code"))) for c in codings if isinstance(c, dict)]
        return tuple(dict.fromkeys(table[key] for key in keys if key in table))

    def _vital_sign_profiles(self) -> dict[tuple[str, str], str]:
        if self._vital_signs is None:
            self._vital_signs = vital_sign_profiles(self.definitions, self.compiler)
        return self._vital_signs

    def unknown_profiles(self, urls: Iterable[str]) -> list[str]:
        """Those of ``urls`` this validator cannot check against (not known or not
        compilable)."""
        return [url for url in urls if self.compiler.profile(url.partition("|")[0]) is None]

    def invariant(self, expression: str, value: Any, resource: Any, root: Any) -> bool | str | None:
        """The invariant's verdict on ``value``: True/None pass, False fails, a string says
        why it could not be evaluated."""
        try:
            check = compile_invariant(expression)
            return check(value, {"resource": resource, "rootResource": root, "context": value})
        except FhirPathError as exc:
            return exc.diagnostics

    def warm_up(self, urls: Iterable[str] = ()) -> None:
        """Compile the base definitions of every resource type, and ``urls``, now."""
        from fhirhub.fhir.model import element_model

        for rtype in sorted(element_model().resource_types):
            self.compiler.base(rtype)
        for url in urls:
            self.compiler.profile(url)


def vital_sign_profiles(definitions: Definitions, compiler: Compiler) -> dict[tuple[str, str], str]:
    """(system, code) of each R4 vital sign, from its profile's fixed or pattern code."""
    found: dict[tuple[str, str], str] = {}
    for sd in definitions.all("StructureDefinition"):
        if sd.get("baseDefinition") != VITAL_SIGNS:
            continue
        rule = compiler.profile(sd["url"])
        code = rule.children.get("code") if rule is not None and rule.children else None
        if code is None or code.children is None:
            continue
        coding = code.children.get("coding")
        for s in (coding.slices.values() if coding is not None else ()):
            for key in ("system", "code"):
                if s.children is None or key not in s.children:
                    break
            else:
                assert s.children is not None
                system, value = s.children["system"].fixed, s.children["code"].fixed
                if isinstance(system, str) and isinstance(value, str):
                    found[(system, value)] = sd["url"]
    return found


def _distinct(issues: list[Issue]) -> list[Issue]:
    return list(dict.fromkeys(issues))


__all__ = ["MAX_ISSUES", "Validator"]
