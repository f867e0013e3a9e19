"""Checks a profile cannot express as data: reference targets, extensions met outside any
slice (their own definition and where it may be used), NHS numbers.

* References: https://hl7.org/fhir/R4/references.html#literal — a literal reference's type
  must be one the element's ``targetProfile`` allows; inside a Bundle, a ``urn:uuid:``
  reference is resolved by ``fullUrl`` to find that type.
* Extensions: https://hl7.org/fhir/R4/extensibility.html — an extension with a known
  definition must conform to it and be used where its ``context`` allows; an unknown
  extension is a warning, an unknown ``modifierExtension`` an error (a receiver must not
  process a resource with a modifier it does not understand).
* NHS numbers (https://www.datadictionary.nhs.uk/attributes/nhs_number.html): ten digits,
  the last a Modulus 11 check digit, wherever the identifier system is
  ``https://fhir.nhs.uk/Id/nhs-number``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhirhub.fhir.model import element_model
from fhirhub.fhir.structure import narrative_has_content
from fhirhub.fhir.validation._rules import Rule

if TYPE_CHECKING:
    from fhirhub.fhir.validation._walk import Walk

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

# Invariants the structural check has already enforced for every element (ele-1: no empty
# elements; ext-1: an extension has a value or extensions, not both; txt-1: the narrative is
# basic XHTML, which its FHIRPath, htmlChecks(), leaves to a narrative checker).
STRUCTURAL_INVARIANTS = frozenset({"ele-1", "ext-1", "txt-1"})


def _txt_2(value: Any) -> bool:
    return not isinstance(value, str) or narrative_has_content(value)


# Invariants whose FHIRPath needs what only code can do: checked by these functions.
NATIVE_INVARIANTS: dict[str, Callable[[Any], bool]] = {"txt-2": _txt_2}

_LITERAL = re.compile(
    r"(?:(?P<base>https?://[^\s]+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_ANY_TARGET = ("Resource", "DomainResource")

# Contexts the R4 (4.0.1) publication itself uses beyond what these extensions declare: the
# core StructureDefinitions put fhir-type on ElementDefinition.type (later versions widened
# its context to it), and the normative resources carry normative-version on CodeSystem,
# ValueSet, OperationDefinition and their elements. Without these, R4's own definitions
# and examples would be refused (docs/conformance.md).
_CONTEXT_ERRATA = {
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type":
        ("ElementDefinition.type",),
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version":
        ("CodeSystem", "ValueSet", "OperationDefinition", "ElementDefinition"),
}
_CORE = "http://hl7.org/fhir/StructureDefinition/"


def nhs_number_problem(value: str) -> str | None:
    """Why ``value`` is not a valid NHS number (None: it is one)."""
    if not re.fullmatch(r"\d{10}", value):
        return "an NHS number is exactly 10 digits"
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    if check == 10 or check != int(value[9]):
        return "its check digit (Modulus 11) is wrong"
    return None


def identifier(walk: Walk, value: dict[str, Any], path: str) -> None:
    if value.get("system") != NHS_NUMBER_SYSTEM or not isinstance(value.get("value"), str):
        return
    problem = nhs_number_problem(value["value"])
    if problem is not None:
        walk.add("error", "value", f"'{value['value']}' is not a valid NHS number: {problem}",
                 f"{path}.value")


def reference(walk: Walk, rule: Rule, value: dict[str, Any], path: str) -> None:
    ref = value.get("reference")
    if not isinstance(ref, str) or ref.startswith("#"):
        return
    target_type = _target_type(walk, ref)
    if target_type is None:
        if not ref.startswith(("urn:", "http:", "https:")) and "/" not in ref:
            walk.add("error", "value", f"'{ref}' is not a valid reference: use Type/id, an "
                     "absolute URL, urn:uuid:..., or #id for a contained resource",
                     f"{path}.reference")
        return
    if not element_model().is_resource_type(target_type):
        if ref.startswith(("http:", "https:")):
            return  # another server's URL: its path need not be a FHIR R4 type of ours
        walk.add("error", "value", f"The reference '{ref}' names '{target_type}', which is "
                 "not a FHIR R4 resource type", f"{path}.reference")
        return
    declared = value.get("type")
    if isinstance(declared, str) and declared != target_type:
        walk.add("error", "value", f"The reference '{ref}' is to a {target_type}, but its "
                 f"type says {declared}", f"{path}.type")
    allowed = _allowed_targets(walk, rule)
    if allowed and target_type not in allowed:
        walk.add("error", "structure", f"The reference '{ref}' is to a {target_type}; "
                 f"{rule.id} may refer only to {', '.join(sorted(allowed))}",
                 f"{path}.reference")


def _target_type(walk: Walk, ref: str) -> str | None:
    if ref.startswith("urn:"):
        return _bundle_type(walk.root, ref)
    match = _LITERAL.fullmatch(ref)
    if match is not None:
        return match["type"]
    return _bundle_type(walk.root, ref) if ref.startswith("http") else None


def _bundle_type(root: dict[str, Any], full_url: str) -> str | None:
    if root.get("resourceType") != "Bundle":
        return None
    for entry in root.get("entry", ()):
        if isinstance(entry, dict) and entry.get("fullUrl") == full_url:
            resource = entry.get("resource")
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                return str(resource["resourceType"])
    return None


def _allowed_targets(walk: Walk, rule: Rule) -> frozenset[str]:
    ref = rule.type_ref("Reference")
    if ref is None or not ref.target_profiles:
        return frozenset()
    types: set[str] = set()
    for url in ref.target_profiles:
        if url.startswith(_CORE) and url[len(_CORE):] in _ANY_TARGET:
            return frozenset()
        sd = walk.compiler.structure(url)
        if sd is None:
            return frozenset()  # a profile we do not know: do not guess its type
        types.add(str(sd.get("type")))
    return frozenset(types)


def extension(walk: Walk, rule: Rule, value: dict[str, Any], path: str,
              context: tuple[Rule, str]) -> None:
    """An extension that matched no slice: check it by its own definition."""
    url = value.get("url")
    if not isinstance(url, str):
        return
    definition = walk.compiler.profile(url)
    if definition is None:
        modifier = rule.name == "modifierExtension"
        if modifier or url.startswith(_CORE):
            walk.add("error", "structure", f"The {'modifier ' if modifier else ''}extension "
                     f"{url} is not known to this server", path)
        else:
            walk.add("warning", "informational", f"The extension {url} is not known to this "
                     "server, so its content was not checked", path)
        return
    _check_context(walk, url, path, context)
    walk.element(definition, value, None, "Extension", path)


def _check_context(walk: Walk, url: str, path: str, context: tuple[Rule, str]) -> None:
    sd = walk.compiler.structure(url) or {}
    contexts = sd.get("context")
    if not isinstance(contexts, list) or not contexts:
        return
    parent_rule, parent_type = context
    here = {parent_type, parent_rule.path, "Element", "Base"}
    if parent_type in element_model().resource_types or parent_rule.path == parent_type:
        here |= {"Resource", "DomainResource"}
    if parent_type == "BackboneElement" or parent_rule.children is not None:
        here.add("BackboneElement")
    if parent_rule.content_reference:  # Questionnaire.item.item is defined as Questionnaire.item
        here.add(parent_rule.content_reference.partition("#")[2])
    if here & set(_CONTEXT_ERRATA.get(url, ())):
        return
    for c in contexts:
        expression = c.get("expression")
        kind = c.get("type")
        if kind == "fhirpath" or not isinstance(expression, str):
            return
        if kind == "extension" and parent_type == "Extension":
            return
        if kind == "element" and (expression in here or expression.split(".")[0] == "Element"):
            return
    allowed = ", ".join(str(c.get("expression")) for c in contexts)
    walk.add("error", "structure", f"The extension {url} is not allowed here ({parent_rule.path}"
             f"); it may be used on {allowed}", path)


__all__ = ["NATIVE_INVARIANTS", "NHS_NUMBER_SYSTEM", "STRUCTURAL_INVARIANTS", "extension", "identifier",
           "nhs_number_problem", "reference"]
