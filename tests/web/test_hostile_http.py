"""Hostile HTTP input: SQL injection, out-of-range and malformed numbers, dates, unicode, NULs, bodies.

Every answer is a success with the same rows as without the hostile part, or a 4xx JSON error
naming the parameter; never a 500 and never a stack trace. The database is compared (row counts
and data_versions) before and after, so an injection that wrote anything would fail the test.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote, urlencode

import pytest
import sqlalchemy as sa

from geo.auth import make_entry, new_token
from geo.catalog import data_versions
from geo.db import make_engine
from tests.web.conftest import LiveServer
from web import create_app

INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE calls; --",
    "1) OR (1=1",
    "' UNION SELECT address, address FROM calls --",
    "'; UPDATE calls SET label = true; --",
    "$$; DELETE FROM divisions; $$",
]
TABLES = ("calls", "incidents", "divisions", "neighborhoods", "analysis_runs", "ingest_batches", "ingest_rejects")
ITEMS = "/ogc/collections/{}/items"
TOKEN = new_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def db(web_url):
    engine = make_engine(web_url)
    yield engine
    engine.dispose()


def snapshot(engine) -> dict:
    """Row counts of the tables a request could touch, and the per-layer data versions."""
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        violent = conn.execute(sa.text("SELECT count(*) FROM calls WHERE label")).scalar_one()
    return {"counts": counts, "violent": violent, "versions": data_versions(engine)}


def assert_refused(r, parameter: str | None = None, status: int = 400) -> dict:
    """A JSON error with the given status (naming `parameter` when given), no trace of the server's insides."""
    text = r.get_data(as_text=True)
    assert r.status_code == status, (r.status_code, text[:300])
    assert r.mimetype == "application/json" and "Traceback" not in text and "psycopg" not in text
    body = r.get_json()
    assert body["description"]
    if parameter is not None:
        assert body.get("parameter") == parameter, body
    return body


def matched(client, layer: str, query: dict) -> int:
    r = client.get(ITEMS.format(layer) + "?" + urlencode({**query, "limit": 1}))
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    return r.get_json()["numberMatched"]


# --- SQL injection --------------------------------------------------------------------------------
# Validated parameters: an injection is refused, naming the parameter.
REFUSED = ["start", "end", "preset", "datetime", "division", "category", "violent", "min_p", "bbox",
           "limit", "offset", "f", "crs", "bbox-crs", "priority", "npa_id", "sortby", "properties", "filter"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_in_item_parameters_is_refused_or_matches_nothing(client, db, payload):
    before = snapshot(db)
    for name in REFUSED:
        assert_refused(client.get(ITEMS.format("calls") + "?" + urlencode({name: payload})), name)
    assert_refused(client.get(ITEMS.format("hotspot_npas") + "?" + urlencode({"run": payload})), "run")
    # Free-text queryables are compared as bound values: an injection is just a string no call has.
    for name in ("call_type", "zip"):
        assert matched(client, "calls", {name: payload}) == 0
    assert matched(client, "hotspot_npas", {"hotspot_class": payload}) == 0
    assert matched(client, "divisions", {"division_id": payload}) == 0
    # Ids, layers and collections in the path: unknown, never evaluated.
    assert_refused(client.get(ITEMS.format("calls") + "/" + quote(payload, safe="")), "featureId", 404)
    assert_refused(client.get(ITEMS.format(quote(payload, safe=""))), "collectionId", 404)
    assert snapshot(db) == before


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_in_tiles_exports_and_map_api_is_refused(client, db, payload):
    before = snapshot(db)
    q = quote(payload, safe="")
    for path, parameter, status in [
        (f"/tiles/{q}/14/4520/6490.pbf", "layer", 404), (f"/tiles/calls/{q}/0/0.pbf", "z", 400),
        (f"/tiles/calls/14/{q}/6490.pbf", "x", 400), (f"/tiles/calls/14/4520/{q}.pbf", "y", 400),
        (f"/tiles/{q}.json", "layer", 404), (f"/heat/{q}/0/0.png", "z", 400),
        (f"/export/{q}.csv", "layer", 404), (f"/export/calls.{q}", "format", 400),
        (f"/api/areas/{q}", "level", 404), (f"/api/panel/npa/{q}", "id", 400), (f"/api/panel/division/{q}", "id", 404),
        (f"/tiles/hotspot_cells/14/4520/6490.pbf?run={q}", "run", 400), (f"/heat.json?z={q}", "z", 400),
        (f"/api/hotspots/npa?measure={q}", "measure", 400), (f"/api/panel/division/01?officers={q}", "officers", 400),
        (f"/export/hotspot_npas.csv?run={q}", "run", 400),
    ]:
        assert_refused(client.get(path), parameter, status)
    for name in ("start", "division", "category", "violent", "min_p", "bbox"):
        for path in ("/tiles/calls/14/4520/6490.pbf", "/heat/14/4520/6490.png", "/export/calls.csv", "/api/areas/npa"):
            assert_refused(client.get(path + "?" + urlencode({name: payload})), name)
    assert snapshot(db) == before


# --- sizes and ranges ------------------------------------------------------------------------------
def test_huge_bbox_and_limit_are_served_within_the_cap(app, client, db):
    with db.connect() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar_one()
    cap = app.config["ITEMS_MAX_LIMIT"]
    for limit in (10**9, 2**63 - 1):
        r = client.get(ITEMS.format("calls") + f"?bbox=-180,-90,180,90&limit={limit}&offset={total - 3}")
        assert r.status_code == 200
        body = r.get_json()
        assert body["numberMatched"] == total and body["numberReturned"] == 3 == len(body["features"])
    r = client.get(ITEMS.format("divisions") + "?bbox=-180,-90,180,90&limit=99999999999")
    assert r.status_code == 200 and r.get_json()["numberReturned"] == 14
    assert cap < 10**9
    # Past the end of the data: an empty page, not an error (the largest offset PostgreSQL takes).
    r = client.get(ITEMS.format("calls") + f"?offset={2**63 - 1}")
    assert r.status_code == 200 and r.get_json()["numberReturned"] == 0


@pytest.mark.parametrize("name, value", [
    ("limit", "0"), ("limit", "-1"), ("offset", "-1"), ("offset", str(2**63)), ("offset", str(2**64)),
    ("limit", str(-2**64)), ("offset", "1e3"), ("limit", "0x10"), ("offset", "1_0"),
    ("bbox", "-181,0,0,1"), ("bbox", "0,-91,1,0"), ("bbox", "1,0,0,1"), ("bbox", "0,0,1"), ("bbox", "0,0,1,1,2"),
    ("bbox", ",".join(["1" * 400] * 4)), ("bbox", "-1e309,0,0,1"),
])
def test_out_of_range_sizes_are_400_naming_the_parameter(client, name, value):
    assert_refused(client.get(ITEMS.format("calls") + "?" + urlencode({name: value})), name)


@pytest.mark.parametrize("z, x, y, parameter", [
    ("-1", "0", "0", "z"), ("23", "0", "0", "z"), (str(2**64), "0", "0", "z"), (str(-2**64), "0", "0", "z"),
    ("1", "2", "0", "x"), ("1", "0", "2", "y"), ("1", "-1", "0", "x"), ("0", "0", "-0x1", "y"),
    ("14", str(2**64), "0", "x"), ("14", "0", str(2**14), "y"), ("22", str(2**22), "0", "x"),
    ("10" * 50, "0", "0", "z"), ("1.0", "0", "0", "z"), ("1e1", "0", "0", "z"),
])
def test_tile_addresses_out_of_range_are_400(client, z, x, y, parameter):
    for path in (f"/tiles/calls/{z}/{x}/{y}.pbf", f"/tiles/hotspot_cells/{z}/{x}/{y}.pbf", f"/heat/{z}/{x}/{y}.png"):
        assert_refused(client.get(path), parameter)


def test_the_corners_of_the_tile_range_are_served(client):
    for z, x, y in [(0, 0, 0), (22, 0, 0), (22, 2**22 - 1, 2**22 - 1)]:
        for path in (f"/tiles/calls/{z}/{x}/{y}.pbf", f"/heat/{z}/{x}/{y}.png"):
            assert client.get(path).status_code in (200, 204)


# --- malformed numbers and dates --------------------------------------------------------------------
BAD_NUMBERS = ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e309", "-1e309", "\u0661\u0662", "\uff11",
               "\u00b2", "1_0", "0x1", "1,5", "--1", "1e", ".", "\u0967"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_malformed_numbers_are_400_naming_the_parameter(client, value):
    for path, name in [(ITEMS.format("calls"), "min_p"), (ITEMS.format("calls"), "limit"),
                       (ITEMS.format("calls"), "offset"), (ITEMS.format("calls"), "priority"),
                       (ITEMS.format("incidents"), "npa_id"), (ITEMS.format("hotspot_npas"), "run"),
                       ("/heat.json", "z"), ("/api/panel/division/01", "officers")]:
        assert_refused(client.get(path + "?" + urlencode({name: value})), name)
    if value:
        for name, template in [("bbox", "{v},35,-80,36"), ("bbox", "-81,{v},-80,36")]:
            assert_refused(client.get(ITEMS.format("calls") + "?" + urlencode({name: template.format(v=value)})), name)
        q = quote(value, safe="")
        assert_refused(client.get(f"/tiles/calls/{q}/0/0.pbf"), "z")
        assert_refused(client.get(f"/tiles/calls/1/{q}/0.pbf"), "x")


@pytest.mark.parametrize("value", [
    "2021-02-30", "2021-13-01", "2021-00-10", "21-01-01", "2021/01/01", "01/02/2021", "2021-01-01T25:00:00",
    "2021-01-01T12:00:00+25:00", "9999-12-31", "0001-01-01", "1899-12-31", "2201-01-01", "\uff12\uff10\uff12\uff11-01-01",
    "\u0662\u0660\u0662\u0661-01-01", "NaN", "yesterday", "2021-01-01T00:00:00Zjunk", "../..",
])
def test_malformed_dates_are_400_naming_the_parameter(client, value):
    for name in ("start", "end", "datetime"):
        assert_refused(client.get(ITEMS.format("calls") + "?" + urlencode({name: value})), name)
        assert_refused(client.get("/api/areas/npa?" + urlencode({name: value})), name)


# --- unicode and NUL ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["Centr\u0430l", "C\u0301entral", "\U0001f6a8", "\u202eCentral", "\ufeffCentral"])
def test_unicode_lookalikes_are_not_division_names(client, value):
    body = assert_refused(client.get(ITEMS.format("calls") + "?" + urlencode({"division": value})), "division")
    assert "01" in body["description"]  # the valid codes are listed


def test_unicode_in_free_text_filters_matches_nothing(client):
    for value in ("\u00e9\u00e8", "\U0001f6a8" * 100, "\u202e", "\ud7ff", "a" * 10_000):
        assert matched(client, "calls", {"call_type": value}) == 0
    r = client.get(ITEMS.format("calls") + "/" + quote("C\u00e9-\U0001f6a8", safe=""))
    assert_refused(r, "featureId", 404)


@pytest.mark.parametrize("url, parameter", [
    (ITEMS.format("calls") + "?call_type=ASSAULT%00", "call_type"),
    (ITEMS.format("calls") + "?zip=%00", "zip"),
    (ITEMS.format("calls") + "?division=01%00", "division"),
    (ITEMS.format("calls") + "?start=2021-01-01%00", "start"),
    (ITEMS.format("calls") + "/C%00X", "feature_id"),
    (ITEMS.format("calls") + "?%00=1", "\\x00"),
    (ITEMS.format("hotspot_npas") + "?hotspot_class=Hot%00", "hotspot_class"),
    ("/tiles/calls/14/4520/6490.pbf?category=violent_crime%00", "category"),
    ("/api/panel/division/01%00", "area_id"),
    ("/export/calls.csv%00", "name"),
    ("/login?next=/%00", "next"),
])
def test_nul_characters_are_400_naming_the_parameter(client, db, url, parameter):
    before = snapshot(db)
    assert_refused(client.get(url), parameter)
    assert snapshot(db) == before


# --- POST /api/calls: sizes, types, nesting, unstorable text ------------------------------------------
@pytest.fixture
def ingest(writable_url):
    """A live server (real sockets) on a writable copy with a 20 kB body limit, and that copy's engine."""
    app = create_app({"DATABASE_URL": writable_url, "TESTING": True, "API_TOKENS": make_entry("cad", TOKEN).entry(),
                      "MAX_CONTENT_LENGTH": 20_000})
    engine = make_engine(writable_url)
    with LiveServer(app) as server:
        yield server, engine
    engine.dispose()


def _http_post(server, body: bytes, content_type: str | None = "application/json", chunked: bool = False,
               headers: dict | None = None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    hdrs = {**AUTH, **(headers or {})}
    if content_type:
        hdrs["Content-Type"] = content_type
    if chunked:
        hdrs["Transfer-Encoding"] = "chunked"
        conn.request("POST", "/api/calls", body=iter([body[i:i + 4096] for i in range(0, len(body), 4096)]),
                     headers=hdrs, encode_chunked=True)
    else:
        conn.request("POST", "/api/calls", body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert b"Traceback" not in data
    return resp.status, dict(resp.getheaders()), json.loads(data)


def _call(i: int, **extra) -> dict:
    return {"call_id": f"HOSTILE-{i}", "received_at": "2021-12-31T23:15:00-05:00", "call_type": "ASSAULT",
            "lon": -80.8431, "lat": 35.2271, **extra}


def test_oversized_bodies_are_413_json_with_and_without_content_length(ingest):
    server, engine = ingest
    before = snapshot(engine)
    body = json.dumps({"calls": [_call(i, address="1" * 400) for i in range(60)]}).encode()
    assert len(body) > 20_000
    for chunked in (False, True):
        status, _, err = _http_post(server, body, chunked=chunked)
        assert status == 413, (chunked, status, err)
        assert err["code"] == "PayloadTooLarge" and "20,000 bytes" in err["description"]
    assert snapshot(engine) == before
    # Just under the limit is accepted (the limit is the documented one, not some other).
    small = json.dumps({"calls": [_call(0)]}).encode()
    status, _, body = _http_post(server, small)
    assert status == 201 and body["created"] == ["HOSTILE-0"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/csv", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx", "application/xml"])
def test_wrong_content_types_are_415_naming_the_header(ingest, content_type):
    server, engine = ingest
    before = snapshot(engine)
    status, _, err = _http_post(server, json.dumps({"calls": [_call(1)]}).encode(), content_type)
    assert status == 415 and err["code"] == "UnsupportedMediaType" and err["parameter"] == "Content-Type"
    assert snapshot(engine) == before


@pytest.mark.parametrize("body", [
    b'{"calls":' + b"[" * 9_000 + b"]" * 9_000 + b"}",
    b'{"calls":[{"call_id":' + b'{"a":' * 3_000 + b"1" + b"}" * 3_000 + b"}]}",
    b"[" * 19_000,
    b'{"calls":[{"call_id":"A","address":"x\\u0000y"}]}',
    b'{"calls":[{"call_id":"A\\ud800","received_at":"2021-12-31T23:15:00"}]}',
    b'{"calls":[{"\\u0000":1}]}',
    b'{"calls": NaN}',
    "{\"calls\":[{\"call_id\":\"\u00e9\"}]}".encode("latin-1"),
])
def test_malformed_and_unstorable_bodies_are_400_and_store_nothing(ingest, body):
    server, engine = ingest
    before = snapshot(engine)
    status, _, err = _http_post(server, body)
    assert status == 400 and err["code"] == "InvalidParameterValue" and err.get("parameter") in ("body", "calls")
    after = snapshot(engine)
    # A batch whose rows were all rejected is still recorded (ingest_batches, ingest_rejects); nothing else is.
    assert after["counts"]["calls"] == before["counts"]["calls"] and after["versions"]["calls"] == before["versions"]["calls"]
    assert after["counts"]["ingest_batches"] == before["counts"]["ingest_batches"]


def test_hostile_strings_inside_a_valid_batch_are_stored_as_plain_text(ingest):
    server, engine = ingest
    payload = {"calls": [_call(2, address="'; DROP TABLE calls; --", city="Charl\u00f6tte \U0001f6a8", call_type="ASSAULT' OR '1'='1")]}
    status, _, body = _http_post(server, json.dumps(payload).encode())
    assert status == 201 and body["created"] == ["HOSTILE-2"]
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT address, call_type FROM calls WHERE call_id = 'HOSTILE-2'")).one()
        assert conn.execute(sa.text("SELECT count(*) FROM calls")).scalar_one() > 1000
    assert tuple(row) == ("'; DROP TABLE calls; --", "ASSAULT' OR '1'='1")
