"""Operations of this area (filled in by its issue)."""

from __future__ import annotations

from fhirhub.engine.operations._registry import Operation

OPERATIONS: tuple[Operation, ...] = ()
