"""The structural check every write runs: is this body FHIR R4 JSON of a known shape?

It walks the JSON with the element model (no FHIRPath) and reports, as error
:class:`~fhirhub.errors.Issue` objects, what the R4 JSON format and the datatypes forbid:

* the body is an object with the ``resourceType`` of a concrete R4 resource (and the one the
  URL names, when given); ``id`` has the id syntax;
* every property is an element of its parent (choices by their typed name, ``valueQuantity``;
  ``resourceType`` only at a resource root; no DSTU2 ``fhir_comments``);
* arrays exactly where the element repeats, objects for complex types, no ``null``, ``{}`` or
  ``[]`` (https://hl7.org/fhir/R4/json.html);
* primitives of the right JSON kind, in range, matching the official regex of their type, dates
  that exist on the calendar, strings not over 1 MB (https://hl7.org/fhir/R4/datatypes.html);
* primitive extensions (``_birthDate``, ``_given``) with only ``id``/``extension``, aligned with
  their values;
* nested resources (``contained``, ``Bundle.entry.resource``, ...) checked as resources, and
  contained resources without ``contained`` of their own (dom-2);
* extensions with a ``url`` and either one ``value[x]`` or nested extensions (ext-1);
* ``Narrative.div``: well-formed XHTML in the basic formatting subset, with nothing active
  in it (https://hl7.org/fhir/R4/narrative.html).

Cardinality, bindings, invariants and profiles are the profile validator's job; it adds its
own issues beside these, so :func:`check_resource` only returns a list and never raises.

This module is the public surface; the work is done in private modules, one concept each:

* :mod:`~fhirhub.fhir.structure._walk`: the walk over objects, arrays, choices, nested
  resources and primitive extensions;
* :mod:`~fhirhub.fhir.structure._props`: each type's JSON properties, from the element model;
* :mod:`~fhirhub.fhir.structure._primitives`: the checks of primitive values;
* :mod:`~fhirhub.fhir.structure._regex`: the official regexes, with XML Schema's meaning;
* :mod:`~fhirhub.fhir.structure._narrative`: the XHTML of ``Narrative.div``.
"""

from __future__ import annotations

from fhirhub.errors import Issue
from fhirhub.fhir.structure._narrative import has_content as narrative_has_content
from fhirhub.fhir.structure._narrative import narrative_text
from fhirhub.fhir.structure._walk import RESOURCE, Full, Walker

MAX_ISSUES = 100


def check_resource(resource: object, *, expected_type: str | None = None) -> list[Issue]:
    """Error issues for what is structurally wrong with ``resource`` (empty: all is well).

    ``expected_type`` is the type the URL names (``PUT /Patient/1``); a body of another type
    is an issue. At most :data:`MAX_ISSUES` issues are returned.
    """
    walker = Walker(MAX_ISSUES)
    try:
        walker.resource(resource, "", contained=False, expected=expected_type)
    except Full:
        pass
    except RecursionError:
        walker.issues.append(Issue("error", "structure", "The resource is nested too deeply "
                                   "to be checked", (), RESOURCE))
    return walker.issues


__all__ = ["MAX_ISSUES", "check_resource", "narrative_has_content", "narrative_text"]
