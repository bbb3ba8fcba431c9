"""The reference data directory (HOTSPOTS_DATA_DIR): its expected layout and loading it whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from geo.ingest.batch import IngestError, LoadReport
from geo.ingest.counts import OFFENSES, load_monthly_counts
from geo.ingest.shapes import Region, load_divisions, load_neighborhoods

# Relative paths inside a data directory; the same layout as the shared cmpd folder.
LAYOUT = {
    "divisions": ("divisions/CMPD_Police_Divisions.shp", "CMPD Police Divisions (shapefile; any CRS)"),
    "npa": ("npa/npa.geojson", "Neighborhood Profile Areas (GeoJSON, property `id`)"),
    "population": ("npa_metrics/population.csv", "Quality of Life population per NPA (id,y_YYYY,...)"),
    "violent_crimes": ("npa_metrics/violent_crimes.csv", "Quality of Life violent crimes per NPA"),
    "property_crimes": ("npa_metrics/property_crimes.csv", "Quality of Life property crimes per NPA"),
    "disorder_calls": ("npa_metrics/disorder_calls.csv", "Quality of Life disorder calls per NPA"),
    "offenses": ("offenses/Violent_Crime_Offenses.csv", "CMPD Violent Crime Offenses (monthly counts)"),
}


@dataclass(frozen=True)
class DataDir:
    """Paths of the reference files inside one data directory."""

    root: Path

    def path(self, key: str) -> Path:
        """Absolute path of one reference file (see LAYOUT)."""
        return self.root / LAYOUT[key][0]

    def missing(self, keys: list[str] | None = None) -> list[str]:
        """Keys whose files are absent."""
        keys = keys or list(LAYOUT)
        return [k for k in keys if not self.path(k).is_file()]

    def require(self, keys: list[str] | None = None) -> None:
        """Raise an IngestError that lists exactly what is missing and where to get it."""
        gone = self.missing(keys)
        if not gone:
            return
        lines = [f"  {self.root / LAYOUT[k][0]}  ({LAYOUT[k][1]})" for k in gone]
        where = "does not exist" if not self.root.exists() else "is missing files"
        raise IngestError(
            f"the data directory {self.root} {where}:\n" + "\n".join(lines) + "\n"
            "Set HOTSPOTS_DATA_DIR to a folder with this layout; data/shapes/README.md says where to "
            "download each file from the City of Charlotte and Mecklenburg County open-data portals."
        )


def load_shapes(engine: Engine, data: DataDir, *, force: bool = False, region: Region | None = None) -> list[LoadReport]:
    """Load the division polygons and the NPA polygons with population from a data directory (each must
    lie in `region`; None: HOTSPOTS_REGION_BBOX)."""
    data.require(["divisions", "npa", "population"])
    return [
        load_divisions(engine, data.path("divisions"), force=force, region=region),
        load_neighborhoods(engine, data.path("npa"), data.path("population"), force=force, region=region),
    ]


def load_reference(engine: Engine, data: DataDir, *, force: bool = False, region: Region | None = None) -> list[LoadReport]:
    """Load the polygons (lying in `region`) and the violent offense counts from a data directory."""
    data.require(["divisions", "npa", "population", "offenses"])
    return [*load_shapes(engine, data, force=force, region=region), load_monthly_counts(engine, OFFENSES, data.path("offenses"), force=force)]
