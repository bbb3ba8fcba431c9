"""Scale-out on Dask: area assignment, Gi* inputs and labelling over partitions of the calls table.

The analyses are the measures of geo.metrics; this module only swaps their reader: `DaskReader`
runs a measure's Core query on time slices of its Filter on the workers and sums the parts (each
slice counts a unit of geo.sources once: calls about one incident stay one unit across slices).

The calls are cut into half-open ranges of received_at. Each partition is read by the Dask
worker that runs its task, over its own connection opened from the database URL it is given
(never an engine or rows shipped from the client), with COPY. Only small results travel back to
the client: counts per area or grid cell, or label totals. Gi* itself runs on the client: it
needs every area's value at once, and 462 NPAs or a few thousand cells take well under a second.

The single-machine functions (geo.hotspots, geo.classify, geo.spatial) stay the reference; the
functions here return the same frames so that the CLI prints, saves and exports them alike.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import geopandas as gpd
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import models
from geo.filters import Filter, compile_driver, compile_text

# About this many calls per partition: big enough that a task's fixed costs (connection,
# scheduling, one COPY) vanish, small enough that a worker holds only a few hundred MB.
ROWS_PER_PARTITION = 250_000
MEASURES = ("labelled", "expected")


# The calls as the workers read them (an alias, so the partitions' SQL reads `c.`).
CALLS = models.calls.alias("c")


def split_time(start: datetime, end: datetime, parts: int) -> list[Filter]:
    """`parts` consecutive time slices of equal length covering [start, end) exactly, with no gaps or overlaps."""
    parts = max(1, int(parts))
    span = end - start
    bounds = [start + span * i / parts for i in range(parts)] + [end]
    # Microsecond rounding can repeat a bound when the range is tiny: drop empty slices.
    return [Filter(start=a, end=b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _in_range(part: Filter) -> list:
    # A plain received_at range: every call, date-only ones too, falls in exactly one slice.
    return [CALLS.c.received_at >= sa.literal(part.start, type_=CALLS.c.received_at.type),
            CALLS.c.received_at < sa.literal(part.end, type_=CALLS.c.received_at.type)]


def day_slices(flt: Filter, parts: int) -> list[Filter]:
    """The filter cut into about `parts` runs of whole local days: every row it selects is in exactly one.

    Whole days keep each slice's predicate the filter's own (a window that cut a day would treat
    date-only rows as geo.filters does for such windows, dropping those of the cut day).
    """
    if flt.start is None or flt.end is None or not flt.aligned_to_days():
        raise ValueError("the Dask path needs a filter of whole local days with a start and an end")
    first, days = flt.start_date, flt.days
    parts = max(1, min(int(parts), days))
    bounds = [first + timedelta(days=round(days * i / parts)) for i in range(parts + 1)]
    return [flt.with_days(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _read_select(url: str, query: sa.Select, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A Core SELECT read on the worker through COPY: compiled once for the driver, its binds passed along."""
    sql, params = compile_driver(query)
    return _read(url, sql, params, text_columns)


def calls_extent(engine: Engine) -> tuple[datetime, datetime, int] | None:
    """First and last received_at of all calls (from the index) and the planner's row estimate."""
    with engine.connect() as conn:
        first, last = conn.execute(sa.text("SELECT min(received_at), max(received_at) FROM calls")).one()
        estimate = conn.execute(sa.text("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'calls'::regclass")).scalar_one()
    if first is None:
        return None
    return first, last, int(estimate)


def _partitions_for(rows: int, workers: int) -> int:
    # At least two tasks per worker, so a slow partition does not leave the others idle.
    return max(2 * max(workers, 1), math.ceil(rows / ROWS_PER_PARTITION))


def _estimated_rows(engine: Engine, start: datetime, end: datetime) -> int:
    """The planner's estimate of calls in [start, end): no scan, good enough to size partitions."""
    with engine.connect() as conn:
        plan = conn.execute(sa.text(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM calls WHERE received_at >= :a AND received_at < :b"),
            {"a": start, "b": end}).scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])


# --- on the workers ---------------------------------------------------------------------------
_ENGINES: dict[str, Engine] = {}
_AREAS: dict[tuple, tuple] = {}
_LOCK = threading.Lock()


def worker_engine(url: str) -> Engine:
    """One engine per database URL per worker process (threads of a worker share its pool)."""
    from geo.db import make_engine

    with _LOCK:
        if url not in _ENGINES:
            # No statement timeout: a partition of an analysis may legitimately run for minutes.
            _ENGINES[url] = make_engine(url, statement_timeout_ms=0)
        return _ENGINES[url]


def _read(url: str, sql: str, params: dict, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    from geo.db import read_query_frame as _read_query

    with worker_engine(url).connect() as conn:
        return _read_query(conn, sql, params, text_columns)


def _area_indexes(url: str, version_key: tuple):
    """NPA and division indexes built once per worker (and rebuilt when the polygons' versions change)."""
    from geo.spatial import AreaIndex, read_divisions, read_neighborhoods

    key = (url, version_key)
    with _LOCK:
        cached = _AREAS.get(key)
    if cached is None:
        engine = worker_engine(url)
        npas, divisions = read_neighborhoods(engine), read_divisions(engine)
        cached = (AreaIndex(npas.geometry, npas["npa_id"]), AreaIndex(divisions.geometry, divisions["division_id"]))
        with _LOCK:
            _AREAS[key] = cached
    return cached


_ASSIGN_META = pd.DataFrame({"call_id": pd.Series(dtype=object), "npa_id": pd.Series(dtype="Int64"),
                             "division_id": pd.Series(dtype=object)})


def _assign_partition(part: Filter, url: str, version_key: tuple) -> pd.DataFrame:
    """Read one slice's call points and give each its NPA and division (the loader's AreaIndex rule)."""
    c = CALLS.c
    rows = _read_select(url, sa.select(c.call_id, sa.func.ST_X(c.geom).label("lon"), sa.func.ST_Y(c.geom).label("lat"))
                        .where(*_in_range(part)), text_columns=("call_id",))
    if rows.empty:
        return _ASSIGN_META.copy()
    npa, division = _area_indexes(url, version_key)
    lon, lat = rows["lon"].to_numpy(dtype=float), rows["lat"].to_numpy(dtype=float)
    return pd.DataFrame({
        "call_id": rows["call_id"].astype(object),
        "npa_id": pd.array(npa.lookup(lon, lat), dtype="Int64"),
        "division_id": division.lookup(lon, lat),
    })


_POINT_META = pd.DataFrame({"lon": pd.Series(dtype=float), "lat": pd.Series(dtype=float), "w": pd.Series(dtype=float)})


def _unit_points(source, flt: Filter, part: Filter) -> tuple[str, dict]:
    """The statement of one slice's counted units (geo.sources) as lon/lat and weight, compiled on the client."""
    u = source.units(flt, within=part).subquery()
    return compile_driver(sa.select(sa.func.ST_X(u.c.geom).label("lon"), sa.func.ST_Y(u.c.geom).label("lat"),
                                    u.c.w).where(u.c.geom.is_not(None)))


def _violent_point_partition(statement: tuple[str, dict], url: str) -> pd.DataFrame:
    """One slice's counted units as lon/lat with their weight (the rows geo.hotspots.source_points reads)."""
    rows = _read(url, *statement)
    return _POINT_META.copy() if rows.empty else rows.astype(float)


def _aggregate_partition(statement: tuple[str, dict], url: str, text_columns: tuple[str, ...]) -> pd.DataFrame:
    """One slice's rows of a measure's query (already grouped and summed by the database)."""
    return _read(url, *statement, text_columns=text_columns)


@dataclass(frozen=True)
class LatticeSpec:
    """What a worker needs to put projected points in Gi* cells: the grid and the cell-position table."""

    x0: float
    y0: float
    size: float
    index: np.ndarray  # (nrows, ncols) -> cell position, -1 outside the study area


def _cell_sums(points: gpd.GeoDataFrame, spec: LatticeSpec, n_cells: int) -> pd.DataFrame:
    """Sum of weights per lattice cell for one partition of projected (EPSG:2264) points."""
    values = np.zeros(n_cells)
    if len(points):
        x = points.geometry.x.to_numpy()
        y = points.geometry.y.to_numpy()
        nrows, ncols = spec.index.shape
        # The same floor rule as geo.hotspots.Grid.cell_of, so a point lands in the same cell.
        pc = np.floor((x - spec.x0) / spec.size).astype(np.int64)
        pr = np.floor((y - spec.y0) / spec.size).astype(np.int64)
        ok = (pc >= 0) & (pc < ncols) & (pr >= 0) & (pr < nrows)
        target = spec.index[pr[ok], pc[ok]]
        inside = target >= 0
        np.add.at(values, target[inside], points["w"].to_numpy(dtype=float)[ok][inside])
    return pd.DataFrame({"cell": np.arange(n_cells), "value": values})


def _label_partition(part: Filter, url: str, model, relabel: bool) -> tuple[int, int]:
    """Score one slice's calls that need it and write them back (geo.classify.label_selected); returns (scored, violent)."""
    from geo.classify import label_selected

    c = CALLS.c
    todo = c.model_version.is_distinct_from(model.version) if relabel else c.model_version.is_(None)
    # label_selected takes a condition with SQLAlchemy's named binds, like every caller's.
    where, params = compile_text(sa.and_(todo, *_in_range(part)))
    # Each partition commits on its own (an interrupted run keeps finished partitions).
    with worker_engine(url).begin() as conn:
        out = label_selected(conn, model, where, params)
    return len(out), int(out["label"].sum())


# --- on the client ----------------------------------------------------------------------------
@contextmanager
def dask_client(scheduler: str | None = None, *, workers: int = 2, processes: bool = True) -> Iterator:
    """A distributed Client on `scheduler`, or on a LocalCluster of `workers` single-threaded workers."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


class DaskReader:
    """Runs a geo.metrics measure on Dask: its query per time slice of the filter on the workers, the parts summed.

    The measures' values are sums (counts, sums of weights), so the slices' groups add up to the
    whole filter's; each slice is compiled on the client and read by a worker over its own
    connection (COPY), and only the small grouped rows travel back.
    """

    # Grouping columns that hold text even when every value looks like a number (division '01').
    TEXT_KEYS = ("city", "division", "category", "month")

    def __init__(self, engine: Engine, client, partitions: int | None = None):
        self.engine = engine
        self.client = client
        self.partitions = partitions

    def slices(self, flt: Filter) -> list[Filter]:
        """The filter cut into time slices, sized from the planner's row estimate and the workers."""
        return _period_slices(self.engine, self.client, flt, self.partitions)

    def aggregate(self, build, flt: Filter, keys) -> pd.DataFrame:
        """The measure's rows for the whole filter: `build(slice)` on every slice, summed per group."""
        statements = [compile_driver(build(part)) for part in self.slices(flt)]
        text = tuple(k for k in keys if k in self.TEXT_KEYS)
        futures = self.client.map(_aggregate_partition, statements, url=_url_of(self.engine), text_columns=text,
                                  pure=False)
        parts = [p for p in self.client.gather(futures) if len(p)]
        if not parts:
            return pd.DataFrame(columns=list(build(flt).selected_columns.keys()))
        rows = pd.concat(parts, ignore_index=True)
        if not keys:
            return rows.sum(numeric_only=True).to_frame().T
        return rows.groupby(list(keys), as_index=False, dropna=False).sum(numeric_only=True)


def _worker_count(client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _period_slices(engine: Engine, client, period: Filter, partitions: int | None) -> list[Filter]:
    parts = partitions or _partitions_for(_estimated_rows(engine, period.start, period.end), _worker_count(client))
    return day_slices(period, parts)


def _polygon_versions(engine: Engine) -> tuple:
    """A fingerprint of the NPA and division polygons: workers rebuild their indexes when it changes."""
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(
            f"SELECT md5(coalesce(string_agg({key}::text || ':' || md5(ST_AsBinary(geom)), ',' ORDER BY {key}), ''))"
            f" FROM {table}")).scalar_one() for table, key in (("neighborhoods", "npa_id"), ("divisions", "division_id")))


def assign_areas(engine: Engine, client, *, partitions: int | None = None):
    """Every call's NPA and division from its point, as a lazy Dask DataFrame (call_id, npa_id, division_id).

    The same rule as the loader (geo.spatial.AreaIndex): exact point-in-polygon, a point on a
    shared boundary goes to the first polygon in id order.
    """
    import dask.dataframe as dd

    extent = calls_extent(engine)
    if extent is None:
        return dd.from_pandas(_ASSIGN_META.copy(), npartitions=1)
    first, last, rows = extent
    parts = partitions or _partitions_for(rows, _worker_count(client))
    # The last call must fall inside the last half-open slice.
    slices = split_time(first, last + pd.Timedelta(microseconds=1), parts)
    return dd.from_map(_assign_partition, slices, url=_url_of(engine), version_key=_polygon_versions(engine),
                       meta=_ASSIGN_META, enforce_metadata=False)


def npa_values(engine: Engine, client, period: Filter, *, measure: str = "labelled",
               partitions: int | None = None) -> pd.DataFrame:
    """Gi* input per NPA (violent calls labelled, or expected) in a period: geo.metrics.source_values on Dask."""
    from geo.metrics import source_values
    from geo.sources import get_source

    if measure not in MEASURES:
        raise ValueError(f"measure must be 'labelled' or 'expected', not {measure!r}")
    values = source_values(DaskReader(engine, client, partitions), period, get_source(measure), ("npa",))
    values = values.rename(columns={"npa": "npa_id"})
    values["npa_id"] = values["npa_id"].astype("int64")
    return values


def npa_hotspots(engine: Engine, client, period: Filter, *, measure: str = "labelled", permutations: int = 999,
                 seed: int = 0, partitions: int | None = None, per_1000: bool = False) -> gpd.GeoDataFrame:
    """geo.hotspots.npa_hotspots with its per-NPA values aggregated on Dask; the same frame comes back."""
    from geo.hotspots import npa_gi_star as _with_gi
    from geo.spatial import read_neighborhoods

    values = npa_values(engine, client, period, measure=measure, partitions=partitions)
    return _with_gi(read_neighborhoods(engine), values, permutations, seed, per_1000=per_1000)


def grid_values(engine: Engine, client, period: Filter, lattice, *, measure: str = "labelled",
                partitions: int | None = None) -> np.ndarray:
    """Gi* input per lattice cell: violent calls projected to EPSG:2264 and binned on the workers."""
    import dask.dataframe as dd
    import dask_geopandas

    if measure not in MEASURES:
        raise ValueError(f"measure must be 'labelled' or 'expected', not {measure!r}")
    from geo.sources import get_source

    source = get_source(measure)
    statements = [_unit_points(source, period, part) for part in DaskReader(engine, client, partitions).slices(period)]
    points = dd.from_map(_violent_point_partition, statements, url=_url_of(engine), meta=_POINT_META,
                         enforce_metadata=False)
    geo_points = dask_geopandas.from_dask_dataframe(
        points[["w"]], geometry=dask_geopandas.points_from_xy(points, "lon", "lat"))
    projected = geo_points.set_crs(4326).to_crs(2264)  # NC State Plane feet, the grid's units
    spec = LatticeSpec(lattice.grid.x0, lattice.grid.y0, lattice.grid.size, lattice.index)
    n_cells = len(lattice.cols)
    sums = projected.map_partitions(_cell_sums, spec, n_cells,
                                    meta=pd.DataFrame({"cell": pd.Series(dtype="int64"), "value": pd.Series(dtype=float)}))
    total = client.compute(sums.groupby("cell")["value"].sum(split_out=1)).result()
    return total.reindex(np.arange(n_cells), fill_value=0.0).to_numpy(dtype=float)


def grid_hotspots(engine: Engine, client, period: Filter, *, cell_ft: float | str = 1000.0, measure: str = "labelled",
                  permutations: int = 999, seed: int = 0, partitions: int | None = None) -> gpd.GeoDataFrame:
    """geo.hotspots.grid_hotspots with the cell counts computed on Dask; cells returned in EPSG:4326.

    The cell size must be given: choosing it ('auto') needs every point's location on one
    machine, which is what the Dask path avoids.
    """
    from geo.hotspots import Lattice, gi_star, resolve_cell_size
    from geo.spatial import county_2264 as _county_2264

    if isinstance(cell_ft, str) and cell_ft.strip().lower() == "auto":
        raise ValueError("cell size 'auto' is not available on Dask (it needs every point on one machine): "
                         "give the cell size in feet, e.g. --grid-ft 1500, or run without --engine dask")
    choice = resolve_cell_size(cell_ft, np.empty(0), np.empty(0), None)
    cell_ft = choice.cell_ft
    lattice = Lattice.over(_county_2264(engine), cell_ft)
    values = grid_values(engine, client, period, lattice, measure=measure, partitions=partitions)
    result = gi_star(None, values, permutations=permutations, seed=seed, weights=lattice.weights)
    frame = gpd.GeoDataFrame({
        "col": lattice.cols, "row": lattice.rows, "value": values, "gi_z": result.z, "gi_p": result.p,
        "gi_q": result.q, "gi_p_sim": result.p_sim, "hotspot_class": result.classes,
    }, geometry=lattice.grid.polygons(lattice.cols, lattice.rows), crs=2264)
    out = frame.to_crs(4326)
    out.attrs["cell_size"] = choice
    return out


@dataclass
class DaskLabelResult:
    """Counts from one labelling run on Dask."""

    version: str
    labelled: int
    violent: int
    seconds: float
    partitions: int


def label_calls(engine: Engine, client, *, relabel: bool = False, version: str | None = None,
                partitions: int | None = None) -> DaskLabelResult:
    """geo.classify.label_calls on Dask: each worker scores its slices and writes them back in bulk.

    The model is loaded (and its checksum verified) once on the client, then sent to every worker.
    """
    from geo.classify import load_model

    started = datetime.now(timezone.utc)
    stored = load_model(engine, version)
    extent = calls_extent(engine)
    if extent is None:
        return DaskLabelResult(stored.version, 0, 0, 0.0, 0)
    first, last, rows = extent
    parts = partitions or _partitions_for(rows, _worker_count(client))
    slices = split_time(first, last + pd.Timedelta(microseconds=1), parts)
    # hash=False: a fresh key per call. With the default content hash, a second call scatters the same key
    # while the scheduler may still be releasing it from the first, and its tasks fail with "lost dependencies".
    [model] = client.scatter([stored], broadcast=True, hash=False)
    futures = client.map(_label_partition, slices, url=_url_of(engine), model=model, relabel=relabel, pure=False)
    results = client.gather(futures)
    return DaskLabelResult(stored.version, sum(n for n, _ in results), sum(v for _, v in results),
                           (datetime.now(timezone.utc) - started).total_seconds(), len(slices))
