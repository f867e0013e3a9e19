"""Is a code in a value set, or in a code system? The answer and the words to explain it.

https://hl7.org/fhir/R4/valueset-operation-validate-code.html and
https://hl7.org/fhir/R4/codesystem-operation-validate-code.html. ``result`` is three-valued
here: True (in), False (definitely not in), None (this server cannot tell, e.g. a SNOMED CT
code, whose content is not packaged). The message names the code, the system and the value
set, for an OperationOutcome or a ``message`` parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhirhub.fhir.terminology._codesystems import CodeSystemIndex
from fhirhub.fhir.terminology._compose import unavailable
from fhirhub.fhir.terminology._members import Member, Membership


@dataclass(frozen=True)
class CodeCheck:
    """The answer to "is this code valid here?"."""

    result: bool | None  # True in, False definitely not in, None cannot tell
    message: str  # names the code, system and value set, for an OperationOutcome
    display: str | None = None  # the code's preferred display, when known
    display_ok: bool = True  # False when a display was given and matches no designation


def _coded(code: str, system: str | None) -> str:
    return f"'{code}'" if system is None else f"'{code}' from {system}"


def _found(member: Member, where: str, coded: str, display: str | None) -> CodeCheck:
    if display is None or member.has_display(display):
        return CodeCheck(True, f"The code {coded} is in {where}", member.display)
    preferred = (f"the preferred display is '{member.display}'" if member.display
                 else "it has no display")
    return CodeCheck(True, f"The display '{display}' is not a display of the code {coded} in "
                     f"{where}; {preferred}", member.display, display_ok=False)


def check_membership(membership: Membership, label: str, system: str | None, code: str,
                     display: str | None,
                     index_of: Callable[[str], CodeSystemIndex | None]) -> CodeCheck:
    """``code`` (of ``system``; of any system when None) against a compiled value set.
    ``index_of`` finds a packaged code system, to say why a code is not in (only then)."""
    where = f"the value set {label}"
    member = membership.find(system, code)
    if member is not None:
        return _found(member, where, _coded(code, member.system), display)
    why = membership.why_open(system)
    if why is not None:
        return CodeCheck(None, f"The code {_coded(code, system)} could not be checked against "
                         f"{where}: {why}")
    if system is None:
        return CodeCheck(False, f"The code '{code}' is not in {where}")
    index = index_of(system)
    if index is not None and index.complete and index.find(code) is None:
        return CodeCheck(False, f"The code '{code}' is not a code of {system}, so it is not in "
                         f"{where}")
    if system not in membership.listed_systems:
        return CodeCheck(False, f"The code {_coded(code, system)} is not in {where}, which has "
                         f"no codes from {system}")
    return CodeCheck(False, f"The code {_coded(code, system)} is not in {where}")


def check_in_system(index: CodeSystemIndex | None, system: str, code: str,
                    display: str | None = None) -> CodeCheck:
    """``code`` against the code system ``system`` itself."""
    if index is None or not index.listed:
        return CodeCheck(None, f"The code {_coded(code, system)} could not be checked: "
                         f"{unavailable(system, index)}")
    concept = index.find(code)
    if concept is None and index.complete:
        return CodeCheck(False, f"The code '{code}' is not a code of {system}")
    if concept is None:
        return CodeCheck(None, f"The code {_coded(code, system)} could not be checked: the code "
                         f"system is {index.partial} here, and does not list it")
    # A light Member: only what the display check needs (this runs for every Coding written).
    member = Member(index.url, concept.code, concept.display, designations=concept.designations)
    return _found(member, f"the code system {system}", f"'{code}'", display)


def unknown_value_set(url: str, system: str | None, code: str) -> CodeCheck:
    return CodeCheck(None, f"The code {_coded(code, system)} could not be checked: the value set "
                     f"{url} is not available on this server")


__all__ = ["CodeCheck", "check_in_system", "check_membership", "unknown_value_set"]
