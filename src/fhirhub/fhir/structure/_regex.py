"""The regexes of the R4 primitive types, made to mean in Python what they mean in FHIR.

The StructureDefinitions give each primitive type an XML Schema regex
(https://hl7.org/fhir/R4/datatypes.html). Python's :mod:`re` reads almost all of them the
same way; this module fixes the two places where it does not: ``\\s``, and the official
base64Binary regex, which backtracks exponentially in Python's engine.
"""

from __future__ import annotations

import re

XSD_SPACE = " \t\n\r"  # whitespace, as FHIR (XML) means it; not a no-break space
_XSD_SPACE_CLASS = " \\t\\n\\r"  # the same, escaped for a regex character class

# The official base64Binary regex, (\s*([0-9a-zA-Z\+/=]){4}\s*)+, backtracks exponentially on a
# bad value with many spaces (each run of spaces can end one group or start the next). This is
# the same language, written so that each character has only one way to match.
BASE64 = re.compile(r"[ \t\n\r]*(?:[0-9a-zA-Z+/=]{4}[ \t\n\r]*)+")


def xsd_regex(pattern: str) -> re.Pattern[str]:
    """Compile a StructureDefinition (XML Schema) regex with XML Schema's meaning of \\s.

    XML Schema's ``\\s`` is space, tab, CR and LF only; Python's is every Unicode space, so
    compiled as is, a ``code`` with a no-break space in it would be refused (the official
    v2 code system examples have some).
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped == "s":
                out.append(_XSD_SPACE_CLASS if in_class else f"[{_XSD_SPACE_CLASS}]")
            elif escaped == "S" and not in_class:
                out.append(f"[^{_XSD_SPACE_CLASS}]")
            elif escaped == "S":
                raise ValueError(f"\\S inside a character class is not supported: {pattern}")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        out.append(ch)
        i += 1
    return re.compile("".join(out))
