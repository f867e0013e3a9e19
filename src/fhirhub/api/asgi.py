"""The ASGI entry point uvicorn imports (``fhirhub.api.asgi:app``, a factory), so that every
worker process builds its own engine and database connections from the settings."""

from __future__ import annotations

import gc
import sys

from fhirhub.api.app import FhirApp, create_app
from fhirhub.config import Settings


def app() -> FhirApp:
    application = create_app(Settings.from_env())
    # The definitions are loaded now and live as long as the process: move them out of the
    # garbage collector's sight, which makes every later collection much cheaper.
    gc.freeze()
    # A writer holding the database lock must not wait long for the GIL behind threads
    # doing CPU work: hand the GIL over more often than the default 5 ms.
    sys.setswitchinterval(0.0005)
    return application


__all__ = ["app"]
