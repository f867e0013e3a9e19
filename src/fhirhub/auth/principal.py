"""Who is calling, as a verified token says: :class:`Principal`.

Three kinds of caller reach the FHIR API, matching IM1's use cases:

* ``system``: an application on its own account (SMART Backend Services, IM1 Bulk), with
  ``system/`` scopes;
* ``patient``: a person signed in with an NHS login style provider (IM1 Patient), bound to
  their NHS number and limited to their own compartment;
* ``staff``: a health or care professional signed in with a CIS2 style provider (IM1
  Practice), with a role and an organisation (ODS code), limited by ``user/`` scopes.

When authorisation is switched off (``FHIRHUB_AUTH=off``, development and sandbox only)
every request is made by :data:`UNCHECKED`, which may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirhub.auth.scopes import Grants, Scope

KINDS = ("system", "patient", "staff", "unchecked")


@dataclass(frozen=True)
class Principal:
    kind: str  # system | patient | staff | unchecked
    grants: Grants
    client: str | None = None  # the client application's id
    user: str | None = None  # the person (the token's subject), for patients and staff
    role: str | None = None  # staff: the role code
    organization: str | None = None  # staff: the ODS code of their organisation
    nhs_number: str | None = None  # patients: the NHS number the token is bound to
    issuer: str | None = None
    rate_key: str | None = None  # what the rate limit counts by
    rate_limit: int = 0  # requests per minute; 0: no limit
    expires: int = 0  # the token's exp (seconds since the epoch); 0: never

    @property
    def unchecked(self) -> bool:
        return self.kind == "unchecked"

    def allows(self, resource_type: str, letter: str) -> bool:
        return self.unchecked or self.grants.allows(resource_type, letter)

    def types_with(self, letters: str) -> frozenset[str] | None:
        return None if self.unchecked else self.grants.types_with(letters)


UNCHECKED = Principal("unchecked", Grants((Scope("system", "*", "cruds"),)))


def operator(user: str) -> Principal:
    """The person running a command on the server itself (``fhirhub import``): they
    hold the database, so they may do everything; the audit log names them."""
    return Principal("system", Grants((Scope("system", "*", "cruds"),)), client="fhirhub-cli",
                     user=user)


__all__ = ["KINDS", "UNCHECKED", "Principal", "operator"]
