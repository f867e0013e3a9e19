"""Pure FHIR R4 knowledge: definitions, the element model, formats, FHIRPath. No I/O but
reading the packaged definitions."""
