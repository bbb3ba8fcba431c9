"""Classifier benchmark: training time on 500,000 calls, scoring throughput on 1,000,000 calls.

Runs on a private cluster under var/bench with generated calls (geo/synth.py). Scoring is
reported three ways, side by side on the same calls: the fitted scikit-learn model alone on a
ready feature frame (the reference), our in-memory path (features from raw call fields, then the
model), and `hotspots label` end to end (read from PostGIS, score, write probability, label and
model version back, chunk by chunk).

Usage: python bench/classifier.py [--train-rows 500000] [--score-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo.classify import label_calls, load_model, logistic_pipeline, make_features, read_calls, train  # noqa: E402
from geo.db import EmbeddedCluster, make_engine  # noqa: E402
from geo.demo import generate_and_load  # noqa: E402

from bench.common import reference_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=500_000)
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    data_dir = Path(os.environ.get("HOTSPOTS_DATA_DIR", REPO.parent / "shared" / "cmpd"))
    work = REPO / "var" / "bench"
    cluster = EmbeddedCluster(work / "pg")
    cluster.up()
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}

    engine = reference_database(cluster, "bench_train", data_dir)
    generate_and_load(n_calls=args.train_rows, start=date(2021, 1, 1), days=365, seed=2264,
                      out=work / f"train_{args.train_rows}", engine=engine, data_dir=data_dir, progress=False)
    t0 = time.perf_counter()
    trained = train(engine, models_dir=work / "models")
    result["train_total_s"] = round(time.perf_counter() - t0, 2)
    result["train_rows"] = trained.params["train_rows"] + trained.params["calibration_rows"] + trained.params["test_rows"]
    calls = read_calls(engine, with_truth=True)
    X = make_features(calls, load_model(engine).rates)
    t0 = time.perf_counter()
    logistic_pipeline().fit(X, calls["violent"].to_numpy())
    result["logistic_fit_only_s"] = round(time.perf_counter() - t0, 2)
    result["metrics"] = {k: {m: v[m] for m in ("roc_auc", "pr_auc", "recall_at_90_precision", "brier") if m in v}
                         for k, v in trained.metrics.items() if k != "shuffled_label_control"}
    result["shuffled_label_control"] = trained.metrics["shuffled_label_control"]
    engine.dispose()

    engine = reference_database(cluster, "bench_score", data_dir)
    days = round(365 * args.score_rows / 500_000)
    generate_and_load(n_calls=args.score_rows, start=date(2021, 1, 1), days=days, seed=7, dirty=False,
                      out=work / f"score_{args.score_rows}", engine=engine, data_dir=data_dir, progress=False)
    # Score with the model trained above: copy its model_runs row into this database.
    with make_engine(make_url(cluster.url()).set(database="bench_train").render_as_string(hide_password=False)).connect() as src:
        row = src.execute(sa.text("SELECT * FROM model_runs WHERE is_current")).mappings().one()
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO model_runs (model_version, algorithm, params, metrics, threshold, artifact_path, artifact_sha256,"
            " is_current) VALUES (:model_version, :algorithm, CAST(:params AS jsonb), CAST(:metrics AS jsonb), :threshold,"
            " :artifact_path, :artifact_sha256, true)"),
            {**row, "params": json.dumps(row["params"]), "metrics": json.dumps(row["metrics"])})
    stored = load_model(engine)
    calls = read_calls(engine, with_truth=False)
    n = len(calls)
    X = make_features(calls, stored.rates)
    t0 = time.perf_counter()
    stored.model.predict_proba(X)
    model_only = time.perf_counter() - t0
    t0 = time.perf_counter()
    stored.score(calls)
    in_memory = time.perf_counter() - t0
    t0 = time.perf_counter()
    labelled = label_calls(engine)
    end_to_end = time.perf_counter() - t0
    assert labelled.labelled == n
    result["score_rows"] = n
    result["scoring_calls_per_s"] = {
        "model_only_reference": round(n / model_only),
        "features_and_model": round(n / in_memory),
        "label_command_end_to_end": round(n / end_to_end),
    }
    result["scoring_seconds"] = {"model_only": round(model_only, 2), "features_and_model": round(in_memory, 2),
                                 "label_end_to_end": round(end_to_end, 2)}
    engine.dispose()
    print(json.dumps(result, indent=2))
    (work / "classifier_result.json").write_text(json.dumps(result, indent=2))
    cluster.down()


if __name__ == "__main__":
    main()
