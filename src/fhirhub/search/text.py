"""String normalisation shared by indexing and querying: what "case- and
accent-insensitive" means in fhirhub."""

from __future__ import annotations

import unicodedata


def normalize(value: str) -> str:
    """Case-folded, with accents (combining marks) removed: ``Zoë`` -> ``zoe``."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


__all__ = ["normalize"]
