"""The violent-call classifier on generated data with a known signal, stored in a real PostGIS."""

from __future__ import annotations

import inspect
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from geo import classify
from geo.classify import (
    ALL_FEATURES,
    FEATURES,
    PLACE_FEATURES,
    POST_CALL_FIELDS,
    AreaRates,
    ModelError,
    count_matching_threshold,
    label_calls,
    load_model,
    threshold_lines,
    train,
)
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
    assert not set(ALL_FEATURES) & POST_CALL_FIELDS
    assert not set(FEATURES) & set(PLACE_FEATURES)  # the default model has no place features
    # The fitted transformer reads exactly its features, and make_features produces nothing else.
    for columns in (FEATURES, ALL_FEATURES):
        pipe = classify.logistic_pipeline(columns)
        used = [c for _, _, cols in pipe.named_steps["features"].transformers for c in cols]
        assert sorted(used) == sorted(columns)
    used = [c for _, _, cols in classify.logistic_pipeline().named_steps["features"].transformers for c in cols]
    assert sorted(used) == sorted(FEATURES)
    source = inspect.getsource(classify.make_features)
    for field in POST_CALL_FIELDS - {"category"}:
        assert f'"{field}"' not in source, field
    # The CAD times and outcomes (migration 011) are recorded after the call comes in: never read for training.
    cad = {"dispatched_at", "enroute_at", "onscene_at", "cleared_at", "units_assigned", "primary_unit", "disposition"}
    assert cad <= POST_CALL_FIELDS
    assert not [field for field in cad if field in classify._CALLS_SQL]


def test_cross_fitted_rate_leaves_out_the_rows_own_month():
    # 3 NPAs x 4 months; NPA 1 is violent only in month "c". Folds of whole months (k = 4 here).
    npa = pd.Series([1, 2, 3] * 40)
    month = np.repeat(["a", "b", "c", "d"], 30)
    violent = ((npa == 1) & (month == "c")).to_numpy()
    full, oof = AreaRates.cross_fit(npa, violent, month, folds=4)
    assert full.by_npa == AreaRates.fit(npa, violent).by_npa
    # A row's rate is the fit on the other months: NPA 1 in month c sees no violence at all ...
    held = (month == "c") & (npa == 1).to_numpy()
    expected = AreaRates.fit(npa[month != "c"], violent[month != "c"]).apply(pd.Series([1]))[0]
    assert np.allclose(oof[held], expected)
    # ... and flipping a row's own outcome never moves its own rate (it does move the in-sample one).
    flipped = violent.copy()
    flipped[0] = not flipped[0]
    _, oof_flipped = AreaRates.cross_fit(npa, flipped, month, folds=4)
    assert oof_flipped[0] == oof[0]
    assert AreaRates.fit(npa, flipped).by_npa[1] != full.by_npa[1]
    # rows of one month share a fold, so the other rows of that month do not move either
    assert np.array_equal(oof_flipped[month == "a"], oof[month == "a"])
    with pytest.raises(ModelError, match="2 groups"):
        AreaRates.cross_fit(npa, violent, np.repeat("a", len(npa)))


def test_count_matching_threshold_labels_the_expected_number():
    rng = np.random.default_rng(3)
    p = rng.beta(0.5, 8, 5000)
    t = count_matching_threshold(p)
    assert int((p >= t).sum()) == round(p.sum())
    assert int((np.array([0.1, 0.2]) >= count_matching_threshold(np.array([0.1, 0.2]))).sum()) == 0  # expects 0


def test_thresholds_report_labelled_against_true_share(trained):
    _, result = trained
    shares = result.metrics["thresholds"]
    assert result.params["thresholds"]["f1"] == pytest.approx(result.threshold, abs=1e-6)
    assert shares["violent"] > 50 and shares["n"] == result.params["calibration_rows"]
    f1, count = shares["f1"], shares["count"]
    # The count-matching cut labels the expected number (sum of p) on the calibration months ...
    assert abs(count["labelled"] - shares["expected"]) <= 1
    # ... and, the model being calibrated, about as many as are violent. F1 labels however many its
    # trade of precision for recall gives (more or fewer: tests/test_model_shift.py has it 35-80% more).
    assert abs(count["labelled_over_violent_pct"]) < 25
    for rule in (f1, count):
        assert rule["labelled_over_violent_pct"] == pytest.approx(100 * (rule["labelled"] / shares["violent"] - 1), abs=0.1)
        assert rule["labelled_share"] == pytest.approx(rule["labelled"] / shares["n"], abs=1e-5)
    assert shares["true_share"] == pytest.approx(shares["violent"] / shares["n"], abs=1e-5)
    lines = threshold_lines(result.metrics)
    more = f1["labelled_over_violent_pct"]
    assert f"f1 threshold {f1['threshold']:.3f}: labels {f1['labelled']:,}" in lines[1]
    assert f"{abs(more):.0f}% {'more' if more >= 0 else 'fewer'} than are violent" in lines[1]


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
    # On the model's own (place-free) features the shuffled fits sit off 0.5 without any leak (rare
    # call types, the violent ones here, get low scores from few positives), far below the model.
    own = result.metrics["shuffled_label_control_model_features"]
    assert own["features"] == FEATURES and len(own["runs"]) == classify.CONTROL_SHUFFLES
    assert max(own["runs"]) < 0.65 < result.metrics["model"]["roc_auc"] - 0.2


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



def test_model_report_says_how_many_calls_each_threshold_labels(trained):
    engine, result = trained
    from click.testing import CliRunner

    from geo.cli import main

    out = CliRunner().invoke(main, ["model", "report"], catch_exceptions=False,
                             env={"DATABASE_URL": engine.url.render_as_string(hide_password=False)})
    assert out.exit_code == 0
    shares = result.metrics["thresholds"]
    for rule in ("f1", "count"):
        s = shares[rule]
        more = s["labelled_over_violent_pct"]
        assert (f"{rule} threshold {s['threshold']:.3f}: labels {s['labelled']:,} ({s['labelled_share']:.2%}), "
                f"{abs(more):.0f}% {'more' if more >= 0 else 'fewer'} than are violent") in out.output
    assert f"{shares['violent']:,} violent ({shares['true_share']:.2%})" in out.output


def test_curves_keep_the_ends_and_at_most_the_stored_points():
    rng = np.random.default_rng(3)
    y = rng.random(5000) < 0.1
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    drawn = classify.curves(y, p)
    for name in ("roc", "pr"):
        assert 2 <= len(drawn[name]) <= classify.CURVE_POINTS
    # ROC runs from (0, 0) to (1, 1) with both rates never falling
    assert drawn["roc"][0] == [0.0, 0.0] and drawn["roc"][-1] == [1.0, 1.0]
    fpr, tpr = np.array(drawn["roc"]).T
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    # PR from recall 0 to recall 1, ending at the base rate (every call flagged)
    recall, precision = np.array(drawn["pr"]).T
    assert recall[0] == 0.0 and recall[-1] == 1.0 and (np.diff(recall) >= 0).all()
    assert precision[-1] == pytest.approx(y.mean(), abs=1e-4)
    assert classify.thin_curve(np.arange(3), np.arange(3)) == [[0, 0], [1, 1], [2, 2]]


def test_training_stores_the_curves_of_the_model_and_the_baseline(trained):
    engine, result = trained
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT metrics FROM model_runs WHERE model_version = :v"),
                              {"v": result.version}).scalar_one()
    for name in ("model", "call_type_baseline"):
        roc = np.array(stored[name]["curves"]["roc"])
        assert 5 <= len(roc) <= classify.CURVE_POINTS
        # the trapezoid area under the stored points is the stored ROC-AUC, to the thinning's error
        assert np.trapezoid(roc[:, 1], roc[:, 0]) == pytest.approx(stored[name]["roc_auc"], abs=0.01)
