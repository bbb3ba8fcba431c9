"""`/api/staffing/whatif` on the demo data: the JSON body against geo.whatif, and refusals naming the parameter."""

from __future__ import annotations

from datetime import date

from geo.filters import Filter
from geo.whatif import parse_moves, whatif_from_db
from tests.web.conftest import YEAR


def test_whatif_api_matches_the_library(client, app):
    from web import database

    query = f"start={YEAR}-03-01&end={YEAR}-03-31&move=4:01/night->02/night&simulate=false"
    r = client.get(f"/api/staffing/whatif?{query}")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["period"] == {"start": f"{YEAR}-03-01", "end": f"{YEAR}-04-01"}
    with app.app_context():
        expected = whatif_from_db(database.engine(), Filter.local_days(date(YEAR, 3, 1), date(YEAR, 4, 1)),
                                  moves=parse_moves("4:01/night->02/night"), simulate=False).to_json()
    assert body["rows"] == expected["rows"] and body["notes"] == expected["notes"]
    night = {r["division"]: r for r in body["rows"] if r["shift"] == "night"}
    assert night["01"]["units_after"] == night["01"]["units_before"] - 2
    assert night["02"]["units_after"] == night["02"]["units_before"] + 2
    assert body["summary"]["sources"]["service"].startswith("measured (CAD times)")
    simulated = client.get(f"/api/staffing/whatif?start={YEAR}-03-01&end={YEAR}-03-31&targets=p1_wait_min=1").get_json()
    assert simulated["summary"]["sim_p1_response_median_min_after"] > 0
    assert simulated["summary"]["officers_after"] >= simulated["summary"]["officers_before"]


def test_whatif_api_refuses_bad_parameters(client):
    for query, parameter in (("move=2%20from%2001", "move"), ("", "move"), ("targets=p_wait=0", "targets"),
                             ("move=4:01/night->77/night", "move"), ("move=4:01/night->02/night&simulate=maybe",
                                                                       "simulate"),
                             ("move=4:01/night->02/night&officers=0", "officers")):
        r = client.get(f"/api/staffing/whatif?start={YEAR}-03-01&end={YEAR}-03-31&{query}")
        assert r.status_code == 400, (query, r.get_data(as_text=True))
        assert r.get_json()["parameter"] == parameter, (query, r.get_json())
