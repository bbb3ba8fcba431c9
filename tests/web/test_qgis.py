"""QGIS's own OGC API - Features provider (Debian's python3-qgis, headless) reads every collection,
every page, from a live server: what an analyst's "WFS / OGC API - Features" connection does."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from geo.catalog import LAYERS

SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT = Path(__file__).with_name("clients") / "qgis_read.py"


@pytest.fixture(scope="module")
def qgis_read(live_server, tmp_path_factory):
    """Run the QGIS client (a separate process: QGIS's Qt event loop and our server never share a GIL)."""

    def read(*collections: str) -> dict:
        runtime = tmp_path_factory.mktemp("qgis-runtime")
        runtime.chmod(0o700)
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime)}
        env.pop("PYTHONPATH", None)
        done = subprocess.run([SYSTEM_PYTHON, str(CLIENT), live_server + "/ogc", *collections], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return read


def test_qgis_reads_every_collection_and_every_page(qgis_read, web_url):
    id_fields = {"calls": "call_id", "incidents": "incident_report_id", "divisions": "division_id",
                 "neighborhoods": "npa_id", "hotspot_cells": "col", "hotspot_npas": "npa_id", "homicides": "objectid",
                 "emerging_npas": "npa_id",
                 "response_times": "division_id"}
    result = qgis_read(*(f"{name}:{id_fields[name]}" for name in LAYERS))
    assert result["qgis"].startswith("3.") and result["provider"] == "OAPIF"
    engine = sa.create_engine(web_url)
    with engine.connect() as conn:
        expected = {
            "calls": {r[0] for r in conn.execute(sa.text("SELECT call_id FROM calls"))},
            "incidents": {r[0] for r in conn.execute(sa.text("SELECT incident_report_id FROM incidents"))},
            "divisions": {r[0] for r in conn.execute(sa.text("SELECT division_id FROM divisions"))},
            "neighborhoods": {str(r[0]) for r in conn.execute(sa.text("SELECT npa_id FROM neighborhoods"))},
            # Victims without a location (null geometry) are features too.
            "homicides": {str(r[0]) for r in conn.execute(sa.text("SELECT objectid FROM homicides"))},
        }
        latest_cells = conn.execute(sa.text(
            "SELECT count(*) FROM hotspot_cell_results WHERE run_id = (SELECT max(run_id) FROM analysis_runs"
            " WHERE kind = 'calls_grid_hotspots')")).scalar()
        latest_response = conn.execute(sa.text(
            "SELECT count(*) FROM analysis_rows WHERE data->>'division' IN (SELECT division_id FROM divisions)"
            " AND run_id = (SELECT max(run_id) FROM analysis_runs WHERE kind = 'response_times')")).scalar()
    engine.dispose()
    layers = result["layers"]
    for name, info in layers.items():
        assert info["valid"], (name, info.get("error"))
        assert info["crs"] == "EPSG:4326", name
    # Every page was read: the ids QGIS ends with are exactly the table's (40k calls = 40 pages of 1,000).
    for name, ids in expected.items():
        assert len(layers[name]["ids"]) == len(ids), name
        assert set(layers[name]["ids"]) == ids, name
    assert layers["hotspot_cells"]["count"] == latest_cells > 0
    assert layers["hotspot_npas"]["count"] == 462 and len(set(layers["hotspot_npas"]["ids"])) == 462
    assert layers["emerging_npas"]["count"] == 462 and len(set(layers["emerging_npas"]["ids"])) == 462
    assert {"pattern", "trend_z", "source", "left_out"} <= set(layers["emerging_npas"]["fields"])
    # Response times: one feature per division, priority and part (response, dispatch, travel).
    assert layers["response_times"]["count"] == latest_response > 0
    assert set(layers["response_times"]["ids"]) == expected["divisions"]
    assert {"call_id", "received_at", "call_type", "p_violent", "violent"} <= set(layers["calls"]["fields"])
    assert "address" not in layers["calls"]["fields"]        # private fields never leave the database
    xmin, ymin, xmax, ymax = layers["neighborhoods"]["extent"]
    assert -81.1 < xmin < xmax < -80.5 and 34.95 < ymin < ymax < 35.6     # Mecklenburg County, lon/lat order
