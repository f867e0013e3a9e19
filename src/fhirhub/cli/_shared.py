"""What the subcommands share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fhirhub.config import ConfigError, Settings

if TYPE_CHECKING:
    from fhirhub.store import Store


def settings_and_store(database_url: str | None) -> tuple[Settings, Store]:
    """The settings (``--db`` over ``FHIRHUB_*``) and the store they name."""
    from fhirhub.store import open_store

    try:
        settings = Settings.from_env(database_url=database_url)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    return settings, open_store(settings)


__all__ = ["settings_and_store"]
