"""A validator over the packaged definitions and terminology, shared by these tests."""

from __future__ import annotations

import pytest

from fhirhub.fhir.definitions import packaged
from fhirhub.fhir.terminology import terminology
from fhirhub.fhir.validation import Validator


@pytest.fixture(scope="session")
def validator() -> Validator:
    return Validator(packaged(), terminology())
