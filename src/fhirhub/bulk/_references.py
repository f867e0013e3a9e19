"""References rewritten by a table: ``{"reference": "urn:uuid:..."}`` -> ``"Patient/1"``."""

from __future__ import annotations

from typing import Any


def rewrite_references(node: Any, table: dict[str, str]) -> Any:
    """A copy of ``node`` with each ``reference`` found in ``table`` replaced."""
    if isinstance(node, dict):
        return {k: (table.get(v, v) if k == "reference" and isinstance(v, str)
                    else rewrite_references(v, table)) for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_references(v, table) for v in node]
    return node
