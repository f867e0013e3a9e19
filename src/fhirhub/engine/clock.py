"""Time as FHIR writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime


def now_instant() -> str:
    """Now as a FHIR instant, fixed width, microseconds, UTC: 2026-11-24T05:40:00.123456Z."""
    # isoformat is several times faster than strftime; with a UTC datetime and
    # microseconds it is fixed width, "+00:00" standing for the "Z".
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def instant_ago(seconds: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def http_date(instant: str) -> str:
    """An instant as an HTTP date (Last-Modified)."""
    return format_datetime(parse_instant(instant).astimezone(UTC), usegmt=True)


__all__ = ["http_date", "instant_ago", "now_instant", "parse_instant"]
