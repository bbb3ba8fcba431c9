"""The synthetic demo data: CMPD layouts, determinism, calibration on the real counts, CMPD's codes, counted dirt."""

from __future__ import annotations

import csv
import json
from datetime import date

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from scipy.stats import spearmanr

from geo.synth import CALL_COLUMNS, DATA, DEMO_DAYS, DEMO_START, INCIDENT_COLUMNS, generate
from geo.taxonomy import load_taxonomy

VIOLENT = sorted(load_taxonomy().violent_codes)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("synth")
    result = generate(data_dir, out, n_calls=120_000, seed=11)
    calls = pd.read_csv(result.calls_csv, dtype=str, keep_default_na=False, on_bad_lines="skip")
    incidents = pd.read_csv(result.incidents_csv, dtype=str, keep_default_na=False, on_bad_lines="skip")
    return result, calls, incidents, json.loads(result.manifest_json.read_text())


@pytest.fixture(scope="module")
def clean_demo(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("synth_clean")
    result = generate(data_dir, out, n_calls=60_000, seed=5, dirty=False)
    calls = pd.read_csv(result.calls_csv, dtype=str, keep_default_na=False)
    incidents = pd.read_csv(result.incidents_csv, dtype=str, keep_default_na=False)
    return result, calls, incidents


def test_published_column_layouts(demo):
    result, calls, incidents, _ = demo
    # CMPD's layouts, plus the column saying every row is synthetic.
    with open(result.calls_csv) as fh:
        assert next(csv.reader(fh)) == CALL_COLUMNS + ["DATA_ORIGIN"]
    with open(result.incidents_csv) as fh:
        assert next(csv.reader(fh)) == INCIDENT_COLUMNS + ["DATA_ORIGIN"]
    assert len(calls) > 100_000 and len(incidents) > 20_000
    assert set(calls["DATA_ORIGIN"]) == {"synthetic"} and set(incidents["DATA_ORIGIN"]) == {"synthetic"}
    assert INCIDENT_COLUMNS == (
        "INCIDENT_REPORT_ID LOCATION CITY STATE ZIP X_COORD_PUBLIC Y_COORD_PUBLIC LATITUDE_PUBLIC LONGITUDE_PUBLIC "
        "DIVISION_ID CMPD_PATROL_DIVISION NPA DATE_REPORTED DATE_INCIDENT_BEGAN DATE_INCIDENT_END ADDRESS_DESCRIPTION "
        "LOCATION_TYPE_DESCRIPTION PLACE_TYPE_DESCRIPTION PLACE_DETAIL_DESCRIPTION CLEARANCE_STATUS "
        "CLEARANCE_DETAIL_STATUS CLEARANCE_DATE HIGHEST_NIBRS_CODE HIGHEST_NIBRS_DESCRIPTION OBJECTID YEAR"
    ).split()
    assert json.loads(result.manifest_json.read_text())["synthetic"] is True


def test_same_seed_same_bytes(tmp_path, data_dir):
    a = generate(data_dir, tmp_path / "a", n_calls=5_000, days=30, seed=3)
    b = generate(data_dir, tmp_path / "b", n_calls=5_000, days=30, seed=3)
    c = generate(data_dir, tmp_path / "c", n_calls=5_000, days=30, seed=4)
    for name in ("calls_csv", "incidents_csv", "call_counts_csv"):
        assert getattr(a, name).read_bytes() == getattr(b, name).read_bytes()
    assert a.calls_csv.read_bytes() != c.calls_csv.read_bytes()


def test_violent_incidents_follow_cmpd_totals_and_mix(clean_demo, data_dir):
    result, _, incidents = clean_demo
    # The demo year (2024) lies past the published counts (2015-01 .. 2022-03): it follows 2021,
    # the latest year published in full, month by month.
    assert (DEMO_START, DEMO_DAYS) == (date(2024, 1, 1), 366)
    assert json.loads(result.manifest_json.read_text())["violent_counts_calibrated_on"] == {"2024": 2021}
    offenses = pd.read_csv(data_dir / "offenses" / "Violent_Crime_Offenses.csv", encoding="utf-8-sig")
    city21 = offenses[(offenses["ROW_TYPE"] == "CMPD Jurisdiction") & (offenses["CALENDAR_YEAR"] == 2021)]
    rollup = city21[city21["OFFENSE_DESCRIPTION"] == "Violent Crime"]["OFFENSE_COUNT"].sum()
    violent = incidents[incidents["HIGHEST_NIBRS_CODE"].isin(VIOLENT)]
    # 60,000 calls in 366 days stand for 60,000 / (500,000 * 366/365) of CMPD's volume.
    assert len(violent) == pytest.approx(rollup * 60_000 / (500_000 * 366 / 365), abs=1)
    share_13a = (violent["HIGHEST_NIBRS_CODE"] == "13A").mean()
    real_13a = city21[city21["OFFENSE_DESCRIPTION"].str.startswith("Aggravated Assault")]["OFFENSE_COUNT"].sum() / rollup
    assert share_13a == pytest.approx(real_13a, abs=0.04)
    # Violent reports are never the unfounded ones: the published counts are founded offenses.
    assert (violent["CLEARANCE_STATUS"] != "Unfounded").all()


def test_other_codes_are_cmpds_at_the_layers_frequencies(clean_demo, data_dir):
    _, _, incidents = clean_demo
    taxonomy = load_taxonomy()
    table = pd.read_csv(DATA / "nibrs_codes.csv", dtype=str, keep_default_na=False)
    table = table[~table["code"].isin(VIOLENT)].set_index("code")["reports"].astype(float)
    codes = incidents["HIGHEST_NIBRS_CODE"]
    founded = codes[~codes.isin(VIOLENT) & (incidents["CLEARANCE_STATUS"] != "Unfounded")]
    got = founded.value_counts(normalize=True)
    want = table / table.sum()
    for code in ("23F", "90Z", "13B", "23H", "23C", "290", "899", "800"):  # the layer's most frequent codes
        assert got[code] == pytest.approx(want[code], abs=0.01), code
    assert set(codes) - set(table.index) - set(VIOLENT) == set()
    # About 15% of the layer's rows are 800-series reports, not crimes; about 3% are Unfounded.
    non_criminal = codes.str.startswith("8")
    assert 0.13 < non_criminal.mean() < 0.17
    assert 0.025 < (incidents["CLEARANCE_STATUS"] == "Unfounded").mean() < 0.045
    _, is_crime = taxonomy.categorise_codes(codes[non_criminal])
    assert not is_crime.any()
    # Clearance statuses are CMPD's own words, as in the real API sample.
    real = pd.read_csv(data_dir / "real" / "incidents_api_sample.csv", dtype=str, keep_default_na=False)
    assert set(incidents["CLEARANCE_STATUS"]) == set(real["CLEARANCE_STATUS"])
    assert set(incidents["CLEARANCE_DETAIL_STATUS"]) <= set(real["CLEARANCE_DETAIL_STATUS"])
    assert (incidents.loc[codes == "800", "CLEARANCE_DETAIL_STATUS"]
            .isin(["Located (Missing Persons and Runaways only)", "Open", "Unfounded",
                   "Unfounded-Referred to Other Agency"]).all())
    closed = incidents["CLEARANCE_STATUS"] != "Open"
    assert (incidents.loc[closed, "CLEARANCE_DATE"] != "").all()


def test_violent_places_follow_real_npa_counts(demo, data_dir):
    _, _, incidents, _ = demo
    violent = incidents[incidents["HIGHEST_NIBRS_CODE"].isin(VIOLENT) & (incidents["NPA"] != "")]
    got = violent["NPA"].astype(int).value_counts()
    real = pd.read_csv(data_dir / "npa_metrics" / "violent_crimes.csv").set_index("id")["y_2021"].dropna()
    common = real.index.intersection(got.index.union(real.index))
    rho = spearmanr(real.loc[common], got.reindex(common, fill_value=0)).statistic
    assert rho > 0.7


def test_time_of_day_cycles(clean_demo):
    _, calls, incidents = clean_demo
    hour = pd.to_datetime(calls["DATE_RECEIVED"]).dt.hour
    violent_ids = set(incidents.loc[incidents["HIGHEST_NIBRS_CODE"].isin(VIOLENT), "INCIDENT_REPORT_ID"])
    violent_hours = hour[calls["INCIDENT_REPORT_ID"].isin(violent_ids)]
    night = violent_hours.isin([21, 22, 23, 0, 1, 2]).mean()
    morning = violent_hours.isin([5, 6, 7, 8, 9, 10]).mean()
    assert night > 2 * morning
    crash = hour[calls["CALL_TYPE"] == "TRAFFIC CRASH"]
    assert crash.isin([16, 17, 18]).mean() > 3 * crash.isin([2, 3, 4]).mean()


def test_clean_points_inside_their_npa_and_division(clean_demo, data_dir):
    _, _, incidents = clean_demo
    npa = gpd.read_file(data_dir / "npa" / "npa.geojson").set_index("id")
    sample = incidents.sample(2_000, random_state=1)
    pts = shapely.points(sample["LONGITUDE_PUBLIC"].astype(float), sample["LATITUDE_PUBLIC"].astype(float))
    geoms = npa.geometry.loc[sample["NPA"]].to_numpy()
    assert shapely.intersects(geoms, pts).all()
    div = gpd.read_file(data_dir / "divisions" / "CMPD_Police_Divisions.shp").to_crs(4326)
    div["geometry"] = div.geometry.make_valid()
    joined = gpd.sjoin(gpd.GeoDataFrame(sample.reset_index(), geometry=pts, crs=4326), div, how="left", predicate="within")
    assert (joined["DIVISION_ID"] == joined["DIVISION"].fillna("")).mean() > 0.999


def test_linked_incidents_come_after_their_call_at_the_same_place(clean_demo):
    _, calls, incidents = clean_demo
    linked = calls[calls["INCIDENT_REPORT_ID"] != ""].merge(incidents, on="INCIDENT_REPORT_ID")
    assert len(linked) > 0.15 * len(calls)
    received = pd.to_datetime(linked["DATE_RECEIVED"]).dt.tz_localize("America/New_York", ambiguous=False, nonexistent="shift_forward")
    reported = pd.to_datetime(linked["DATE_REPORTED"].str.replace("+00", "", regex=False)).dt.tz_localize("UTC")
    assert (reported >= received).all()
    assert (linked["LATITUDE"] == linked["LATITUDE_PUBLIC"]).all()
    assert incidents["INCIDENT_REPORT_ID"].is_unique and calls["CALL_ID"].is_unique


def test_manifest_counts_the_dirt_that_is_in_the_files(demo):
    result, calls, incidents, manifest = demo
    for name, frame, path, lat in (("calls", calls, result.calls_csv, "LATITUDE"),
                                   ("incidents", incidents, result.incidents_csv, "LATITUDE_PUBLIC")):
        info = manifest["files"][name]
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))[1:]
        width = len(rows[0])
        assert len(rows) == info["rows"]
        assert sum(len(r) != width for r in rows) == info["defects"]["malformed_row"]
        x = "X_COORD" if name == "calls" else "X_COORD_PUBLIC"
        assert ((frame[lat] == "") & (frame[x] == "")).sum() == info["defects"]["coords_missing"]
        assert ((frame[lat] == "") & (frame[x] != "")).sum() == info["defects"]["latlon_missing_xy_present"]
        assert (frame["CITY"] != "CHARLOTTE").sum() == info["defects"]["city_variant"]
        id_col = frame.columns[0]
        assert frame[id_col].duplicated().sum() == info["defects"]["duplicate_id"]
        assert info["expected_loaded"] == info["rows"] - sum(info["expected_rejects"].values())
        assert 0.02 < sum(info["defects"].values()) / info["rows"] < 0.12


def test_clean_mode_has_no_defects(clean_demo):
    result, calls, incidents = clean_demo
    manifest = json.loads(result.manifest_json.read_text())
    assert all(v == 0 for f in manifest["files"].values() for v in f["defects"].values())
    assert (calls["CITY"] == "CHARLOTTE").all() and (calls["LATITUDE"] != "").all()
    assert calls["CALL_ID"].is_unique


def test_call_counts_add_up(clean_demo):
    result, calls, _ = clean_demo
    counts = pd.read_csv(result.call_counts_csv, dtype={"CALENDAR_MONTH": str})
    city_all = counts[(counts["ROW_TYPE"] == "CMPD Jurisdiction") & (counts["CALL_DESCRIPTION"] == "All Calls")]
    assert city_all["CALL_COUNT"].sum() == len(calls)
    assert set(city_all["CALENDAR_MONTH"]) == {f"{m:02d}" for m in range(1, 13)}
    npa_all = counts[(counts["ROW_TYPE"] == "Neighborhood Profile Area") & (counts["CALL_DESCRIPTION"] == "All Calls")]
    assert npa_all["CALL_COUNT"].sum() == len(calls)


def test_a_published_year_follows_its_own_months(tmp_path, data_dir):
    offenses = pd.read_csv(data_dir / "offenses" / "Violent_Crime_Offenses.csv", encoding="utf-8-sig")
    city = offenses[(offenses["ROW_TYPE"] == "CMPD Jurisdiction") & (offenses["OFFENSE_DESCRIPTION"] == "Violent Crime")]
    june = city.groupby(["CALENDAR_YEAR", "CALENDAR_MONTH"])["OFFENSE_COUNT"].sum().xs(6, level=1)
    for year, calibrated_on in ((2019, 2019), (2024, 2021)):
        result = generate(data_dir, tmp_path / str(year), start=date(year, 6, 1), days=30, n_calls=100_000, seed=1, dirty=False)
        incidents = pd.read_csv(result.incidents_csv, dtype=str, keep_default_na=False)
        calls = pd.read_csv(result.calls_csv, dtype=str)
        assert calls["DATE_RECEIVED"].str.startswith(f"{year}-06").all()
        assert json.loads(result.manifest_json.read_text())["violent_counts_calibrated_on"] == {str(year): calibrated_on}
        expected = june[calibrated_on] * 100_000 / (500_000 * 30 / 365)
        assert incidents["HIGHEST_NIBRS_CODE"].isin(VIOLENT).sum() == pytest.approx(expected, abs=1)


def test_cad_times_come_from_simulated_units(clean_demo):
    result, calls, incidents = clean_demo
    manifest = json.loads(result.manifest_json.read_text())
    at = {c: pd.to_datetime(calls[c], errors="coerce") for c in
          ("DATE_RECEIVED", "DATE_DISPATCHED", "DATE_ENROUTE", "DATE_ONSCENE", "DATE_CLEARED")}
    inside = calls["CMPD_PATROL_DIVISION"] != ""
    assert at["DATE_ONSCENE"][inside].notna().all() and (calls.loc[~inside, "DATE_ONSCENE"] == "").all()
    # Every time follows the one before it (the loader rejects rows that go backwards).
    order = list(at.values())
    for before, after in zip(order, order[1:]):
        assert (after[inside] >= before[inside]).all()
    minutes = {c: (at[c] - at["DATE_RECEIVED"]).dt.total_seconds() / 60 for c in at}
    response = minutes["DATE_ONSCENE"]
    p1 = inside & (calls["PRIORITY"] == "1")
    # CMPD's published mean Priority 1 response by division: about 5 minutes (Eastway) to 8.5 (North).
    by_division = response[p1].groupby(calls.loc[p1, "CMPD_PATROL_DIVISION"]).agg(["mean", "size"])
    by_division = by_division[by_division["size"] >= 100]
    assert len(by_division) >= 12
    assert by_division["mean"].between(4.5, 9.0).all(), by_division
    assert by_division["mean"].min() < 6.0 and by_division["mean"].max() > 7.5
    assert by_division.loc["Eastway", "mean"] < by_division.loc["North", "mean"]
    # Service times are heavy-tailed (lognormal): the mean well above the median.
    on_scene = (at["DATE_CLEARED"] - at["DATE_ONSCENE"])[inside].dt.total_seconds() / 60
    assert on_scene.mean() > 1.3 * on_scene.median()
    assert set(calls.loc[inside, "UNITS_ASSIGNED"]) == {"1", "2"}
    violent = inside & calls["CALL_TYPE"].isin(["SHOTS FIRED", "ASSAULT WITH DEADLY WEAPON"])
    assert (calls.loc[violent, "UNITS_ASSIGNED"] == "2").mean() > 0.6
    assert (calls.loc[inside & (calls["INCIDENT_REPORT_ID"] != ""), "DISPOSITION"] == "REPORT TAKEN").all()
    # Queued calls appear where units were run short: Friday and Saturday nights in the two busiest divisions.
    short = manifest["cad"]["short_staffed"]
    how = at["DATE_RECEIVED"].dt.day_of_week * 24 + at["DATE_RECEIVED"].dt.hour
    code_of = dict(zip(incidents["CMPD_PATROL_DIVISION"], incidents["DIVISION_ID"]))
    codes = calls["CMPD_PATROL_DIVISION"].map(code_of)
    in_short = codes.isin(short["divisions"]) & how.isin(short["hours_of_week"])
    same_divisions = codes.isin(short["divisions"]) & ~how.isin(short["hours_of_week"])
    delay = minutes["DATE_DISPATCHED"]
    assert delay[in_short].mean() > 2 * delay[same_divisions].mean()
    assert set(manifest["cad"]["p1_mean_response_min"]) >= {code_of[name] for name in by_division.index}

