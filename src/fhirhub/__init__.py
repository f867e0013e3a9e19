"""fhirhub: an open FHIR R4 / UK Core interoperability server."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fhirhub")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

FHIR_VERSION = "4.0.1"

__all__ = ["FHIR_VERSION", "__version__"]
