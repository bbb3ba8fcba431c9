"""Settings read from the environment, one small class per concern."""

from __future__ import annotations

import os
from contextvars import ContextVar, Token
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def checkout_root() -> Path | None:
    """The source checkout this package runs from (an editable install), or None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "geo").is_dir() else None


def default_var_dir() -> Path:
    """Where the private cluster, models and demo files live when HOTSPOTS_VAR_DIR is unset: the
    checkout's var/ (the same from any working directory), else the user's data folder."""
    root = checkout_root()
    if root is not None:
        return root / "var"
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "cmpd-hotspots"


def default_data_dir() -> Path:
    """The reference data when HOTSPOTS_DATA_DIR is unset: as the Makefile finds it, the shared CMPD
    data beside the checkout, else the checkout's data/shapes."""
    root = checkout_root()
    if root is None:
        return Path("data/shapes")
    shared = root.parent / "shared" / "cmpd"
    return shared if (shared / "README.md").is_file() else root / "data" / "shapes"


class DatabaseSettings(BaseSettings):
    """Where the PostGIS database is: an external `DATABASE_URL` or the embedded cluster."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    var_dir: Path = Field(default_factory=default_var_dir, alias="HOTSPOTS_VAR_DIR")
    statement_timeout_ms: int = Field(default=0, alias="HOTSPOTS_STATEMENT_TIMEOUT_MS")

    @property
    def embedded_dir(self) -> Path:
        """Directory of the private PostgreSQL cluster used when DATABASE_URL is unset."""
        return self.var_dir / "pg"


class DataSettings(BaseSettings):
    """Where the reference data (division and NPA layers, CMPD counts) lives."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir, alias="HOTSPOTS_DATA_DIR")
    var_dir: Path = Field(default_factory=default_var_dir, alias="HOTSPOTS_VAR_DIR")
    # West,south,east,north (WGS84) that division and NPA layers must lie within once reprojected:
    # a layer outside it carries a CRS its coordinates are not in. The default is a generous box
    # around Charlotte; a deployment for another region widens or moves it.
    region_bbox: str = Field(default="-82,34.5,-79.5,36.5", alias="HOTSPOTS_REGION_BBOX")

    @property
    def region_box(self) -> tuple[float, float, float, float]:
        """`region_bbox` as numbers; ValueError naming the setting when it is not four ordered numbers."""
        try:
            west, south, east, north = (float(v) for v in self.region_bbox.split(","))
        except ValueError:
            raise ValueError(f"HOTSPOTS_REGION_BBOX={self.region_bbox!r}: expected west,south,east,north") from None
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise ValueError(f"HOTSPOTS_REGION_BBOX={self.region_bbox!r}: expected west < east within -180..180 "
                             "and south < north within -90..90")
        return west, south, east, north

    @property
    def demo_dir(self) -> Path:
        """Where generated demo CSVs are written."""
        return self.var_dir / "demo"


class LocaleSettings(BaseSettings):
    """How local wall-clock times in source files are read."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    # CMPD records local Eastern time; timestamps without an offset are read in this zone.
    timezone: str = Field(default="America/New_York", alias="HOTSPOTS_TIMEZONE")


class ServerSettings(BaseSettings):
    """How `hotspots serve` (and gunicorn in docker compose) runs the web app."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    host: str = Field(default="127.0.0.1", alias="HOTSPOTS_HOST")
    port: int = Field(default=8000, alias="HOTSPOTS_PORT")
    workers: int = Field(default=2, alias="HOTSPOTS_WORKERS")
    threads: int = Field(default=8, alias="HOTSPOTS_THREADS")
    # An XYZ raster basemap for the map page, e.g. a city tile server; empty: data layers only
    # (the machines may have no internet, and the data layers never need one).
    basemap_url: str = Field(default="", alias="HOTSPOTS_BASEMAP_URL")
    basemap_attribution: str = Field(default="", alias="HOTSPOTS_BASEMAP_ATTRIBUTION")
    # Write tokens, comma-separated entries NAME:SHA256HEX[:EXPIRES] (`hotspots token new` makes one).
    # Only hashes are configured, so the environment never holds a usable secret.
    api_tokens: str = Field(default="", alias="HOTSPOTS_API_TOKENS")
    # When true, read endpoints (map data, items, tiles, exports) need a token as well.
    require_read_token: bool = Field(default=False, alias="HOTSPOTS_REQUIRE_READ_TOKEN")
    # Every query a request runs is cut off after this long (PostgreSQL statement_timeout).
    request_timeout_ms: int = Field(default=15000, alias="HOTSPOTS_REQUEST_TIMEOUT_MS")
    tile_cache_mb: int = Field(default=256, alias="HOTSPOTS_TILE_CACHE_MB")
    # POST /api/calls bodies above this size get 413.
    max_body_bytes: int = Field(default=5_000_000, alias="HOTSPOTS_MAX_BODY_BYTES")
    # OGC items: larger `limit` values are clamped to this (QGIS asks for 1,000; GDAL more).
    items_max_limit: int = Field(default=10_000, alias="HOTSPOTS_ITEMS_MAX_LIMIT")


def machine_cpus() -> int:
    """CPUs this process may run on (the container's or affinity mask's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


class AdmissionSettings(BaseSettings):
    """Caps on heavy requests (geo/admission.py): per kind, the slots that may run at once across every
    worker, the requests that may wait for one, and the share one client (token or address) may hold.

    A cap of 0 turns admission off for that kind. Defaults follow the machine's CPUs: on 2 cores, 1
    export, 1 report, 4 uncached low-zoom tiles, 4 period statistics and 2 live-ingest batches at once.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    # A full export keeps a PostgreSQL backend and a server thread busy for its whole length (about a
    # core between them): half the CPUs leaves the rest for everyone else (bench/RESULTS.md).
    exports_cap: int = Field(default_factory=lambda: max(1, machine_cpus() // 2), ge=0,
                             alias="HOTSPOTS_EXPORTS_CAP")
    exports_queue: int = Field(default=2, ge=0, alias="HOTSPOTS_EXPORTS_QUEUE")
    exports_per_client: int = Field(default=1, ge=0, alias="HOTSPOTS_EXPORTS_PER_CLIENT")
    reports_cap: int = Field(default_factory=lambda: max(1, machine_cpus() // 2), ge=0, alias="HOTSPOTS_REPORTS_CAP")
    reports_queue: int = Field(default=2, ge=0, alias="HOTSPOTS_REPORTS_QUEUE")
    reports_per_client: int = Field(default=1, ge=0, alias="HOTSPOTS_REPORTS_PER_CLIENT")
    # A browser opening the map asks for up to 6 tiles at once (its connections per host): its share
    # must hold them, or the map shows holes.
    tiles_cap: int = Field(default_factory=lambda: 2 * machine_cpus(), ge=0, alias="HOTSPOTS_TILES_CAP")
    tiles_queue: int = Field(default=16, ge=0, alias="HOTSPOTS_TILES_QUEUE")
    tiles_per_client: int = Field(default=8, ge=0, alias="HOTSPOTS_TILES_PER_CLIENT")
    stats_cap: int = Field(default_factory=lambda: 2 * machine_cpus(), ge=0, alias="HOTSPOTS_STATS_CAP")
    stats_queue: int = Field(default=8, ge=0, alias="HOTSPOTS_STATS_QUEUE")
    stats_per_client: int = Field(default=8, ge=0, alias="HOTSPOTS_STATS_PER_CLIENT")
    ingest_cap: int = Field(default_factory=machine_cpus, ge=0, alias="HOTSPOTS_INGEST_CAP")
    ingest_queue: int = Field(default=4, ge=0, alias="HOTSPOTS_INGEST_QUEUE")
    ingest_per_client: int = Field(default=2, ge=0, alias="HOTSPOTS_INGEST_PER_CLIENT")
    # How long a request may wait for a slot before it is answered 503.
    queue_wait_s: float = Field(default=10.0, ge=0, alias="HOTSPOTS_QUEUE_WAIT_S")
    # Uncached vector and heat tiles below this zoom take a tiles slot (a z10 tile aggregates a
    # quarter of the county: 150-500 ms on 1M calls; a z12 one about 10 ms).
    heavy_tile_zoom: int = Field(default=12, ge=0, le=23, alias="HOTSPOTS_HEAVY_TILE_ZOOM")
    # Heavy requests (running or waiting) one worker process holds at once; 0: HOTSPOTS_THREADS - 2,
    # so every worker keeps threads free for /health, the map page, static files and cached tiles.
    heavy_threads: int = Field(default=0, ge=0, alias="HOTSPOTS_HEAVY_THREADS")
    threads: int = Field(default=8, ge=1, alias="HOTSPOTS_THREADS")
    # While it runs, admitted heavy work has its server thread and its PostgreSQL backends at this
    # nice value, so the OS hands the CPUs to light requests first (0: leave priorities alone).
    heavy_nice: int = Field(default=10, ge=0, le=19, alias="HOTSPOTS_HEAVY_NICE")
    # How long a thread holding the interpreter lock keeps it when another thread wants it: a light
    # request needs it a dozen times, so Python's 5 ms default costs tens of ms behind an export
    # (0: leave Python's default).
    switch_interval_ms: float = Field(default=1.0, ge=0, le=100, alias="HOTSPOTS_SWITCH_INTERVAL_MS")

    @property
    def heavy_threads_per_worker(self) -> int:
        """`heavy_threads`, or the worker's threads less two kept for light requests (at least 1)."""
        return self.heavy_threads or max(1, self.threads - 2)


def database_settings() -> DatabaseSettings:
    """Database settings from the current environment."""
    return DatabaseSettings()


def data_settings() -> DataSettings:
    """Data-directory settings from the current environment."""
    return DataSettings()


# The time zone an edge (a web app for its requests) set for the work it runs; None: the environment's.
# Library code that is not yet given the zone as a parameter reads it through locale_settings(), so
# an app created with another zone is honoured in every module its requests reach.
_ZONE: ContextVar[str | None] = ContextVar("hotspots_timezone", default=None)


def checked_zone(tz: str) -> str:
    """`tz` when it names a time zone; ValueError naming it otherwise."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"time zone {tz!r} is unknown; use an IANA name such as America/New_York") from None
    return tz


def enter_zone(tz: str) -> Token:
    """Make `tz` the local time zone of the current context until `leave_zone(token)`."""
    return _ZONE.set(checked_zone(tz))


def leave_zone(token: Token) -> None:
    """Restore the time zone that was in force before `enter_zone` returned `token`."""
    _ZONE.reset(token)


def locale_settings() -> LocaleSettings:
    """Time-zone settings: the zone an edge set for the current work (enter_zone), else the environment's."""
    zone = _ZONE.get()
    return LocaleSettings(HOTSPOTS_TIMEZONE=zone) if zone else LocaleSettings()


def zone_or_configured(tz: str | None) -> str:
    """`tz` when the caller passed one, else the zone in force (enter_zone) or HOTSPOTS_TIMEZONE."""
    return tz or locale_settings().timezone


def server_settings() -> ServerSettings:
    """Web-server settings from the current environment."""
    return ServerSettings()


def admission_settings() -> AdmissionSettings:
    """Heavy-work caps from the current environment."""
    return AdmissionSettings()


class ArcGISSettings(BaseSettings):
    """Where `hotspots sync` reads the City's ArcGIS REST feature layers, and how patiently."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    # A FeatureServer/MapServer layer URL (…/FeatureServer/0) or its …/query endpoint; empty: not configured.
    incidents_url: str = Field(default="", alias="HOTSPOTS_ARCGIS_INCIDENTS_URL")
    calls_url: str = Field(default="", alias="HOTSPOTS_ARCGIS_CALLS_URL")
    # CMPD's Homicide layer (one feature per victim), incremental on DATE_REPORTED like incidents.
    homicides_url: str = Field(default="", alias="HOTSPOTS_ARCGIS_HOMICIDES_URL")
    # Records per request; servers cap it at their maxRecordCount (often 1,000 or 2,000) and say so.
    page_size: int = Field(default=1000, alias="HOTSPOTS_ARCGIS_PAGE_SIZE")
    timeout_s: float = Field(default=60.0, alias="HOTSPOTS_ARCGIS_TIMEOUT_S")
    retries: int = Field(default=5, alias="HOTSPOTS_ARCGIS_RETRIES")
    backoff_s: float = Field(default=2.0, alias="HOTSPOTS_ARCGIS_BACKOFF_S")
    # Records reported this long before the high-water mark are read again, so late edits are caught.
    overlap_hours: float = Field(default=72.0, alias="HOTSPOTS_ARCGIS_OVERLAP_HOURS")
    # First sync only: records reported on or after this date (YYYY-MM-DD); empty: the whole layer.
    since: str = Field(default="", alias="HOTSPOTS_ARCGIS_SINCE")


def arcgis_settings() -> ArcGISSettings:
    """ArcGIS feed settings from the current environment."""
    return ArcGISSettings()
