"""The demo path: database up, reference data, synthetic calls and incidents, a summary."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import db as dbmod
from geo.ingest.batch import LoadReport
from geo.ingest.calls import load_calls
from geo.ingest.counts import CALL_COUNTS, load_monthly_counts
from geo.ingest.incidents import load_incidents
from geo.ingest.points import LoadOptions
from geo.ingest.reference import DataDir, load_reference
from geo.migrate import migrate
from geo.refresh import refresh_after_calls
from geo.settings import DatabaseSettings, DataSettings, database_settings, locale_settings
from geo.settings import data_settings as read_data_settings
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
    out: Path,
    dirty: bool = True,
    load: bool = True,
    engine: Engine | None = None,
    data_dir: Path,
    progress: bool = True,
    tz: str | None = None,
) -> list[LoadReport]:
    """Write the synthetic CSVs into `out` (reusing them when the parameters match) from the reference
    tables in `data_dir`, and load them (local times in `tz`; None: the configured zone)."""
    data = DataDir(Path(data_dir))
    data.require(SYNTH_INPUTS)
    out = Path(out)
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
        load_incidents(engine, files["incidents"], progress=progress, options=LoadOptions(tz=tz)),
        # Labels come after the demo trains its model (run_demo), not from the load.
        load_calls(engine, files["calls"], progress=progress, label=False, options=LoadOptions(tz=tz)),
        load_monthly_counts(engine, CALL_COUNTS, files["call_counts"]),
    ]


# The real CMPD point records the demo shows beside the synthetic ones, when HOTSPOTS_DATA_DIR has them
# (shared/cmpd/real/README.md): (loader kind, file name).
REAL_FILES = (("incidents", "incidents_streets_QVXYZ.csv"), ("incidents", "incidents_api_sample.csv"),
              ("homicides", "homicides_arcgis.json"))


def load_real_records(engine: Engine, data_dir: Path, tz: str | None = None) -> list[LoadReport]:
    """Load the real incidents and homicides under DATA_DIR/real that are present (each once: a file
    already loaded is recognised by its checksum). Their rows are data_origin 'real'."""
    reports = []
    for kind, name in REAL_FILES:
        path = Path(data_dir) / "real" / name
        if not path.is_file():
            continue
        if kind == "incidents":
            reports.append(load_incidents(engine, path, options=LoadOptions(tz=tz)))
        else:
            from geo.ingest.homicides import load_homicides

            reports.append(load_homicides(engine, path, tz=tz))
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


def run_demo(echo: Callable[[str], None] = print, *, database: DatabaseSettings | None = None,
             data_settings: DataSettings | None = None, tz: str | None = None) -> None:
    """Start (or reuse) the database, load reference and synthetic data, and print a summary.

    The demo command is an edge: settings not given are read from the environment here, once.
    """
    database = database or database_settings()
    data_settings = data_settings or read_data_settings()
    tz = tz or locale_settings().timezone
    if database.database_url:
        echo("Using DATABASE_URL.")
    else:
        cluster = dbmod.EmbeddedCluster(database.embedded_dir)
        cluster.up()
        echo(f"Embedded PostGIS running (port {cluster.status().port}, data in {cluster.data_dir}).")
    engine = dbmod.make_engine(settings=database)
    applied = migrate(engine)
    if applied:
        echo("Applied migrations: " + ", ".join(m.name for m in applied))
    data = DataDir(Path(data_settings.data_dir))
    data.require(SYNTH_INPUTS)
    echo(f"Reference data from {data.root}:")
    for report in load_reference(engine, data, region=data_settings.region_box):
        for line in report.summary_lines():
            echo("  " + line)
    echo("Synthetic calls and incidents (generated, calibrated on CMPD's published counts; not real events):")
    for report in generate_and_load(engine=engine, data_dir=data.root, out=data_settings.demo_dir, tz=tz):
        for line in report.summary_lines():
            echo("  " + line)
    real = load_real_records(engine, data.root, tz)
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
    from geo.classify import train

    from geo.runs import current_model_version

    if current_model_version(engine) is None:
        echo("Training the violent-call classifier on the demo calls:")
        result = train(engine, echo=lambda line: echo("  " + line), progress=True, tz=tz,
                       models_dir=data_settings.var_dir / "models")
        m = result.metrics["model"]
        echo(f"  model {result.version}: held-out ROC-AUC {m['roc_auc']:.3f}, PR-AUC {m['pr_auc']:.3f} "
             f"(call type alone: {result.metrics['call_type_baseline']['roc_auc']:.3f}, "
             f"{result.metrics['call_type_baseline']['pr_auc']:.3f})")
    done = refresh_after_calls(engine, tz, progress=True)
    for line in done.summary_lines():
        echo(line[0].upper() + line[1:] + ".")
    echo("Database now holds:")
    for line in summary_lines(engine, tz):
        echo(line)
