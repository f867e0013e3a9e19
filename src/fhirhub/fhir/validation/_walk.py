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

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fhirhub.errors import Issue
from fhirhub.fhir.model import PRIMITIVE_TYPES, element_model
from fhirhub.fhir.validation import _checks
from fhirhub.fhir.validation._bindings import check_binding, check_coding_system
from fhirhub.fhir.validation._resources import resource_rules
from fhirhub.fhir.validation._rules import MISSING, Rule, Slicing
from fhirhub.fhir.validation._slicing import EXTENSION_DISCRIMINATOR, slice_matches
from fhirhub.fhir.validation._values import matches, same

if TYPE_CHECKING:
    from fhirhub.fhir.validation._validator import Validator

# (value, the "_name" object of a primitive, type code, FHIRPath of the item)
Item = tuple[Any, Any, str, str]

_EXTENSIONS = ("extension", "modifierExtension")
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
        if not contained or not self.root:
            self.root = resource
        if rtype == "Bundle":
            self.bundle = resource
        where = path or rtype
        try:
            base = self.compiler.base(rtype)
            if base is not None:
                self.element(base, resource, None, rtype, where)
            claimed = _claimed_profiles(resource)
            implied = self.validator.implied_profiles(resource)
            for url in dict.fromkeys((*claimed, *profiles, *implied)):
                self.conform(url, resource, rtype, where, claimed=url in claimed)
            resource_rules(self, resource, where)
        finally:
            self.current, self.root, self.bundle = outer

    def conform(self, url: str, value: Any, type_code: str, path: str, *,
                claimed: bool = False) -> None:
        rule = self.compiler.profile(url.partition("|")[0])
        if rule is None:
            severity = self.validator.unknown_profile if claimed else "error"
            self.add(severity, "not-supported" if severity != "error" else "invalid",
                     f"The profile {url} is not known to this server, so the resource "
                     "cannot be checked against it", path)
            return
        self.element(rule, value, None, type_code, path)

    # -- one element -----------------------------------------------------------------------------

    def element(self, rule: Rule, value: Any, ext: Any, type_code: str, path: str) -> None:
        if value is not None:
            self.value_rules(rule, value, type_code, path)
        if rule.constraints:
            self.invariants(rule, value if value is not None else ext, path)
        ref = rule.type_ref(type_code)
        if ref is not None and ref.profiles and type_code != "Extension":
            self.type_profiles(ref.profiles, value, type_code, path)
        obj = ext if type_code in PRIMITIVE_TYPES else value
        if not isinstance(obj, dict):
            return
        children = rule.children
        if children is None:
            base = self.compiler.base(type_code)
            children = base.children if base is not None else None
            if base is not None and base.constraints:  # the datatype's own (ref-1, per-1)
                self.invariants(base, value, path)
        if not children:
            return
        by_key, required = self.validator.child_index(children)
        seen: set[int] = set()
        for key in obj:
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
        elif type_code == "string":
            _checks.markup(self, value, path)
        elif type_code == "Reference" and isinstance(value, dict):
            _checks.reference(self, rule, value, path)
        elif type_code == "Identifier" and isinstance(value, dict):
            _checks.identifier(self, value, path)

    def invariants(self, rule: Rule, value: Any, path: str) -> None:
        for constraint in rule.constraints:
            if constraint.key in _checks.STRUCTURAL_INVARIANTS:
                continue
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
        return walk

    # -- the children of an element --------------------------------------------------------------

    def child(self, rule: Rule, obj: dict[str, Any], parent: str, parent_rule: Rule,
              parent_type: str) -> None:
        items = list(_items(rule, obj, parent))
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
        if rule.is_choice and len(rule.types) < 50:
            allowed = rule.type_codes
            for _, _, type_code, path in items:
                if type_code not in allowed and not rule.slices:
                    self.add("error", "structure", f"The type {type_code} is not allowed "
                             f"for {rule.id}; allowed: {', '.join(allowed)}", path)
        if rule.slices or rule.slicing is not None or rule.name in _EXTENSIONS:
            self.sliced(rule, items, (parent_rule, parent_type))
            return
        plain = self.validator.is_plain(rule)
        for item in items:
            if not (plain and item[1] is None):  # a bare primitive with nothing to check
                self.item(rule, item)
            elif item[2] == "string":
                _checks.markup(self, item[0], item[3])

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


def _claimed_profiles(resource: dict[str, Any]) -> tuple[str, ...]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return tuple(p for p in profiles if isinstance(p, str)) if isinstance(profiles, list) else ()


def _items(rule: Rule, obj: dict[str, Any], parent: str) -> Iterator[Item]:
    name = rule.name
    if rule.is_choice:
        stem = name[:-3]
        for key, value in obj.items():
            if key.startswith(stem) and (code := _CHOICE_TYPES.get(key[len(stem):])):
                yield value, obj.get("_" + key), code, f"{parent}.{stem}.ofType({code})"
        for key, ext in obj.items():
            if key.startswith("_" + stem) and key[1:] not in obj and \
                    (code := _CHOICE_TYPES.get(key[1 + len(stem):])):
                yield None, ext, code, f"{parent}.{stem}.ofType({code})"
        return
    value = obj.get(name)
    ext = obj.get("_" + name)
    code = rule.types[0].code if rule.types else "BackboneElement"
    if code == "Resource" and isinstance(value, dict):
        code = "Resource"
    if isinstance(value, list) or isinstance(ext, list):
        values = value if isinstance(value, list) else []
        exts = ext if isinstance(ext, list) else []
        for index in range(max(len(values), len(exts))):
            v = values[index] if index < len(values) else None
            e = exts[index] if index < len(exts) else None
            yield v, e, code, f"{parent}.{name}[{index}]"
    elif value is not None or ext is not None:
        yield value, ext, code, f"{parent}.{name}"


def is_plain(rule: Rule) -> bool:
    """Is ``rule`` a primitive element whose values have nothing to check beyond the
    structural check's (no fixed or pattern value, binding, length, invariant or profile)?"""
    return (all(t.code in PRIMITIVE_TYPES and not t.profiles for t in rule.types)
            and bool(rule.types) and rule.fixed is MISSING and rule.pattern is MISSING
            and rule.max_length is None
            and (rule.binding is None or rule.binding.strength == "example")
            and all(c.key in _checks.STRUCTURAL_INVARIANTS for c in rule.constraints)
            and not rule.slices and rule.slicing is None)


def child_index(children: dict[str, Rule]) -> tuple[dict[str, Rule], tuple[Rule, ...]]:
    """The rules by the JSON keys that hold their values (``valueQuantity`` and
    ``_valueString`` for ``value[x]``, ``given`` and ``_given`` for ``given``), and the
    rules that must be looked at even when absent (a minimum to check)."""
    by_key: dict[str, Rule] = {}
    for rule in children.values():
        if rule.is_choice:
            stem = rule.name[:-3]
            for type_name in _CHOICE_TYPES:
                by_key[stem + type_name] = by_key["_" + stem + type_name] = rule
        else:
            by_key[rule.name] = by_key["_" + rule.name] = rule
    required = tuple(rule for rule in children.values() if rule.min > 0 or rule.slices)
    return by_key, required


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


__all__ = ["Walk", "child_index", "is_plain"]
