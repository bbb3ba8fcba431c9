"""The demo path end to end: generate, load, and every dirty row ends up where the manifest says."""

from __future__ import annotations

import json
from datetime import date

import sqlalchemy as sa

from geo.demo import generate_and_load
from geo.summary import summary_lines


def test_demo_data_loads_with_exactly_the_expected_rejects(engine, tmp_path, data_dir):
    out = tmp_path / "demo"
    reports = generate_and_load(n_calls=30_000, start=date(2021, 1, 1), days=365, seed=9, out=out,
                                engine=engine, data_dir=data_dir, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    by_kind = {r.kind: r for r in reports}
    for kind in ("incidents", "calls"):
        info = manifest["files"].get(kind) or manifest["files"][f"{kind}.csv"]
        report = by_kind[kind]
        assert report.rows_read == info["rows"]
        assert dict(report.rejected) == info["expected_rejects"]
        assert report.rows_loaded == info["expected_loaded"]
        assert report.fixes["city_name_normalised"] == info["defects"]["city_variant"]
        assert report.fixes["coordinates_from_state_plane"] == info["defects"]["latlon_missing_xy_present"]
        assert report.notes["division_disagreements"] == info["defects"]["division_disagrees"]
    with engine.connect() as conn:
        n_calls, n_assigned, n_linked = conn.execute(sa.text(
            "SELECT count(*), count(c.npa_id), count(i.incident_report_id) FROM calls c"
            " LEFT JOIN incidents i USING (incident_report_id)")).one()
        rejects = dict(conn.execute(sa.text(
            "SELECT reason, count(*) FROM ingest_rejects WHERE kind = 'calls' GROUP BY 1")).all())
    assert n_calls == (manifest["files"].get("calls") or manifest["files"]["calls.csv"])["expected_loaded"] == n_assigned
    assert n_linked > 0.15 * n_calls
    calls_info = manifest["files"].get("calls") or manifest["files"]["calls.csv"]
    assert rejects == calls_info["expected_rejects"]
    assert by_kind["call_counts"].rows_rejected == 0 and by_kind["call_counts"].inserted > 0

    # Run again: files are reused and every load is recognised as already done.
    again = generate_and_load(n_calls=30_000, start=date(2021, 1, 1), days=365, seed=9, out=out,
                              engine=engine, data_dir=data_dir, progress=False)
    assert all(r.already_loaded_batch is not None for r in again)
    lines = summary_lines(engine)
    assert any(line.split()[:2] == ["calls", f"{n_calls:,}"] for line in lines)


def test_regenerated_demo_data_replaces_the_old_set(engine, tmp_path, data_dir):
    out = tmp_path / "demo"
    generate_and_load(n_calls=4_000, start=date(2021, 1, 1), days=60, seed=1, out=out, engine=engine,
                      data_dir=data_dir, progress=False)
    reports = generate_and_load(n_calls=3_000, start=date(2021, 1, 1), days=60, seed=2, out=out, engine=engine,
                                data_dir=data_dir, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    with engine.connect() as conn:
        calls, incidents, batches = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM calls), (SELECT count(*) FROM incidents),"
            " (SELECT count(*) FROM ingest_batches WHERE kind IN ('calls', 'incidents', 'call_counts'))")).one()
    calls_info = manifest["files"].get("calls") or manifest["files"]["calls.csv"]
    inc_info = manifest["files"].get("incidents") or manifest["files"]["incidents.csv"]
    assert calls == calls_info["expected_loaded"] and incidents == inc_info["expected_loaded"]
    assert batches == 3 and all(r.inserted for r in reports)


def test_demo_shows_real_records_beside_synthetic_ones_never_mixed(engine, tmp_path, data_dir):
    """The demo's synthetic year overlaps the real incidents; every row keeps its origin and file."""
    from geo.demo import REAL_FILES, load_real_records
    from geo.summary import summary_lines as summary

    generate_and_load(n_calls=4_000, start=date(2024, 1, 1), days=60, seed=3, out=tmp_path / "demo", engine=engine,
                      data_dir=data_dir, progress=False)
    reports = load_real_records(engine, data_dir)
    assert [r.kind for r in reports] == [kind for kind, _ in REAL_FILES]
    with engine.connect() as conn:
        by_origin = dict(conn.execute(sa.text("SELECT data_origin, count(*) FROM incidents GROUP BY 1")).all())
        calls_origin = dict(conn.execute(sa.text("SELECT data_origin, count(*) FROM calls GROUP BY 1")).all())
        homicides = conn.execute(sa.text("SELECT count(*), count(geom) FROM homicides")).one()
        # Each row's file: the real ones from real/, the synthetic ones from the generator's folder.
        files = dict(conn.execute(sa.text(
            "SELECT i.data_origin, array_agg(DISTINCT b.source_file) FROM incidents i JOIN ingest_batches b"
            " USING (batch_id) GROUP BY 1")).all())
        overlap = conn.execute(sa.text(
            "SELECT count(*) FROM incidents WHERE data_origin = 'real' AND date_reported >= '2024-01-01'"
            " AND date_reported < '2024-03-01'")).scalar_one()
    assert set(calls_origin) == {"synthetic"}
    # The two real files share report ids (fetched months apart): a shared id is one row, from the later file.
    from tests.factories import read_rows

    ids = {r["INCIDENT_REPORT_ID"] for kind, name in REAL_FILES if kind == "incidents"
           for r in read_rows(data_dir / "real" / name)}
    rejected = sum(r.rows_rejected for r in reports if r.kind == "incidents")
    assert by_origin["real"] == len(ids) - rejected < sum(r.rows_loaded for r in reports if r.kind == "incidents")
    assert by_origin["synthetic"] > 0 and overlap > 0
    assert all("/real/" in f for f in files["real"]) and not any("/real/" in f for f in files["synthetic"])
    assert homicides == (933, 928)
    text = "\n".join(summary(engine))
    assert f"incidents, real: {by_origin['real']:,} rows" in text
    assert f"incidents, synthetic (generated by the demo, not real events): {by_origin['synthetic']:,} rows" in text
    assert "homicide victims (real, CMPD Homicide layer): 933" in text
    # Loading them again changes nothing (each file is known by its checksum).
    assert all(r.already_loaded_batch is not None for r in load_real_records(engine, data_dir))
