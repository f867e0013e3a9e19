"""Small helpers the test modules share."""

from __future__ import annotations

from collections.abc import Iterator

from fhirhub.fhir.validation import nhs_number_problem


def nhs_numbers(start: int = 900_000_000) -> Iterator[str]:
    """Valid NHS numbers (Modulus 11 check digit), from the nine-digit stem ``start`` on;
    the 9xx range is the one reserved for test data."""
    stem = start
    while True:
        for check in range(10):
            candidate = f"{stem:09d}{check}"
            if nhs_number_problem(candidate) is None:
                yield candidate
                break
        stem += 1
