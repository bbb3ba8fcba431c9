"""Named sources (geo/sources.py): one count per incident, the default, both origins refused, names in the output."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo.cli import main
from geo.hotspots import npa_hotspots, npa_values
from geo.filters import Filter
from geo.sources import default_source, get_source

PERIOD = Filter.local_days(date(2021, 3, 1), date(2021, 4, 1))


def add_call(conn, call_id: str, npa: int, at: str, label: bool, p: float, incident: str | None = None,
             origin: str = "real") -> None:
    conn.execute(sa.text(
        "INSERT INTO calls (call_id, received_at, call_type, geom, npa_id, incident_report_id, label, p_violent,"
        " data_origin, row_hash, batch_id)"
        " SELECT :id, CAST(:at AS timestamp) AT TIME ZONE 'America/New_York', 'ASSAULT', ST_PointOnSurface(geom),"
        " npa_id, :inc, :l, :p, :o, 0, 0 FROM neighborhoods WHERE npa_id = :npa"),
        {"id": call_id, "at": at, "npa": npa, "inc": incident, "l": label, "p": p, "o": origin})


def add_incident(conn, report_id: str, npa: int, at: str, code: str = "13A", is_crime: bool = True,
                 origin: str = "real") -> None:
    conn.execute(sa.text(
        "INSERT INTO incidents (incident_report_id, date_reported, highest_nibrs_code, is_crime, geom, npa_id,"
        " data_origin, row_hash, batch_id)"
        " SELECT :id, CAST(:at AS timestamp) AT TIME ZONE 'America/New_York', :code, :crime, ST_PointOnSurface(geom),"
        " npa_id, :o, 0, 0 FROM neighborhoods WHERE npa_id = :npa"),
        {"id": report_id, "at": at, "npa": npa, "code": code, "crime": is_crime, "o": origin})


def npas(engine, n: int) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT npa_id FROM neighborhoods ORDER BY npa_id LIMIT :n"), {"n": n}).scalars())


def test_calls_about_one_incident_count_once(engine):
    a, b = npas(engine, 2)
    with engine.begin() as conn:
        for i, p in enumerate([0.4, 0.9, 0.2, 0.6, 0.3]):     # five calls about one incident
            add_call(conn, f"C{i}", a, f"2021-03-0{i + 1} 10:00", label=p > 0.5, p=p, incident="R1")
        add_call(conn, "L1", b, "2021-03-05 10:00", True, 0.7)  # unlinked calls count alone
        add_call(conn, "L2", b, "2021-03-06 10:00", True, 0.8)
        add_call(conn, "L3", b, "2021-03-07 10:00", False, 0.1)
    labelled, src = npa_values(engine, PERIOD, "labelled")
    assert src.name == "labelled"
    assert dict(zip(labelled["npa_id"], labelled["value"])) == {a: 1.0, b: 2.0}
    expected, _ = npa_values(engine, PERIOD, "expected")
    got = dict(zip(expected["npa_id"], expected["value"]))
    assert got[a] == pytest.approx(0.9) and got[b] == pytest.approx(0.7 + 0.8 + 0.1)
    # Without the link the five would have counted 2 labelled and 2.4 expected.


def test_incidents_violent_founded_only_and_homicides_by_date(engine):
    a, b = npas(engine, 2)
    with engine.begin() as conn:
        add_incident(conn, "I1", a, "2021-03-02 10:00", "13A")
        add_incident(conn, "I2", a, "2021-03-31 23:30", "120")           # robbery, late on the last local day
        add_incident(conn, "I3", a, "2021-04-01 00:30", "13A")           # next month in Charlotte
        add_incident(conn, "I4", b, "2021-03-03 10:00", "13A", is_crime=False)   # Unfounded
        add_incident(conn, "I5", b, "2021-03-03 10:00", "23H")           # larceny: not violent
        conn.execute(sa.text(
            "INSERT INTO homicides (objectid, crime_report_id, date_reported, npa_id, geom, row_hash, batch_id)"
            " VALUES (1, 'H1', '2021-03-31', :b, NULL, 0, 0), (2, 'H2', '2021-04-01', :b, NULL, 0, 0)"), {"b": b})
    values, _ = npa_values(engine, PERIOD, "incidents")
    assert dict(zip(values["npa_id"], values["value"])) == {a: 2.0}
    homicides, _ = npa_values(engine, PERIOD, "homicides")
    assert dict(zip(homicides["npa_id"], homicides["value"])) == {b: 1.0}
    assert "13A" in get_source("incidents").describe() and "Unfounded" in get_source("incidents").describe()


def counted(output: str, unit: str) -> float:
    """The sum over the class lines ('Hot spot ...   3 NPAs,   2 incidents', '1 NPA, 4.5 expected')."""
    return sum(float(line.split(",")[-1].split()[0]) for line in output.splitlines()
               if line.endswith(f" {unit}") and (" NPAs, " in line or " NPA, " in line))


@pytest.fixture
def run(engine, tmp_path):
    url = engine.url.render_as_string(hide_password=False)

    def invoke(*args):
        env = {"DATABASE_URL": url, "HOTSPOTS_VAR_DIR": str(tmp_path / "var")}
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def test_the_default_switches_to_incidents_and_is_named(engine, run):
    a, b = npas(engine, 2)
    with engine.begin() as conn:
        for i in range(6):
            add_call(conn, f"C{i}", a, f"2021-03-{i + 1:02d} 10:00", True, 0.75)
    assert default_source(engine, PERIOD) == "expected"
    out = run("hotspots", "--from", "2021-03-01", "--to", "2021-03-31", "--permutations", "0", "--save")
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].startswith("source: expected: expected violent calls")
    assert counted(out.output, "expected") == pytest.approx(4.5)   # 6 x 0.75
    with engine.begin() as conn:
        add_incident(conn, "I1", b, "2021-03-02 10:00")
        add_incident(conn, "I2", b, "2021-03-03 10:00")
        add_incident(conn, "OLD", b, "2020-03-03 10:00")
    assert default_source(engine, PERIOD) == "incidents"
    assert default_source(engine, Filter.local_days(date(2019, 1, 1), date(2019, 2, 1))) == "expected"  # none in that period
    out = run("hotspots", "--from", "2021-03-01", "--to", "2021-03-31", "--permutations", "0", "--save")
    assert out.output.splitlines()[0].startswith("source: incidents: recorded violent incidents")
    assert counted(out.output, "incidents") == 2
    with engine.connect() as conn:
        saved = conn.execute(sa.text("SELECT params->>'source' FROM analysis_runs ORDER BY run_id")).scalars().all()
    assert saved == ["expected", "incidents"]
    result = npa_hotspots(engine, PERIOD, permutations=0)
    assert result.attrs["source"] == "incidents" and result["value"].sum() == 2


def test_real_and_synthetic_are_not_added(engine, run):
    a, _ = npas(engine, 2)
    with engine.begin() as conn:
        add_incident(conn, "I1", a, "2021-03-02 10:00")
        add_incident(conn, "S1", a, "2021-03-02 11:00", origin="synthetic")
        add_incident(conn, "S2", a, "2021-03-02 12:00", origin="synthetic")
    with pytest.raises(ValueError, match="both real and synthetic rows.*--origin"):
        npa_values(engine, PERIOD, "incidents")
    out = run("hotspots", "--from", "2021-03-01", "--to", "2021-03-31", "--permutations", "0")
    assert out.exit_code != 0 and "choose --origin real or --origin synthetic" in out.output
    out = run("hotspots", "--from", "2021-03-01", "--to", "2021-03-31", "--permutations", "0", "--origin", "synthetic")
    assert out.exit_code == 0 and "synthetic rows only" in out.output.splitlines()[0]
    assert counted(out.output, "incidents") == 2
    values, _ = npa_values(engine, PERIOD, "incidents", origin="real")
    assert values["value"].sum() == 1


def test_compstat_counts_the_named_source(engine, run):
    """The report's 28 days to 27 June 2021 against 2020's: incidents by default once any exist, calls once per incident."""
    from geo.metrics import compstat

    a, _ = npas(engine, 2)
    with engine.begin() as conn:
        for i in range(5):   # five labelled calls about one incident, in the current 28 days
            add_call(conn, f"C{i}", a, f"2021-06-1{i} 10:00", True, 0.8, incident="R1")
        add_call(conn, "L1", a, "2020-06-10 10:00", True, 0.6)   # a year earlier, unlinked
        add_call(conn, "L2", a, "2020-06-11 10:00", True, 0.6)
    table = compstat(engine, date(2021, 7, 1), source="labelled").set_index("window")
    assert (table.loc["28 days", "current"], table.loc["28 days", "prior"]) == (1, 2)
    assert table.attrs["source"].startswith("labelled: ")
    expected = compstat(engine, date(2021, 7, 1), source="expected").set_index("window")
    assert expected.loc["28 days", "current"] == pytest.approx(0.8) and expected.loc["28 days", "prior"] == pytest.approx(1.2)
    out = run("stats", "compstat", "--as-of", "2021-07-01")
    assert out.output.splitlines()[0].startswith("source: expected: ")
    with engine.begin() as conn:
        add_incident(conn, "I1", a, "2021-06-12 10:00")
        add_incident(conn, "I2", a, "2021-06-13 10:00", is_crime=False)   # Unfounded
        add_incident(conn, "I3", a, "2020-06-12 10:00", "120")
        add_incident(conn, "I4", a, "2020-06-13 10:00", "120")
        add_incident(conn, "I5", a, "2020-06-14 10:00", "120")
    out = run("stats", "compstat", "--as-of", "2021-07-01")
    assert out.output.splitlines()[0].startswith("source: incidents: recorded violent incidents")
    row = next(line.split() for line in out.output.splitlines() if line.startswith("28 days") and "CMPD" in line)
    assert row[2:5] == ["CMPD", "1", "3"]   # "28", "days", area, current, prior
