"""The shared path for point records (incidents, calls): read, clean, reject, assign areas, upsert."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from sqlalchemy.engine import Engine
from tqdm import tqdm

from geo.ingest import clean
from geo.ingest.batch import (
    IngestError,
    LoadReport,
    Rejects,
    Timer,
    copy_frame,
    file_sha256,
    finish_batch,
    previous_batch,
    start_batch,
    store_rejects,
)
from geo.ingest.csvfile import raw_rows, read_source_csv
from geo.settings import locale_settings
from geo.spatial import assign_points, read_divisions, read_neighborhoods


@dataclass(frozen=True)
class PointSource:
    """How one CSV layout maps onto one PostGIS table."""

    kind: str
    table: str
    id_column: str                         # source column holding the record id
    id_field: str                          # its table column (the primary key)
    text: dict[str, str]                   # source column -> table column, copied as text
    floats: dict[str, str] = field(default_factory=dict)
    integers: dict[str, str] = field(default_factory=dict)
    times: dict[str, str] = field(default_factory=dict)
    required_time: str = ""                # source time column that must hold a valid time
    required_text: tuple[str, ...] = ()    # source columns that must not be empty
    lat: str | None = None
    lon: str | None = None
    x: str | None = None
    y: str | None = None
    city: str | None = None
    zip: str | None = None
    source_division: tuple[str, ...] = ()  # source columns naming a division (code or name)
    reset_on_change: tuple[str, ...] = ()  # table columns cleared when a record changes
    derived: dict[str, str] = field(default_factory=dict)  # table column -> SQL computed in the upsert

    @property
    def required_columns(self) -> list[str]:
        """Columns the header must contain."""
        cols = [self.id_column, self.required_time, *self.required_text]
        return [c for c in dict.fromkeys(cols) if c]


def _int_or_null(values: pd.Series) -> tuple[pd.Series, int]:
    raw = clean.strip(values)
    num = pd.to_numeric(raw, errors="coerce")
    whole = num.notna() & (num == np.floor(num)) & (num.abs() < 2**31)
    bad = int(((raw != "") & ~whole).sum())
    return num.where(whole).astype("Int64"), bad


def load_points(
    engine: Engine, source: PointSource, path: Path, *, force: bool = False, progress: bool = False
) -> LoadReport:
    """Load one CSV of point records in a single transaction and return the counts."""
    timer = Timer()
    path = Path(path)
    report = LoadReport(kind=source.kind, source_file=str(path), sha256=file_sha256(path))
    if not force:
        prior = previous_batch(engine, source.kind, report.sha256)
        if prior is not None:
            report.already_loaded_batch = prior
            return report

    steps = tqdm(total=6, desc=f"load {source.kind}", unit="step", disable=not progress, leave=False)
    npas = read_neighborhoods(engine)
    divisions = read_divisions(engine)
    if npas.empty or divisions.empty:
        raise IngestError(
            "no division or NPA polygons loaded: run `hotspots load shapes` first "
            "(calls and incidents are assigned to them)"
        )

    table = read_source_csv(path, source.required_columns)
    frame, lines = table.frame, table.lines
    report.rows_read = len(frame) + len(table.malformed)
    if table.encoding != "utf-8":
        report.notes["encoding"] = table.encoding
    rejects = Rejects()
    rejects.add(
        np.array([m[0] for m in table.malformed], dtype=np.int64),
        [m[1] for m in table.malformed],
        "malformed_row",
        [m[2] for m in table.malformed],
    )
    steps.update()

    n = len(frame)
    alive = np.ones(n, dtype=bool)

    def reject(mask: np.ndarray, reason: str, detail) -> None:
        mask = mask & alive
        if not mask.any():
            return
        details = detail[mask] if isinstance(detail, np.ndarray) else detail
        rejects.add(lines[mask], raw_rows(frame, mask), reason, details)
        alive[mask] = False

    ids = clean.strip(frame[source.id_column])
    reject((ids == "").to_numpy(), "missing_id", f"{source.id_column} is empty")

    times: dict[str, pd.Series] = {}
    for col, dest in source.times.items():
        if col not in frame.columns:
            continue
        parsed = clean.parse_times(frame[col])
        raw = clean.strip(frame[col]).to_numpy(dtype=object)
        reject(parsed.bad, "bad_date", np.array([f"{col} {v!r} is not a date" for v in raw], dtype=object))
        reject(
            parsed.implausible,
            "implausible_date",
            np.array([f"{col} {v!r} is before 1990 or in the future" for v in raw], dtype=object),
        )
        times[dest] = parsed.text
    if source.required_time:
        empty_time = (times[source.times[source.required_time]] == "").to_numpy()
        reject(empty_time, "missing_value", f"{source.required_time} is empty")
    for col in source.required_text:
        reject((clean.strip(frame[col]) == "").to_numpy(), "missing_value", f"{col} is empty")
    steps.update()

    coords = clean.coordinates(
        *(frame[c] if c and c in frame.columns else None for c in (source.lat, source.lon, source.x, source.y))
    )
    report.fixes["coordinates_from_state_plane"] = coords.from_state_plane
    report.fixes["coordinates_swapped"] = coords.swapped
    have_xy = np.isfinite(coords.lon) & np.isfinite(coords.lat)
    reject(~have_xy, "missing_coordinates", "no latitude/longitude and no State Plane X/Y")
    in_box = clean.in_box(coords.lon, coords.lat)
    coord_text = np.array([f"point ({a:.6f}, {b:.6f}) is outside Mecklenburg County" for a, b in zip(coords.lon, coords.lat)], dtype=object) if (~in_box & alive).any() else ""
    reject(~in_box, "outside_county", coord_text)

    # Areas are assigned only for points that are still candidates (spatial join is the costly step).
    npa_id = np.full(n, None, dtype=object)
    division_id = np.full(n, None, dtype=object)
    cand = np.flatnonzero(alive)
    npa_id[cand] = assign_points(coords.lon[cand], coords.lat[cand], npas.geometry, npas["npa_id"])
    steps.update()
    no_npa = alive & pd.isna(npa_id)
    reject(
        no_npa,
        "outside_county",
        np.array([f"point ({a:.6f}, {b:.6f}) is in no Neighborhood Profile Area" for a, b in zip(coords.lon, coords.lat)], dtype=object)
        if no_npa.any() else "",
    )
    cand = np.flatnonzero(alive)
    division_id[cand] = assign_points(coords.lon[cand], coords.lat[cand], divisions.geometry, divisions["division_id"])
    steps.update()

    dup, first_line = clean.first_duplicates(ids.where(alive, None), lines)
    dup &= alive & ids.notna().to_numpy()
    reject(dup, "duplicate_id", np.array([f"{source.id_column} repeats the row at line {fl}" for fl in first_line], dtype=object) if dup.any() else "")

    good = alive
    out = pd.DataFrame({source.id_field: ids[good].to_numpy()})
    for col, dest in source.text.items():
        out[dest] = clean.strip(frame[col])[good].to_numpy() if col in frame.columns else ""
    for col, dest in source.floats.items():
        if col in frame.columns:
            out[dest] = pd.to_numeric(clean.strip(frame[col]), errors="coerce")[good].to_numpy()
        else:
            out[dest] = np.nan
    for col, dest in source.integers.items():
        if col in frame.columns:
            values, bad = _int_or_null(frame[col])
            out[dest] = values[good].to_numpy()
            if bad:
                report.fixes[f"{col.lower()}_not_a_number_cleared"] = bad
        else:
            out[dest] = pd.array([pd.NA] * good.sum(), dtype="Int64")
    for dest, values in times.items():
        out[dest] = values[good].to_numpy()
    if source.city and source.city in frame.columns:
        city, changed = clean.normalise_city(frame[source.city])
        out[source.text[source.city]] = city[good].to_numpy()
        report.fixes["city_name_normalised"] = int((city[good] != clean.strip(frame[source.city])[good]).sum())
    if source.zip and source.zip in frame.columns:
        zips, not_zip = clean.clean_zip(frame[source.zip])
        out[source.text[source.zip]] = zips[good].to_numpy()
        report.fixes["zip_not_a_zip_cleared"] = int(((zips == "") & (clean.strip(frame[source.zip]) != ""))[good].sum())
        report.notes["zip_missing"] = int((zips[good] == "").sum())

    # Empty text and times are NULL in the tables, not ''.
    for dest in [*source.text.values(), *times]:
        out[dest] = out[dest].where(out[dest] != "", None)
    out["npa_id"] = pd.array(npa_id[good], dtype="Int64")
    out["division_id"] = division_id[good]
    points = shapely.set_srid(shapely.points(coords.lon[good], coords.lat[good]), 4326)
    out["geom"] = shapely.to_wkb(points, hex=True, include_srid=True)
    # The hash covers the source cells, so a reload updates a record only when its source changed.
    out["row_hash"] = pd.util.hash_pandas_object(frame.loc[good], index=False).to_numpy().view(np.int64)

    divisions_by_name = dict(zip(divisions["short_name"], divisions["division_id"]))
    if source.source_division:
        src = pd.Series([""] * n)
        for col in source.source_division:
            if col in frame.columns:
                code = clean.division_code(frame[col], divisions_by_name)
                src = src.where(src != "", code)
        src_good = src[good].to_numpy()
        assigned = out["division_id"].to_numpy()
        known = (src_good != "") & (src_good != "?")
        report.notes["division_disagreements"] = int((known & (src_good != assigned)).sum())
        report.notes["source_division_unrecognised"] = int((src_good == "?").sum())
    report.notes["outside_cmpd_divisions"] = int(pd.isna(out["division_id"]).sum())
    steps.update()

    report.fixes = +report.fixes  # drop zero counts
    _write(engine, source, report, out, rejects, timer)
    steps.update()
    steps.close()
    return report


def _write(
    engine: Engine, source: PointSource, report: LoadReport, out: pd.DataFrame, rejects: Rejects, timer: Timer
) -> None:
    """Upsert the clean rows and store the rejects, all in one transaction."""
    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        out["batch_id"] = report.batch_id
        tz = locale_settings().timezone
        conn.exec_driver_sql("SELECT set_config('TimeZone', %s, true)", (tz,))
        cols = list(out.columns)
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE stage_points ON COMMIT DROP AS SELECT {', '.join(cols)} FROM {source.table} WITH NO DATA"
        )
        copy_frame(conn, "stage_points", out)
        insert_cols = cols + list(source.derived)
        select_exprs = cols + list(source.derived.values())
        updates = [f"{c} = EXCLUDED.{c}" for c in insert_cols if c != source.id_field]
        updates += [f"{c} = NULL" for c in source.reset_on_change]
        inserted, updated = conn.exec_driver_sql(
            f"""
            WITH up AS (
                INSERT INTO {source.table} AS t ({', '.join(insert_cols)})
                SELECT {', '.join(select_exprs)} FROM stage_points
                ON CONFLICT ({source.id_field}) DO UPDATE SET {', '.join(updates)}
                WHERE t.row_hash IS DISTINCT FROM EXCLUDED.row_hash
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
            """
        ).one()
        report.inserted, report.updated = int(inserted), int(updated)
        report.unchanged = len(out) - report.inserted - report.updated
        store_rejects(conn, report, rejects)
        report.seconds = timer.elapsed
        finish_batch(conn, report)
