"""String normalisation shared by indexing and querying: what "case- and
accent-insensitive" means in fhirhub."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable


def normalize(value: str) -> str:
    """Case-folded, with accents (combining marks) removed: ``Zoë`` -> ``zoe``."""
    if value.isascii():
        return value.lower()  # the same for ASCII, and much quicker
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_WORD = re.compile(r"\w+")


def words(texts: Iterable[str]) -> str:
    """The distinct normalised words of ``texts`` as `` w1 w2 … ``: what ``_text`` and
    ``_content`` search (a term matches a word it begins)."""
    seen = dict.fromkeys(_WORD.findall(normalize(" ".join(texts))))
    return " " + " ".join(seen) + " " if seen else ""


def text_terms(value: str) -> list[list[str]]:
    """A ``_text`` / ``_content`` value as alternatives of words that must all be found.

    Words are separated by spaces (AND); ``OR`` between them starts another alternative
    (https://hl7.org/fhir/R4/search.html#content, the simple part of the _filter syntax);
    quotes and other punctuation only separate words.
    """
    alternatives: list[list[str]] = [[]]
    for term in value.split():
        if term == "OR":
            alternatives.append([])
        else:
            alternatives[-1].extend(_WORD.findall(normalize(term)))
    return [a for a in alternatives if a]


__all__ = ["normalize", "text_terms", "words"]
