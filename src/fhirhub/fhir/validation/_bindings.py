"""Coded values against their bindings, and codes against their code systems.

https://hl7.org/fhir/R4/terminologies.html#strength: a ``required`` binding's code must be
in the value set (error); ``extensible`` and ``preferred`` bindings only warn. A code whose
system is not packaged here (SNOMED CT, LOINC, UCUM, ...) cannot be checked: that is
information, never an error, so a valid record is not refused for what this server cannot
know, even where the value set lists only other systems' codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fhirhub.fhir.validation._rules import Binding

CODED = frozenset({"code", "Coding", "CodeableConcept", "Quantity", "string", "uri"})


class CodeResult(Protocol):
    @property
    def result(self) -> bool | None: ...

    @property
    def message(self) -> str: ...

    @property
    def display_ok(self) -> bool: ...


class CodeChecker(Protocol):
    """What validation needs of the terminology service."""

    def validate_code(self, value_set: str, system: str | None, code: str,
                      display: str | None = None) -> CodeResult: ...

    def in_code_system(self, system: str, code: str) -> CodeResult: ...

    def is_known_system(self, system: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    code: str
    message: str


def codings(value: Any, type_code: str) -> list[tuple[str | None, str, str | None]] | None:
    """(system, code, display) of a coded value; None when it carries no code at all."""
    if type_code in ("code", "string", "uri"):
        return [(None, value, None)] if isinstance(value, str) else None
    if type_code in {"Coding", "Quantity"}:
        return _coding(value)
    if type_code == "CodeableConcept" and isinstance(value, dict):
        found = [c for item in value.get("coding", []) for c in (_coding(item) or [])]
        return found or None
    return None


def _coding(value: Any) -> list[tuple[str | None, str, str | None]] | None:
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        return None
    system = value.get("system")
    display = value.get("display", value.get("unit") if "unit" in value else None)
    return [(system if isinstance(system, str) else None, value["code"],
             display if isinstance(display, str) and "unit" not in value else None)]


def check_binding(checker: CodeChecker, binding: Binding, value: Any,
                  type_code: str) -> list[Finding]:
    """What is wrong with ``value`` under ``binding`` (empty: nothing)."""
    if binding.strength not in ("required", "extensible", "preferred"):
        return []
    found = codings(value, type_code)
    if found is None:
        if (binding.strength == "required" and type_code == "CodeableConcept"
                and isinstance(value, dict) and "text" in value):
            return [Finding("error", "code-invalid", "No code was given, and a code from the "
                            f"required value set {binding.value_set} is needed")]
        return []
    results = [_unchecked(system, binding.value_set)
               if system is not None and not checker.is_known_system(system)
               else checker.validate_code(binding.value_set, system, code, display)
               for system, code, display in found]
    if any(r.result for r in results):
        return [Finding("warning", "code-invalid", r.message)
                for r in results if r.result and not r.display_ok]
    unknown = [r for r in results if r.result is None]
    if unknown:
        return [Finding("information", "informational", unknown[0].message)]
    message = results[0].message
    if binding.strength == "required":
        return [Finding("error", "code-invalid", message)]
    return [Finding("warning", "code-invalid", message)]


@dataclass(frozen=True, slots=True)
class _Unchecked:
    result: bool | None
    message: str
    display_ok: bool = True


def _unchecked(system: str, value_set: str) -> _Unchecked:
    """A code of a system whose content is not packaged (SNOMED CT, LOINC, UCUM, dm+d...)
    cannot be judged here, even against a value set that lists other systems' codes only:
    information, not an error (issue 3; the reference validator warns)."""
    return _Unchecked(None, f"Codes of {system} cannot be checked against {value_set}: that "
                      "code system is not available on this server")


def check_coding_system(checker: CodeChecker, value: Any) -> Finding | None:
    """A Coding whose system is packaged must use one of its codes."""
    system, code = value.get("system"), value.get("code")
    if not isinstance(system, str) or not isinstance(code, str):
        return None
    result = checker.in_code_system(system, code)
    if result.result is False:
        return Finding("error", "code-invalid", result.message)
    if result.result and not result.display_ok:
        return Finding("warning", "code-invalid", result.message)
    return None


__all__ = ["CODED", "CodeChecker", "Finding", "check_binding", "check_coding_system", "codings"]
