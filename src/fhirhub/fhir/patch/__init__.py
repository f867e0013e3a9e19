"""FHIR ``patch``: JSON Patch and FHIRPath Patch, applied to a copy of a resource.

* JSON Patch: RFC 6902 (https://www.rfc-editor.org/rfc/rfc6902), as FHIR R4 allows it
  (https://hl7.org/fhir/R4/http.html#patch), applied with the ``jsonpatch`` library.
* FHIRPath Patch: https://hl7.org/fhir/R4/fhirpatch.html, a ``Parameters`` resource of
  ``operation`` parameters (add, insert, delete, replace, move), applied by locating the
  elements with :func:`fhirhub.fhir.fhirpath.locate` and acting on them by the R4 element
  model (repeating or not, choice types, types of values).

FHIRPath Patch works on whole elements, as the spec's model does: ``replace`` of a
primitive replaces its id and extensions too (``_birthDate`` goes unless the value part
carries its own ``_valueDate``); ``delete`` removes what it leaves empty above the element
(FHIR JSON has no empty objects); lists of primitives keep ``_name`` aligned.

Both return a new dict and never change their inputs. Errors, with diagnostics that name
the operation (its 0-based index in the document) and its path:

* :class:`InvalidError` (400): a malformed patch: not a list / not a Parameters resource,
  an unknown operation, a missing or wrongly typed member, a FHIRPath path that does not
  parse, cannot be evaluated or names no element of its type.
* :class:`UnprocessableError` (422): a well-formed patch that cannot apply to this resource:
  a failed JSON Patch ``test``, a path that does not exist, a FHIRPath path matching no
  element (except for ``delete``, where that is no change) or several, a value of the wrong
  type, ``add`` to a non-repeating element that already has a value, an index out of range.

Neither checks that the result is a valid resource: the caller validates it, as it does
any resource it stores (the spec requires an error when the outcome is not valid).

This module is only the public surface; the work is done in private modules, one concept
each, so that a reader of one spec finds it in one place:

* ``_json``: RFC 6902, checked here and applied by ``jsonpatch``.
* ``_fhirpath``: the five FHIRPath Patch operations, in order, on one copy.
* ``_operations``: reading and checking the operations from ``Parameters``.
* ``_locate``: what an operation's path selects, kept inside the resource.
* ``_values``: the type a value must have where it goes, and the JSON it becomes.
* ``_shapes``: a primitive's ``_name`` kept with its value, in lists too.
"""

from __future__ import annotations

from fhirhub.fhir.patch._fhirpath import apply_fhirpath_patch
from fhirhub.fhir.patch._json import apply_json_patch

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]
