"""Validation of resources against FHIR R4 and its profiles (UK Core among them).

Driven by StructureDefinitions, not by code per resource: the R4 base definitions are
compiled from their snapshots, and profiles published as differentials only (UK Core) from
their base plus the differential (:mod:`._compile`). A resource is first checked for its JSON
shape (:mod:`fhirhub.fhir.structure`), then walked (:mod:`._walk`) against its type's base
definition, each ``meta.profile`` it claims, and the profiles the caller requires:

* cardinality, choice types, fixed and pattern values, ``maxLength``;
* bindings, against the packaged terminology (:mod:`._bindings`);
* FHIRPath invariants (``pat-1``, ``ref-1`` ...), through the compiled fast path of
  :func:`fhirhub.fhir.fhirpath.compile_invariant`;
* slicing by value, pattern, type, profile and exists discriminators, open, closed and
  openAtEnd, ordered or not (:mod:`._slicing`);
* extensions by their definitions and contexts, reference formats and target types, NHS
  numbers (:mod:`._checks`); contained and Bundle-entry resources as resources.

Each issue names the element (``expression``) and the rule, with an IssueType code.
"""

from __future__ import annotations

from fhirhub.fhir.validation._checks import NHS_NUMBER_SYSTEM, nhs_number_problem
from fhirhub.fhir.validation._validator import MAX_ISSUES, Validator

__all__ = ["MAX_ISSUES", "NHS_NUMBER_SYSTEM", "Validator", "nhs_number_problem"]
