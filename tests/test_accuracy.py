"""`hotspots accuracy`: hot spots on T scored on recorded violence in T+1 (hit rate, PAI, RRI), on planted data."""

from __future__ import annotations

import csv
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo.accuracy import accuracy, latest_accuracy, report_lines, score
from geo.cli import main
from geo.filters import Filter

T = Filter.local_days(date(2021, 1, 1), date(2021, 7, 1))
T1 = Filter.local_days(date(2021, 7, 1), date(2022, 1, 1))


def test_score_by_hand():
    hot = np.array([True, False, True, False])
    area = np.array([1.0, 2.0, 1.0, 4.0])           # hot: 2 of 8 = 25% of the area
    train = np.array([6, 2, 4, 8])                  # 10 of 20 in hot in T
    test = np.array([9, 3, 3, 15])                  # 12 of 30 in hot in T+1
    got = score(hot, area, train, test)
    assert got["area_share"] == 0.25 and got["hit_rate"] == pytest.approx(0.4)
    assert got["pai"] == pytest.approx(1.6)
    assert got["rri"] == pytest.approx((12 / 10) / (30 / 20))
    assert score(np.zeros(4, bool), area, train, test)["pai"] is None


def _insert(conn, table: str, rows: list[tuple]) -> None:
    """rows: (id, local time, npa, label, p) for calls; (id, local time, npa) for incidents."""
    if table == "calls":
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, geom, npa_id, label, p_violent, row_hash, batch_id)"
            " SELECT t.id, CAST(t.at AS timestamp) AT TIME ZONE 'America/New_York', 'ASSAULT', ST_PointOnSurface(n.geom),"
            " t.npa, t.l, t.p, 0, 0 FROM unnest(CAST(:ids AS text[]), CAST(:at AS text[]), CAST(:npa AS int[]),"
            " CAST(:l AS boolean[]), CAST(:p AS real[])) AS t(id, at, npa, l, p) JOIN neighborhoods n ON n.npa_id = t.npa"),
            {k: [r[i] for r in rows] for i, k in enumerate(("ids", "at", "npa", "l", "p"))})
    else:
        conn.execute(sa.text(
            "INSERT INTO incidents (incident_report_id, date_reported, highest_nibrs_code, is_crime, geom, npa_id,"
            " row_hash, batch_id) SELECT t.id, CAST(t.at AS timestamp) AT TIME ZONE 'America/New_York', '13A', true,"
            " ST_PointOnSurface(n.geom), t.npa, 0, 0 FROM unnest(CAST(:ids AS text[]), CAST(:at AS text[]),"
            " CAST(:npa AS int[])) AS t(id, at, npa) JOIN neighborhoods n ON n.npa_id = t.npa"),
            {k: [r[i] for r in rows] for i, k in enumerate(("ids", "at", "npa"))})


def _clusters(engine):
    """Two NPA clusters far apart (a well-connected NPA and its queen neighbours) and 5 NPAs far from both."""
    from geo.hotspots import queen_weights
    from geo.spatial import read_neighborhoods

    npas = read_neighborhoods(engine)
    w = queen_weights(npas)
    ids = npas["npa_id"].to_numpy()
    centres = npas.to_crs(2264).geometry.centroid
    a = int(np.argmax([w.cardinalities[i] for i in range(w.n)]))
    b = int(np.argmax(centres.distance(centres.iloc[a]).to_numpy() * (np.array([w.cardinalities[i] for i in range(w.n)]) >= 5)))
    ring = lambda i: {i, *w.neighbors[i], *(k for j in w.neighbors[i] for k in w.neighbors[j])}  # noqa: E731
    far = centres.distance(centres.iloc[a]).to_numpy() + 0.0
    away = [i for i in np.argsort(-np.minimum(far, centres.distance(centres.iloc[b]).to_numpy()))
            if not (ring(i) & (ring(a) | ring(b)))]
    background = []
    for i in away:   # five NPAs apart from each other too
        if all(not (ring(i) & ring(j)) for j in background):
            background.append(i)
        if len(background) == 5:
            break
    return ([int(ids[i]) for i in [a, *w.neighbors[a]]], [int(ids[i]) for i in [b, *w.neighbors[b]]],
            [int(ids[i]) for i in background])


def _area_share(engine, hot: list[int]) -> float:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT sum(ST_Area(ST_Transform(geom, 2264))) FILTER (WHERE npa_id = ANY(:h))"
            " / sum(ST_Area(ST_Transform(geom, 2264))) FROM neighborhoods"), {"h": hot}).scalar_one()


def test_planted_violence_is_found_by_incidents_and_missed_by_misleading_labels(engine, tmp_path):
    a, b, background = _clusters(engine)
    incidents, calls = [], []
    for npa in a:   # violence in cluster A: 10 per NPA in T, 12 in T+1
        incidents += [(f"A{npa}-{k}", f"2021-0{1 + k % 6}-1{k % 9} 12:00", npa) for k in range(10)]
        incidents += [(f"A1{npa}-{k}", f"2021-{7 + k % 6:02d}-1{k % 9} 12:00", npa) for k in range(12)]
        calls += [(f"CA{npa}-{k}", f"2021-0{1 + k % 6}-0{1 + k % 9} 09:00", npa, False, 0.3) for k in range(15)]
    for npa in background:   # a little elsewhere: 1 in T, 2 in T+1
        incidents += [(f"B{npa}", "2021-03-03 12:00", npa), (f"B1{npa}-0", "2021-08-08 12:00", npa),
                      (f"B1{npa}-1", "2021-09-09 12:00", npa)]
    for npa in b:    # the model's labels point at cluster B
        calls += [(f"CB{npa}-{k}", f"2021-0{1 + k % 6}-0{1 + k % 9} 09:00", npa, True, 0.9) for k in range(15)]
    with engine.begin() as conn:
        _insert(conn, "incidents", incidents)
        _insert(conn, "calls", calls)
    table = accuracy(engine, T, T1, grid_ft=3000.0)
    assert table.attrs["skipped"] == ["homicides"]
    rows = table.set_index(["source", "level"])
    hot_inc, hot_lab = table.attrs["hot"][("incidents", "npa")], table.attrs["hot"][("labelled", "npa")]
    assert set(a) <= set(hot_inc) and not set(hot_inc) & set(background + b)
    assert set(b) <= set(hot_lab) and not set(hot_lab) & set(a + background)
    k = len(a)
    inc = rows.loc[("incidents", "npa")]
    assert (inc["test_in_hot"], inc["test_total"], inc["train_in_hot"], inc["train_total"]) == (12 * k, 12 * k + 10,
                                                                                                10 * k, 10 * k + 5)
    assert inc["hit_rate"] == pytest.approx(12 * k / (12 * k + 10))
    assert inc["area_share"] == pytest.approx(_area_share(engine, hot_inc))
    assert inc["pai"] == pytest.approx(12 * k / (12 * k + 10) / _area_share(engine, hot_inc))
    assert inc["rri"] == pytest.approx((12 * k / (10 * k)) / ((12 * k + 10) / (10 * k + 5)))
    lab = rows.loc[("labelled", "npa")]
    assert lab["hit_rate"] == 0 and lab["pai"] == 0 and np.isnan(lab["rri"])   # nothing in its hot areas in T
    assert inc["pai"] > 5 > lab["pai"]
    assert rows.loc[("incidents", "grid"), "pai"] > rows.loc[("labelled", "grid"), "pai"]
    assert rows.loc[("incidents", "grid"), "hit_rate"] == pytest.approx(12 * k / (12 * k + 10))
    # The CLI prints a table per source, saves a run of kind 'accuracy' that the model report and map read.
    url = engine.url.render_as_string(hide_password=False)
    out = CliRunner().invoke(main, ["accuracy", "--train-from", "2021-01-01", "--train-to", "2021-06-30",
                                    "--test-from", "2021-07-01", "--test-to", "2021-12-31", "--source", "incidents",
                                    "--source", "labelled"],
                             env={"DATABASE_URL": url, "HOTSPOTS_VAR_DIR": str(tmp_path)}, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "incidents: recorded violent incidents" in out.output and "labelled: calls the model labelled" in out.output
    line = next(x for x in out.output.splitlines() if x.startswith("incidents npa"))
    assert line.split()[-2] == f"{inc['pai']:.2f}" and line.split()[-3] == f"{inc['hit_rate']:.1%}"
    saved = latest_accuracy(engine)
    assert saved["train"] == ["2021-01-01", "2021-07-01"] and saved["truth"] == "incidents"
    assert [(r["source"], r["level"]) for r in saved["rows"]] == [("incidents", "npa"), ("labelled", "npa")]
    assert saved["rows"][0]["pai"] == pytest.approx(inc["pai"])
    lines = report_lines(saved)   # what `hotspots model report` prints under the model's metrics
    assert lines[0].startswith(f"Map accuracy (analysis run {saved['run_id']}): Gi* hot spots (99/95%) on 2021-01-01")
    assert lines[2].split()[:2] == ["incidents", "npa"] and lines[2].split()[-2] == f"{inc['pai']:.2f}"
    assert report_lines(None) == ["Map accuracy: not computed (run `hotspots accuracy`)."]


def test_a_map_unrelated_to_violence_scores_pai_near_1(engine):
    """Null: violent incidents spread uniformly over the county, labelled calls clustered at random.

    With 3,000 incidents in T+1 and hot areas of a few percent of the county, one run's PAI has a
    standard deviation of roughly 0.1: each seed within 0.6-1.4, their mean within 0.15 of 1."""
    from geo.hotspots import queen_weights
    from geo.spatial import read_neighborhoods

    npas = read_neighborhoods(engine)
    w = queen_weights(npas)
    pais = []
    for seed in (1, 2, 3, 4):
        rng = np.random.default_rng(seed)
        centre = int(rng.choice([i for i in range(w.n) if w.cardinalities[i] >= 5]))
        calls = [(f"C{seed}-{npa}-{k}", f"2021-0{1 + k % 6}-05 09:00", int(npas["npa_id"].iloc[npa]), True, 0.9)
                 for npa in [centre, *w.neighbors[centre]] for k in range(15)]
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM calls; DELETE FROM incidents"))
            _insert(conn, "calls", calls)
            conn.execute(sa.text(
                "INSERT INTO incidents (incident_report_id, date_reported, highest_nibrs_code, is_crime, geom,"
                " row_hash, batch_id)"
                " SELECT 'U' || :s || '-' || d.path[1], CASE WHEN d.path[1] <= 3000 THEN timestamptz '2021-03-01 17:00+00'"
                " ELSE timestamptz '2021-09-01 17:00+00' END, '13A', true, d.geom, 0, 0"
                " FROM ST_Dump(ST_GeneratePoints((SELECT ST_Union(geom) FROM neighborhoods), 6000, :s)) AS d"),
                {"s": seed})
            conn.execute(sa.text("UPDATE incidents i SET npa_id = n.npa_id FROM neighborhoods n"
                                 " WHERE ST_Intersects(n.geom, i.geom)"))
        row = accuracy(engine, T, T1, sources=("labelled",)).iloc[0]
        assert 2990 <= row["test_total"] <= 3000 and 0.01 < row["area_share"] < 0.2
        pais.append(row["pai"])
    assert all(0.6 < p < 1.4 for p in pais), pais
    assert abs(np.mean(pais) - 1) < 0.15, pais


def test_accuracy_on_the_real_incident_sample(engine, data_dir):
    from geo.ingest.incidents import load_incidents
    from geo.taxonomy import load_taxonomy

    path = data_dir / "real" / "incidents_api_sample.csv"
    load_incidents(engine, path)
    train, test = Filter.local_days(date(2023, 1, 1), date(2024, 1, 1)), Filter.local_days(date(2024, 1, 1), date(2025, 1, 1))
    table = accuracy(engine, train, test, sources=("incidents", "homicides"))
    assert table.attrs["skipped"] == ["homicides"] and list(table["source"]) == ["incidents"]
    with engine.connect() as conn:
        placed = set(conn.execute(sa.text("SELECT incident_report_id FROM incidents WHERE npa_id IS NOT NULL")).scalars())
    violent, tz = load_taxonomy().violent_codes, ZoneInfo("America/New_York")
    years = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            if r["HIGHEST_NIBRS_CODE"] in violent and r["CLEARANCE_STATUS"] != "Unfounded" and r["INCIDENT_REPORT_ID"] in placed:
                years.append(datetime.fromtimestamp(int(r["DATE_REPORTED"]) / 1000, timezone.utc).astimezone(tz).year)
    row = table.iloc[0]
    assert (row["train_total"], row["test_total"]) == (years.count(2023), years.count(2024))
    assert row["test_total"] > 20
    assert row["hit_rate"] is None or 0 <= row["hit_rate"] <= 1
