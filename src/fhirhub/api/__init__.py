"""The ASGI adapter: HTTP <-> FhirRequest/FhirResponse, nothing else."""

from fhirhub.api.app import create_app

__all__ = ["create_app"]
