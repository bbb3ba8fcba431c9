"""taxonomy.csv: every NIBRS code, every CMPD code in the real files and every generated call type
maps somewhere; one violent-code set; unknowns never crash."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from geo.taxonomy import TAXONOMY_CSV, UNKNOWN, load_taxonomy

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "geo" / "data"

# The FBI's NIBRS User Manual, version 2023.0: Group A offenses (the 52 every agency reports and
# the 19 only federal and tribal agencies report) and the Group B offenses.
GROUP_A = (
    "09A 09B 09C 100 11A 11B 11C 11D 120 13A 13B 13C 200 210 220 23A 23B 23C 23D 23E 23F 23G 23H 240 250 "
    "26A 26B 26C 26D 26E 26F 26G 270 280 290 35A 35B 36A 36B 370 39A 39B 39C 39D 40A 40B 40C 510 520 "
    "64A 64B 720"
).split()
GROUP_A_FEDERAL = "101 103 26H 30A 30B 30C 30D 360 49A 49B 49C 521 522 526 58A 58B 61A 61B 620".split()
GROUP_B = "90B 90C 90D 90F 90G 90J 90K 90L 90M 90Z".split()
# Retired from the Group B list; older records (CMPD's among them) still carry some of them.
RETIRED = "90A 90E 90H 90I".split()
# CMPD's local codes: two crimes and the non-criminal 800-series reports, with their meanings.
CMPD_CRIMES = {"99Y": "disorder", "99Z": "crimes_against_persons"}
CMPD_800 = {
    "800": "mental_health_welfare",   # missing person
    "801": "mental_health_welfare",   # suicide
    "802": "service_other",           # sudden/natural death
    "803": "mental_health_welfare",   # overdose
    "804": "service_other",           # dog bite/animal control
    "806": "service_other",           # gas leak
    "807": "service_other",           # public accident
    "809": "service_other",           # vehicle recovery
    "810": "service_other",           # fire (accidental)
    "899": "service_other",           # other unlisted non-criminal
}
REAL_INCIDENT_FILES = ("incidents_api_sample.csv", "incidents_streets_QVXYZ.csv")


def real_codes(data_dir: Path, name: str) -> pd.Series:
    """HIGHEST_NIBRS_CODE of one real incident file under HOTSPOTS_DATA_DIR/real (never committed)."""
    path = data_dir / "real" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the taxonomy is tested on the real CMPD files", pytrace=False)
    return pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["HIGHEST_NIBRS_CODE"])["HIGHEST_NIBRS_CODE"]


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def test_every_nibrs_code_maps_to_a_declared_category(taxonomy):
    for code in GROUP_A + GROUP_A_FEDERAL + GROUP_B + RETIRED:
        category, _ = taxonomy.nibrs_category(code)
        assert category != UNKNOWN, code
        assert category in taxonomy.categories


def test_the_nibrs_list_is_the_fbis_and_cmpds_nothing_more(taxonomy):
    fbi = set(GROUP_A + GROUP_A_FEDERAL + GROUP_B + RETIRED)
    assert len(GROUP_A + GROUP_A_FEDERAL) == 71 and len(GROUP_B) == 10  # the manual's own counts
    assert set(taxonomy.nibrs) == fbi | set(CMPD_CRIMES) | set(CMPD_800)


def test_fbi_violent_crime_definition(taxonomy):
    # Murder and non-negligent manslaughter, rape (11A-11C under the revised definition), robbery,
    # aggravated assault: written out here as the specification every other module takes from the table.
    assert taxonomy.violent_codes == {"09A", "11A", "11B", "11C", "120", "13A"}
    assert taxonomy.nibrs_category("13B") == ("crimes_against_persons", True)
    assert taxonomy.nibrs_category("09C") == ("service_other", False)  # justifiable homicide is not a crime


def test_cmpd_local_codes(taxonomy):
    for code, category in CMPD_800.items():
        assert taxonomy.nibrs_category(code) == (category, False), code
    for code, category in CMPD_CRIMES.items():
        assert taxonomy.nibrs_category(code) == (category, True), code
    # An 800-series code CMPD adds later is still a non-criminal report, not unknown.
    assert taxonomy.nibrs_category("805") == ("service_other", False)
    with open(TAXONOMY_CSV, newline="", encoding="utf-8") as fh:
        notes = {r["code"]: r["note"] for r in csv.DictReader(fh) if r["kind"] == "nibrs"}
    assert notes["90K"].startswith("Failure to appear")
    assert notes["800"].startswith("CMPD local code: missing person")


@pytest.mark.parametrize("name, rows, distinct, non_crime", [
    ("incidents_api_sample.csv", 5_000, 58, 743),
    ("incidents_streets_QVXYZ.csv", 12_367, 62, 1_084),
])
def test_every_code_in_the_real_incident_files_is_known(taxonomy, data_dir, name, rows, distinct, non_crime):
    codes = real_codes(data_dir, name)
    assert len(codes) == rows and codes.nunique() == distinct
    cats, crime = taxonomy.categorise_codes(codes)
    assert sorted(set(codes[cats == UNKNOWN])) == []
    # The 800-series reports (and 09C) are the rows that are not crimes.
    assert int((~crime).sum()) == non_crime
    assert int(codes.str.startswith("8").sum() + (codes == "09C").sum()) == non_crime


def test_no_module_hard_codes_the_violent_codes():
    """The violent set lives in taxonomy.csv only; code takes it from load_taxonomy().violent_codes."""
    code = r"(?:09A|11A|11B|11C|120|13A)"
    listed = re.compile(rf"""['"]{code}['"]\s*,\s*['"]{code}['"]|\b{code}, {code}\b""")
    offenders = []
    for folder in ("geo", "web", "bench", "tests"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".py", ".sql", ".js", ".html", ".toml") or path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if listed.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


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


def test_generated_codes_are_cmpds_own(data_dir):
    """The generator emits only codes the real CMPD files hold."""
    with open(DATA / "nibrs_codes.csv", newline="") as fh:
        codes = {row["code"] for row in csv.DictReader(fh)}
    real = set().union(*(set(real_codes(data_dir, name)) for name in REAL_INCIDENT_FILES))
    assert len(codes) > 50 and codes - real == set()


def test_apply_recategorises_only_changed_rows(engine, tmp_path, data_dir):
    from datetime import date

    import sqlalchemy as sa

    from geo.demo import generate_and_load
    from geo.taxonomy import Taxonomy, apply_taxonomy

    generate_and_load(n_calls=3_000, start=date(2021, 3, 1), days=30, seed=2, out=tmp_path / "d", engine=engine,
                      data_dir=data_dir, progress=False, dirty=False)
    base = load_taxonomy()
    # Nothing changed, so nothing is rewritten: Unfounded reports stay non-crimes, as loaded.
    assert apply_taxonomy(engine, base) == {"calls": 0, "incidents": 0}
    with engine.connect() as conn:
        unfounded, counted = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE is_crime) FROM incidents WHERE clearance_status = 'Unfounded'")).one()
    assert unfounded > 0 and counted == 0
    edited = Taxonomy(base.categories, base.nibrs, base.prefixes, {**base.call_types, "NOISE COMPLAINT": "service_other"})
    with engine.connect() as conn:
        noise = conn.execute(sa.text("SELECT count(*) FROM calls WHERE call_type = 'NOISE COMPLAINT'")).scalar()
    assert noise > 0
    assert apply_taxonomy(engine, edited) == {"calls": noise, "incidents": 0}
