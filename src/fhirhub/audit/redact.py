"""Bodies kept in the audit log with ``FHIRHUB_AUDIT_BODIES=redacted``.

A redacted body keeps what a support desk needs to see what kind of message it was
(its shape: element names, resource types and ids, codes and their systems, references,
statuses, meta) and masks every other value, so that names, addresses, dates of birth,
free text and identifiers' values never reach the log. A body that is not JSON keeps
only its length.
"""

from __future__ import annotations

from typing import Any

import orjson

MASK = "***"
# Values kept as they are: structure and coded values, never personal data on their own.
_KEEP = frozenset({
    "resourceType", "id", "versionId", "lastUpdated", "profile", "system", "code", "use",
    "status", "reference", "type", "url", "fullUrl", "method", "intent",
    "mode", "relation", "severity", "unit", "version", "category",
})


def redact(body: bytes) -> bytes:
    """``body`` with every value but the kept ones masked (see the module docstring)."""
    if not body:
        return body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps({"redacted": f"{len(body)} bytes, not JSON"})
    return orjson.dumps(_mask(data, None))


def _mask(value: Any, key: str | None) -> Any:
    if isinstance(value, dict):
        if value.get("resourceType") == "Binary":
            return {k: (v if k in ("resourceType", "id", "contentType", "meta") else MASK)
                    for k, v in value.items()}
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if key in _KEEP or isinstance(value, bool) or value is None:
        return value
    return MASK


__all__ = ["MASK", "redact"]
