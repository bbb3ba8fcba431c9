"""The OpenAPI document at /api: valid OpenAPI 3.0, and in step with the app's real routes both ways."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from geo.filters import FILTER_PARAMETERS
from geo.taxonomy import load_taxonomy
from web import create_app

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def doc_app():
    """The app with every blueprint that exists; /api and /api.html never touch the database."""
    return create_app({"TESTING": True})


@pytest.fixture(scope="module")
def doc(doc_app) -> dict:
    r = doc_app.test_client().get("/api")
    assert r.status_code == 200
    assert r.mimetype == "application/vnd.oai.openapi+json"
    return r.get_json()


def _skeleton_rule(rule: str) -> str:
    return re.sub(r"<[^>]+>", "{}", rule)


def _skeleton_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _routes(app) -> dict[str, set[str]]:
    """Route skeleton -> methods, for every rule except Flask's static files."""
    out: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        out.setdefault(_skeleton_rule(rule.rule), set()).update(m.lower() for m in rule.methods - IGNORED_METHODS)
    return out


def test_document_is_valid_openapi_3(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.0")


def test_every_route_is_documented_and_every_documented_path_is_a_route(doc_app, doc):
    routes = _routes(doc_app)
    documented = {_skeleton_path(p): {m for m in item if m in ("get", "post", "put", "patch", "delete")}
                  for p, item in doc["paths"].items()}
    assert sorted(set(routes) - set(documented)) == [], "routes missing from the OpenAPI document"
    assert sorted(set(documented) - set(routes)) == [], "documented paths the app does not serve"
    for path, methods in routes.items():
        assert documented[path] == methods, path


def test_the_url_map_of_the_issue_is_documented(doc):
    # The server's whole URL map, as the project describes it (independent of which blueprints are present).
    expected = ["/", "/vendor/leaflet/{}", "/api/config", "/api/areas/{}", "/api/hotspots/{}", "/api/panel/{}/{}",
                "/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/{}", "/ogc/collections/{}/queryables",
                "/ogc/collections/{}/items", "/ogc/collections/{}/items/{}", "/tiles/{}/{}/{}/{}.pbf", "/tiles/{}.json",
                "/heat/{}/{}/{}.png", "/heat.json", "/export/{}", "/api/calls", "/api", "/health"]
    paths = {_skeleton_path(p) for p in doc["paths"]}
    assert [p for p in expected if p not in paths] == []


def test_shared_filter_parameters_are_components_used_where_they_apply(doc):
    components = doc["components"]["parameters"]
    assert set(components) == set(FILTER_PARAMETERS)
    assert components["category"]["schema"]["enum"] == list(load_taxonomy().categories)
    assert components["min_p"]["schema"] == {"type": "number", "minimum": 0, "maximum": 1}
    refs = {f"#/components/parameters/{name}" for name in FILTER_PARAMETERS}
    for path in ("/api/areas/{level}", "/api/hotspots/{level}", "/api/panel/{level}/{id}",
                 "/ogc/collections/{collectionId}/items", "/tiles/{layer}/{z}/{x}/{y}.pbf", "/heat/{z}/{x}/{y}.png",
                 "/export/{name}"):
        used = {p.get("$ref") for p in doc["paths"][path]["get"]["parameters"]}
        assert refs <= used, path


def test_error_responses_use_the_error_schema(doc):
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "description"]
    assert set(error["properties"]) == {"code", "description", "parameter", "limit"}
    # A refused heavy request (429/503) names the limit: web/admission.py.
    assert error["properties"]["limit"]["required"] == ["kind", "scope", "setting", "value", "retry_after_s"]
    responses = doc["components"]["responses"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            has_query = any("$ref" in p or p["in"] == "query" for p in op.get("parameters", []))
            if has_query:
                assert "400" in op["responses"], f"{method} {path} takes parameters but documents no 400"
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")) and path not in ("/health", "/login"):   # /login answers a browser in HTML
                    name = resp["$ref"].rsplit("/", 1)[1]
                    schema = responses[name]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, code)


def test_post_calls_is_described_with_body_security_and_errors(doc):
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]["description"]}
    op = doc["paths"]["/api/calls"]["post"]
    assert op["security"] == [{"bearer": []}]
    assert set(op["requestBody"]["content"]) == {"application/json", "application/geo+json"}
    assert {"200", "201", "400", "401", "403", "413", "415"} <= set(op["responses"])
    call = doc["components"]["schemas"]["Call"]
    assert set(call["required"]) == {"call_id", "received_at", "call_type", "lon", "lat"}
    # Reads are open by default; /health is open in every configuration.
    assert doc["security"] == [{}, {"bearer": []}]
    assert doc["paths"]["/health"]["get"]["security"] == [{}]


def test_read_token_setting_makes_reads_require_the_bearer_scheme():
    app = create_app({"TESTING": True, "REQUIRE_READ_TOKEN": True, "API_TOKENS": "reader:" + "0" * 64})
    r = app.test_client().get("/api")
    assert r.status_code == 401          # the document itself is a read
    from geo.auth import make_entry, new_token

    token = new_token()
    app = create_app({"TESTING": True, "REQUIRE_READ_TOKEN": True, "API_TOKENS": make_entry("reader", token).entry()})
    doc = app.test_client().get("/api", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert doc["security"] == [{"bearer": []}]
    validate(doc)


def test_html_index_lists_every_path_without_external_assets(doc_app, doc):
    r = doc_app.test_client().get("/api.html")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for path in doc["paths"]:
        assert f"<code>{path}</code>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
