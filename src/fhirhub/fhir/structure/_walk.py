"""The walk over one resource's JSON: objects, arrays, nulls, choices, primitive extensions.

:class:`Walker` goes down the JSON once, looking each property up in
:mod:`~fhirhub.fhir.structure._props`, handing primitive values to their checker
(:mod:`~fhirhub.fhir.structure._primitives`) and narratives to
:mod:`~fhirhub.fhir.structure._narrative`, and recursing into complex values and nested
resources. It collects issues until it has ``limit`` of them, then raises :class:`Full` to
stop; :func:`fhirhub.fhir.structure.check_resource` catches it.
"""

from __future__ import annotations

import re
from typing import Any

from fhirhub.errors import Issue
from fhirhub.fhir.model import element_model
from fhirhub.fhir.structure._narrative import xhtml_problems
from fhirhub.fhir.structure._primitives import Problem, describe, quote
from fhirhub.fhir.structure._props import (
    COMPLEX,
    PRIMITIVE,
    XHTML,
    Prop,
    Props,
    cached_props,
    props_of,
)

# The issues' Spine-ErrorOrWarningCode (Issue.spine_code).
RESOURCE = "INVALID_RESOURCE"
_VALUE = "INVALID_VALUE"
_RESOURCE_ID = "INVALID_RESOURCE_ID"

_ELEMENT_KEYS = frozenset({"id", "extension"})
_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")


class Full(Exception):
    """Stops the walk once the limit of issues is collected."""


class Walker:
    """Walks one resource, collecting issues."""

    __slots__ = ("issues", "limit", "model")

    def __init__(self, limit: int) -> None:
        self.issues: list[Issue] = []
        self.limit = limit
        self.model = element_model()

    def add(self, code: str, spine: str, diagnostics: str, expression: str) -> None:
        self.issues.append(
            Issue("error", code, diagnostics, (expression,) if expression else (), spine))
        if len(self.issues) >= self.limit:
            raise Full

    # resources

    def resource(self, value: Any, path: str, *, contained: bool, expected: str | None) -> None:
        if type(value) is not dict:
            self.add("structure", RESOURCE,
                     f"A resource must be a JSON object, not {describe(value)}", path)
            return
        type_name = self.resource_type(value, path)
        if type_name is None:
            return
        if expected is not None and type_name != expected:
            self.add("invalid", RESOURCE, f"The resource type '{type_name}' does not match "
                     f"the URL type '{expected}'", path)
        here = path or type_name
        if contained and "contained" in value:
            self.add("invalid", RESOURCE, "A contained resource must not contain resources "
                     "of its own (dom-2); put them all in the container", f"{here}.contained")
        resource_id = value.get("id")
        if type(resource_id) is str and resource_id and _ID.fullmatch(resource_id) is None:
            self.add("value", _RESOURCE_ID, f"The resource id {quote(resource_id)} is not "
                     "valid: an id is 1 to 64 of A-Z, a-z, 0-9, '-' and '.'", f"{here}.id")
        self.object(value, type_name, here, resource_root=True)

    def resource_type(self, value: dict[str, Any], path: str) -> str | None:
        type_name = value.get("resourceType")
        if type_name is None:
            self.add("structure", RESOURCE, "The resource has no 'resourceType' property; a "
                     "FHIR JSON resource names its type in 'resourceType'", path)
        elif type(type_name) is not str:
            self.add("structure", RESOURCE, "'resourceType' must be a JSON string, not "
                     f"{describe(type_name)}", path)
        elif type_name in self.model.resource_types:
            return type_name
        elif type_name in self.model.abstract_types:
            self.add("invalid", RESOURCE, f"'{type_name}' is an abstract type; a resource "
                     "must be of a concrete type such as 'Patient'", path)
        else:
            self.add("invalid", RESOURCE, f"'{type_name}' is not a FHIR R4 resource type",
                     path)
        return None

    # objects and their properties

    def object(self, obj: dict[str, Any], key: str, path: str, *,
               resource_root: bool = False) -> None:
        props = cached_props(key) or props_of(key)
        by_name = props.by_name
        choices: dict[str, str] | None = None
        for name, value in obj.items():
            prop = by_name.get(name)
            if prop is None:
                if name[:1] == "_":
                    prop = self.primitive_extension(obj, name, value, props, path)
                    # "_valueString" without "valueString" is still the one value[x]
                    if prop is not None and prop.choice is not None and prop.name not in obj:
                        choices = self.one_choice(choices, prop.choice, prop, path)
                elif not (resource_root and name == "resourceType"):
                    self.unknown(props, name, path)
                continue
            if prop.choice is not None:
                choices = self.one_choice(choices, prop.choice, prop, path)
            if prop.is_array:
                if type(value) is not list or not value:
                    self.not_an_array(prop, value, path)
                elif prop.kind == PRIMITIVE:
                    check = prop.check
                    for index, item in enumerate(value):
                        if item is None:
                            self.null(obj, prop, path, index)
                        elif (problem := check(item)) is not None:
                            self.bad_value(prop, problem, path, index)
                else:
                    for index, item in enumerate(value):
                        self.value(obj, prop, item, path, index)
            elif type(value) is list:
                self.add("structure", RESOURCE, f"'{name}' has at most one value, so it must "
                         "not be a JSON array", f"{path}.{prop.segment}")
            elif prop.kind == PRIMITIVE and value is not None:
                if (problem := prop.check(value)) is not None:
                    self.bad_value(prop, problem, path, -1)
            else:
                self.value(obj, prop, value, path, -1)

    def value(self, obj: dict[str, Any], prop: Prop, value: Any, parent: str,
              index: int) -> None:
        kind = prop.kind
        if value is None:
            self.null(obj, prop, parent, index)
        elif kind == PRIMITIVE:
            if (problem := prop.check(value)) is not None:
                self.bad_value(prop, problem, parent, index)
        elif kind == XHTML:
            self.narrative(value, _at(parent, prop.segment, index))
        elif type(value) is not dict:
            self.add("structure", RESOURCE, f"'{prop.name}' must be a JSON object "
                     f"({prop.type}), not {describe(value)}", _at(parent, prop.segment, index))
        elif not value:
            self.add("structure", RESOURCE, f"'{prop.name}' must not be an empty object; "
                     "leave the property out instead", _at(parent, prop.segment, index))
        elif kind == COMPLEX and len(value) == 1 and "id" in value:
            self.add("invariant", RESOURCE, f"'{prop.name}' has only an id: an element must "
                     "have a value or children other than id (ele-1)",
                     _at(parent, prop.segment, index))
        elif kind == COMPLEX:
            path = _at(parent, prop.segment, index)
            self.object(value, prop.children_key, path)
            if prop.type == "Extension":
                self.extension(value, path)
        else:
            self.resource(value, _at(parent, prop.segment, index),
                          contained=prop.name == "contained", expected=None)

    def bad_value(self, prop: Prop, problem: Problem, parent: str, index: int) -> None:
        self.add(problem[0], _VALUE, f"Invalid {prop.type} in '{prop.name}': {problem[1]}",
                 _at(parent, prop.segment, index))

    def null(self, obj: dict[str, Any], prop: Prop, parent: str, index: int) -> None:
        if index >= 0 and prop.extensible:
            # A null in a primitive array stands for a value that has only extensions.
            extensions = obj.get("_" + prop.name)
            if (type(extensions) is list and index < len(extensions)
                    and extensions[index] is not None):
                return
            self.add("structure", RESOURCE, f"'{prop.name}' has a null entry with no "
                     f"matching entry in '_{prop.name}'; null is only allowed where the "
                     "primitive has extensions but no value", _at(parent, prop.segment, index))
            return
        where = "have null entries" if index >= 0 else "be null"
        self.add("structure", RESOURCE, f"'{prop.name}' must not {where}; leave it out "
                 "instead", _at(parent, prop.segment, index))

    def not_an_array(self, prop: Prop, value: Any, path: str) -> None:
        if type(value) is list:
            diagnostics = (f"'{prop.name}' must not be an empty array; leave the property "
                           "out instead")
        else:
            diagnostics = (f"'{prop.name}' repeats, so it must be a JSON array, not "
                           f"{describe(value)}")
        self.add("structure", RESOURCE, diagnostics, f"{path}.{prop.segment}")

    def one_choice(self, choices: dict[str, str] | None, choice: str, prop: Prop,
                   path: str) -> dict[str, str]:
        if choices is None:
            choices = {}
        first = choices.setdefault(choice, prop.name)
        if first != prop.name:
            self.add("structure", RESOURCE, f"'{prop.name}' and '{first}' are both given, but "
                     f"{choice.rpartition('.')[2]} has only one value", f"{path}.{prop.segment}")
        return choices

    def unknown(self, props: Props, name: str, path: str) -> None:
        if name == "fhir_comments":
            diagnostics = "'fhir_comments' is not allowed in FHIR R4 JSON"
        elif name == "resourceType":
            diagnostics = ("'resourceType' is only allowed at the root of a resource; "
                           f"{props.key} is not a resource")
        elif name in props.choice_bases:
            diagnostics = (f"Unknown property '{name}': {name}[x] is a choice, named with its "
                           f"type ({props.choice_bases[name]})")
        else:
            diagnostics = f"Unknown property '{name}': it is not an element of {props.key}"
        self.add("structure", RESOURCE, diagnostics, f"{path}.{name}")

    # primitive extensions: "_birthDate": {...}, "_given": [null, {...}]

    def primitive_extension(self, obj: dict[str, Any], name: str, value: Any, props: Props,
                            path: str) -> Prop | None:
        base = name[1:]
        prop = props.by_name.get(base)
        if prop is None:
            self.add("structure", RESOURCE, f"Unknown property '{name}': '{base}' is not an "
                     f"element of {props.key}", f"{path}.{name}")
            return None
        if not prop.extensible:
            self.add("structure", RESOURCE, f"Unknown property '{name}': only primitive "
                     f"elements have a '_' sibling, and '{base}' of {props.key} is not one "
                     "that can have extensions", f"{path}.{name}")
            return None
        if not prop.is_array:
            self.element_extension(value, name, f"{path}.{prop.segment}")
            if obj.get(base) is None:
                self.id_only(value, name, f"{path}.{prop.segment}")
        elif type(value) is not list or not value:
            self.add("structure", RESOURCE, f"'{name}' must be a non-empty JSON array, as "
                     f"'{base}' repeats", f"{path}.{name}")
        else:
            self.extension_array(obj.get(base), value, name, f"{path}.{base}")
        return prop

    def extension_array(self, values: Any, extensions: list[Any], name: str,
                        path: str) -> None:
        if type(values) is list and len(values) != len(extensions):
            self.add("structure", RESOURCE, f"'{name}' must have one entry for each value "
                     f"(it has {len(extensions)}, for {len(values)} values)", path)
        for index, item in enumerate(extensions):
            if item is not None:
                self.element_extension(item, name, f"{path}[{index}]")
                if type(values) is not list or index >= len(values) or values[index] is None:
                    self.id_only(item, name, f"{path}[{index}]")
            elif values is None:
                self.add("structure", RESOURCE, f"'{name}' has a null entry, but there is "
                         "no value for it either", f"{path}[{index}]")
            # else a null beside a value; a null beside a null is reported with the values

    def element_extension(self, value: Any, name: str, path: str) -> None:
        if type(value) is not dict or not value:
            self.add("structure", RESOURCE, f"'{name}' must be a JSON object with 'id' "
                     f"and/or 'extension', not {describe(value)}", path)
            return
        extra = [k for k in value if k not in _ELEMENT_KEYS]
        if extra:
            for k in extra:
                self.add("structure", RESOURCE, f"'{k}' is not allowed in '{name}': a "
                         "primitive's extension object has only 'id' and 'extension'", path)
            value = {k: v for k, v in value.items() if k in _ELEMENT_KEYS}
        self.object(value, "Element", path)

    def id_only(self, value: Any, name: str, path: str) -> None:
        """A primitive with no value and only an id breaks ele-1."""
        if type(value) is dict and len(value) == 1 and "id" in value:
            self.add("invariant", RESOURCE, f"'{name}' has only an id and no value: an element "
                     "must have a value or children other than id (ele-1)", path)

    # extensions and narrative

    def extension(self, ext: dict[str, Any], path: str) -> None:
        if "url" not in ext:
            self.add("invalid", RESOURCE, "An extension must have a 'url'", path)
        if "extension" in ext and any(k.startswith(("value", "_value")) for k in ext):
            self.add("invalid", RESOURCE, "An extension must have either a value[x] or "
                     "nested extensions, not both (ext-1)", path)

    def narrative(self, value: Any, path: str) -> None:
        if type(value) is not str:
            self.add("structure", _VALUE, f"The narrative must be a JSON string of XHTML, not "
                     f"{describe(value)}", path)
            return
        for problem in xhtml_problems(value):
            self.add("value", _VALUE, problem, path)


def _at(parent: str, name: str, index: int) -> str:
    return f"{parent}.{name}" if index < 0 else f"{parent}.{name}[{index}]"

