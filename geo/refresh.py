"""What happens after new data: new calls get labels, the map's saved hot spots are recomputed.

One place for the work that follows a load, whoever loaded: `hotspots load calls` (geo.ingest.calls),
`hotspots sync` (geo.ingest.arcgis), a posted batch (geo.ingest.live) and the demo (geo.demo).

- **Labels.** New and changed calls (a merge clears a changed call's label) are scored with the
  current model through the one labelling step, `geo.classify.label_selected`. Without a model they
  stay unlabelled and the report says so and names the commands: `hotspots train`, then `hotspots label`.
- **Hot spots.** After a bulk load of calls (the demo, a sync) the map's saved Gi* runs over NPAs and
  grid cells are recomputed for the current model and data, unless already saved for both.
- Tiles and cached map data need nothing: the statement triggers bump the layers' data versions,
  which key every cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geo.classify import ModelError, StoredModel, label_calls, label_selected, load_model
from geo.runs import RunKind, RunSpec, current_model_version, latest_params, save_cell_results, save_npa_results

# The grid cell of the map's hot spots when none was saved before (feet, EPSG:2264).
DEFAULT_CELL_FT = 1500.0


@dataclass
class Refresh:
    """What was done after new data: calls labelled (and by which model), hot spot runs saved, or why not."""

    labelled: int = 0
    violent: int = 0
    model_version: str | None = None
    hotspot_runs: dict[str, int] = field(default_factory=dict)
    note: str | None = None

    def summary_lines(self) -> list[str]:
        """Human-readable lines for a load's or sync's output."""
        lines = [self.note] if self.note else []
        if self.labelled:
            lines.append(f"labelled {self.labelled:,} new or changed calls with {self.model_version} "
                         f"({self.violent:,} labelled violent)")
        if self.hotspot_runs:
            lines.append("recomputed hot spots: " + ", ".join(f"{k} (run {v})" for k, v in self.hotspot_runs.items()))
        return lines


def unlabelled_note(reason: str) -> str:
    """Why new calls were stored without labels, and the commands that label them."""
    return f"calls stored unlabelled: {reason} (then `hotspots label`)"


def current_model(engine: Engine) -> tuple[StoredModel | None, str | None]:
    """The current classifier, or None and the note saying why there is none and what to run."""
    try:
        return load_model(engine), None
    except ModelError as exc:
        return None, unlabelled_note(str(exc))


def label_batch(conn: Connection, model: StoredModel, batch_id: int, tz: str | None = None) -> int:
    """Label one stored batch's new and changed calls inside its own transaction; returns how many."""
    # The merge cleared (or never set) the labels of exactly these calls.
    return len(label_selected(conn, model, "c.batch_id = :batch AND c.model_version IS NULL", {"batch": batch_id},
                              tz=tz))


def label_new_calls(engine: Engine, *, progress: bool = False, tz: str | None = None) -> Refresh:
    """Label every call without a label with the current model (`hotspots label`'s chunks, local hours
    in `tz`); without a model nothing is labelled and `note` names what to run."""
    model, note = current_model(engine)
    if model is None:
        with engine.connect() as conn:
            waiting = conn.execute(sa.text("SELECT count(*) FROM calls WHERE model_version IS NULL")).scalar_one()
        return Refresh(note=f"{waiting:,} {note}" if waiting else None)
    result = label_calls(engine, progress=progress, version=model.version, tz=tz)
    return Refresh(labelled=result.labelled, violent=result.violent, model_version=result.version)


def save_map_hotspots(engine: Engine, tz: str, cell_ft: float = DEFAULT_CELL_FT) -> dict[str, int]:
    """Gi* over NPAs and grid cells for the whole call period (local days in `tz`), saved for the map,
    unless already saved for the current model and data. Returns {kind: run_id} of what was computed now."""
    from geo.catalog import data_versions
    from geo.hotspots import grid_hotspots, npa_hotspots
    from geo.filters import Filter

    with engine.connect() as conn:
        model = current_model_version(conn)
        lo, hi = conn.execute(sa.text("SELECT (min(received_at) AT TIME ZONE :tz)::date, (max(received_at) AT TIME ZONE :tz)::date"
                                      " FROM calls"), {"tz": tz}).one()
        done = {k for (k,) in conn.execute(sa.text(
            "SELECT kind FROM analysis_runs WHERE model_version IS NOT DISTINCT FROM :m AND (params->>'calls_version')::bigint = :v"),
            {"m": model, "v": data_versions(conn)["calls"]})}
        origins = {o for (o,) in conn.execute(sa.text("SELECT DISTINCT data_origin FROM calls"))}
    if lo is None or model is None:
        return {}
    period = Filter.local_days(lo, hi + timedelta(days=1), tz=tz)
    # Real and synthetic calls are never added: with both (a feed's real calls beside the demo's),
    # the map's hot spots are those of the real calls, and the run says so.
    origin = "real" if len(origins) > 1 else None
    params = {"period": [period.start_date, period.end_date], "calls_version": data_versions(engine)["calls"], "origin": origin}
    saved = {}

    def named(result) -> dict:   # the source (geo.sources) the run counted
        return {**params, "source": result.attrs["source"], "source_words": result.attrs["source_words"]}

    # The calls_* runs count calls: expected violent calls, the default for calls (the demo's real
    # incidents overlap its synthetic ones, and the two are never added).
    if "calls_npa_hotspots" not in done:
        npas = npa_hotspots(engine, period, source="expected", origin=origin)
        saved["calls_npa_hotspots"] = save_npa_results(
            engine, RunSpec(RunKind.CALLS_NPA_HOTSPOTS, named(npas), model), npas)
    if "calls_grid_hotspots" not in done:
        cells = grid_hotspots(engine, period, cell_ft=cell_ft, source="expected", origin=origin, permutations=99)
        saved["calls_grid_hotspots"] = save_cell_results(
            engine, RunSpec(RunKind.CALLS_GRID_HOTSPOTS, {**named(cells), "cell_ft": cell_ft}, model), cells, cell_ft)
    return saved


def map_cell_ft(engine: Engine) -> float:
    """The grid cell size (feet) the map's saved hot spots use now, so a recompute keeps it."""
    grid = latest_params(engine, RunKind.CALLS_GRID_HOTSPOTS) or {}
    return DEFAULT_CELL_FT if grid.get("cell_ft") is None else float(grid["cell_ft"])


def refresh_after_calls(engine: Engine, tz: str, *, progress: bool = False) -> Refresh:
    """After a bulk load of calls: label the unlabelled ones, then recompute the map's hot spots
    (at the cell size the map already shows). Without a model neither happens, and `note` says why."""
    out = label_new_calls(engine, progress=progress, tz=tz)
    if out.model_version is None and out.note:
        out.note += "; hot spots are not recomputed"
        return out
    out.hotspot_runs = save_map_hotspots(engine, tz, cell_ft=map_cell_ft(engine))
    return out
