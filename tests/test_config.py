"""Settings: one typed, frozen object read from ``FHIRHUB_*`` variables, with errors that name
the variable (README.md, "Configuration"; the base URL is the service base of
https://hl7.org/fhir/R4/http.html#root)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fhirhub.config import ConfigError, Settings


def test_defaults_without_any_variable() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.database_url, s.host, s.port, s.workers) == (
        "sqlite:///data/fhirhub.sqlite3", "127.0.0.1", 8080, 1)
    assert (s.default_page_size, s.max_page_size, s.log_level) == (20, 1000, "info")
    assert s.max_body_bytes == 16 * 1024 * 1024
    assert s.idempotency_window_seconds == 86400


def test_every_setting_is_read_from_its_fhirhub_variable() -> None:
    env = {
        "FHIRHUB_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/fhirhub",
        "FHIRHUB_HOST": "0.0.0.0",
        "FHIRHUB_PORT": "9090",
        "FHIRHUB_BASE_URL": "https://fhir.example.nhs.uk/R4",
        "FHIRHUB_WORKERS": "4",
        "FHIRHUB_MAX_BODY_BYTES": "1048576",
        "FHIRHUB_DEFAULT_PAGE_SIZE": "50",
        "FHIRHUB_MAX_PAGE_SIZE": "500",
        "FHIRHUB_IDEMPOTENCY_WINDOW_SECONDS": "3600",
        "FHIRHUB_PG_POOL_SIZE": "8",
        "FHIRHUB_SQLITE_BUSY_TIMEOUT_MS": "2500",
        "FHIRHUB_LOG_LEVEL": "debug",
    }
    s = Settings.from_env(env)
    assert s == Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/fhirhub", host="0.0.0.0", port=9090,
        base_url="https://fhir.example.nhs.uk/R4", workers=4, max_body_bytes=1048576,
        default_page_size=50, max_page_size=500, idempotency_window_seconds=3600,
        pg_pool_size=8, sqlite_busy_timeout_ms=2500, log_level="debug",
    )
    assert isinstance(s.port, int) and isinstance(s.workers, int)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Settings)])
def test_every_setting_is_documented_in_the_readme_table(name: str) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"`FHIRHUB_{name.upper()}`" in readme


def test_variables_without_the_prefix_or_in_lower_case_are_ignored() -> None:
    s = Settings.from_env({"PORT": "1", "fhirhub_port": "2", "DATABASE_URL": "mysql://x"})
    assert s.port == 8080
    assert s.database_url == Settings().database_url


def test_from_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIRHUB_PORT", "9191")
    monkeypatch.setenv("FHIRHUB_LOG_LEVEL", "warning")
    s = Settings.from_env()
    assert (s.port, s.log_level) == (9191, "warning")


def test_explicit_overrides_win_over_variables() -> None:
    s = Settings.from_env({"FHIRHUB_PORT": "9090", "FHIRHUB_WORKERS": "3"}, port=7000,
                          database_url="sqlite:////tmp/x.sqlite3")
    assert (s.port, s.workers, s.database_url) == (7000, 3, "sqlite:////tmp/x.sqlite3")


def test_overrides_that_are_none_leave_the_variable_in_force() -> None:
    # The CLI passes every option, None when the user did not give it.
    s = Settings.from_env({"FHIRHUB_PORT": "9090"}, port=None, host=None)
    assert (s.port, s.host) == (9090, "127.0.0.1")


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_with_returns_a_checked_copy() -> None:
    s = Settings()
    assert s.with_(port=9000).port == 9000 and s.port == 8080
    with pytest.raises(ConfigError, match="FHIRHUB_WORKERS"):
        s.with_(workers=0)


# -- bad values: ConfigError naming the variable ---------------------------------------------


@pytest.mark.parametrize(("env", "variable"), [
    ({"FHIRHUB_PORT": "eighty"}, "FHIRHUB_PORT"),
    ({"FHIRHUB_PORT": "80.5"}, "FHIRHUB_PORT"),
    ({"FHIRHUB_PORT": ""}, "FHIRHUB_PORT"),
    ({"FHIRHUB_WORKERS": "many"}, "FHIRHUB_WORKERS"),
    ({"FHIRHUB_MAX_BODY_BYTES": "16MiB"}, "FHIRHUB_MAX_BODY_BYTES"),
    ({"FHIRHUB_SQLITE_BUSY_TIMEOUT_MS": "10s"}, "FHIRHUB_SQLITE_BUSY_TIMEOUT_MS"),
])
def test_non_integer_value_is_refused_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith(variable)
    assert repr(env[variable]) in message
    assert "whole number" in message


@pytest.mark.parametrize(("variable", "value"), [
    ("FHIRHUB_WORKERS", "0"),
    ("FHIRHUB_WORKERS", "-2"),
    ("FHIRHUB_PORT", "0"),
    ("FHIRHUB_MAX_BODY_BYTES", "0"),
    ("FHIRHUB_DEFAULT_PAGE_SIZE", "0"),
    ("FHIRHUB_MAX_PAGE_SIZE", "-1"),
    ("FHIRHUB_PG_POOL_SIZE", "0"),
    ("FHIRHUB_SQLITE_BUSY_TIMEOUT_MS", "0"),
])
def test_zero_or_negative_counts_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} must be a positive whole number"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("url", ["mysql://root@localhost/fhir", "", "data/fhirhub.sqlite3",
                                 "http://127.0.0.1:5432/fhir", "SQLITE:///x"])
def test_bad_database_url_is_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"FHIRHUB_DATABASE_URL": url})
    assert str(caught.value).startswith("FHIRHUB_DATABASE_URL")
    assert repr(url) in str(caught.value)


def test_default_page_size_above_the_maximum_is_refused_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"FHIRHUB_DEFAULT_PAGE_SIZE": "200", "FHIRHUB_MAX_PAGE_SIZE": "100"})
    message = str(caught.value)
    assert message.startswith("FHIRHUB_DEFAULT_PAGE_SIZE")
    assert "FHIRHUB_MAX_PAGE_SIZE" in message and "200" in message and "100" in message


def test_default_page_size_equal_to_the_maximum_is_fine() -> None:
    s = Settings.from_env({"FHIRHUB_DEFAULT_PAGE_SIZE": "100", "FHIRHUB_MAX_PAGE_SIZE": "100"})
    assert s.default_page_size == s.max_page_size == 100


@pytest.mark.parametrize("level", ["verbose", "INFO", "warn", ""])
def test_bad_log_level_is_refused_naming_the_variable(level: str) -> None:
    with pytest.raises(ConfigError, match=r"^FHIRHUB_LOG_LEVEL must be debug, info, warning or error$"):
        Settings.from_env({"FHIRHUB_LOG_LEVEL": level})


def test_a_bad_override_is_refused_too() -> None:
    with pytest.raises(ConfigError, match="FHIRHUB_PORT"):
        Settings.from_env({}, port=0)


def test_config_error_is_a_value_error() -> None:
    # so callers that only know ValueError still stop on it
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(("variable", "value"), [("FHIRHUB_PORT", "70000"),
                                                 ("FHIRHUB_IDEMPOTENCY_WINDOW_SECONDS", "-5")])
def test_out_of_range_values_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


# -- backend ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "backend"), [
    ("sqlite:///data/fhirhub.sqlite3", "sqlite"),
    ("sqlite:////var/lib/fhirhub/db.sqlite3", "sqlite"),
    ("postgresql://postgres@127.0.0.1:5432/fhirhub", "postgresql"),
    ("postgres://postgres@127.0.0.1/fhirhub", "postgresql"),
])
def test_backend_follows_the_database_url_scheme(url: str, backend: str) -> None:
    assert Settings.from_env({"FHIRHUB_DATABASE_URL": url}).backend == backend
