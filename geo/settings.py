"""Settings read from the environment, one small class per concern."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """Where the PostGIS database is: an external `DATABASE_URL` or the embedded cluster."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    var_dir: Path = Field(default=Path("var"), alias="HOTSPOTS_VAR_DIR")
    statement_timeout_ms: int = Field(default=0, alias="HOTSPOTS_STATEMENT_TIMEOUT_MS")

    @property
    def embedded_dir(self) -> Path:
        """Directory of the private PostgreSQL cluster used when DATABASE_URL is unset."""
        return self.var_dir / "pg"


class DataSettings(BaseSettings):
    """Where the reference data (division and NPA layers, CMPD counts) lives."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    data_dir: Path = Field(default=Path("data/shapes"), alias="HOTSPOTS_DATA_DIR")
    var_dir: Path = Field(default=Path("var"), alias="HOTSPOTS_VAR_DIR")

    @property
    def demo_dir(self) -> Path:
        """Where generated demo CSVs are written."""
        return self.var_dir / "demo"


class LocaleSettings(BaseSettings):
    """How local wall-clock times in source files are read."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    # CMPD records local Eastern time; timestamps without an offset are read in this zone.
    timezone: str = Field(default="America/New_York", alias="HOTSPOTS_TIMEZONE")


def database_settings() -> DatabaseSettings:
    """Database settings from the current environment."""
    return DatabaseSettings()


def data_settings() -> DataSettings:
    """Data-directory settings from the current environment."""
    return DataSettings()


def locale_settings() -> LocaleSettings:
    """Time-zone settings from the current environment."""
    return LocaleSettings()
