"""The violent-call classifier on generated data with a known signal, stored in a real PostGIS."""

from __future__ import annotations

import inspect
from datetime import date

import numpy as np
import pytest
import sqlalchemy as sa

from geo import classify
from geo.classify import FEATURES, POST_CALL_FIELDS, ModelError, label_calls, load_model, train
from geo.demo import generate_and_load
from tests.clusters import cloned_database


@pytest.fixture(scope="module")
def trained(server_url, template_db, data_dir, tmp_path_factory):
    """One database with a year of generated calls and a trained model, shared by this module's tests."""
    with cloned_database(server_url, template_db) as (_, engine):
        out = tmp_path_factory.mktemp("clf")
        generate_and_load(n_calls=80_000, start=date(2021, 1, 1), days=365, seed=21, out=out / "data",
                          engine=engine, data_dir=data_dir, progress=False)
        result = train(engine, test_months=3, models_dir=out / "models")
        yield engine, result


def test_features_are_known_when_the_call_comes_in():
    assert not set(FEATURES) & POST_CALL_FIELDS
    # The fitted transformer reads exactly FEATURES, and make_features produces nothing else.
    pipe = classify.logistic_pipeline()
    used = [c for _, _, cols in pipe.named_steps["features"].transformers for c in cols]
    assert sorted(used) == sorted(FEATURES)
    source = inspect.getsource(classify.make_features)
    for field in POST_CALL_FIELDS - {"category"}:
        assert f'"{field}"' not in source, field


def test_model_beats_call_type_baseline_on_later_months(trained):
    _, result = trained
    model, baseline = result.metrics["model"], result.metrics["call_type_baseline"]
    assert model["positives"] > 50
    assert model["roc_auc"] > 0.85 and model["roc_auc"] > baseline["roc_auc"]
    assert model["pr_auc"] > baseline["pr_auc"]
    assert result.metrics["gradient_boosting"]["roc_auc"] > 0.85
    # Calibrated: expected violent calls (sum of probabilities) within 25% of those observed.
    expected, observed = model["expected_vs_observed"]
    assert abs(expected - observed) < 0.25 * observed


def test_shuffled_labels_score_near_chance(trained):
    _, result = trained
    assert abs(result.metrics["shuffled_label_control"]["roc_auc"] - 0.5) < 0.06


def test_test_months_come_after_training_months(trained):
    engine, result = trained
    with engine.connect() as conn:
        train_end, test_start, params = conn.execute(sa.text(
            "SELECT train_end, test_start, params FROM model_runs WHERE model_version = :v"), {"v": result.version}).one()
    assert train_end < test_start
    assert params["features"] == FEATURES and params["test_rows"] > 0


def test_labels_and_version_land_in_postgis_and_relabel_only_on_request(trained):
    engine, result = trained
    first = label_calls(engine)
    with engine.connect() as conn:
        n, labelled, versions, mean_p = conn.execute(sa.text(
            "SELECT count(*), count(p_violent), array_agg(DISTINCT model_version), avg(p_violent) FROM calls")).one()
        flagged = conn.execute(sa.text("SELECT count(*) FROM calls WHERE label")).scalar()
        threshold = conn.execute(sa.text("SELECT threshold FROM model_runs WHERE is_current")).scalar()
        wrong = conn.execute(sa.text(
            "SELECT count(*) FROM calls WHERE label <> (p_violent >= :t)"), {"t": threshold - 1e-6}).scalar()
    assert first.labelled == n == labelled and versions == [result.version]
    assert first.violent == flagged and 0 < mean_p < 0.2
    assert wrong <= 5  # float4 storage may move a probability sitting exactly on the threshold
    assert label_calls(engine).labelled == 0
    assert label_calls(engine, relabel=True).labelled == 0  # all already carry the current version


def test_stored_model_scores_like_the_trained_one_and_refuses_tampering(trained):
    engine, result = trained
    stored = load_model(engine)
    assert stored.version == result.version
    calls = classify.read_calls(engine, with_truth=False, limit=1000)
    p = stored.score(calls)
    assert p.shape == (1000,) and np.all((p >= 0) & (p <= 1))
    blob = result.path.read_bytes()
    try:
        result.path.write_bytes(blob + b"x")
        with pytest.raises(ModelError, match="checksum"):
            load_model(engine)
    finally:
        result.path.write_bytes(blob)
    assert load_model(engine).version == result.version


def test_training_needs_enough_months(engine, tmp_path, data_dir):
    generate_and_load(n_calls=3_000, start=date(2021, 3, 1), days=40, seed=1, out=tmp_path / "d", engine=engine,
                      data_dir=data_dir, progress=False, dirty=False)
    with pytest.raises(ModelError, match="months"):
        train(engine, models_dir=tmp_path / "m")
