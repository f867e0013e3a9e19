"""Typed, frozen settings: the only reader of ``os.environ`` in fhirhub.

Every setting can come from an environment variable ``FHIRHUB_<NAME>`` (upper case) or be
given explicitly (the CLI does that for its options). A bad value raises
:class:`ConfigError` naming the variable and what it accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "FHIRHUB_"


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///data/fhirhub.sqlite3"
    """Where resources live: ``sqlite:///relative/path``, ``sqlite:////abs/path`` or a
    ``postgresql://`` URL (libpq syntax)."""

    host: str = "127.0.0.1"
    """Address the HTTP server listens on."""

    port: int = 8080
    """Port the HTTP server listens on."""

    base_url: str = ""
    """Public base URL of the FHIR endpoint, used in ``Location`` and Bundle links. Empty
    means derive it from the request (``http://host:port/fhir``)."""

    workers: int = 1
    """Server processes. Each opens its own database connections."""

    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted; bigger bodies get 413."""

    default_page_size: int = 20
    """``_count`` used by searches and history when the caller gives none."""

    max_page_size: int = 1000
    """Largest ``_count`` honoured; larger values are reduced to it."""

    idempotency_window_seconds: int = 24 * 3600
    """How long a POST's ``X-Request-ID`` is remembered so that a retry returns the original
    response instead of creating again."""

    pg_pool_size: int = 16
    """Connections per process in the PostgreSQL pool."""

    sqlite_busy_timeout_ms: int = 10_000
    """How long a SQLite writer waits for the write lock before answering 503."""

    log_level: str = "info"
    """Server log level: debug, info, warning or error."""

    required_profiles: str = ""
    """Profiles every resource of a type must conform to, as ``Type=url[,url];Type=url``,
    e.g. ``Patient=https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient``. Checked on
    every write, beside the base definition and the profiles a resource claims."""

    unknown_profiles: str = "error"
    """What a ``meta.profile`` this server does not know is: ``error`` (the write is
    refused) or ``warning`` (the write goes ahead, the profile unchecked)."""

    unknown_extensions: str = "warning"
    """What an extension whose definition this server does not know is: ``warning`` (kept,
    its content unchecked) or ``error`` (refused, as the HL7 reference validator does by
    default). Unknown modifier extensions are always refused. Register an extension's
    StructureDefinition on the server to have it checked."""

    load_definitions: bool = True
    """Load the packaged conformance resources (R4 and UK Core StructureDefinitions,
    ValueSets, CodeSystems, ConceptMaps, SearchParameters) into the database at start-up, so
    that they can be read and searched like any resource. Done once per database."""

    audit_bodies: str = "off"
    """Whether the audit log keeps the request and response bodies beside each record
    (their SHA-256 digests are always kept): ``off``, ``redacted`` (the JSON's shape, ids,
    codes and references; every other value masked) or ``full``."""

    audit_body_retention_days: int = 30
    """How long kept bodies stay before they are purged (the records themselves stay)."""

    audit_signing_key: str = ""
    """PEM file of the Ed25519 private key that signs the audit log's checkpoints. Empty
    means ``<database file>.audit-key.pem`` beside a SQLite database, or
    ``data/audit-signing-key.pem`` for PostgreSQL; a missing file is created at first
    start (keep it off the database host, or back it up: it proves the log's integrity)."""

    audit_checkpoint_seconds: int = 60
    """How often each server process signs a checkpoint of the audit chains' heads."""

    auth: str = "on"
    """``on``: every request but the public discovery ones (``/metadata``,
    ``/.well-known/smart-configuration``, the token endpoint and its JWK Set) needs a
    bearer token, and is limited to what the token's scopes allow (docs/security.md).
    ``off``: no checks at all, for local development and a sandbox only; the server then
    says so at start-up, in an ``X-Fhirhub-Auth: off`` header on every response, and in
    its CapabilityStatement."""

    auth_signing_key: str = ""
    """PEM file of the ECDSA P-256 key that signs the access tokens this server issues.
    Empty means ``<database file>.auth-key.pem`` beside a SQLite database, or
    ``data/auth-signing-key.pem`` for PostgreSQL; created at first start. Every server
    process of a deployment must read the same file."""

    auth_token_seconds: int = 300
    """Lifetime of the access tokens the token endpoint issues."""

    auth_assertion_max_seconds: int = 300
    """How far ahead of now a client assertion's ``exp`` may be (SMART: 5 minutes)."""

    auth_clock_skew_seconds: int = 30
    """Clock difference tolerated when checking ``exp``, ``nbf`` and ``iat``."""

    auth_jwks_urls: str = ""
    """The JWKS URLs clients may register, comma-separated: a URL is allowed when it
    equals an entry, or starts with an entry that ends in ``/``. Empty: clients must
    register their keys inline."""

    auth_issuers: str = ""
    """JSON file of the trusted OpenID Connect issuers whose user tokens are accepted
    (NHS login for patients, CIS2 for staff): issuer, audience, keys, claim mapping and
    the scopes their users get (docs/security.md). Empty: none."""

    @property
    def audit_key_path(self) -> Path:
        """Where the audit signing key is (see :attr:`audit_signing_key`)."""
        return self._key_path(self.audit_signing_key, "audit-key", "audit-signing-key")

    @property
    def auth_key_path(self) -> Path:
        """Where the access-token signing key is (see :attr:`auth_signing_key`)."""
        return self._key_path(self.auth_signing_key, "auth-key", "auth-signing-key")

    def _key_path(self, given: str, beside: str, default: str) -> Path:
        if given:
            return Path(given)
        if self.backend == "sqlite":
            path = self.database_url.removeprefix("sqlite://")
            path = path[1:] if path.startswith("/") else path
            if path and path != ":memory:":
                return Path(f"{path}.{beside}.pem")
        return Path(f"data/{default}.pem")

    @property
    def jwks_url_allowlist(self) -> tuple[str, ...]:
        """:attr:`auth_jwks_urls` as a tuple."""
        return tuple(u.strip() for u in self.auth_jwks_urls.split(",") if u.strip())

    @property
    def profile_requirements(self) -> dict[str, tuple[str, ...]]:
        """:attr:`required_profiles` as a mapping from resource type to profile URLs."""
        found: dict[str, tuple[str, ...]] = {}
        for part in self.required_profiles.split(";"):
            if not part.strip():
                continue
            rtype, _, urls = part.partition("=")
            found[rtype.strip()] = tuple(u.strip() for u in urls.split(",") if u.strip())
        return found

    @property
    def backend(self) -> str:
        return "postgresql" if self.database_url.startswith(("postgresql:", "postgres:")) else "sqlite"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``FHIRHUB_*`` variables, then explicit overrides (not None)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = _coerce(key, env[key], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def with_(self, **changes: Any) -> Settings:
        new = replace(self, **changes)
        new.check()
        return new

    def check(self) -> None:
        if not self.database_url.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise ConfigError(
                f"{ENV_PREFIX}DATABASE_URL: {self.database_url!r} is neither a sqlite:/// path "
                "nor a postgresql:// URL"
            )
        positive = (
            "port", "workers", "max_body_bytes", "default_page_size", "max_page_size",
            "pg_pool_size", "sqlite_busy_timeout_ms", "idempotency_window_seconds",
            "audit_body_retention_days", "audit_checkpoint_seconds", "auth_token_seconds",
            "auth_assertion_max_seconds",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be a positive whole number")
        if self.port > 65535:
            raise ConfigError(f"{ENV_PREFIX}PORT must be a TCP port, 1 to 65535")
        if self.default_page_size > self.max_page_size:
            raise ConfigError(
                f"{ENV_PREFIX}DEFAULT_PAGE_SIZE ({self.default_page_size}) is larger than "
                f"{ENV_PREFIX}MAX_PAGE_SIZE ({self.max_page_size})"
            )
        for part in self.required_profiles.split(";"):
            rtype, equals, urls = part.partition("=")
            if part.strip() and (not equals or not re.fullmatch(r"[A-Z][A-Za-z]+", rtype.strip())
                                 or not urls.strip()):
                raise ConfigError(f"{ENV_PREFIX}REQUIRED_PROFILES: {part.strip()!r} is not "
                                  "Type=profile-url[,profile-url]")
        if self.unknown_profiles not in ("error", "warning"):
            raise ConfigError(f"{ENV_PREFIX}UNKNOWN_PROFILES must be error or warning")
        if self.unknown_extensions not in ("error", "warning"):
            raise ConfigError(f"{ENV_PREFIX}UNKNOWN_EXTENSIONS must be error or warning")
        if self.audit_bodies not in ("off", "redacted", "full"):
            raise ConfigError(f"{ENV_PREFIX}AUDIT_BODIES must be off, redacted or full")
        if self.auth not in ("on", "off"):
            raise ConfigError(f"{ENV_PREFIX}AUTH must be on or off")
        if self.auth_clock_skew_seconds < 0 or self.auth_clock_skew_seconds > 300:
            raise ConfigError(f"{ENV_PREFIX}AUTH_CLOCK_SKEW_SECONDS must be 0 to 300")
        for url in self.jwks_url_allowlist:
            if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
                raise ConfigError(f"{ENV_PREFIX}AUTH_JWKS_URLS: {url!r} is not an https:// "
                                  "URL (plain http is allowed only on this machine)")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{ENV_PREFIX}LOG_LEVEL must be debug, info, warning or error")


_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@|(password=)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with any password in a database URL or connection string masked."""
    return _PASSWORD.sub(lambda m: (m.group(1) or m.group(2)) + "***" + ("@" if m.group(1) else ""),
                         text)


def _coerce(key: str, raw: str, kind: Any) -> Any:
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not a whole number") from None
    if kind in (bool, "bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: {raw!r} is not true or false")
    return raw


__all__ = ["ConfigError", "Settings", "redact"]
