"""The element model as the structural walk needs it: each type's JSON properties, by name.

:class:`~fhirhub.fhir.model.ElementModel` speaks in definitions; the walk looks up every JSON
property it meets, so here each type (or backbone element) is turned, once and on first use,
into a dict from JSON name (``valueQuantity``, not ``value[x]``) to what the walk must know
about that property, its primitive checker included.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirhub.fhir.model import ElementModel, element_model
from fhirhub.fhir.structure._primitives import Checker, checkers, no_check

# What the walk does with a property's value.
PRIMITIVE, COMPLEX, NESTED_RESOURCE, XHTML = range(4)


@dataclass(frozen=True, slots=True)
class Prop:
    """One JSON property a parent may have."""

    name: str
    segment: str  # in FHIRPath: the name, or value.ofType(Quantity) for a choice
    type: str
    kind: int
    children_key: str
    is_array: bool
    choice: str | None  # the definition path shared by all types of one choice element
    extensible: bool  # may carry a "_name" sibling (XML attributes and xhtml may not)
    check: Checker  # for primitives; the others are checked by the walk


@dataclass(frozen=True, slots=True)
class Props:
    """The properties of one type or backbone element, keyed by JSON name."""

    key: str
    by_name: dict[str, Prop]
    choice_bases: dict[str, str]  # "value" -> "valueQuantity, valueString, ..."


_PROPS: dict[str, Props] = {}  # filled in place, never rebound: cached_props is its get

# The walk looks up the properties of every JSON object it meets, so it calls the cache's own
# get, bound once here, and props_of only on a miss. Not PROPS.get(key) in the walk: CPython
# 3.11 compiles a method call on a name that came from an import as attribute load + call,
# making a bound method object each time; measured, that made the walk itself ~4% slower.
cached_props = _PROPS.get


def props_of(key: str) -> Props:
    """The properties of ``key`` (a type name or a backbone element's children key)."""
    found = _PROPS.get(key)
    if found is None:
        found = _PROPS[key] = _build_props(key)
    return found


def _build_props(key: str) -> Props:
    model = element_model()
    checks = checkers()
    by_name: dict[str, Prop] = {}
    choices: dict[str, list[str]] = {}
    for name, el in model.children(key).items():
        if el.is_resource:
            kind = NESTED_RESOURCE
        elif el.type == "xhtml":
            kind = XHTML
        else:
            kind = PRIMITIVE if el.is_primitive else COMPLEX
        by_name[name] = Prop(
            name=name,
            segment=f"{el.path.rpartition('.')[2][:-3]}.ofType({el.type})" if el.is_choice
            else name,
            type=el.type,
            kind=kind,
            children_key=el.children_key,
            is_array=el.is_array,
            choice=el.path if el.is_choice else None,
            extensible=kind == PRIMITIVE and not _is_xml_attribute(model, key, name),
            check=checks[el.type] if kind == PRIMITIVE else no_check,
        )
        if el.is_choice:
            choices.setdefault(el.path.rpartition(".")[2][:-3], []).append(name)
    bases = {base: ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
             for base, names in choices.items()}
    return Props(key, by_name, bases)


def _is_xml_attribute(model: ElementModel, key: str, name: str) -> bool:
    # Element.id and Extension.url are XML attributes (representation xmlAttr) in every
    # StructureDefinition, so they cannot have extensions; Resource.id is an element and can.
    return (name == "id" and key not in model.resource_types) or (
        key == "Extension" and name == "url")
