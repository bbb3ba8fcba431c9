"""Analysis runs and model runs: saving them, the latest of a kind, and resolving a requested run.

An analysis run (`analysis_runs`, migration 003) records what was computed (a `RunKind`), with
which parameters and which classifier; its rows live in one result table per kind family:
`hotspot_npa_results` (003, 010), `hotspot_cell_results` (004), `emerging_npa_results` (012) or
`analysis_rows` (005).
Accuracy runs keep everything in their parameters. A model run (`model_runs`, 001) is one trained
classifier, of which at most one is current.

Every part of the project asks here: the CLI and the refresh save runs; OGC items, tiles,
exports and `hotspots runs` resolve them with `resolve_run`, and a run that is not there is one
error, `NoSavedRun`, whatever asked (the web answers it with one 404, docs/architecture.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geo.filters import ORIGINS, ParameterError, parse_int

if TYPE_CHECKING:   # geo.catalog imports RunKind from here
    import geopandas as gpd

    from geo.catalog import Layer

NPA_RESULTS = "hotspot_npa_results"
CELL_RESULTS = "hotspot_cell_results"
ROWS = "analysis_rows"
EMERGING_RESULTS = "emerging_npa_results"
# Saved runs named in an error message (the newest first); enough to pick one, short enough to read.
LISTED_RUNS = 10


class RunKind(str, Enum):
    """What an analysis run computed; the value is the `analysis_runs.kind` stored."""

    CALLS_NPA_HOTSPOTS = "calls_npa_hotspots"
    OFFENSES_NPA_HOTSPOTS = "offenses_npa_hotspots"
    HOMICIDES_NPA_HOTSPOTS = "homicides_npa_hotspots"
    CALLS_GRID_HOTSPOTS = "calls_grid_hotspots"
    CALL_COUNTS = "call_counts"
    HOUR_WEEKDAY = "hour_weekday"
    COMPSTAT = "compstat"
    MONTHLY_TREND = "monthly_trend"
    LEADING_INDICATORS = "leading_indicators"
    OUTREACH_FLAGS = "outreach_flags"
    ALLOCATION = "allocation"
    ALLOCATION_PLAN = "allocation_plan"
    ACCURACY = "accuracy"
    EMERGING_NPA_HOTSPOTS = "emerging_npa_hotspots"
    RESPONSE_TIMES = "response_times"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "RunKind | str") -> "RunKind":
        """The kind named `value`, or a ParameterError naming `kind` with the valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise ParameterError("kind", f"unknown analysis run kind {value!r}; one of "
                                         f"{', '.join(k.value for k in cls)}") from None

    @classmethod
    def npa_hotspots(cls, counted: str) -> "RunKind":
        """The NPA Gi* kind of what was counted: 'calls' (any point source on the map), 'offenses', 'homicides'."""
        return cls.parse(f"{counted}_npa_hotspots")

    @property
    def table(self) -> str | None:
        """The result table holding the run's rows (None: the run keeps everything in its params)."""
        if self is RunKind.CALLS_GRID_HOTSPOTS:
            return CELL_RESULTS
        if self is RunKind.EMERGING_NPA_HOTSPOTS:   # before the suffix test: its name ends in _npa_hotspots too
            return EMERGING_RESULTS
        if self.value.endswith("_npa_hotspots"):
            return NPA_RESULTS
        return None if self is RunKind.ACCURACY else ROWS

    @property
    def layer(self) -> str | None:
        """The served layer (geo.catalog) that draws this kind's results, if any."""
        if self is RunKind.RESPONSE_TIMES:
            return "response_times"
        return {NPA_RESULTS: "hotspot_npas", CELL_RESULTS: "hotspot_cells",
                EMERGING_RESULTS: "emerging_npas"}.get(self.table or "")


def _is_day(v: Any) -> bool:
    try:
        date.fromisoformat(str(v)[:10])
    except ValueError:
        return False
    return True


# The parameters analyses share, with their types: a run that records one records it this way, so
# `hotspots runs list`, the refresh and readers of the JSON can rely on it. (name -> test, what is valid)
PARAMETER_TYPES: dict[str, tuple[Any, str]] = {
    "period": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_day(d) for d in v),
               "[first day, day after the last] as dates"),
    "years": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(y, int) for y in v)
              and v[0] <= v[1], "[first year, last year], integers"),
    "cell_ft": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                "a positive number of feet"),
    "permutations": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                     "a whole number of permutations, 0 or more"),
    "origin": (lambda v: v is None or v in ORIGINS, f"empty or one of {', '.join(ORIGINS)}"),
    "value_unit": (lambda v: v in ("count", "per_1000_residents"), "count or per_1000_residents"),
    "source": (lambda v: v is None or isinstance(v, str), "the name of what was counted"),
    "calls_version": (lambda v: isinstance(v, int) and not isinstance(v, bool), "the calls layer's data version"),
}


@dataclass(frozen=True)
class RunSpec:
    """What a new analysis run records: its kind, its parameters and the classifier behind it."""

    kind: RunKind
    params: Mapping[str, Any] = field(default_factory=dict)
    model_version: str | None = None

    def __post_init__(self) -> None:
        # A kind given as text is checked here, so no unknown kind reaches the table.
        object.__setattr__(self, "kind", RunKind.parse(self.kind))
        if not isinstance(self.params, Mapping):
            raise ParameterError("params", f"run parameters are a mapping of names to values, not {type(self.params).__name__}")
        for name, value in self.params.items():
            test, valid = PARAMETER_TYPES.get(name, (None, ""))
            if test is not None and not test(value):
                raise ParameterError(name, f"{self.kind.value} run parameter {name}={value!r}: expected {valid}")

    def params_json(self) -> str:
        """The parameters as the JSON stored in analysis_runs.params (dates and the like as text)."""
        return json.dumps(dict(self.params), default=str)


@dataclass(frozen=True)
class SavedRun:
    """One stored analysis run, as `hotspots runs list` shows it."""

    run_id: int
    kind: RunKind
    params: dict
    model_version: str | None
    created_at: datetime
    rows: int

    @property
    def source(self) -> str | None:
        """What was counted (the `source` parameter), where the run records one."""
        value = self.params.get("source")
        return None if value is None else str(value)

    @property
    def period(self) -> str | None:
        """The run's time window as recorded (period, from/to, as of, years, train/test), in words."""
        p = self.params
        if p.get("period"):
            return " to ".join(str(v)[:10] for v in p["period"])
        if p.get("from") or p.get("to"):
            return f"{str(p.get('from') or '')[:10]} to {str(p.get('to') or '')[:10]}"
        if p.get("as_of"):
            return f"as of {str(p['as_of'])[:10]}"
        if p.get("years"):
            return "-".join(dict.fromkeys(str(y) for y in p["years"]))   # [2020, 2020] is just 2020
        if p.get("train") and p.get("test"):
            return f"train {' to '.join(p['train'])}; test {' to '.join(p['test'])}"
        return None


class NoSavedRun(LookupError):
    """A requested analysis run that is not saved, or a result layer with no saved run at all."""

    parameter = "run"

    def __init__(self, layer: str | None, run: int | None = None, saved: Iterable[int] = (), hint: str = ""):
        self.layer = layer
        self.run = run
        self.saved = [int(r) for r in saved]
        what = f"{layer} run" if layer else "analysis run"
        if run is None:
            message = f"no {what} has been saved yet" + (f"; {hint}" if hint else "")
        else:
            listed = ", ".join(map(str, self.saved)) or "none saved yet"
            message = f"no saved {what} {run}; saved runs: {listed}"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


# --- saving -------------------------------------------------------------------------------------
def start_run(conn: Connection, spec: RunSpec) -> int:
    """A new analysis_runs row inside the caller's transaction; returns its run_id."""
    return conn.execute(sa.text(
        "INSERT INTO analysis_runs (kind, params, model_version) VALUES (:k, CAST(:p AS jsonb), :m) RETURNING run_id"),
        {"k": spec.kind.value, "p": spec.params_json(), "m": spec.model_version}).scalar_one()


def _expect_table(spec: RunSpec, table: str) -> None:
    if spec.kind.table != table:
        raise ParameterError("kind", f"a {spec.kind.value} run keeps its rows in {spec.kind.table or 'its params'}, "
                                     f"not in {table}")


def save_run(engine: Engine, spec: RunSpec) -> int:
    """Store a run whose parameters are its whole result (accuracy); returns its run_id."""
    _expect_table(spec, None)
    with engine.begin() as conn:
        return start_run(conn, spec)


def save_npa_results(engine: Engine, spec: RunSpec, result: "gpd.GeoDataFrame") -> int:
    """Store an NPA Gi* result under a new analysis run; returns its run_id.

    NPAs left out of the analysis (no residents, for rates) have no Gi* and are not stored; how
    many were left out goes into the run's params.
    """
    from geo.hotspots import COUNT
    from geo.ingest.batch import copy_frame

    _expect_table(spec, NPA_RESULTS)
    if "value_unit" not in result:
        result = result.assign(value_unit=COUNT, event_count=result["value"])
    left_out = result.attrs.get("left_out")
    if left_out and left_out["npas_without_residents"]:
        spec = RunSpec(spec.kind, {**spec.params, "left_out": left_out}, spec.model_version)
    with engine.begin() as conn:
        run_id = start_run(conn, spec)
        analysed = result[result["gi_z"].notna()]
        rows = pd.DataFrame(analysed[["npa_id", "value", "gi_z", "gi_p", "gi_q", "gi_p_sim", "hotspot_class",
                                      "value_unit", "event_count"]])
        rows.insert(0, "run_id", run_id)
        copy_frame(conn, NPA_RESULTS, rows)
    return run_id


def save_cell_results(engine: Engine, spec: RunSpec, result: "gpd.GeoDataFrame", cell_ft: float) -> int:
    """Store a grid Gi* result (cells in EPSG:4326) under a new analysis run; returns its run_id."""
    import shapely

    from geo.ingest.batch import copy_frame

    _expect_table(spec, CELL_RESULTS)
    cells = result.to_crs(4326)
    with engine.begin() as conn:
        run_id = start_run(conn, spec)
        rows = pd.DataFrame(cells[["col", "row", "value", "gi_z", "gi_p", "gi_q", "gi_p_sim", "hotspot_class"]])
        rows.insert(0, "run_id", run_id)
        rows.insert(3, "cell_ft", cell_ft)
        rows["geom"] = shapely.to_wkb(shapely.set_srid(cells.geometry.values, 4326), hex=True, include_srid=True)
        copy_frame(conn, CELL_RESULTS, rows)
    return run_id


EMERGING_COLUMNS = ("npa_id", "pattern", "trend_z", "trend_p", "hot_steps", "cold_steps", "steps", "hot_share",
                    "cold_share", "final_z", "total")


def save_emerging_results(engine: Engine, spec: RunSpec, rows: pd.DataFrame) -> int:
    """Store emerging hot spots per NPA (the EMERGING_COLUMNS of `rows`) under a new analysis run; returns its run_id."""
    from geo.ingest.batch import copy_frame

    _expect_table(spec, EMERGING_RESULTS)
    missing = [c for c in EMERGING_COLUMNS if c not in rows]
    if missing:
        raise ParameterError("rows", f"emerging results need the columns {', '.join(missing)}")
    with engine.begin() as conn:
        run_id = start_run(conn, spec)
        frame = pd.DataFrame(rows[list(EMERGING_COLUMNS)])
        frame.insert(0, "run_id", run_id)
        copy_frame(conn, EMERGING_RESULTS, frame)
    return run_id


def save_table(engine: Engine, spec: RunSpec, table: pd.DataFrame) -> int:
    """Store a result table (one JSON object per row) under a new analysis run; returns its run_id."""
    from geo.ingest.batch import copy_frame

    _expect_table(spec, ROWS)
    frame = table.reset_index() if table.index.name or not isinstance(table.index, pd.RangeIndex) else table
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    with engine.begin() as conn:
        run_id = start_run(conn, spec)
        if records:
            copy_frame(conn, ROWS, pd.DataFrame({
                "run_id": run_id, "row_no": range(len(records)), "data": [json.dumps(r) for r in records]}))
    return run_id


def load_table(engine: Engine, run_id: int) -> pd.DataFrame:
    """A stored result table, rows in their original order."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT data FROM {ROWS} WHERE run_id = :r ORDER BY row_no"), {"r": run_id})
        return pd.DataFrame([r[0] for r in rows])


# --- finding ------------------------------------------------------------------------------------
def _kinds(kinds: Iterable[RunKind | str]) -> list[str]:
    return [RunKind.parse(k).value for k in kinds]


def latest_run_id(conn: Connection, kinds: Iterable[RunKind | str], model_version: str | None = None) -> int | None:
    """The newest saved run of any of `kinds` (of that model version, if given), or None."""
    clause = " AND model_version = :m" if model_version else ""
    return conn.execute(sa.text(f"SELECT max(run_id) FROM analysis_runs WHERE kind = ANY(:k){clause}"),
                        {"k": _kinds(kinds), "m": model_version}).scalar()


def latest_params(conn: Connection | Engine, kind: RunKind, model_version: str | None = None) -> dict | None:
    """The params of the newest run of `kind` (of that model version, if given) with its run_id, or None."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return latest_params(c, kind, model_version)
    run_id = latest_run_id(conn, [kind], model_version)
    if run_id is None:
        return None
    params = conn.execute(sa.text("SELECT params FROM analysis_runs WHERE run_id = :r"), {"r": run_id}).scalar()
    return {"run_id": run_id, **params}


def saved_run_ids(conn: Connection, kinds: Iterable[RunKind | str], limit: int = LISTED_RUNS) -> list[int]:
    """The newest saved run ids of `kinds`, newest first."""
    return list(conn.execute(sa.text("SELECT run_id FROM analysis_runs WHERE kind = ANY(:k) ORDER BY run_id DESC"
                                     " LIMIT :n"), {"k": _kinds(kinds), "n": limit}).scalars())


def _run_id(raw: int | str | None) -> int | None:
    """A requested run id: None when not given, else a positive integer (ParameterError naming `run`)."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    value = raw if isinstance(raw, int) else parse_int("run", raw)
    if value < 1:
        raise ParameterError("run", f"{value} is not a run id; run ids are positive integers")
    return value


def _save_hint(lyr: "Layer") -> str:
    if RunKind.EMERGING_NPA_HOTSPOTS.value in lyr.run_kinds:
        return "run `hotspots emerging --save` first"
    if RunKind.RESPONSE_TIMES.value in lyr.run_kinds:
        return "run `hotspots stats response --by division,priority --save` first"
    grid = " --grid-ft 2000" if RunKind.CALLS_GRID_HOTSPOTS.value in lyr.run_kinds else ""
    return f"run `hotspots hotspots{grid} --save` first"


def resolve_run(conn: Connection, lyr: "Layer", raw: int | str | None) -> int | None:
    """The analysis run a layer serves: `raw` if it is a saved run of the layer, else its latest run.

    None for data layers (a `run` given to one is a ParameterError); NoSavedRun when the requested
    run is not one of the layer's, or when the layer has no saved run at all.
    """
    run = _run_id(raw)
    if not lyr.run_kinds:
        if run is not None:
            from geo.catalog import result_layers

            raise ParameterError("run", f"{lyr.id} is not an analysis result; run applies to "
                                        f"{', '.join(result_layers())}")
        return None
    if run is None:
        latest = latest_run_id(conn, lyr.run_kinds)
        if latest is None:
            raise NoSavedRun(lyr.id, hint=_save_hint(lyr))
        return int(latest)
    found = conn.execute(sa.text("SELECT 1 FROM analysis_runs WHERE run_id = :r AND kind = ANY(:k)"),
                         {"r": run, "k": _kinds(lyr.run_kinds)}).scalar()
    if not found:
        raise NoSavedRun(lyr.id, run, saved_run_ids(conn, lyr.run_kinds))
    return run


def list_runs(conn: Connection, kind: RunKind | str | None = None, run_id: int | None = None) -> list[SavedRun]:
    """Every saved analysis run (of `kind`, or just `run_id`, if given), newest first, with its result rows."""
    where = (["r.kind = :k"] if kind is not None else []) + (["r.run_id = :r"] if run_id is not None else [])
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    rows = conn.execute(sa.text(
        "SELECT r.run_id, r.kind, r.params, r.model_version, r.created_at,"
        " coalesce(n.n, c.n, e.n, a.n, 0) AS rows"
        " FROM analysis_runs r"
        f" LEFT JOIN (SELECT run_id, count(*) AS n FROM {NPA_RESULTS} GROUP BY 1) n USING (run_id)"
        f" LEFT JOIN (SELECT run_id, count(*) AS n FROM {CELL_RESULTS} GROUP BY 1) c USING (run_id)"
        f" LEFT JOIN (SELECT run_id, count(*) AS n FROM {EMERGING_RESULTS} GROUP BY 1) e USING (run_id)"
        f" LEFT JOIN (SELECT run_id, count(*) AS n FROM {ROWS} GROUP BY 1) a USING (run_id)"
        f" {clause} ORDER BY r.run_id DESC"), {"k": None if kind is None else RunKind.parse(kind).value, "r": run_id})
    out = []
    for run_id, k, params, model, created, n in rows:
        try:
            typed = RunKind(k)
        except ValueError:   # a kind stored by an older version of the project: shown, not refused
            typed = k
        out.append(SavedRun(int(run_id), typed, params or {}, model, created, int(n)))
    return out


def get_run(conn: Connection, run_id: int) -> SavedRun:
    """One saved run by id, or NoSavedRun listing the newest saved ones."""
    found = list_runs(conn, run_id=run_id)
    if found:
        return found[0]
    raise NoSavedRun(None, run_id, conn.execute(sa.text(
        "SELECT run_id FROM analysis_runs ORDER BY run_id DESC LIMIT :n"), {"n": LISTED_RUNS}).scalars())


# --- model runs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRun:
    """A trained classifier as `model_runs` records it (the artifact itself is a joblib file)."""

    model_version: str
    algorithm: str
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    threshold: float
    artifact_path: str
    artifact_sha256: str


def save_model_run(engine: Engine, run: ModelRun) -> None:
    """Store a trained classifier as the current model (the one current before it no longer is)."""
    with engine.begin() as conn:
        # One transaction: there is never a moment with two current models, or none (index model_runs_one_current_idx).
        conn.execute(sa.text("UPDATE model_runs SET is_current = false WHERE is_current"))
        conn.execute(sa.text(
            "INSERT INTO model_runs (model_version, algorithm, train_start, train_end, test_start, test_end, params,"
            " metrics, threshold, artifact_path, artifact_sha256, is_current) VALUES (:v, :a, :ts, :te, :xs, :xe,"
            " CAST(:p AS jsonb), CAST(:m AS jsonb), :t, :path, :sha, true)"),
            {"v": run.model_version, "a": run.algorithm, "ts": run.train_start, "te": run.train_end,
             "xs": run.test_start, "xe": run.test_end, "p": json.dumps(dict(run.params)),
             "m": json.dumps(dict(run.metrics)), "t": run.threshold, "path": run.artifact_path,
             "sha": run.artifact_sha256})


def current_model_version(conn: Connection | Engine) -> str | None:
    """The version of the current classifier (model_runs.is_current), or None before `hotspots train`."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return current_model_version(c)
    return conn.execute(sa.text("SELECT model_version FROM model_runs WHERE is_current")).scalar()
