"""The classifier's map of later months follows violence that moved after training (issue 13).

Calls are hand-built (no database): 40 NPAs over 2021. Violence comes from call types and hours
whose effect never changes; where the violence-prone calls come in moves on 1 September from
NPA group A to group B, and inside each call type group A's (then B's) calls are violent twice as
often. The model trains on January-July (August calibrates) and scores September-December.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from geo.classify import FEATURES, fit_classifier
from geo.settings import locale_settings

N_NPAS = 200
GROUP_A = np.arange(1, N_NPAS // 5 + 1)                  # violent before the shift
GROUP_B = np.arange(N_NPAS - N_NPAS // 5 + 1, N_NPAS + 1)  # violent after it
TZ = locale_settings().timezone  # the months fit_classifier splits on are local ones
SHIFT = pd.Timestamp("2021-09-01", tz=TZ)
# call type -> (share of calls in a quiet NPA, share in the violent group, P(violent))
TYPES = {
    "ASSAULT": (0.03, 0.12, 0.30), "SHOTS FIRED": (0.02, 0.08, 0.22), "FIGHT": (0.03, 0.10, 0.15),
    "ARMED PERSON": (0.01, 0.05, 0.28), "DOMESTIC": (0.06, 0.10, 0.10), "TRAFFIC STOP": (0.25, 0.15, 0.003),
    "LARCENY": (0.15, 0.10, 0.01), "ALARM": (0.20, 0.10, 0.002), "SUSPICIOUS": (0.15, 0.12, 0.02),
    "NOISE": (0.10, 0.08, 0.005),
}


def planted_shift_calls(n_calls: int = 30_000, seed: int = 7, place_factor: float = 2.0, mix_moves: bool = True) -> pd.DataFrame:
    """Calls with the columns read_calls(with_truth=True) returns, violence moving from A to B."""
    rng = np.random.default_rng(seed)
    npas = np.arange(1, N_NPAS + 1)
    volume = rng.lognormal(0, 0.6, len(npas))
    npa = rng.choice(npas, n_calls, p=volume / volume.sum())
    start = pd.Timestamp("2021-01-01", tz=TZ)
    received = start + pd.to_timedelta(rng.uniform(0, 365 * 86400, n_calls), unit="s")
    late = (received >= SHIFT)
    hot = np.where(late, np.isin(npa, GROUP_B), np.isin(npa, GROUP_A))
    names = list(TYPES)
    quiet_mix = np.array([TYPES[t][0] for t in names]); quiet_mix /= quiet_mix.sum()
    hot_mix = np.array([TYPES[t][1] for t in names]); hot_mix /= hot_mix.sum()
    if not mix_moves:
        hot_mix = quiet_mix
    kind = np.where(hot, rng.choice(len(names), n_calls, p=hot_mix), rng.choice(len(names), n_calls, p=quiet_mix))
    local = received.tz_convert(TZ)
    hour = local.hour.to_numpy()
    p = np.array([TYPES[t][2] for t in names])[kind] * np.where((hour >= 21) | (hour < 4), 1.6, 1.0)
    p = np.clip(p * np.where(hot, place_factor, 1.0), 0, 0.95)
    order = np.argsort(received.to_numpy())
    frame = pd.DataFrame({
        "call_id": [f"C{i:06d}" for i in range(n_calls)],
        "received_at": received.tz_convert("UTC")[order],
        "call_type": np.array(names, dtype=object)[kind][order],
        "priority": rng.integers(1, 4, n_calls)[order],
        "hour": hour[order],
        "weekday": local.day_of_week.to_numpy()[order],
        "npa_id": npa[order],
        "division_id": np.array([f"{(n - 1) // 10 + 1:02d}" for n in npa], dtype=object)[order],
        "violent": (rng.random(n_calls) < p)[order],
    })
    frame["received_epoch"] = frame["received_at"].astype("int64") // 10**9
    return frame.reset_index(drop=True)


def later_maps(calls: pd.DataFrame, **kwargs) -> dict:
    """Train on January-August, score September-December; per-NPA truth, expected and labelled."""
    fitted = fit_classifier(calls, test_months=4, comparisons=False, **kwargs)
    later = calls[fitted.test]
    p = fitted.score(later)
    per_npa = pd.DataFrame({"npa": later["npa_id"], "true": later["violent"], "expected": p,
                            "labelled": p >= fitted.threshold}).groupby("npa").sum()
    in_a, in_b = per_npa.loc[GROUP_A], per_npa.loc[GROUP_B]
    return {
        "fitted": fitted, "per_npa": per_npa,
        "rho_expected": float(spearmanr(per_npa["expected"], per_npa["true"]).statistic),
        "rho_labelled": float(spearmanr(per_npa["labelled"], per_npa["true"]).statistic),
        "true_a": int(in_a["true"].sum()), "true_b": int(in_b["true"].sum()),
        "expected_a": float(in_a["expected"].sum()), "expected_b": float(in_b["expected"].sum()),
        "labelled_a": int(in_a["labelled"].sum()), "labelled_b": int(in_b["labelled"].sum()),
    }


@pytest.fixture(scope="module")
def shifted():
    return planted_shift_calls()


def test_expected_and_labelled_maps_follow_violence_that_moved(shifted):
    """The default model (call type, priority, hour, weekday) ranks the later months' NPAs like the truth."""
    got = later_maps(shifted)
    assert got["fitted"].features == FEATURES
    assert got["true_b"] > 4 * got["true_a"]  # the plant: B is where the later violence is
    # Measured (seed 7): Spearman 0.82 (expected) and 0.81 (labelled) across the 200 NPAs; in A
    # 99 expected and 145 labelled against 62 true, in B 376 and 688 against 513.
    assert got["rho_expected"] > 0.7 and got["rho_labelled"] > 0.7
    assert got["expected_b"] > 2.5 * got["expected_a"]
    later = shifted[got["fitted"].test]
    calls_a = int(later["npa_id"].isin(GROUP_A).sum())
    calls_b = int(later["npa_id"].isin(GROUP_B).sum())
    assert got["labelled_b"] / calls_b > 2.5 * got["labelled_a"] / calls_a


def test_cross_fitting_the_npa_rate_beats_in_sample_encoding_and_no_place_beats_both(shifted):
    """With place features the map lags; the in-sample NPA rate (the old encoding) lags most."""
    in_sample = later_maps(shifted, place_features=True, rate_encoding="in_sample")
    cross_fit = later_maps(shifted, place_features=True)
    default = later_maps(shifted)
    # Measured (seed 7): rho 0.61 in-sample < 0.68 cross-fitted < 0.82 without place features;
    # expected violent in the old place A 149 > 136 > 99, against 62 true (B: 297 < 330 < 376, 513 true).
    assert in_sample["rho_expected"] + 0.03 < cross_fit["rho_expected"] < default["rho_expected"] - 0.08
    assert in_sample["expected_a"] > cross_fit["expected_a"] > default["expected_a"] > default["true_a"]
    assert default["expected_b"] > cross_fit["expected_b"] > in_sample["expected_b"]


def test_a_shift_in_place_alone_cannot_be_followed(shifted):
    """When only the place moves (call mix the same everywhere), a model of the past shows the past's place."""
    calls = planted_shift_calls(mix_moves=False)
    place = later_maps(calls, place_features=True)
    default = later_maps(calls)
    assert place["true_b"] > 1.5 * place["true_a"]
    # The place model keeps A on top (measured 125 expected in A, 101 in B, against 62 and 172
    # true); the default, with no memory of places, does not (85 and 103).
    assert place["expected_a"] > 1.15 * place["expected_b"]
    assert default["expected_a"] < 0.8 * place["expected_a"]


def test_f1_labels_more_calls_than_are_violent_and_count_matching_does_not(shifted):
    got = later_maps(shifted)
    shares = got["fitted"].metrics["thresholds"]
    # Measured (seed 7, calibration month August): F1 labels 315 of 2,600 calls, 58% more than the
    # 199 violent; the count-matching cut labels the 199 expected.
    assert shares["f1"]["labelled_over_violent_pct"] > 30
    assert abs(shares["count"]["labelled"] - shares["expected"]) <= 1
    count = later_maps(shifted, threshold_rule="count")
    assert count["fitted"].threshold > got["fitted"].threshold
    later = count["per_npa"]
    # On the later months the count-matching labels total near the truth; F1's overshoot.
    assert abs(later["labelled"].sum() - later["true"].sum()) < 0.25 * later["true"].sum()
    assert got["per_npa"]["labelled"].sum() > 1.3 * later["true"].sum()
    assert count["rho_labelled"] > 0.7
