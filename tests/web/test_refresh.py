"""After a load (geo.refresh): `hotspots load calls` labels the new calls with the current model
through the one labelling step, and without a model the load report says so and names the commands;
a posted batch without a model says the same."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from geo.classify import load_model, read_calls
from geo.cli import main
from geo.db import make_engine
from geo.ingest import live
from geo.ingest.calls import load_calls
from geo.refresh import refresh_after_calls
from tests.factories import write_rows


def _places(engine, n: int) -> list[tuple[float, float]]:
    """(lon, lat) of a point inside each of the first n NPAs."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM neighborhoods ORDER BY npa_id LIMIT :n) s"),
            {"n": n})]


def _calls_csv(path, prefix: str, places: list[tuple[float, float]], call_type: str):
    rows = [{"CALL_ID": f"{prefix}-{i}", "DATE_RECEIVED": f"2021-12-30 0{i}:15:00", "CALL_TYPE": call_type,
             "PRIORITY": "1", "ADDRESS": "600 E TRADE ST", "CITY": "CHARLOTTE", "ZIP": "28202",
             "LATITUDE": f"{lat:.6f}", "LONGITUDE": f"{lon:.6f}", "CMPD_PATROL_DIVISION": "", "INCIDENT_REPORT_ID": ""}
            for i, (lon, lat) in enumerate(places)]
    return write_rows(path, rows)


def _stored(engine, prefix: str) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
            "SELECT call_id, model_version, p_violent, label FROM calls WHERE starts_with(call_id, :p)"), {"p": prefix + "-"})}


def test_a_file_load_labels_new_calls_with_the_current_model(writable_url, tmp_path):
    engine = make_engine(writable_url)
    try:
        model = load_model(engine)
        with engine.connect() as conn:
            call_type = conn.execute(sa.text("SELECT call_type FROM calls GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar()
        places = _places(engine, 3)
        report = load_calls(engine, _calls_csv(tmp_path / "new.csv", "NEW", places, call_type))
        assert report.inserted == 3
        assert report.notes["labels"].startswith(f"labelled 3 new or changed calls with {model.version}")
        stored = _stored(engine, "NEW")
        # The labels are the model's scores of the stored rows, as `hotspots label` writes them.
        scored = read_calls(engine, with_truth=False, where="starts_with(c.call_id, 'NEW-')")
        expected = dict(zip(scored["call_id"], model.score(scored)))
        assert sorted(stored) == ["NEW-0", "NEW-1", "NEW-2"]
        for call_id, (version, p, label) in stored.items():
            assert version == model.version
            assert abs(p - expected[call_id]) < 1e-6 and label == (expected[call_id] >= model.threshold)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM calls WHERE model_version IS NULL")).scalar() == 0

        # The command prints the same line in its load report.
        url = engine.url.render_as_string(hide_password=False)
        result = CliRunner().invoke(main, ["load", "calls", str(_calls_csv(tmp_path / "cli.csv", "CLI", places, call_type))],
                                    env={"DATABASE_URL": url, "HOTSPOTS_VAR_DIR": str(tmp_path / "var")})
        assert result.exit_code == 0, result.output
        assert f"labels: labelled 3 new or changed calls with {model.version}" in result.output
        assert {v for v, _, _ in _stored(engine, "CLI").values()} == {model.version}
    finally:
        engine.dispose()


def test_without_a_model_loads_say_so_and_name_the_commands(engine, tmp_path):
    places = _places(engine, 2)
    report = load_calls(engine, _calls_csv(tmp_path / "calls.csv", "NOM", places, "ASSAULT"))
    assert report.inserted == 2
    note = report.notes["labels"]
    assert note.startswith("2 calls stored unlabelled: no model (current)")
    assert note.index("`hotspots train`") < note.index("`hotspots label`")
    assert any(line.strip() == f"labels: {note}" for line in report.summary_lines())
    assert {v for v, _, _ in _stored(engine, "NOM").values()} == {None}

    # The refresh after a sync says the same, and leaves the map's hot spots alone.
    after_sync = refresh_after_calls(engine, "America/New_York")
    assert after_sync.labelled == 0 and after_sync.hotspot_runs == {}
    assert after_sync.note.startswith("2 calls stored unlabelled") and after_sync.note.endswith("hot spots are not recomputed")

    # A posted batch says the same.
    lon, lat = places[0]
    posted = live.ingest_calls(engine, {"calls": [{"call_id": "POST-1", "received_at": "2021-06-01T14:05:00-04:00",
                                                   "call_type": "ASSAULT", "lon": lon, "lat": lat}]},
                               body_sha256="b" * 64, source="test")
    assert posted.labelled == 0 and posted.model_version is None
    assert posted.note.index("`hotspots train`") < posted.note.index("`hotspots label`")
