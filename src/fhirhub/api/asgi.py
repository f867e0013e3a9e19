"""The ASGI entry point uvicorn imports (``fhirhub.api.asgi:app``, a factory), so that every
worker process builds its own engine and database connections from the settings."""

from __future__ import annotations

import gc

from starlette.applications import Starlette

from fhirhub.api.app import create_app
from fhirhub.config import Settings


def app() -> Starlette:
    application = create_app(Settings.from_env())
    # The definitions are loaded now and live as long as the process: move them out of the
    # garbage collector's sight, which makes every later collection much cheaper.
    gc.freeze()
    return application


__all__ = ["app"]
