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

import base64
import binascii
import re
from collections.abc import Callable, Iterator
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


def _vs_1(value: Any) -> bool:
    """vs-1 (vital signs): an effective dateTime is precise to the day at least. Its
    FHIRPath, ``($this as dateTime).toString().length() >= 8``, needs the value's type, which
    plain JSON does not carry; a Period (an object) passes, as ``as dateTime`` is empty."""
    return not isinstance(value, str) or len(value) >= 8


def _txt_2(value: Any) -> bool:
    return not isinstance(value, str) or narrative_has_content(value)


# Published R4 invariants with a known error, as corrected (R4 technical errata): que-12
# says "count() > 2" where its own text, and later versions, say "more than one".
INVARIANT_ERRATA = {
    ("que-12", "enableWhen.count() > 2 implies enableBehavior.exists()"):
        "enableWhen.count() > 1 implies enableBehavior.exists()",
}

_LITERAL = re.compile(
    r"(?:(?P<base>https?://[^\s]+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_ANY_TARGET = ("Resource", "DomainResource")

# Contexts the R4 (4.0.1) publication itself uses beyond what these extensions declare: the
# core StructureDefinitions put fhir-type and regex on ElementDefinition.type (later versions
# widened their contexts to it), and the normative resources carry normative-version on CodeSystem,
# ValueSet, OperationDefinition and their elements. Without these, R4's own definitions
# and examples would be refused (docs/conformance.md).
_CONTEXT_ERRATA = {
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type":
        ("ElementDefinition.type",),
    "http://hl7.org/fhir/StructureDefinition/regex": ("ElementDefinition.type",),
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


def attachment(walk: Walk, value: dict[str, Any], path: str) -> None:
    """Attachment.size, when given with the data, is the data's size in bytes."""
    data, size = value.get("data"), value.get("size")
    if not isinstance(data, str) or not isinstance(size, int) or isinstance(size, bool):
        return
    try:
        decoded = len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return  # a bad base64Binary is the structural check's to report
    if decoded != size:
        walk.add("error", "value", f"Attachment.size says {size} bytes, but the data is "
                 f"{decoded} bytes", f"{path}.size")


def coding_system(walk: Walk, value: dict[str, Any], path: str) -> bool:
    """Coding.system is a code system's absolute URI; False when it is not (no further
    code checks then)."""
    system = value.get("system")
    if not isinstance(system, str):
        return True
    if ":" not in system:
        walk.add("error", "value", f"Coding.system must be an absolute URI, not '{system}'",
                 f"{path}.system")
        return False
    definitions = walk.validator.definitions
    if definitions.value_set(system) is not None and definitions.code_system(system) is None:
        walk.add("error", "value", f"Coding.system '{system}' is the URL of a ValueSet; it must "
                 "be a code system's", f"{path}.system")
        return False
    return True


_SCRIPT = re.compile(r"<\s*script", re.IGNORECASE)
_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?\s*>")


# Definitional content, whose descriptions are documentation written by specification
# authors (and quote markup on purpose), not data shown to patients and clinicians.
_DEFINITIONAL = frozenset({
    "StructureDefinition", "CodeSystem", "ValueSet", "ConceptMap", "ImplementationGuide",
    "CapabilityStatement", "OperationDefinition", "SearchParameter", "NamingSystem",
    "StructureMap", "GraphDefinition", "CompartmentDefinition", "MessageDefinition",
    "TerminologyCapabilities", "ExampleScenario",
})


def markup(walk: Walk, value: Any, path: str) -> None:
    """A plain string must not carry HTML tags: a receiver that renders it would run them
    (narrative and markdown are where formatting goes). Definitional resources are exempt
    but for scripts."""
    if not isinstance(value, str) or "<" not in value or _MARKUP.search(value) is None:
        return
    if walk.current.get("resourceType") in _DEFINITIONAL and _SCRIPT.search(value) is None:
        return
    walk.add("error", "security", "The string contains text that looks like HTML tags, "
             "which are not allowed in plain strings for security reasons", path)


def dom_3(resource: Any) -> bool:
    """dom-3: each contained resource is referred to from elsewhere in the resource, or
    refers to its container ('#')."""
    contained = resource.get("contained") if isinstance(resource, dict) else None
    if not isinstance(contained, list):
        return True
    strings = set(_strings(resource))
    for item in contained:
        if not isinstance(item, dict):
            continue
        if f"#{item.get('id')}" not in strings and "#" not in set(_strings(item)):
            return False
    return True


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


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
    match = _LITERAL.fullmatch(ref)
    if match is not None and match["base"] is None and walk.bundle is not None:
        # inside a Bundle, Type/<uuid> finds the entry urn:uuid:<uuid> (bundle.html#references)
        other = _bundle_type(walk.bundle, f"urn:uuid:{match['id']}")
        if other is not None and other != target_type:
            walk.add("error", "value", f"The reference '{ref}' matches the Bundle entry "
                     f"urn:uuid:{match['id']}, which is a {other}, not a {target_type}",
                     f"{path}.reference")
            return
    allowed = _allowed_targets(walk, rule)
    if allowed and target_type not in allowed:
        walk.add("error", "structure", f"The reference '{ref}' is to a {target_type}; "
                 f"{rule.id} may refer only to {', '.join(sorted(allowed))}",
                 f"{path}.reference")


def _target_type(walk: Walk, ref: str) -> str | None:
    if ref.startswith("urn:"):
        return _bundle_type(walk.bundle, ref)
    match = _LITERAL.fullmatch(ref)
    if match is not None:
        return match["type"]
    return _bundle_type(walk.bundle, ref) if ref.startswith("http") else None


def _bundle_type(bundle: dict[str, Any] | None, full_url: str) -> str | None:
    if bundle is None:
        return None
    for entry in bundle.get("entry", ()):
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
    if ":" not in url and context[1] != "Extension":
        walk.add("error", "value", f"The extension url '{url}' must be an absolute URL (only "
                 "the parts of a complex extension have relative urls)", f"{path}.url")
        return
    definition = walk.compiler.profile(url)
    if definition is None:
        modifier = rule.name == "modifierExtension"
        strict = walk.validator.unknown_extension == "error" and not _is_example(url)
        if modifier or url.startswith(_CORE) or strict:
            walk.add("error", "structure", f"The {'modifier ' if modifier else ''}extension "
                     f"{url} is not known to this server, so it is not allowed here", path)
        elif context[1] != "Extension":
            walk.add("warning", "informational", f"The extension {url} is not known to this "
                     "server, so its content was not checked", path)
        return
    _check_context(walk, url, path, context)
    walk.element(definition, value, None, "Extension", path)


_EXAMPLE_HOSTS = re.compile(r"https?://([^/]+\.)?example\.(org|com|net)(/|$)")


def _is_example(url: str) -> bool:
    """An extension of the RFC 2606 example domains: made up for an example, never to be
    found; not refused even when unknown extensions are."""
    return _EXAMPLE_HOSTS.match(url) is not None


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


# Invariants whose FHIRPath needs what only code can do (htmlChecks()), or that the FHIRPath
# engine cannot evaluate on plain JSON (dom-3's as(canonical)): checked by these functions.
NATIVE_INVARIANTS: dict[str, Callable[[Any], bool]] = {"txt-2": _txt_2, "dom-3": dom_3,
                                                       "vs-1": _vs_1}

__all__ = [
    "INVARIANT_ERRATA",
    "NATIVE_INVARIANTS",
    "NHS_NUMBER_SYSTEM",
    "STRUCTURAL_INVARIANTS",
    "attachment",
    "coding_system",
    "dom_3",
    "extension",
    "identifier",
    "markup",
    "nhs_number_problem",
    "reference",
]
