"""The ASGI entry point uvicorn imports (``fhirhub.api.asgi:app``, a factory), so that every
worker process builds its own engine and database connections from the settings."""

from __future__ import annotations

from starlette.applications import Starlette

from fhirhub.api.app import create_app
from fhirhub.config import Settings


def app() -> Starlette:
    return create_app(Settings.from_env())


__all__ = ["app"]
