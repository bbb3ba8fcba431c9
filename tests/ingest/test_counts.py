"""CMPD's Violent_Crime_Offenses.csv as published, and the totals report against its roll-up rows."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest
import sqlalchemy as sa

from geo.ingest.counts import CALL_COUNTS, OFFENSES, load_monthly_counts
from geo.metrics import offense_totals


@pytest.fixture(scope="module")
def published(data_dir):
    """The roll-up rows read straight from the file with the csv module, independently of the loader."""
    rollup = defaultdict(int)
    details = defaultdict(int)
    with open(data_dir / "offenses" / "Violent_Crime_Offenses.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        key = (r["ROW_TYPE"], r["GEOGRAPHY"], int(r["CALENDAR_YEAR"]))
        if r["OFFENSE_DESCRIPTION"] == "Violent Crime":
            rollup[key] += int(r["OFFENSE_COUNT"])
        else:
            details[(*key, r["OFFENSE_DESCRIPTION"])] += int(r["OFFENSE_COUNT"])
    return rows, rollup, details


def test_every_published_row_loaded(engine, published):
    rows, _, _ = published
    with engine.connect() as conn:
        n, total = conn.execute(sa.text("SELECT count(*), sum(offense_count) FROM offense_counts")).one()
        first = conn.execute(sa.text("SELECT * FROM offense_counts WHERE objectid = 1")).mappings().one()
    assert n == len(rows) == 48_777
    assert total == sum(int(r["OFFENSE_COUNT"]) for r in rows)
    # The byte-order mark did not leak into the first column, and '01' months became integers.
    assert (first["row_type"], first["geography"], first["calendar_year"], first["calendar_month"],
            first["offense_description"], first["offense_count"]) == ("CMPD Jurisdiction", "CMPD", 2015, 1, "Homicide", 8)


@pytest.mark.parametrize("area,row_type,geography", [
    ("CMPD", "CMPD Jurisdiction", "CMPD"),
    ("3", "Neighborhood Profile Area", "3"),
    ("beatties ford area", "Violent Crime Hotspot", "Beatties Ford Area"),
])
def test_yearly_totals_agree_with_cmpd_rollup(engine, published, area, row_type, geography):
    _, rollup, details = published
    totals = offense_totals(engine, area)
    assert (totals.row_type, totals.geography) == (row_type, geography)
    got = dict(zip(totals.by_year["year"], totals.by_year["violent_crime"]))
    want = {y: n for (rt, g, y), n in rollup.items() if rt == row_type and g == geography}
    assert got == want
    # Disjoint detail categories (all but Non-Fatal Gunshot Injury) add up to the roll-up exactly.
    assert list(totals.by_year["detail_sum"]) == list(totals.by_year["violent_crime"])
    homicides = {y: n for (rt, g, y, c), n in details.items() if rt == row_type and g == geography and c == "Homicide"}
    if homicides:
        assert {int(k): int(v) for k, v in totals.by_category.loc["Homicide"].drop("total").items() if v} == \
            {y: n for y, n in homicides.items() if n}


def test_city_2021_total_and_year_filter(engine):
    totals = offense_totals(engine, "CMPD", (2020, 2021))
    assert list(totals.by_year["year"]) == [2020, 2021]
    assert list(totals.by_year["violent_crime"]) == [8093, 7571]


def test_unknown_geography_lists_valid_ones(engine):
    with pytest.raises(ValueError, match="Sugar Creek/I-85 Area"):
        offense_totals(engine, "Nowhere Area")


def test_bad_count_rows_are_rejected_with_reasons(engine, tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text(
        "\ufeffOBJECTID,ROW_TYPE,GEOGRAPHY,GEOGRAPHY_ID,CALENDAR_YEAR,CALENDAR_MONTH,CALL_DESCRIPTION,CALL_COUNT\n"
        "1,CMPD Jurisdiction,CMPD,0,2021,01,All Calls,40000\n"
        "2,CMPD Jurisdiction,CMPD,0,2021,13,All Calls,5\n"
        "3,Neighborhood Profile Area,3,3,2021,02,NOISE COMPLAINT,-1\n"
        "4,Planet,X,0,2021,02,NOISE COMPLAINT,1\n"
        "1,CMPD Jurisdiction,CMPD,0,2021,02,All Calls,41000\n"
        "6,CMPD Jurisdiction,CMPD,0,2021,03,,7\n"
        "7,CMPD Jurisdiction,CMPD,0,twenty,03,All Calls,7\n"
    )
    report = load_monthly_counts(engine, CALL_COUNTS, path)
    assert report.inserted == 1
    assert dict(report.rejected) == {"bad_number": 3, "unknown_row_type": 1, "duplicate_id": 1, "missing_value": 1}
    with engine.connect() as conn:
        lines = conn.execute(sa.text("SELECT line, reason FROM ingest_rejects WHERE kind = 'call_counts' ORDER BY line")).all()
    assert [tuple(r) for r in lines] == [(3, "bad_number"), (4, "bad_number"), (5, "unknown_row_type"),
                                         (6, "duplicate_id"), (7, "missing_value"), (8, "bad_number")]
    again = load_monthly_counts(engine, CALL_COUNTS, path, force=True)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_rejects WHERE kind = 'call_counts'")).scalar() == 6


def test_offenses_reload_is_a_no_op(engine, data_dir):
    report = load_monthly_counts(engine, OFFENSES, data_dir / "offenses" / "Violent_Crime_Offenses.csv")
    assert report.already_loaded_batch is not None
    forced = load_monthly_counts(engine, OFFENSES, data_dir / "offenses" / "Violent_Crime_Offenses.csv", force=True)
    assert (forced.inserted, forced.updated, forced.unchanged) == (0, 0, 48_777)
