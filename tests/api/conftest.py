"""Fixtures of the HTTP tests."""

from __future__ import annotations

import pytest

from tests.api.test_security import mark_known_bug


@pytest.fixture(autouse=True)
def _known_bugs(request: pytest.FixtureRequest) -> None:
    """A test marked with a known bug (tests.api.test_security.bug) is a strict xfail on
    the backends the bug affects."""
    mark_known_bug(request)
