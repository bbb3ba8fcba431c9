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


def test_emerging_command_lists_every_class(run):
    result = run("emerging", "--from", "2021-01-01", "--to", "2021-06-30")
    assert result.exit_code == 0, result.output
    for name in ("new", "intensifying", "persistent", "diminishing", "sporadic", "historical", "no pattern"):
        assert any(line.startswith(name) for line in result.output.splitlines()), name
    # No calls in the test database: every NPA has no pattern.
    assert "no pattern     462" in result.output
