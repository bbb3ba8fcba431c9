"""The demo path: database up, reference data, synthetic calls and incidents, a summary."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import db as dbmod
from geo.ingest.batch import LoadReport
from geo.ingest.calls import load_calls
from geo.ingest.counts import CALL_COUNTS, load_monthly_counts
from geo.ingest.incidents import load_incidents
from geo.ingest.reference import DataDir, load_reference
from geo.migrate import migrate
from geo.settings import data_settings, database_settings, locale_settings
from geo.summary import summary_lines
from geo.synth import DEMO_DAYS, DEMO_START, generate

SYNTH_INPUTS = ["divisions", "npa", "population", "violent_crimes", "property_crimes", "disorder_calls", "offenses"]


def _generator_fingerprint() -> str:
    """Checksum of the generator's code and tables: files made by another version are not reused."""
    import hashlib

    import geo.synth

    digest = hashlib.sha256(Path(geo.synth.__file__).read_bytes())
    for table in sorted((Path(geo.synth.__file__).parent / "data").glob("*.csv")):
        digest.update(table.read_bytes())
    return digest.hexdigest()[:16]


def _params_file(out: Path) -> Path:
    return out / "params.json"


def generate_and_load(
    *,
    n_calls: int = 500_000,
    start: date = DEMO_START,
    days: int = DEMO_DAYS,
    seed: int = 2264,
    out: Path | None = None,
    dirty: bool = True,
    load: bool = True,
    engine: Engine | None = None,
    data_dir: Path | None = None,
    progress: bool = True,
) -> list[LoadReport]:
    """Write the synthetic CSVs (reusing them when the parameters match) and load them."""
    data = DataDir(Path(data_dir or data_settings().data_dir))
    data.require(SYNTH_INPUTS)
    out = Path(out or data_settings().demo_dir)
    params = {"generator": _generator_fingerprint(), "n_calls": n_calls, "start": start.isoformat(), "days": days, "seed": seed, "dirty": dirty,
              "data_dir": str(data.root.resolve())}
    files = {name: out / f"{name}.csv" for name in ("incidents", "calls", "call_counts")}
    reuse = _params_file(out).exists() and json.loads(_params_file(out).read_text()) == params and all(
        f.exists() for f in files.values()
    )
    if not reuse:
        out.mkdir(parents=True, exist_ok=True)
        _params_file(out).unlink(missing_ok=True)
        generate(data.root, out, start=start, days=days, n_calls=n_calls, seed=seed, dirty=dirty, progress=progress)
        _params_file(out).write_text(json.dumps(params, indent=2))
    if not load:
        return []
    assert engine is not None
    if not reuse:
        remove_demo_data(engine, out)
    return [
        load_incidents(engine, files["incidents"], progress=progress),
        load_calls(engine, files["calls"], progress=progress),
        load_monthly_counts(engine, CALL_COUNTS, files["call_counts"]),
    ]


# The real CMPD point records the demo shows beside the synthetic ones, when HOTSPOTS_DATA_DIR has them
# (shared/cmpd/real/README.md): (loader kind, file name).
REAL_FILES = (("incidents", "incidents_streets_QVXYZ.csv"), ("incidents", "incidents_api_sample.csv"),
              ("homicides", "homicides_arcgis.json"))


def load_real_records(engine: Engine, data_dir: Path) -> list[LoadReport]:
    """Load the real incidents and homicides under DATA_DIR/real that are present (each once: a file
    already loaded is recognised by its checksum). Their rows are data_origin 'real'."""
    reports = []
    for kind, name in REAL_FILES:
        path = Path(data_dir) / "real" / name
        if not path.is_file():
            continue
        if kind == "incidents":
            reports.append(load_incidents(engine, path))
        else:
            from geo.ingest.homicides import load_homicides

            reports.append(load_homicides(engine, path))
    return reports


def remove_demo_data(engine: Engine, out: Path) -> int:
    """Delete what earlier demo files in `out` loaded (rows, rejects, batches), before loading new ones.

    Demo data made by other parameters or another generator version must not mix with the new
    set. Models trained on it stop being current. Returns the number of batches removed.
    """
    # Paths were recorded as given: match the folder both as given and absolute.
    prefixes = sorted({str(Path(out)) + "/", str(Path(out).resolve()) + "/"})
    with engine.begin() as conn:
        batches = [r[0] for r in conn.execute(
            sa.text("SELECT batch_id FROM ingest_batches WHERE kind IN ('calls', 'incidents', 'call_counts')"
                    " AND (starts_with(source_file, :a) OR starts_with(source_file, :b))"),
            {"a": prefixes[0], "b": prefixes[-1]})]
        if not batches:
            return 0
        for table in ("calls", "incidents", "call_counts", "ingest_rejects"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE batch_id = ANY(:b)"), {"b": batches})
        conn.execute(sa.text("DELETE FROM ingest_batches WHERE batch_id = ANY(:b)"), {"b": batches})
        conn.execute(sa.text("UPDATE model_runs SET is_current = false WHERE is_current"))
    return len(batches)


def save_demo_hotspots(engine: Engine, cell_ft: float = 1500.0) -> dict[str, int]:
    """Gi* over NPAs and grid cells for the whole call period, saved for the map, unless already
    saved for the current model and data. Returns {kind: run_id} of what was computed now."""
    from geo.catalog import data_versions
    from geo.hotspots import grid_hotspots, npa_hotspots, save_cell_results, save_npa_results
    from geo.filters import Filter

    with engine.connect() as conn:
        model = conn.execute(sa.text("SELECT model_version FROM model_runs WHERE is_current")).scalar()
        lo, hi = conn.execute(sa.text("SELECT (min(received_at) AT TIME ZONE :tz)::date, (max(received_at) AT TIME ZONE :tz)::date"
                                      " FROM calls"), {"tz": locale_settings().timezone}).one()
        done = {k for (k,) in conn.execute(sa.text(
            "SELECT kind FROM analysis_runs WHERE model_version IS NOT DISTINCT FROM :m AND (params->>'calls_version')::bigint = :v"),
            {"m": model, "v": data_versions(conn)["calls"]})}
        origins = {o for (o,) in conn.execute(sa.text("SELECT DISTINCT data_origin FROM calls"))}
    if lo is None or model is None:
        return {}
    period = Filter.local_days(lo, hi + timedelta(days=1), tz=locale_settings().timezone)
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
        saved["calls_npa_hotspots"] = save_npa_results(engine, "calls_npa_hotspots", named(npas), npas, model)
    if "calls_grid_hotspots" not in done:
        cells = grid_hotspots(engine, period, cell_ft=cell_ft, source="expected", origin=origin, permutations=99)
        saved["calls_grid_hotspots"] = save_cell_results(engine, "calls_grid_hotspots", {**named(cells), "cell_ft": cell_ft},
                                                         cells, cell_ft, model)
    return saved


def run_demo(echo: Callable[[str], None] = print) -> None:
    """Start (or reuse) the database, load reference and synthetic data, and print a summary."""
    if database_settings().database_url:
        echo("Using DATABASE_URL.")
    else:
        cluster = dbmod.EmbeddedCluster(database_settings().embedded_dir)
        cluster.up()
        echo(f"Embedded PostGIS running (port {cluster.status().port}, data in {cluster.data_dir}).")
    engine = dbmod.make_engine()
    applied = migrate(engine)
    if applied:
        echo("Applied migrations: " + ", ".join(m.name for m in applied))
    data = DataDir(Path(data_settings().data_dir))
    data.require(SYNTH_INPUTS)
    echo(f"Reference data from {data.root}:")
    for report in load_reference(engine, data):
        for line in report.summary_lines():
            echo("  " + line)
    echo("Synthetic calls and incidents (generated, calibrated on CMPD's published counts; not real events):")
    for report in generate_and_load(engine=engine, data_dir=data.root):
        for line in report.summary_lines():
            echo("  " + line)
    real = load_real_records(engine, data.root)
    if real:
        echo(f"Real CMPD records from {data.root / 'real'} (kept apart from the synthetic rows: data_origin = real):")
        for report in real:
            for line in report.summary_lines():
                echo("  " + line)
    # Rows loaded before categories existed (an older schema) get them now.
    with engine.connect() as conn:
        missing = conn.execute(sa.text("SELECT count(*) FROM calls WHERE category IS NULL")).scalar()
    if missing:
        from geo.taxonomy import apply_taxonomy

        changed = apply_taxonomy(engine)
        echo(f"Categorised {changed['calls']:,} calls and {changed['incidents']:,} incidents loaded before categories existed.")
    # Label the calls with the violent-call classifier (trained once; reused on later runs).
    from geo.classify import label_calls, train

    with engine.connect() as conn:
        has_model = conn.execute(sa.text("SELECT count(*) FROM model_runs WHERE is_current")).scalar()
    if not has_model:
        echo("Training the violent-call classifier on the demo calls:")
        result = train(engine, echo=lambda line: echo("  " + line), progress=True)
        m = result.metrics["model"]
        echo(f"  model {result.version}: held-out ROC-AUC {m['roc_auc']:.3f}, PR-AUC {m['pr_auc']:.3f} "
             f"(call type alone: {result.metrics['call_type_baseline']['roc_auc']:.3f}, "
             f"{result.metrics['call_type_baseline']['pr_auc']:.3f})")
    labelled = label_calls(engine, progress=True)
    if labelled.labelled:
        echo(f"Labelled {labelled.labelled:,} calls with {labelled.version} ({labelled.violent:,} labelled violent).")
    saved = save_demo_hotspots(engine)
    if saved:
        echo("Saved hot spot runs for the map: " + ", ".join(f"{k} (run {v})" for k, v in saved.items()))
    echo("Database now holds:")
    for line in summary_lines(engine):
        echo(line)
