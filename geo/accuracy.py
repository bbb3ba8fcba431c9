"""The model's map held to account: hot spots found on one period, scored on recorded violence in the next.

For each source (geo.sources) Gi* hot spots (the 99% and 95% hot classes, FDR-corrected) are
found on period T, over NPAs or grid cells. They are then scored against the recorded violent
incidents of period T+1 (the ground truth, whatever the source the map was drawn from):

- hit rate: the share of T+1's violent incidents that fall inside the hot areas;
- PAI, the Predictive Accuracy Index (Chainey, Tompson & Uhlig 2008): hit rate / the hot
  areas' share of the study area. 1 is what hot areas drawn at random would score;
- RRI, the Recapture Rate Index (Levine 2008): (n_T+1 in hot / n_T in hot) / (N_T+1 / N_T), with
  n and N recorded violent incidents: how well the hot areas keep their share of violence from
  T to T+1, adjusted for the change in the total. Undefined (None) with no incident in the hot
  areas in T.

docs/methods.md ("Accuracy (hit rate, PAI, RRI)") states the choices.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.hotspots import CLASSES, Lattice, gi_star, queen_weights, source_points
from geo.filters import Filter
from geo.runs import RunKind, RunSpec, latest_params, save_run
from geo.sources import NAMES, get_source
from geo.spatial import read_neighborhoods

HOT_CLASSES = (CLASSES[0][1], CLASSES[1][1])   # hot spots at 99% and 95% confidence
TRUTH = "incidents"
RUN_KIND = RunKind.ACCURACY.value
COLUMNS = ["source", "level", "areas", "hot_areas", "area_share", "train_in_hot", "train_total", "test_in_hot",
           "test_total", "hit_rate", "pai", "rri"]


def score(hot: np.ndarray, area: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict:
    """Hit rate, PAI and RRI of the hot areas `hot` (booleans) given each area's size and its
    recorded violent incidents in T (`train`) and T+1 (`test`)."""
    hot = np.asarray(hot, dtype=bool)
    area, train, test = (np.asarray(a, dtype=float) for a in (area, train, test))
    share = float(area[hot].sum() / area.sum())
    n_test, n_train = float(test.sum()), float(train.sum())
    hit = float(test[hot].sum() / n_test) if n_test else None
    in_train = float(train[hot].sum())
    return {"hot_areas": int(hot.sum()), "areas": len(hot), "area_share": share,
            "train_in_hot": in_train, "train_total": n_train, "test_in_hot": float(test[hot].sum()),
            "test_total": n_test, "hit_rate": hit,
            "pai": hit / share if hit is not None and share > 0 else None,
            "rri": (float(test[hot].sum()) / in_train) / (n_test / n_train) if in_train and n_train and n_test else None}


def _npa_counts(engine: Engine, npas, period: Filter, source: str, origin: str | None) -> np.ndarray:
    from geo.metrics import source_values

    rows = source_values(engine, period.narrowed(origin=origin), get_source(source), ("npa",))
    rows = rows.rename(columns={"npa": "npa_id"})
    return npas[["npa_id"]].merge(rows, on="npa_id", how="left")["value"].fillna(0.0).to_numpy(dtype=float)


def _has_rows(engine: Engine, source: str, period: Filter, origin: str | None) -> bool:
    units, params = get_source(source).units_sql(period.narrowed(origin=origin))
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(f"SELECT EXISTS ({units})"), params).scalar_one())


def accuracy(engine: Engine, train: Filter, test: Filter, *, sources: tuple[str, ...] | None = None,
             grid_ft: float | None = None, origin: str | None = None) -> pd.DataFrame:
    """One row per source and level ('npa', and 'grid' when `grid_ft` is given): hot spots found
    on `train`, scored on the recorded violent incidents of `test` (see the module's docstring).

    Sources with no rows in `train` are left out (named in attrs['skipped']); attrs['hot'] holds
    the hot NPA ids (or (col, row) cells) per (source, level).
    """
    from geo.sources import check_origin

    if test.start < train.end:
        raise ValueError(f"the test period ({test.start_date}..) must start after the training period ends "
                         f"({train.end_date})")
    truth = get_source(TRUTH)
    for period in (train, test):
        check_origin(engine, truth, period, origin)
    if not _has_rows(engine, TRUTH, test, origin):
        raise ValueError(f"no recorded violent incidents in {test.start_date}..{test.end_date}: nothing to score the hot spots on")
    names = tuple(sources or NAMES)
    npas = read_neighborhoods(engine)
    weights = queen_weights(npas)
    npa_area = npas.to_crs(2264).geometry.area.to_numpy()
    truth_npa = {"train": _npa_counts(engine, npas, train, TRUTH, origin),
                 "test": _npa_counts(engine, npas, test, TRUTH, origin)}
    if grid_ft:
        import shapely

        lattice = Lattice.over(shapely.union_all(npas.to_crs(2264).geometry.to_numpy()), grid_ft)
    else:
        lattice = None

    def cell_counts(period: Filter, source: str) -> np.ndarray:
        rows, _ = source_points(engine, period, source, origin)
        return lattice.sums(rows["x"].to_numpy(), rows["y"].to_numpy(), rows["w"].to_numpy(dtype=float))

    if lattice is not None:
        truth_cells = {"train": cell_counts(train, TRUTH), "test": cell_counts(test, TRUTH)}
    out, skipped, hot_ids = [], [], {}
    for name in names:
        src = get_source(name)
        check_origin(engine, src, train, origin)
        if not _has_rows(engine, name, train, origin):
            skipped.append(name)
            continue
        values = truth_npa["train"] if name == TRUTH else _npa_counts(engine, npas, train, name, origin)
        hot = np.isin(gi_star(None, values, permutations=0, weights=weights).classes, HOT_CLASSES)
        out.append({"source": name, "level": "npa", **score(hot, npa_area, truth_npa["train"], truth_npa["test"])})
        hot_ids[(name, "npa")] = [int(n) for n in npas["npa_id"][hot]]
        if lattice is not None:
            values = truth_cells["train"] if name == TRUTH else cell_counts(train, name)
            hot = np.isin(gi_star(None, values, permutations=0, weights=lattice.weights).classes, HOT_CLASSES)
            out.append({"source": name, "level": "grid",
                        **score(hot, np.ones(len(values)), truth_cells["train"], truth_cells["test"])})
            hot_ids[(name, "grid")] = list(zip(lattice.cols[hot].tolist(), lattice.rows[hot].tolist()))
    table = pd.DataFrame(out, columns=COLUMNS)
    table.attrs.update(skipped=skipped, hot=hot_ids, words={n: get_source(n).describe(origin) for n in names})
    return table


def accuracy_params(train: Filter, test: Filter, table: pd.DataFrame, grid_ft: float | None,
                    origin: str | None) -> dict:
    """What a saved accuracy run records: the periods, the truth, each source in words and the table."""
    return {"train": [str(train.start_date), str(train.end_date)], "test": [str(test.start_date), str(test.end_date)],
            "truth": TRUTH, "hot_classes": list(HOT_CLASSES), "grid_ft": grid_ft, "origin": origin,
            "sources": table.attrs.get("words", {}), "skipped": table.attrs.get("skipped", []),
            "rows": json.loads(table.to_json(orient="records"))}


def save_accuracy(engine: Engine, params: dict, model_version: str | None = None) -> int:
    """Store an accuracy table as an analysis run of kind 'accuracy'; returns its run_id."""
    return save_run(engine, RunSpec(RunKind.ACCURACY, params, model_version))


def latest_accuracy(engine: Engine, model_version: str | None = None) -> dict | None:
    """The params of the latest saved accuracy run (of that model version, if given), with its run_id."""
    return latest_params(engine, RunKind.ACCURACY, model_version)


def format_table(rows: list[dict]) -> list[str]:
    """Printable lines of an accuracy table (source, level, hot areas, area share, hit rate, PAI, RRI)."""
    def num(v, fmt):
        return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

    lines = [f"{'source':10}{'level':6}{'hot':>6}{'of':>7}{'area':>8}{'hit rate':>10}{'PAI':>7}{'RRI':>7}"]
    for r in rows:
        lines.append(f"{r['source']:10}{r['level']:6}{r['hot_areas']:>6}{r['areas']:>7}{num(r['area_share'], '.1%'):>8}"
                     f"{num(r['hit_rate'], '.1%'):>10}{num(r['pai'], '.2f'):>7}{num(r['rri'], '.2f'):>7}")
    return lines


def report_lines(saved: dict | None) -> list[str]:
    """The model report's section on the latest accuracy run (`latest_accuracy`), or how to compute one."""
    if saved is None:
        return ["Map accuracy: not computed (run `hotspots accuracy`)."]
    return [f"Map accuracy (analysis run {saved['run_id']}): Gi* hot spots (99/95%) on {saved['train'][0]}.."
            f"{saved['train'][1]} scored on recorded violent incidents of {saved['test'][0]}..{saved['test'][1]} "
            "(end dates excluded)", *("  " + line for line in format_table(saved["rows"]))]
