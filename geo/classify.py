"""The violent-call classifier: features known when a call comes in, time-based evaluation, labelling.

Ground truth: a call is violent when the incident report it produced carries an FBI violent-crime
NIBRS code (geo/taxonomy.csv). Features are only what a dispatcher knows when the call arrives:
call type, priority, hour and weekday. Where the call is (NPA, division, and the NPA's violent
rate, cross-fitted on the training months) is an option (`place_features`), not the default: a
model trained on the past learns the past's places, so its map of later months lags behind
violence that moves (tests/test_model_shift.py measures it; docs/methods.md, "Classifier").
Nothing recorded later (the NIBRS code, clearance, incident dates) is ever a feature: the
project this one replaces scored 100% by feeding the label's own code to the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import joblib
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sqlalchemy.engine import Engine
from tqdm import tqdm

from geo.db import read_query_frame
from geo.filters import compile_driver
from geo.runs import ModelRun, save_model_run
from geo.settings import data_settings, zone_or_configured
from geo.taxonomy import TAXONOMY_CSV, load_taxonomy

# The default model's features; PLACE_FEATURES are added with place_features=True.
FEATURES = ["call_type", "priority", "hour", "weekday"]
PLACE_FEATURES = ["npa_id", "division_id", "npa_violent_rate"]
ALL_FEATURES = FEATURES + PLACE_FEATURES
CATEGORICAL = ["call_type", "priority", "hour", "weekday", "npa_id", "division_id"]
# Everything recorded after the call came in (or derived from the outcome): never a feature.
POST_CALL_FIELDS = frozenset({
    "incident_report_id", "highest_nibrs_code", "highest_nibrs_description", "clearance_status",
    "clearance_detail_status", "clearance_date", "date_reported", "date_incident_began", "date_incident_end",
    "is_crime", "category", "violent", "p_violent", "label", "model_version", "labelled_at",
    "location_type_description", "place_type_description", "place_detail_description",
    # CAD times and outcomes (migration 011): recorded while and after the call is answered.
    "dispatched_at", "enroute_at", "onscene_at", "cleared_at", "units_assigned", "primary_unit", "disposition",
})
# Smoothing for the NPA violent rate: an NPA with few training calls is pulled toward the city rate.
RATE_PRIOR_CALLS = 50.0
# The training rows' own NPA rate is cross-fitted: K folds of whole months, each row's rate from the others.
RATE_FOLDS = 5  # (whole ISO weeks when the training rows span one month)
CONTROL_SHUFFLES = 5
# Points kept of each stored ROC and PR curve: enough to draw them, small in model_runs.metrics.
CURVE_POINTS = 101


class ModelError(RuntimeError):
    """No model trained, the artifact is missing or altered, or too little data to train."""


# --- data -------------------------------------------------------------------------------------
_CALLS_SQL = """
SELECT c.call_id,
       extract(epoch FROM c.received_at)::bigint AS received_epoch,
       c.call_type,
       c.priority,
       -- A call known only by its date has no hour: '?' in the features, never midnight.
       CASE WHEN c.received_at_precision = 'date' THEN NULL
            ELSE extract(hour FROM c.received_at AT TIME ZONE :tz)::int END AS hour,
       (extract(isodow FROM c.received_at AT TIME ZONE :tz)::int - 1) AS weekday,
       c.npa_id,
       c.division_id
       {truth}
FROM calls c
{join}
WHERE {where}
ORDER BY c.call_id
{limit}
"""


def read_calls(engine: Engine, *, with_truth: bool, where: str = "TRUE", params: dict | None = None,
               limit: int | None = None, tz: str | None = None) -> pd.DataFrame:
    """Calls with the raw inputs of the features (and, for training, the ground truth)."""
    with engine.connect() as conn:
        return _calls_frame(conn, with_truth=with_truth, where=where, params=params, limit=limit, tz=tz)


def _calls_frame(conn, *, with_truth: bool, where: str = "TRUE", params: dict | None = None,
                 limit: int | None = None, tz: str | None = None) -> pd.DataFrame:
    """read_calls on an open connection (inside the caller's transaction, which sees its own writes)."""
    params = dict(params or {})
    params["tz"] = zone_or_configured(tz)   # the hour and weekday features are local ones
    truth = join = ""
    if with_truth:
        params["violent"] = sorted(load_taxonomy().violent_codes)
        # Ground truth: a linked report of an FBI violent crime that was founded (not Unfounded).
        truth = ", coalesce(i.highest_nibrs_code = ANY(CAST(:violent AS text[])) AND i.is_crime, false)::int AS violent"
        join = "LEFT JOIN incidents i ON i.incident_report_id = c.incident_report_id"
    sql = _CALLS_SQL.format(truth=truth, join=join, where=where, limit=f"LIMIT {int(limit)}" if limit else "")
    # Written with SQLAlchemy's named binds like every other statement; compiled to psycopg2's own
    # style only here, because read_query_frame hands it to the driver's COPY.
    sql, params = compile_driver(sa.text(sql).bindparams(**params))
    frame = read_query_frame(conn, sql, params, text_columns=("call_id", "call_type", "division_id"))
    if frame.empty:
        return frame
    frame["received_at"] = pd.to_datetime(frame["received_epoch"], unit="s", utc=True)
    if with_truth:
        frame["violent"] = frame["violent"].astype(bool)
    return frame


@dataclass
class AreaRates:
    """Violent share of calls per NPA in the training data, smoothed toward the city rate."""

    by_npa: dict[int, float]
    city: float

    @classmethod
    def fit(cls, npa_id: pd.Series | np.ndarray, violent: pd.Series | np.ndarray) -> "AreaRates":
        violent = np.asarray(violent, dtype=float)
        city = float(violent.mean())
        grouped = pd.DataFrame({"npa": np.asarray(npa_id), "v": violent}).groupby("npa")["v"].agg(["sum", "count"])
        rate = (grouped["sum"] + RATE_PRIOR_CALLS * city) / (grouped["count"] + RATE_PRIOR_CALLS)
        return cls({int(k): float(v) for k, v in rate.items()}, city)

    def apply(self, npa_id: pd.Series) -> np.ndarray:
        return npa_id.map(self.by_npa).fillna(self.city).to_numpy(dtype=float, copy=True)

    @classmethod
    def cross_fit(cls, npa_id: pd.Series, violent: pd.Series | np.ndarray, groups: pd.Series | np.ndarray,
                  folds: int = RATE_FOLDS) -> tuple["AreaRates", np.ndarray]:
        """The rates fitted on all rows, and each row's rate fitted on the other folds only.

        Rows are dealt into folds by whole group (a month of calls), so a row's own outcome, and
        those of the other calls in its NPA-month (with them, nearly always, the other calls about
        its incident, which come within hours of each other), never enter its rate; the
        model then learns how far a rate fitted elsewhere predicts, as it will be used on new
        months. With one group only there is nothing to hold out and the error says so.
        """
        npa_id = pd.Series(np.asarray(npa_id))
        violent = np.asarray(violent, dtype=float)
        labels = pd.Series(np.asarray(groups))
        order = sorted(labels.unique())
        if len(order) < 2:
            raise ModelError(f"cross-fitting the NPA rate needs at least 2 groups (months) of training calls; found {order}")
        k = min(folds, len(order))
        fold = labels.map({g: i % k for i, g in enumerate(order)}).to_numpy()
        out_of_fold = np.empty(len(npa_id), dtype=float)
        for f in range(k):
            held = fold == f
            out_of_fold[held] = cls.fit(npa_id[~held], violent[~held]).apply(npa_id[held])
        return cls.fit(npa_id, violent), out_of_fold


def make_features(calls: pd.DataFrame, rates: AreaRates, npa_rate: np.ndarray | None = None) -> pd.DataFrame:
    """The model's input: exactly ALL_FEATURES (each pipeline picks its own), from fields known when the call comes in.

    `npa_rate` replaces `rates.apply` for rows whose rate was cross-fitted (the training rows).
    """
    def code(values: pd.Series) -> np.ndarray:
        # whole numbers as text categories, '?' when missing
        filled = pd.to_numeric(values, errors="coerce").fillna(-1).astype(np.int64).astype(str).to_numpy(dtype=object)
        filled[filled == "-1"] = "?"
        return filled

    feats = pd.DataFrame({
        "call_type": calls["call_type"].fillna("").astype(str).str.upper().str.strip(),
        "priority": code(calls["priority"]),
        "hour": code(calls["hour"]),
        "weekday": calls["weekday"].astype(int).astype(str),
        "npa_id": code(calls["npa_id"]),
        "division_id": calls["division_id"].fillna("none").astype(str),
        # log-odds scale: the rates span two orders of magnitude across NPAs
        "npa_violent_rate": np.log(np.clip(rates.apply(calls["npa_id"]) if npa_rate is None else npa_rate, 1e-4, 1)),
    })
    return feats[ALL_FEATURES]


# --- models -----------------------------------------------------------------------------------
def logistic_pipeline(columns: list[str] | None = None, C: float = 1.0) -> Pipeline:
    """ColumnTransformer (one-hot categories, scaled rate) + balanced LogisticRegression."""
    columns = columns or FEATURES
    parts = []
    cats = [c for c in CATEGORICAL if c in columns]
    if cats:
        parts.append(("categories", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20), cats))
    if "npa_violent_rate" in columns:
        parts.append(("rate", StandardScaler(), ["npa_violent_rate"]))
    return Pipeline([
        ("features", ColumnTransformer(parts, remainder="drop")),
        ("model", LogisticRegression(class_weight="balanced", C=C, max_iter=2000)),
    ])


def boosting_pipeline(seed: int = 0, columns: list[str] | None = None) -> Pipeline:
    """The stronger comparison: gradient-boosted trees with native categorical splits.

    The NPA enters through its violent rate only: trees split on at most 255 categories.
    """
    columns = columns or FEATURES
    cats = [c for c in CATEGORICAL if c != "npa_id" and c in columns]
    parts = [("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                           encoded_missing_value=-1), cats)]
    if "npa_violent_rate" in columns:
        parts.append(("rate", "passthrough", ["npa_violent_rate"]))
    enc = ColumnTransformer(parts, remainder="drop")
    model = HistGradientBoostingClassifier(
        categorical_features=list(range(len(cats))), class_weight="balanced", max_iter=200,
        learning_rate=0.1, random_state=seed, early_stopping=False,
    )
    return Pipeline([("features", enc), ("model", model)])


def thin_curve(x: np.ndarray, y: np.ndarray, points: int = CURVE_POINTS) -> list[list[float]]:
    """At most `points` (x, y) pairs of a curve, evenly spaced along it, its first and last kept, to 4 decimals."""
    keep = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).round().astype(int))
    return [[round(float(x[i]), 4), round(float(y[i]), 4)] for i in keep]


def curves(y: np.ndarray, p: np.ndarray) -> dict:
    """The ROC curve (false positive rate, true positive rate) and PR curve (recall, precision), thinned for storage."""
    fpr, tpr, _ = roc_curve(y, p)
    precision, recall, _ = precision_recall_curve(y, p)
    # precision_recall_curve runs from high recall to low; drawn left to right it reads better reversed.
    return {"roc": thin_curve(fpr, tpr), "pr": thin_curve(recall[::-1], precision[::-1])}


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """ROC-AUC, PR-AUC, recall at 90% precision, Brier, calibration bins, confusion at the threshold, curves."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    precision, recall, _ = precision_recall_curve(y, p)
    at90 = recall[precision >= 0.9]
    predicted = p >= threshold
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[False, True]).ravel()
    bins = np.clip((p * 10).astype(int), 0, 9)
    calibration = [
        {"bin": f"{b / 10:.1f}-{(b + 1) / 10:.1f}", "n": int((bins == b).sum()),
         "mean_predicted": round(float(p[bins == b].mean()), 4), "observed": round(float(y[bins == b].mean()), 4)}
        for b in range(10) if (bins == b).any()
    ]
    return {
        "n": int(len(y)), "positives": int(y.sum()), "base_rate": round(float(y.mean()), 5),
        "roc_auc": round(float(roc_auc_score(y, p)), 4), "pr_auc": round(float(average_precision_score(y, p)), 4),
        "recall_at_90_precision": round(float(at90.max()) if len(at90) else 0.0, 4),
        "brier": round(float(brier_score_loss(y, p)), 5), "threshold": round(float(threshold), 4),
        "confusion": {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)},
        "precision": round(float(tp / (tp + fp)) if tp + fp else 0.0, 4),
        "recall": round(float(tp / (tp + fn)) if tp + fn else 0.0, 4),
        "expected_vs_observed": [round(float(p.sum()), 1), int(y.sum())],
        "calibration": calibration,
        "curves": curves(y, p),
    }


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut that maximises F1 on the given (held-out) data."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))]) if len(thresholds) else 0.5


def count_matching_threshold(p: np.ndarray) -> float:
    """The probability cut that labels as many calls violent as the probabilities expect (their sum).

    F1 trades precision for recall and, with violent calls rare, labels many more calls than turn
    out violent; this cut labels the expected number, so a map of labels has the right total.
    """
    p = np.sort(np.asarray(p, dtype=float))[::-1]
    expected = int(round(p.sum()))
    if len(p) == 0:
        return 0.5
    if expected <= 0:
        return float(np.nextafter(p[0], np.inf))  # label none
    return float(p[min(expected, len(p)) - 1])


THRESHOLD_RULES = {"f1": "max F1 on the calibration months",
                   "count": "as many labelled as expected (sum of p) on the calibration months"}


def threshold_shares(y: np.ndarray, p: np.ndarray, thresholds: dict[str, float]) -> dict:
    """For each threshold: how many calls it labels violent against how many are (and are expected)."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    violent = int(y.sum())
    out = {"n": int(len(y)), "violent": violent, "true_share": round(float(y.mean()), 5),
           "expected": round(float(p.sum()), 1)}
    for rule, t in thresholds.items():
        labelled = int((p >= t).sum())
        out[rule] = {"threshold": round(float(t), 4), "labelled": labelled,
                     "labelled_share": round(labelled / max(len(y), 1), 5),
                     "labelled_over_violent_pct": round(100.0 * (labelled / violent - 1), 1) if violent else None}
    return out


def threshold_lines(metrics: dict) -> list[str]:
    """Plain-words lines for `train` / `model report`: how many calls each threshold labels violent."""
    shares = metrics.get("thresholds")
    if not shares:
        return []
    lines = [f"calibration months: {shares['n']:,} calls, {shares['violent']:,} violent ({shares['true_share']:.2%}), "
             f"{shares['expected']:,.0f} expected (sum of probabilities; the default for maps of calls)"]
    for rule in THRESHOLD_RULES:
        s = shares.get(rule)
        if s:
            more = s["labelled_over_violent_pct"]
            lines.append(f"  {rule} threshold {s['threshold']:.3f}: labels {s['labelled']:,} ({s['labelled_share']:.2%})"
                         + ("" if more is None else f", {abs(more):.0f}% {'more' if more >= 0 else 'fewer'} than are violent"))
    return lines


def month_of(calls: pd.DataFrame, tz: str | None = None) -> pd.Series:
    """Each call's local calendar month in `tz` (None: the configured zone), YYYY-MM."""
    return calls["received_at"].dt.tz_convert(zone_or_configured(tz)).dt.strftime("%Y-%m")


@dataclass
class TrainResult:
    """What `hotspots train` stored."""

    version: str
    path: Path
    sha256: str
    threshold: float
    metrics: dict
    params: dict


def _split_by_month(calls: pd.DataFrame, test_months: int, tz: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    month = month_of(calls, tz)
    months = sorted(month.unique())
    if len(months) < test_months + 2:
        raise ModelError(f"need at least {test_months + 2} months of calls to train and test; found {months}")
    test = month.isin(months[-test_months:]).to_numpy()
    train_months = months[:-test_months]
    # Calibration and threshold come from the last training month(s), held out from the fit.
    n_cal = max(1, len(train_months) // 5)
    cal = month.isin(train_months[-n_cal:]).to_numpy()
    fit = ~test & ~cal
    return fit, cal, test, months


@dataclass
class FittedClassifier:
    """The models fitted on one frame of calls, before anything is stored."""

    model: CalibratedClassifierCV
    base: Pipeline
    rates: AreaRates
    threshold: float
    thresholds: dict[str, float]
    metrics: dict
    features: list[str]
    fit: np.ndarray
    cal: np.ndarray
    test: np.ndarray
    months: list[str]

    def score(self, calls: pd.DataFrame) -> np.ndarray:
        """Probability that each call turns out violent (NPA rate from all the fit rows)."""
        return self.model.predict_proba(make_features(calls, self.rates))[:, 1]


def _calibrated(pipe: Pipeline, X: pd.DataFrame, y: np.ndarray, fit: np.ndarray, cal: np.ndarray):
    base = pipe.fit(X[fit], y[fit])
    return base, CalibratedClassifierCV(FrozenEstimator(base), method="sigmoid").fit(X[cal], y[cal])


def fit_classifier(calls: pd.DataFrame, *, test_months: int = 3, seed: int = 0, threshold_rule: str = "f1",
                   rate_encoding: str = "cross_fit", place_features: bool = False,
                   comparisons: bool = True, tz: str | None = None) -> FittedClassifier:
    """Fit, calibrate and evaluate on later months, from a frame as read_calls(with_truth=True) returns.

    The training rows' NPA rate is cross-fitted (AreaRates.cross_fit, folds of whole months);
    calibration, test and scoring rows use the rate fitted on all training rows. `rate_encoding=
    "in_sample"` is the old target encoding (each row's own outcome in its rate), kept to measure
    what cross-fitting changes. `place_features` adds NPA, division and NPA rate to the features.
    `comparisons=False` skips the baseline, boosting and control.
    """
    if threshold_rule not in THRESHOLD_RULES:
        raise ModelError(f"threshold rule {threshold_rule!r}: use one of {sorted(THRESHOLD_RULES)}")
    if rate_encoding not in ("cross_fit", "in_sample"):
        raise ModelError(f"rate encoding {rate_encoding!r}: use 'cross_fit' or 'in_sample'")
    features = ALL_FEATURES if place_features else FEATURES
    fit, cal, test, months = _split_by_month(calls, test_months, tz)
    y = calls["violent"].to_numpy(dtype=bool)
    # Folds of whole months; with a single training month, whole ISO weeks (dates, not instants).
    month = month_of(calls, tz)
    if month[fit].nunique() < 2:
        month = calls["received_at"].dt.tz_convert(zone_or_configured(tz)).dt.strftime("%G-W%V")

    def encoded(labels: np.ndarray) -> tuple[AreaRates, pd.DataFrame]:
        if rate_encoding == "in_sample":
            rates = AreaRates.fit(calls.loc[fit, "npa_id"], labels)
            return rates, make_features(calls, rates)
        rates, out_of_fold = AreaRates.cross_fit(calls.loc[fit, "npa_id"], labels, month[fit])
        per_row = rates.apply(calls["npa_id"]).copy()
        per_row[fit] = out_of_fold
        return rates, make_features(calls, rates, per_row)

    rates, X = encoded(y[fit])
    base, model = _calibrated(logistic_pipeline(features), X, y, fit, cal)
    p_cal = model.predict_proba(X[cal])[:, 1]
    thresholds = {"f1": best_f1_threshold(y[cal], p_cal), "count": count_matching_threshold(p_cal)}
    threshold = thresholds[threshold_rule]
    p_test = model.predict_proba(X[test])[:, 1]
    metrics = {"model": evaluate(y[test], p_test, threshold),
               "thresholds": threshold_shares(y[cal], p_cal, thresholds),
               "thresholds_on_test_months": threshold_shares(y[test], p_test, thresholds)}
    if not comparisons:
        return FittedClassifier(model, base, rates, threshold, thresholds, metrics, features, fit, cal, test, months)

    # The same recipe restricted to call type, the baseline the model must beat.
    _, baseline_cal = _calibrated(logistic_pipeline(["call_type"]), X, y, fit, cal)
    b_threshold = best_f1_threshold(y[cal], baseline_cal.predict_proba(X[cal])[:, 1])
    metrics["call_type_baseline"] = evaluate(y[test], baseline_cal.predict_proba(X[test])[:, 1], b_threshold)

    _, boost_cal = _calibrated(boosting_pipeline(seed, features), X, y, fit, cal)
    h_threshold = best_f1_threshold(y[cal], boost_cal.predict_proba(X[cal])[:, 1])
    metrics["gradient_boosting"] = evaluate(y[test], boost_cal.predict_proba(X[test])[:, 1], h_threshold)

    # Control: with labels shuffled there is nothing to learn, so ROC-AUC must sit near 0.5. It runs
    # the pipeline with every feature, the place features included, because the NPA rate is the one
    # feature made from labels (where a leak would come from): it is recomputed, cross-fitted the same
    # way, from the shuffled labels. One shuffle can land well off 0.5 by chance (a random ranking of
    # a few decisive call types), so the control averages several. The same control on the model's
    # own features is stored beside it: with call type, priority, hour and weekday only it sits off
    # 0.5 for a reason that is no leak (a shuffled fit scores rare categories low, having seen few
    # positives in them, and rare call types are the violent ones in the demo data), see docs/methods.md.
    rng = np.random.default_rng(seed)
    control_aucs, own_aucs = [], []
    for _ in range(CONTROL_SHUFFLES):
        shuffled = rng.permutation(y[fit])
        _, X_shuffled = encoded(shuffled)
        control = logistic_pipeline(ALL_FEATURES).fit(X_shuffled[fit], shuffled)
        control_aucs.append(roc_auc_score(y[test], control.predict_proba(X_shuffled[test])[:, 1]))
        own = control if features == ALL_FEATURES else logistic_pipeline(features).fit(X_shuffled[fit], shuffled)
        own_aucs.append(roc_auc_score(y[test], own.predict_proba(X_shuffled[test])[:, 1]))
    metrics["shuffled_label_control"] = {"roc_auc": round(float(np.mean(control_aucs)), 4),
                                         "runs": [round(float(a), 4) for a in control_aucs],
                                         "features": ALL_FEATURES}
    metrics["shuffled_label_control_model_features"] = {"roc_auc": round(float(np.mean(own_aucs)), 4),
                                                        "runs": [round(float(a), 4) for a in own_aucs],
                                                        "features": features}
    return FittedClassifier(model, base, rates, threshold, thresholds, metrics, features, fit, cal, test, months)


def train(engine: Engine, *, test_months: int = 3, seed: int = 0, models_dir: Path | None = None,
          threshold_rule: str = "f1", place_features: bool = False, echo: Callable[[str], None] = lambda s: None,
          progress: bool = False, tz: str | None = None) -> TrainResult:
    """Fit, calibrate, evaluate on later months, store the artifact and a model_runs row.

    `threshold_rule` picks the stored label threshold: "f1" (max F1 on the calibration months) or
    "count" (labels as many as the probabilities expect); both are measured and stored in metrics.
    `place_features` adds NPA, division and the cross-fitted NPA rate (the map then lags a shift).
    Hours, weekdays and months are local ones in `tz` (None: the configured zone).
    """
    started = datetime.now(timezone.utc)
    steps = tqdm(total=2, desc="train", unit="step", disable=not progress, leave=False)
    # Training learns the hour of day from calls that have one; date-only calls are left out (counted).
    calls = read_calls(engine, with_truth=True, where="c.received_at_precision <> 'date'", tz=tz)
    with engine.connect() as conn:
        date_only = conn.execute(sa.text("SELECT count(*) FROM calls WHERE received_at_precision = 'date'")).scalar_one()
    steps.update()
    if calls.empty or calls["violent"].sum() < 20:
        raise ModelError("too few calls with violent outcomes to train; load calls and incidents first")
    fit, cal, test, months = _split_by_month(calls, test_months, tz)
    echo(f"training on {fit.sum():,} calls ({months[0]}..), calibrating on {cal.sum():,}, testing on {test.sum():,} "
         f"({', '.join(months[-test_months:])})")
    fitted = fit_classifier(calls, test_months=test_months, seed=seed, threshold_rule=threshold_rule, tz=tz,
                            place_features=place_features)
    model, base, rates, threshold, metrics = fitted.model, fitted.base, fitted.rates, fitted.threshold, fitted.metrics
    steps.update()
    steps.close()

    version = "lr-" + started.strftime("%Y%m%dT%H%M%S")
    models_dir = Path(models_dir or (data_settings().var_dir / "models"))
    models_dir.mkdir(parents=True, exist_ok=True)
    path = (models_dir / f"{version}.joblib").resolve()
    params = {
        "features": fitted.features, "test_months": test_months, "seed": seed,
        "calibration": "sigmoid on held-out months", "threshold_rule": THRESHOLD_RULES[threshold_rule],
        "thresholds": {rule: round(t, 6) for rule, t in fitted.thresholds.items()},
        "npa_rate": (f"cross-fitted: {RATE_FOLDS} folds of whole months on the training rows, all training rows"
                     " for calibration, test and scoring") if place_features else "not a feature",
        "rate_prior_calls": RATE_PRIOR_CALLS,
        "taxonomy_sha256": hashlib.sha256(TAXONOMY_CSV.read_bytes()).hexdigest(),
        "train_rows": int(fit.sum()), "calibration_rows": int(cal.sum()), "test_rows": int(test.sum()),
        "left_out_date_only_calls": int(date_only),
        "train_seconds": round((datetime.now(timezone.utc) - started).total_seconds(), 1),
    }
    joblib.dump({"version": version, "model": model, "base": base, "rates": rates, "threshold": threshold,
                 "features": fitted.features}, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    when = calls["received_at"]
    save_model_run(engine, ModelRun(
        version, "LogisticRegression(balanced) + sigmoid calibration",
        when[fit | cal].min().to_pydatetime(), when[fit | cal].max().to_pydatetime(),
        when[test].min().to_pydatetime(), when[test].max().to_pydatetime(),
        params, metrics, threshold, str(path), sha))
    return TrainResult(version, path, sha, threshold, metrics, params)


# --- using a stored model ---------------------------------------------------------------------
@dataclass
class StoredModel:
    """A trained model loaded from its artifact, checksum verified."""

    version: str
    model: CalibratedClassifierCV
    base: Pipeline
    rates: AreaRates
    threshold: float
    metrics: dict
    params: dict

    def score(self, calls: pd.DataFrame) -> np.ndarray:
        """Probability that each call turns out violent."""
        return self.model.predict_proba(make_features(calls, self.rates))[:, 1]


def load_model(engine: Engine, version: str | None = None) -> StoredModel:
    """The current (or a named) model; refuses an artifact whose checksum does not match."""
    with engine.connect() as conn:
        where = "model_version = :v" if version else "is_current"
        row = conn.execute(
            sa.text(f"SELECT model_version, artifact_path, artifact_sha256, threshold, metrics, params FROM model_runs WHERE {where}"),
            {"v": version},
        ).mappings().first()
    if row is None:
        raise ModelError(f"no model {version or '(current)'} in model_runs; run `hotspots train` first")
    path = Path(row["artifact_path"])
    if not path.exists():
        raise ModelError(f"model file {path} is missing; run `hotspots train` again")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha != row["artifact_sha256"]:
        raise ModelError(f"model file {path} does not match its recorded checksum; refusing to load it")
    blob = joblib.load(path)
    return StoredModel(row["model_version"], blob["model"], blob["base"], blob["rates"], float(row["threshold"]),
                       row["metrics"], row["params"])


_PLAIN = {"call_type": "call type", "priority": "priority", "hour": "hour of day", "weekday": "weekday (0=Monday)",
          "npa_id": "NPA", "division_id": "division"}


def coefficient_table(stored: StoredModel) -> pd.DataFrame:
    """Every coefficient of the logistic model: feature (column or 'rate'), plain-words text, coef (log-odds)."""
    names = stored.base.named_steps["features"].get_feature_names_out()
    coefs = stored.base.named_steps["model"].coef_[0]
    rows = []
    for name, coef in zip(names, coefs):
        group, _, value = name.partition("__")
        if group == "rate":
            column, text = "rate", "one standard deviation more of the NPA's past violent rate (log scale)"
        else:
            column = next(c for c in CATEGORICAL if value.startswith(c + "_"))
            level = value[len(column) + 1:]
            text = f"{_PLAIN[column]} is rare (grouped)" if level.startswith("infrequent") else f"{_PLAIN[column]} = {level}"
        rows.append({"feature": column, "text": text, "coef": float(coef)})
    return pd.DataFrame(rows, columns=["feature", "text", "coef"])


def probability_effects(stored: StoredModel, n: int = 10) -> pd.DataFrame:
    """The strongest effects as probabilities: what each feature value does to a call otherwise average.

    Odds ratios of a balanced, one-hot logistic model run into the thousands and mean little to a
    reader. Here each level's coefficient is taken against the mean of its feature's levels (one-hot
    has no reference level) and passed through the stored calibration, starting from the held-out
    base rate: columns text, feature, from_p (the base rate), to_p, sorted by how far p moves.
    """
    from scipy.optimize import brentq

    table = coefficient_table(stored)
    # The scaled rate is one column: its coefficient is already the effect of one standard deviation.
    centre = table.groupby("feature")["coef"].transform("mean").where(table["feature"] != "rate", 0.0)
    table["shift"] = table["coef"] - centre
    calibrator = stored.model.calibrated_classifiers_[0].calibrators[0]
    base = float(stored.metrics["model"]["base_rate"])

    def calibrated(score: np.ndarray) -> np.ndarray:
        return np.asarray(calibrator.predict(np.asarray(score, dtype=float)), dtype=float)

    # The model score at which the calibrated probability is the base rate: an average call.
    start = brentq(lambda f: calibrated(np.array([f]))[0] - base, -60.0, 60.0)
    table["from_p"] = base
    table["to_p"] = calibrated(start + table["shift"].to_numpy())
    order = (table["to_p"] - base).abs().sort_values(ascending=False).index
    return table.loc[order, ["text", "feature", "from_p", "to_p"]].head(n).reset_index(drop=True)


@dataclass
class LabelResult:
    """Counts from one `hotspots label` run."""

    version: str
    labelled: int
    violent: int
    seconds: float


def label_selected(conn, stored: StoredModel, where: str, params: dict | None = None, *,
                   limit: int | None = None, tz: str | None = None) -> pd.DataFrame:
    """Score the calls `where` selects (first `limit` by call_id) and write their labels, on `conn`.

    `where` is a condition on calls aliased `c` with SQLAlchemy's named binds (`:name`), valued by `params`.

    The one labelling step of `hotspots label` (a chunk per transaction), its Dask workers (a
    partition each) and live ingest (the posted batch's new and changed calls, in the storing
    transaction): the features come from the stored rows (read_calls' query), the label is
    p >= threshold compared before p is rounded to real, labelled_at is the transaction's now().
    Returns the scores written (call_id, p, label); empty when nothing was selected. The hour and weekday
    features are local ones in `tz` (None: the configured zone).
    """
    calls = _calls_frame(conn, with_truth=False, where=where, params=params, limit=limit, tz=tz)
    if calls.empty:
        return pd.DataFrame({"call_id": pd.Series(dtype=object), "p": pd.Series(dtype=np.float32),
                             "label": pd.Series(dtype=bool)})
    p = stored.score(calls)
    out = pd.DataFrame({"call_id": calls["call_id"], "p": p.astype(np.float32), "label": p >= stored.threshold})
    from geo.ingest.batch import copy_frame

    # ON COMMIT DROP: the table lives on this transaction's connection only, so parallel workers do not collide.
    conn.exec_driver_sql("CREATE TEMP TABLE scored (call_id text PRIMARY KEY, p real, label boolean) ON COMMIT DROP")
    copy_frame(conn, "scored", out)
    conn.execute(
        sa.text("UPDATE calls c SET p_violent = s.p, label = s.label, model_version = :v, labelled_at = now()"
                " FROM scored s WHERE c.call_id = s.call_id"),
        {"v": stored.version},
    )
    conn.exec_driver_sql("DROP TABLE scored")
    return out


def label_calls(engine: Engine, *, relabel: bool = False, chunk_rows: int = 250_000, progress: bool = False,
                version: str | None = None, tz: str | None = None) -> LabelResult:
    """Score unlabelled calls (or, with relabel, those scored by another model) in chunks.

    Each chunk commits on its own, so an interrupted run keeps what it finished and the next run
    continues where it stopped.
    """
    started = datetime.now(timezone.utc)
    stored = load_model(engine, version)
    todo_where = "c.model_version IS DISTINCT FROM :version" if relabel else "c.model_version IS NULL"
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM calls c WHERE " + todo_where),
                             {"version": stored.version} if relabel else {}).scalar_one()
    bar = tqdm(total=total, desc="label calls", unit="call", unit_scale=True, disable=not progress)
    labelled = violent = 0
    last = ""
    while True:
        with engine.begin() as conn:
            out = label_selected(conn, stored, f"{todo_where} AND c.call_id > :last",
                                 {"version": stored.version, "last": last} if relabel else {"last": last}, limit=chunk_rows, tz=tz)
        if out.empty:
            break
        labelled += len(out)
        violent += int(out["label"].sum())
        last = str(out["call_id"].iloc[-1])
        bar.update(len(out))
    bar.close()
    return LabelResult(stored.version, labelled, violent, (datetime.now(timezone.utc) - started).total_seconds())
