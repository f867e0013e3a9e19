"""The walk of one resource against compiled rules.

:class:`Walk` visits each element the rules define, once per rule tree that applies
(the base definition, then each profile), and collects :class:`~fhirhub.errors.Issue`
objects: cardinality, types of choices, fixed and pattern values, bindings, invariants,
slices, references, extensions and their contexts, nested resources. What the JSON shape
itself must be (unknown properties, arrays, primitive formats) was checked before, by
:mod:`fhirhub.fhir.structure`; this walk only runs on resources that passed it, so it can
trust the shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhirhub.errors import Issue
from fhirhub.fhir import json as fjson
from fhirhub.fhir.model import PRIMITIVE_TYPES, element_model
from fhirhub.fhir.validation import _checks
from fhirhub.fhir.validation._bindings import check_binding, check_coding_system
from fhirhub.fhir.validation._resources import resource_rules
from fhirhub.fhir.validation._rules import MISSING, Constraint, Rule, Slicing
from fhirhub.fhir.validation._slicing import EXTENSION_DISCRIMINATOR, slice_matches
from fhirhub.fhir.validation._values import matches, same

if TYPE_CHECKING:
    from fhirhub.fhir.validation._validator import Validator

# (value, the "_name" object of a primitive, type code, FHIRPath of the item)
Item = tuple[Any, Any, str, str]

_EXTENSIONS = ("extension", "modifierExtension")
# Types whose values have checks of their own, whatever the rule says.
_CHECKED_TYPES = frozenset({"Coding", "Reference", "Identifier", "Attachment", "string"})
_SPINE = "INVALID_RESOURCE"


class Walk:
    """One validation: the issues found, and where the walk is."""

    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self.compiler = validator.compiler
        self.issues: list[Issue] = []
        self.root: dict[str, Any] = {}  # %rootResource: the resource, or its container
        self.current: dict[str, Any] = {}  # %resource
        self.bundle: dict[str, Any] | None = None  # the Bundle entries are resolved in
        self.markup_possible = True  # False: no '<' in any string but narratives

    def add(self, severity: str, code: str, message: str, path: str) -> None:
        self.issues.append(Issue(severity, code, message, (path,) if path else (), _SPINE))

    # -- resources ---------------------------------------------------------------------------

    def resource(self, resource: dict[str, Any], path: str, profiles: tuple[str, ...], *,
                 contained: bool = False) -> None:
        """Walk a resource: the root, a contained one, or one nested in a Bundle entry or a
        Parameters value (each of those is its own %rootResource; a contained resource's is
        its container's)."""
        rtype = resource["resourceType"]
        outer = (self.current, self.root, self.bundle)
        self.current = resource
        if not self.root:
            self.markup_possible = _has_markup(resource)
        if not contained or not self.root:
            self.root = resource
        if rtype == "Bundle":
            self.bundle = resource
        where = path or rtype
        try:
            claimed = _claimed_profiles(resource)
            implied = self.validator.implied_profiles(resource)
            walked = [self.conform(url, resource, rtype, where, claimed=url in claimed)
                      for url in dict.fromkeys((*claimed, *profiles, *implied))]
            base = self.compiler.base(rtype)
            # A profile's rules are its base's and more, so once one is walked the base is.
            if base is not None and not any(walked):
                self.element(base, resource, None, rtype, where)
            resource_rules(self, resource, where)
        finally:
            self.current, self.root, self.bundle = outer

    def conform(self, url: str, value: Any, type_code: str, path: str, *,
                claimed: bool = False) -> bool:
        """Walk ``value`` against the profile at ``url``; False when it could not be."""
        rule = self.compiler.profile(url.partition("|")[0])
        if rule is None:
            severity = self.validator.unknown_profile if claimed else "error"
            self.add(severity, "not-supported" if severity != "error" else "invalid",
                     f"The profile {url} is not known to this server, so the resource "
                     "cannot be checked against it", path)
            return False
        if rule.path != type_code and type_code not in PRIMITIVE_TYPES:
            self.add("error", "invalid", f"The profile {url} is for {rule.path}, not "
                     f"{type_code}", path)
            return False
        self.element(rule, value, None, type_code, path)
        return True

    # -- one element -----------------------------------------------------------------------------

    def element(self, rule: Rule, value: Any, ext: Any, type_code: str, path: str) -> None:
        plan = self.validator.plan(rule)
        if value is not None and (plan.value_checks or type_code in _CHECKED_TYPES):
            self.value_rules(rule, value, type_code, path)
        if plan.constraints:
            self.invariants(plan.constraints, value if value is not None else ext, path)
        if plan.typed_profiles:
            ref = rule.type_ref(type_code)
            if ref is not None and ref.profiles and type_code != "Extension":
                self.type_profiles(ref.profiles, value, type_code, path)
        obj = ext if type_code in PRIMITIVE_TYPES else value
        if type(obj) is not dict:
            return
        children = rule.children
        if children is None:
            base = self.compiler.base(type_code)
            if base is None:
                return
            children = base.children
            base_constraints = self.validator.plan(base).constraints
            if base_constraints:  # the datatype's own (ref-1, per-1)
                self.invariants(base_constraints, value, path)
        if not children:
            return
        by_key, required, skippable = self.validator.child_index(children)
        seen: set[int] = set()
        for key in obj:
            if key in skippable and "_" + key not in obj:
                if self.markup_possible:
                    self.markup_of(obj[key], by_key[key], f"{path}.{key}")
                continue
            child = by_key.get(key)
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                self.child(child, obj, path, rule, type_code)
        for child in required:
            if id(child) not in seen:
                self.child(child, obj, path, rule, type_code)

    def value_rules(self, rule: Rule, value: Any, type_code: str, path: str) -> None:
        if rule.fixed is not MISSING and not same(value, rule.fixed):
            self.add("error", "value", f"The value must be exactly {_show(rule.fixed)} "
                     f"(fixed by {rule.id}), not {_show(value)}", path)
        if rule.pattern is not MISSING and not matches(value, rule.pattern):
            self.add("error", "value", f"The value must match the pattern "
                     f"{_show(rule.pattern)} ({rule.id}); it is {_show(value)}", path)
        if rule.max_length is not None and isinstance(value, str) and len(value) > rule.max_length:
            self.add("error", "too-long", f"The value is {len(value)} characters long; "
                     f"{rule.id} allows at most {rule.max_length}", path)
        checker = self.validator.terminology
        if rule.binding is not None:
            for finding in check_binding(checker, rule.binding, value, type_code):
                self.add(finding.severity, finding.code, f"{finding.message} (binding of "
                         f"{rule.id}, strength {rule.binding.strength})", path)
        if type_code == "Coding" and isinstance(value, dict):
            found = check_coding_system(checker, value) \
                if _checks.coding_system(self, value, path) else None
            if found is not None:
                self.add(found.severity, found.code, found.message, path)
        elif type_code == "Attachment" and isinstance(value, dict):
            _checks.attachment(self, value, path)
        elif type_code == "string" and self.markup_possible:
            _checks.markup(self, value, path)
        elif type_code == "Reference" and isinstance(value, dict):
            _checks.reference(self, rule, value, path)
        elif type_code == "Identifier" and isinstance(value, dict):
            _checks.identifier(self, value, path)

    def invariants(self, constraints: tuple[Constraint, ...], value: Any, path: str) -> None:
        for constraint in constraints:
            native = _checks.NATIVE_INVARIANTS.get(constraint.key)
            expression = _checks.INVARIANT_ERRATA.get(
                (constraint.key, constraint.expression), constraint.expression)
            outcome = native(value) if native is not None else self.validator.invariant(
                expression, value, self.current, self.root)
            if outcome is False:
                self.add(constraint.severity, "invariant", f"Constraint {constraint.key} "
                         f"failed: {constraint.human} [{constraint.expression}]", path)
            elif isinstance(outcome, str):
                self.add("warning", "processing", f"Constraint {constraint.key} could not be "
                         f"checked: {outcome}", path)

    def type_profiles(self, profiles: tuple[str, ...], value: Any, type_code: str,
                      path: str) -> None:
        """The value must conform to one of the profiles its type names."""
        attempts: list[list[Issue]] = []
        for url in profiles:
            walk = self.fork()
            walk.conform(url, value, type_code, path)
            if not any(i.severity in ("error", "fatal") for i in walk.issues):
                self.issues += walk.issues
                return
            attempts.append(walk.issues)
        self.issues += attempts[0]

    def fork(self) -> Walk:
        walk = Walk(self.validator)
        walk.root, walk.current, walk.bundle = self.root, self.current, self.bundle
        walk.markup_possible = self.markup_possible
        return walk

    # -- the children of an element --------------------------------------------------------------

    def child(self, rule: Rule, obj: dict[str, Any], parent: str, parent_rule: Rule,
              parent_type: str) -> None:
        plan = self.validator.plan(rule)
        items = _items(rule, plan.choice, obj, parent)
        count = len(items)
        if count < rule.min:
            self.add("error", "required", f"{rule.id}: at least {rule.min} required, "
                     f"{count} found", f"{parent}.{_bare(rule.name)}")
        if rule.max is not None and count > rule.max:
            where = f"{parent}.{_bare(rule.name)}"
            self.add("error", "structure", f"{rule.id}: at most {rule.max} allowed, "
                     f"{count} found", where)
        if not items:
            return
        if plan.choice and len(rule.types) < 50:
            allowed = rule.type_codes
            for _, _, type_code, path in items:
                if type_code not in allowed and not rule.slices:
                    self.add("error", "structure", f"The type {type_code} is not allowed "
                             f"for {rule.id}; allowed: {', '.join(allowed)}", path)
        if plan.sliced:
            self.sliced(rule, items, (parent_rule, parent_type))
            return
        plain = plan.plain
        for item in items:
            if not (plain and item[1] is None):  # a bare primitive with nothing to check
                self.item(rule, item)
            elif self.markup_possible and item[2] == "string":
                _checks.markup(self, item[0], item[3])

    def markup_of(self, value: Any, rule: Rule, path: str) -> None:
        if rule.types and rule.types[0].code == "string":
            for index, item in enumerate(value if type(value) is list else [value]):
                _checks.markup(self, item, f"{path}[{index}]" if type(value) is list else path)

    def item(self, rule: Rule, item: Item) -> None:
        value, ext, type_code, path = item
        if type_code == "Resource" or (isinstance(value, dict) and "resourceType" in value
                                       and rule.type_codes in (("Resource",), ())):
            if isinstance(value, dict):
                profiles = tuple(p for t in rule.types for p in t.profiles)
                self.resource(value, path, profiles, contained=rule.name == "contained")
            return
        self.element(rule, value, ext, type_code, path)

    def sliced(self, rule: Rule, items: list[Item], context: tuple[Rule, str]) -> None:
        slicing = rule.slicing or Slicing(EXTENSION_DISCRIMINATOR, "open", False)
        slices = list(rule.slices.values())
        counts = dict.fromkeys(rule.slices, 0)
        last_slice = -1
        unmatched_seen = False
        for item in items:
            value, _, type_code, path = item
            index = next((n for n, s in enumerate(slices)
                          if slice_matches(s, slicing.discriminators, value, type_code,
                                           self.conforms)), -1)
            if index < 0:
                unmatched_seen = True
                self.unsliced(rule, slicing, item, context)
                continue
            chosen = slices[index]
            counts[chosen.slice_name or ""] = counts.get(chosen.slice_name or "", 0) + 1
            if slicing.ordered and index < last_slice:
                self.add("error", "structure", f"{rule.id}: the slices are ordered, and "
                         f"this item of slice '{chosen.slice_name}' comes after a later "
                         "slice's", path)
            if slicing.rules == "openAtEnd" and unmatched_seen:
                self.add("error", "structure", f"{rule.id}: items outside the slices must "
                         "come after all the sliced ones (openAtEnd)", path)
            last_slice = max(last_slice, index)
            self.item(chosen, item)
        where = items[0][3].rpartition("[")[0] or items[0][3]
        for s in slices:
            got = counts.get(s.slice_name or "", 0)
            if got < s.min:
                self.add("error", "required", f"Slice '{s.slice_name}' of {rule.id}: at "
                         f"least {s.min} required, {got} found", where)
            if s.max is not None and got > s.max:
                self.add("error", "structure", f"Slice '{s.slice_name}' of {rule.id}: at "
                         f"most {s.max} allowed, {got} found", where)

    def unsliced(self, rule: Rule, slicing: Slicing, item: Item,
                 context: tuple[Rule, str]) -> None:
        value, _, _, path = item
        if slicing.rules == "closed":
            self.add("error", "structure", f"{rule.id}: this item matches none of the slices "
                     f"({', '.join(rule.slices)}), and the slicing is closed", path)
        if rule.name in _EXTENSIONS and isinstance(value, dict):
            _checks.extension(self, rule, value, path, context)
        self.item(rule, item)

    def conforms(self, slice_rule: Rule, value: Any, type_code: str) -> bool:
        walk = self.fork()
        ref = slice_rule.type_ref(type_code)
        for url in ref.profiles if ref is not None else ():
            walk.conform(url, value, type_code, "")
        walk.element(slice_rule, value, None, type_code, "")
        return not any(i.severity in ("error", "fatal") for i in walk.issues)


def _has_markup(resource: dict[str, Any]) -> bool:
    """Could any string of the resource, narratives aside, hold a tag? Serialising is one C
    call; when no '<' is left once the narratives are cut out, no string needs a look."""
    text = fjson.dumps({k: v for k, v in resource.items() if k != "text"})
    if b"<" not in text:
        return False
    return b"<" in _DIV.sub(b'""', text)  # contained resources' narratives


_DIV = re.compile(rb'"div":"(?:[^"\\]|\\.)*"')


def _claimed_profiles(resource: dict[str, Any]) -> tuple[str, ...]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return tuple(p for p in profiles if isinstance(p, str)) if isinstance(profiles, list) else ()


def _items(rule: Rule, choice: bool, obj: dict[str, Any], parent: str) -> list[Item]:
    """The values of ``rule``'s element in ``obj``, each with its "_name" object and type."""
    name = rule.name
    if choice:
        stem = name[:-3]
        found: list[Item] = []
        for key, value in obj.items():
            if key.startswith(stem) and (code := _CHOICE_TYPES.get(key[len(stem):])):
                found.append((value, obj.get("_" + key), code, f"{parent}.{stem}.ofType({code})"))
            elif key.startswith("_" + stem) and key[1:] not in obj and \
                    (code := _CHOICE_TYPES.get(key[1 + len(stem):])):
                found.append((None, value, code, f"{parent}.{stem}.ofType({code})"))
        return found
    value = obj.get(name)
    ext = obj.get("_" + name)
    code = rule.types[0].code if rule.types else "BackboneElement"
    if type(value) is list or type(ext) is list:
        values = value if type(value) is list else []
        exts = ext if type(ext) is list else []
        return [(values[i] if i < len(values) else None, exts[i] if i < len(exts) else None,
                 code, f"{parent}.{name}[{i}]") for i in range(max(len(values), len(exts)))]
    if value is not None or ext is not None:
        return [(value, ext, code, f"{parent}.{name}")]
    return []


@dataclass(frozen=True, slots=True)
class Plan:
    """What the walk must do for one rule, worked out once (rules never change once
    compiled): the walk asks for every element it visits."""

    constraints: tuple[Constraint, ...]  # the invariants to evaluate (not the structural ones)
    plain: bool  # a primitive with nothing to check: bare values are skipped
    choice: bool
    sliced: bool
    value_checks: bool  # fixed, pattern, maxLength or a binding that says something
    typed_profiles: bool  # a type names profiles the value must meet


def plan_of(rule: Rule) -> Plan:
    return Plan(
        constraints=tuple(c for c in rule.constraints
                          if c.key not in _checks.STRUCTURAL_INVARIANTS),
        plain=is_plain(rule),
        choice=rule.is_choice,
        sliced=bool(rule.slices) or rule.slicing is not None or rule.name in _EXTENSIONS,
        value_checks=(rule.fixed is not MISSING or rule.pattern is not MISSING
                      or rule.max_length is not None
                      or (rule.binding is not None and rule.binding.strength != "example")),
        typed_profiles=any(t.profiles for t in rule.types),
    )


def is_plain(rule: Rule) -> bool:
    """Is ``rule`` a primitive element whose values have nothing to check beyond the
    structural check's (no fixed or pattern value, binding, length, invariant or profile)?"""
    return (all(t.code in PRIMITIVE_TYPES and not t.profiles for t in rule.types)
            and bool(rule.types) and rule.fixed is MISSING and rule.pattern is MISSING
            and rule.max_length is None
            and (rule.binding is None or rule.binding.strength == "example")
            and all(c.key in _checks.STRUCTURAL_INVARIANTS for c in rule.constraints)
            and not rule.slices and rule.slicing is None)


def child_index(children: dict[str, Rule]) -> tuple[dict[str, Rule], tuple[Rule, ...],
                                                   frozenset[str]]:
    """The rules by the JSON keys that hold their values (``valueQuantity`` and
    ``_valueString`` for ``value[x]``, ``given`` and ``_given`` for ``given``), the rules
    that must be looked at even when absent (a minimum to check), and the keys whose bare
    values need no look at all (plain primitives whose cardinality the JSON shape settles)."""
    by_key: dict[str, Rule] = {}
    for rule in children.values():
        if rule.is_choice:
            stem = rule.name[:-3]
            for type_name in _CHOICE_TYPES:
                by_key[stem + type_name] = by_key["_" + stem + type_name] = rule
        else:
            by_key[rule.name] = by_key["_" + rule.name] = rule
    required = tuple(rule for rule in children.values() if rule.min > 0 or rule.slices)
    skippable = frozenset(rule.name for rule in children.values()
                          if not rule.is_choice and is_plain(rule)
                          and (rule.max is None or rule.max == rule.base_max)
                          and rule.max != 0)
    return by_key, required, skippable


def _type_names() -> dict[str, str]:
    model = element_model()
    codes = set(PRIMITIVE_TYPES) | set(model.complex_types) | {"Reference", "Meta"}
    return {code[:1].upper() + code[1:]: code for code in codes}


_CHOICE_TYPES = _type_names()


def _bare(name: str) -> str:
    return name[:-3] if name.endswith("[x]") else name


def _show(value: Any) -> str:
    from fhirhub.fhir import json as fjson

    text = fjson.dumps(value).decode() if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = ["Plan", "Walk", "child_index", "is_plain", "plan_of"]
