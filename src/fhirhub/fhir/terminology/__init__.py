"""The terminology service: code systems, value sets and concept maps of the packaged FHIR R4
and UK Core definitions (https://hl7.org/fhir/R4/terminology-service.html).

Two users: the profile validator, which calls :meth:`Terminology.validate_code` and
:meth:`Terminology.in_code_system` for every coded element written, and the terminology
operations (``$lookup``, ``$validate-code``, ``$expand``, ``$translate``).

A value set is compiled from its ``compose`` on first use
(https://hl7.org/fhir/R4/valueset.html#compose) into a membership table, then each check is a
dict lookup. Code systems whose content is not packaged here (SNOMED CT, LOINC, UCUM, dm+d,
...) cannot be checked: a code of theirs gets ``result=None`` ("cannot tell") with a message
saying so, never a false "invalid"; codes of other systems in the same value set are still
checked. Value sets that need such a system for their expansion fall back to the packaged
pre-computed expansion when there is one.
"""

from __future__ import annotations

from fhirhub.fhir.terminology._expand import MAX_EXPANSION
from fhirhub.fhir.terminology._service import Terminology, terminology
from fhirhub.fhir.terminology._validate import CodeCheck

__all__ = ["MAX_EXPANSION", "CodeCheck", "Terminology", "terminology"]
