"""FHIR search: parsing a query into a neutral tree, and a resource into index rows.

Nothing here knows SQL: each store compiles the tree (``fhirhub.store``)."""
