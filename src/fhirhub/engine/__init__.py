"""Framework-free FHIR interactions: a :class:`FhirRequest` in, a :class:`FhirResponse` out."""

from fhirhub.engine.engine import Engine
from fhirhub.engine.request import FhirRequest, FhirResponse

__all__ = ["Engine", "FhirRequest", "FhirResponse"]
