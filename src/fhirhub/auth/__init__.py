"""Authentication and authorisation (docs/security.md, docs/adr/0013-auth.md).

Who is calling (:mod:`.authenticator`, from a bearer token: one this server issued at its
token endpoint, :mod:`.token_endpoint`, or a trusted identity provider's, :mod:`.issuers`),
and what they may do (:mod:`.scopes`, :mod:`.principal`). The engine enforces it on
every interaction (:mod:`fhirhub.engine.guard`); this package knows nothing of FHIR
interactions.
"""

from fhirhub.auth.authenticator import Authenticator
from fhirhub.auth.principal import UNCHECKED, Principal
from fhirhub.auth.scopes import Grants, Scope, ScopeError, parse_scopes

__all__ = ["UNCHECKED", "Authenticator", "Grants", "Principal", "Scope", "ScopeError",
           "parse_scopes"]
