"""taxonomy.csv: every NIBRS code and every generated call type maps somewhere; unknowns never crash."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from geo.taxonomy import UNKNOWN, load_taxonomy

DATA = Path(__file__).resolve().parent.parent / "geo" / "data"

# The FBI's NIBRS Group A and Group B offense codes.
GROUP_A = (
    "09A 09B 09C 100 11A 11B 11C 11D 120 13A 13B 13C 200 210 220 23A 23B 23C 23D 23E 23F 23G 23H 240 250 "
    "26A 26B 26C 26D 26E 26F 26G 26H 270 280 290 35A 35B 36A 36B 370 39A 39B 39C 39D 40A 40B 40C 510 520 "
    "64A 64B 720"
).split()
GROUP_B = "90A 90B 90C 90D 90E 90F 90G 90H 90I 90J 90Z".split()


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def test_every_nibrs_code_maps_to_a_declared_category(taxonomy):
    for code in GROUP_A + GROUP_B:
        category, _ = taxonomy.nibrs_category(code)
        assert category != UNKNOWN, code
        assert category in taxonomy.categories


def test_fbi_violent_crime_definition(taxonomy):
    assert taxonomy.violent_codes == {"09A", "11A", "11B", "11C", "120", "13A"}
    assert taxonomy.nibrs_category("13B") == ("crimes_against_persons", True)
    assert taxonomy.nibrs_category("09C")[0] != "violent_crime"


def test_cmpd_800_series_are_non_criminal(taxonomy):
    for code in ("800", "810", "899"):
        category, is_crime = taxonomy.nibrs_category(code)
        assert category != UNKNOWN and is_crime is False


def test_unknown_codes_and_call_types_are_unknown_not_errors(taxonomy):
    cats, crime = taxonomy.categorise_codes(pd.Series(["13a", "ZZZ", None, "", "120"]))
    assert list(cats) == ["violent_crime", UNKNOWN, UNKNOWN, UNKNOWN, "violent_crime"]
    assert list(crime) == [True, False, False, False, True]
    types = taxonomy.categorise_call_types(pd.Series(["shots  fired", "ALIEN LANDING", None]))
    assert list(types) == ["violent_crime", UNKNOWN, UNKNOWN]


def test_generated_call_types_and_codes_are_covered(taxonomy):
    """Everything the demo generator can emit has a category."""
    with open(DATA / "call_natures.csv", newline="") as fh:
        natures = [row["call_type"] for row in csv.DictReader(fh)]
    assert natures and all(c != UNKNOWN for c in taxonomy.categorise_call_types(pd.Series(natures)))
    with open(DATA / "nibrs_codes.csv", newline="") as fh:
        codes = [row["code"] for row in csv.DictReader(fh)]
    cats, _ = taxonomy.categorise_codes(pd.Series(codes))
    assert codes and (cats != UNKNOWN).all(), [c for c, k in zip(codes, cats) if k == UNKNOWN]


def test_apply_recategorises_only_changed_rows(engine, tmp_path, data_dir):
    from datetime import date

    import sqlalchemy as sa

    from geo.demo import generate_and_load
    from geo.taxonomy import Taxonomy, apply_taxonomy

    generate_and_load(n_calls=3_000, start=date(2021, 3, 1), days=30, seed=2, out=tmp_path / "d", engine=engine,
                      data_dir=data_dir, progress=False, dirty=False)
    base = load_taxonomy()
    assert apply_taxonomy(engine, base) == {"calls": 0, "incidents": 0}
    edited = Taxonomy(base.categories, base.nibrs, base.prefixes, {**base.call_types, "NOISE COMPLAINT": "service_other"})
    with engine.connect() as conn:
        noise = conn.execute(sa.text("SELECT count(*) FROM calls WHERE call_type = 'NOISE COMPLAINT'")).scalar()
    assert noise > 0
    assert apply_taxonomy(engine, edited) == {"calls": noise, "incidents": 0}
