"""The `hotspots` command line, run through click against the test database."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geo.cli import main
from geo.taxonomy import load_taxonomy


@pytest.fixture
def run(engine, tmp_path):
    url = engine.url.render_as_string(hide_password=False)

    def invoke(*args, env=None):
        base = {"DATABASE_URL": url, "HOTSPOTS_VAR_DIR": str(tmp_path / "var")}
        base.update(env or {})
        return CliRunner().invoke(main, list(args), env=base, catch_exceptions=False)

    return invoke


@pytest.mark.parametrize("command", [[], ["db"], ["load"], ["load", "incidents"], ["load", "calls"], ["demo-data"],
                                     ["stats", "offenses"], ["rejects"], ["demo"], ["db", "up"],
                                     ["train"], ["label"], ["model", "report"], ["taxonomy"]])
def test_every_command_explains_itself(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 4


def test_stats_offenses_prints_rollup_totals(run):
    result = run("stats", "offenses", "--years", "2020-2021")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["2021", "12", "7,571"] for line in lines)
    assert any(line.split()[:3] == ["2020", "12", "8,093"] for line in lines)
    assert "Non-Fatal Gunshot Injury *" in result.output and "not added into the total" in result.output


def test_stats_bad_years_names_the_option(run):
    result = run("stats", "offenses", "--years", "last-year")
    assert result.exit_code == 2 and "--years" in result.output


def test_db_status_with_database_url(run):
    result = run("db", "status")
    assert result.exit_code == 0, result.output
    assert "postgis: 3." in result.output and "pending migrations: none" in result.output


def test_missing_data_dir_says_what_and_where(run, tmp_path):
    result = run("load", "reference", env={"HOTSPOTS_DATA_DIR": str(tmp_path / "nowhere")})
    assert result.exit_code == 1
    assert "nowhere does not exist" in result.output
    assert "divisions/CMPD_Police_Divisions.shp" in result.output and "data/shapes/README.md" in result.output


def test_load_reference_again_is_a_no_op(run, data_dir):
    result = run("load", "reference", env={"HOTSPOTS_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    assert result.output.count("was already loaded") == 3


def test_no_database_says_how_to_get_one(tmp_path):
    result = CliRunner().invoke(main, ["summary"], env={"DATABASE_URL": None, "HOTSPOTS_VAR_DIR": str(tmp_path)})
    assert result.exit_code == 1 and "hotspots db up" in result.output


def test_model_commands_without_a_model_say_what_to_do(run):
    for command in (["model", "report"], ["label"]):
        result = run(*command)
        assert result.exit_code == 1 and "hotspots train" in result.output


def test_taxonomy_command_lists_categories(run):
    result = run("taxonomy", "--kind", "nibrs")
    assert result.exit_code == 0
    assert "violent_crime:" in result.output
    assert "NIBRS codes: " + ", ".join(sorted(load_taxonomy().violent_codes)) + "\n" in result.output
    assert "Not counted as crimes:" in result.output


def test_hotspots_command_on_published_offenses(run, tmp_path):
    out = tmp_path / "hot.geojson"
    result = run("hotspots", "--source", "offenses", "--years", "2020", "--permutations", "99", "--save", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Hot spot, 99% confidence" in result.output and "saved as analysis run" in result.output
    import geopandas as gpd

    written = gpd.read_file(out)
    assert len(written) == 462 and written.crs.to_epsg() == 4326 and "hotspot_class" in written.columns


def test_emerging_command_names_source_steps_left_out_and_every_pattern(run, engine):
    from datetime import date

    from geo.emerging import PATTERNS
    from tests.test_emerging import YEAR_2021, plant_calls

    centre, _ = plant_calls(engine, [*YEAR_2021, (date(2022, 1, 1), 0.1)])  # the data ends on 3 January 2022
    result = run("emerging", "--source", "calls", "--measure", "labelled", "--from", "2021-01-01", "--to", "2022-01-31")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("source: labelled: calls the model labelled violent")
    assert "time steps: 12 complete months, 2021-01 to 2021-12 (the data spans 2021-01-01 to 2022-01-03)" in lines
    assert "left out: 2022-01 (10% covered)" in lines
    counts = {name: int(line[len(name):].split()[0]) for name in PATTERNS for line in lines if line.startswith(name + " ")}
    assert set(counts) == set(PATTERNS) and sum(counts.values()) == 462
    persistent = next(line for line in lines if line.startswith("Persistent Hot Spot"))
    assert str(centre) in persistent.split(": ")[1].replace(",", " ").split()
    default = run("emerging", "--from", "2021-01-01", "--to", "2022-01-31")   # no incidents loaded: expected calls
    assert default.exit_code == 0 and default.output.startswith("source: expected: expected violent calls")
    short = run("emerging", "--source", "calls", "--from", "2021-01-01", "--to", "2021-06-30")
    assert short.exit_code == 1 and "need at least 10 complete months" in short.output
    assert "holds 6 complete months" in short.output


def test_rejects_newest_first_by_file_and_batch_and_typos_refused(run, data_dir, tmp_path):
    from tests.factories import read_rows, write_rows

    rows = read_rows(data_dir / "real" / "incidents_streets_QVXYZ.csv")[:6]
    rows[1]["DATE_REPORTED"] = "not a date"
    first = write_rows(tmp_path / "first.csv", rows)
    rows2 = [dict(r, INCIDENT_REPORT_ID=r["INCIDENT_REPORT_ID"] + "X") for r in rows]
    rows2[4]["DATE_REPORTED"] = "still not"
    second = write_rows(tmp_path / "second.csv", rows2)
    assert run("load", "incidents", str(first)).exit_code == 0
    assert run("load", "incidents", str(second)).exit_code == 0
    listed = [line for line in run("rejects").output.splitlines() if " bad_date: " in line]
    assert [line.split()[0] for line in listed] == ["second.csv:6", "second.csv:3", "first.csv:3"]  # newest first
    only = run("rejects", "--file", "first.csv").output
    assert "first.csv:3 bad_date" in only and "second.csv" not in only
    assert "second.csv:6" in run("rejects", "--file", str(second)).output
    result = run("rejects", "--kind", "call")
    assert result.exit_code == 2 and "--kind" in result.output and "stored: incidents" in result.output
    result = run("rejects", "--reason", "bad_dates")
    assert result.exit_code == 2 and "bad_date" in result.output


def test_demo_stops_at_once_when_its_port_is_taken(run):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = run("demo", env={"HOTSPOTS_PORT": str(port), "HOTSPOTS_HOST": "127.0.0.1"})
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.output and "nothing was started or loaded" in result.output
    assert f"HOTSPOTS_PORT={port + 1}" in result.output


def test_runs_list_and_export_a_hot_spot_run_and_a_table(run, engine, tmp_path):
    import csv
    import json

    import geopandas as gpd
    import pandas as pd
    import sqlalchemy as sa

    from geo.runs import RunKind, RunSpec, save_table

    assert "no analysis runs saved yet" in run("runs", "list").output
    saved = run("hotspots", "--source", "offenses", "--years", "2020", "--permutations", "0", "--save")
    assert saved.exit_code == 0, saved.output
    with engine.begin() as conn:
        hot = conn.execute(sa.text("SELECT max(run_id) FROM analysis_runs")).scalar()
        n_hot = conn.execute(sa.text("SELECT count(*) FROM hotspot_npa_results WHERE run_id = :r"), {"r": hot}).scalar()
    table = save_table(engine, RunSpec(RunKind.COMPSTAT, {"as_of": "2021-05-30", "source": "incidents"}),
                       pd.DataFrame({"area": ["01", "02"], "change": [-0.25, None], "note": ["=1+1", None]}))

    listed = run("runs", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["run", "kind", "source", "period", "created", "(UTC)", "rows"]
    assert lines[1].split()[:5] == [str(table), "compstat", "incidents", "as", "of"] and lines[1].split()[-1] == "2"
    assert lines[2].split()[:4] == [str(hot), "offenses_npa_hotspots", "offenses", "2020"] and lines[2].split()[-1] == str(n_hot)
    only = run("runs", "list", "--kind", "compstat").output.splitlines()
    assert len(only) == 2 and only[1].split()[0] == str(table)
    # The one table printer: the same runs as rows a program can read.
    rows = json.loads(run("runs", "list", "--format", "json").stdout)
    assert [(r["run_id"], r["kind"], r["source"], r["period"], r["rows"]) for r in rows] == [
        (table, "compstat", "incidents", "as of 2021-05-30", 2), (hot, "offenses_npa_hotspots", "offenses", "2020", n_hot)]
    assert rows[0]["created_at"].endswith("+00:00")
    listed_csv = list(csv.reader(run("runs", "list", "--kind", "compstat", "--format", "csv").stdout.splitlines()))
    assert listed_csv[0] == ["run_id", "kind", "source", "period", "created_at", "rows"]
    assert listed_csv[1][:4] == [str(table), "compstat", "incidents", "as of 2021-05-30"] and listed_csv[1][5] == "2"
    bad = run("runs", "list", "--kind", "nope")
    assert bad.exit_code == 2 and "--kind" in bad.output and "calls_npa_hotspots" in bad.output

    gpkg = tmp_path / "hot.gpkg"
    result = run("runs", "export", str(hot), "--out", str(gpkg))
    assert result.exit_code == 0, result.output
    assert f"wrote {n_hot} rows of analysis run {hot} (offenses_npa_hotspots) as hotspot_npas" in result.output
    written = gpd.read_file(gpkg)
    assert len(written) == n_hot == 462 and set(written["run_id"]) == {hot} and written.crs.to_epsg() == 4326

    out = tmp_path / "compstat.csv"
    result = run("runs", "export", str(table), "--out", str(out))
    assert result.exit_code == 0, result.output
    with open(out, newline="", encoding="utf-8") as f:
        # Columns in the order the stored rows (jsonb objects: shorter keys first) hand them back.
        assert list(csv.reader(f)) == [["area", "note", "change"], ["01", "'=1+1", "-0.25"], ["02", "", ""]]
    doc = json.loads(run("runs", "export", str(table), "--out", str(tmp_path / "c.json")) and
                     (tmp_path / "c.json").read_text())
    assert doc["kind"] == "compstat" and doc["params"]["as_of"] == "2021-05-30" and len(doc["rows"]) == 2

    refused = run("runs", "export", str(table), "--out", str(tmp_path / "c.gpkg"))
    assert refused.exit_code == 2 and "--format" in refused.output and "csv or json" in refused.output
    missing = run("runs", "export", "99999", "--out", str(tmp_path / "x.csv"))
    assert missing.exit_code == 2 and "RUN" in missing.output and f"no saved analysis run 99999; saved runs: {table}, {hot}" \
        in " ".join(missing.output.split())
    assert not (tmp_path / "x.csv").exists()
