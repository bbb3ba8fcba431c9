"""The OpenAPI 3.0 document of the whole server (GET /api) and a plain HTML index of it (GET /api.html).

Built from Python data: the shared filter parameters, the layer names and queryable properties
come from geo.filters, geo.catalog and geo.taxonomy, so the document cannot drift from what the
server accepts. tests/web/test_openapi.py checks that every route of the app is documented and
every documented path is a route.
"""

from __future__ import annotations

import copy
from functools import lru_cache

from flask import Blueprint, current_app, jsonify, render_template

from geo import panel
from geo.catalog import LAYERS
from geo.filters import FILTER_PARAMETERS, ORIGINS, PRESETS
from geo.ingest import live
from geo.taxonomy import load_taxonomy

bp = Blueprint("openapi", __name__)

MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.0"
EXPORT_FORMATS = {"zip": "application/zip", "gpkg": "application/geopackage+sqlite3",
                  "geojson": "application/geo+json", "csv": "text/csv"}
TILE_LAYERS = tuple(LAYERS)
RESULT_LAYERS = tuple(name for name, layer in LAYERS.items() if layer.run_kinds)


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _query(name: str, description: str, schema: dict, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema, **extra}


def _path(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _filter_parameters() -> dict[str, dict]:
    """The shared filter of geo/filters.py, one component per parameter."""
    categories = list(load_taxonomy().categories)
    return {
        "start": _query("start", "First local day (YYYY-MM-DD) or instant (RFC 3339; no offset = America/New_York).",
                        {"type": "string"}, example="2021-03-01"),
        "end": _query("end", "Last local day, inclusive (YYYY-MM-DD), or an instant (RFC 3339).",
                      {"type": "string"}, example="2021-03-31"),
        "preset": _query("preset", "A window of days ending on `end` or on the latest day with data "
                                   "(ytd: year to date). Not with `start` or `datetime`.",
                         {"type": "string", "enum": list(PRESETS)}),
        "datetime": _query("datetime", "OGC API instant or interval: `2021-05-01T12:00:00Z`, `2021-05-01/2021-05-31`, "
                                       "`../2021-05-31`, `2021-05-01/..`. Not with start/end/preset.",
                           {"type": "string"}, example="2021-05-01/2021-05-31"),
        "division": _query("division", "CMPD division code ('01') or name ('Central', 'Central Division').",
                           {"type": "string"}, example="Central"),
        "category": _query("category", "Taxonomy category (geo/taxonomy.csv).", {"type": "string", "enum": categories}),
        "violent": _query("violent", "Only calls the model labelled violent (true) or only the others (false); for "
                                     "incidents, violent-crime reports.", {"type": "boolean"}),
        "min_p": _query("min_p", "Only calls whose model probability of being violent is at least this.",
                        {"type": "number", "minimum": 0, "maximum": 1}),
        "bbox": _query("bbox", "minlon,minlat,maxlon,maxlat in WGS84 degrees (CRS84).",
                       {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                       style="form", explode=False, example=[-80.9, 35.2, -80.8, 35.3]),
        "origin": _query("origin", "Only real records (published CMPD files or feeds) or only synthetic ones (the "
                                   "demo generator); real and synthetic rows are never added together silently.",
                         {"type": "string", "enum": list(ORIGINS)}),
    }


FILTERS = FILTER_PARAMETERS


def _filters() -> list[dict]:
    return [_ref("parameters", name) for name in FILTERS]


def _queryables() -> list[dict]:
    """`name=value` filters on items: every property some layer marks queryable (typed as in the catalog)."""
    seen: dict[str, dict] = {}
    for layer in LAYERS.values():
        for prop in layer.public:
            if prop.queryable and prop.name not in seen:
                layers = [lyr.id for lyr in LAYERS.values() if any(p.name == prop.name and p.queryable for p in lyr.public)]
                seen[prop.name] = _query(prop.name, f"Equality filter on `{prop.name}` (collections: {', '.join(layers)}).",
                                         {"type": prop.type})
    return list(seen.values())


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref("schemas", "Error")}}}


def _errors(*codes: int) -> dict:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 413: "PayloadTooLarge",
             415: "UnsupportedMediaType", 429: "TooManyRequests", 503: "ServiceUnavailable", 500: "ServerError"}
    return {str(c): _ref("responses", names[c]) for c in codes}


# Responses every read endpoint may give: auth (when reads need a token), timeouts, failures.
READ_ERRORS = (401, 403, 503, 500)
# Heavy work (web/admission.py) may also be refused because the client holds its share of a kind.
HEAVY = 429


def _ok(description: str, media: dict[str, dict]) -> dict:
    return {"200": {"description": description, "content": {m: {"schema": s} for m, s in media.items()}}}


def _get(summary: str, tag: str, responses: dict, parameters: list | None = None, description: str = "",
         errors: tuple[int, ...] = (400,)) -> dict:
    op = {"summary": summary, "tags": [tag], "responses": {**responses, **_errors(*errors, *READ_ERRORS)}}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    return {"get": op}


_OBJ = {"type": "object"}
# The map's own JSON (areas, hot spots) is GeoJSON served as application/json, which fetch() reads as such.
_MAP_GEOJSON = {"application/json": _ref("schemas", "FeatureCollection")}
_LEVEL = _path("level", "Area level.", {"type": "string", "enum": ["division", "npa"]})
_Z = _path("z", "Zoom level (0-22).", {"type": "integer", "minimum": 0, "maximum": 22})
_X = _path("x", "Tile column (0 .. 2^z-1).", {"type": "integer", "minimum": 0})
_Y = _path("y", "Tile row (0 .. 2^z-1), XYZ scheme.", {"type": "integer", "minimum": 0})
_RUN = _query("run", f"Saved analysis run of a result layer ({', '.join(RESULT_LAYERS)}); default the latest. "
              "A run that is not saved, or a layer with no saved run, is 404 naming `run` and the layer.",
              {"type": "integer", "minimum": 1})
_F = _query("f", "Response format (default: JSON, or HTML for browsers).", {"type": "string", "enum": ["json", "html"]})
_TILE_HEADERS = {"ETag": {"description": "Changes with the data version and the filter.", "schema": {"type": "string"}}}


def _tile_responses(media: str, what: str) -> dict:
    return {
        "200": {"description": what, "headers": _TILE_HEADERS,
                "content": {media: {"schema": {"type": "string", "format": "binary"}}}},
        "204": {"description": "An empty tile (nothing in it under the filter)."},
        "304": {"description": "Not modified (If-None-Match matched the ETag)."},
    }


def _paths() -> dict:
    collection = _path("collectionId", "A collection (layer) id.", {"type": "string", "enum": list(LAYERS)})
    layer = _path("layer", "A layer id.", {"type": "string", "enum": list(TILE_LAYERS)})
    paths = {
        "/": _get("The supervisors' map page", "map", {"200": {"description": "HTML map page",
                                                               "content": {"text/html": {"schema": {"type": "string"}}}}},
                  errors=()),
        "/vendor/leaflet/{path}": _get("Leaflet's JavaScript, CSS and images (from PyPI xstatic-leaflet; no CDN)", "map",
                                       {"200": {"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}},
                                       [_path("path", "File inside Leaflet's distribution, e.g. leaflet.js.", {"type": "string"})],
                                       errors=(404,)),
        "/api/config": _get("Map configuration: basemap, presets, categories, divisions, data date range", "map",
                            _ok("Configuration", {"application/json": _OBJ})),
        "/api/areas/{level}": _get("Divisions or NPAs with call counts and rates under the filter (GeoJSON choropleth)",
                                   "map", _ok("Areas", _MAP_GEOJSON), [_LEVEL, *_filters()], errors=(400, 404, HEAVY)),
        "/api/hotspots/{level}": _get("Getis-Ord Gi* hot spots for the current filter", "map",
                                      _ok("Areas with gi_z, gi_p, gi_q and hotspot_class", _MAP_GEOJSON),
                                      [_LEVEL, *_filters(),
                                       _query("measure", "What Gi* is computed on: violent (labelled violent calls, one "
                                              "per incident), expected (sum of probabilities) or calls; with _per_1000, "
                                              "that count per 1,000 residents as `hotspots hotspots --per-1000` computes "
                                              "it (NPAs without residents have no rate: value and Gi* null, class "
                                              "'Left out: no residents'). value_unit in the answer says which.",
                                              {"type": "string", "enum": [*panel.MEASURES, *panel.RATE_MEASURES],
                                               "default": "violent"})],
                                      errors=(400, 404, HEAVY)),
        "/api/panel/{level}/{id}": _get("Side panel of one division or NPA: totals, categories, 7x24, CompStat, outreach, "
                                        "allocation", "map", _ok("Panel numbers", {"application/json": _OBJ}),
                                        [_LEVEL, _path("id", "Division code or NPA number.", {"type": "string"}), *_filters(),
                                         _query("compare", "CompStat comparison: the same period a year earlier "
                                                "(default) or the period just before.",
                                                {"type": "string", "enum": ["year", "previous"]})],
                                        errors=(400, 404, HEAVY)),
        "/api/staffing/whatif": _get(
            "What-if on the staffing plan: move officers or change a target; expected delay (queueing) and simulated "
            "response before and after, per division-shift and city-wide", "map",
            _ok("summary, notes and one row per division-shift", {"application/json": _OBJ}),
            [_ref("parameters", "start"), _ref("parameters", "end"), _ref("parameters", "preset"),
             _query("move", "Officers moved, `OFFICERS:DIVISION/SHIFT->DIVISION/SHIFT`, several separated by `;`; "
                    "officers move as whole unit-posts (officers per unit x relief factor).", {"type": "string"}),
             _query("targets", "Changed targets, e.g. `p_wait=0.1,p1_wait_min=2,utilisation=0.6`.", {"type": "string"}),
             _query("officers", "Officers placed by marginal allocation (default: what the targets need).",
                    {"type": "integer", "minimum": 1, "maximum": 100000}),
             _query("simulate", "Also simulate both plans on the period's calls (default true).",
                    {"type": "string", "enum": ["true", "false"]})],
            errors=(400, HEAVY)),
        "/ogc": _get("OGC API - Features landing page", "ogc", _ok("Landing page", {"application/json": _OBJ, "text/html": {"type": "string"}}),
                     [_F]),
        "/ogc/conformance": _get("Conformance classes", "ogc", _ok("Conformance declaration", {"application/json": _OBJ,
                                                                                               "text/html": {"type": "string"}}), [_F]),
        "/ogc/collections": _get("The collections (one per layer)", "ogc", _ok("Collections", {"application/json": _OBJ,
                                                                                               "text/html": {"type": "string"}}), [_F]),
        "/ogc/collections/{collectionId}": _get("One collection: extent, links", "ogc",
                                                _ok("Collection", {"application/json": _OBJ, "text/html": {"type": "string"}}),
                                                [collection, _F], errors=(400, 404)),
        "/ogc/collections/{collectionId}/queryables": _get(
            "JSON Schema of the properties usable as `name=value` filters", "ogc",
            _ok("Queryables", {"application/schema+json": _OBJ, "application/json": _OBJ, "text/html": {"type": "string"}}),
            [collection, _F], errors=(400, 404)),
        "/ogc/collections/{collectionId}/items": _get(
            "Features of a collection, filtered and paged", "ogc",
            _ok("A page of features (numberMatched, numberReturned, next/prev links)",
                {"application/geo+json": _ref("schemas", "FeatureCollection"), "text/html": {"type": "string"}}),
            [collection, _query("limit", "Page size; values above the server's cap are lowered to it.",
                                {"type": "integer", "minimum": 1, "default": 100}),
             _query("offset", "Features to skip (ordered by feature id).", {"type": "integer", "minimum": 0, "default": 0}),
             *_filters(), _RUN, _F, *_queryables()],
            description="Unknown parameters that look like property filters are refused (400) rather than ignored.",
            errors=(400, 404)),
        "/ogc/collections/{collectionId}/items/{featureId}": _get(
            "One feature", "ogc", _ok("Feature", {"application/geo+json": _ref("schemas", "Feature"), "text/html": {"type": "string"}}),
            [collection, _path("featureId", "Feature id (e.g. a call_id).", {"type": "string"}), _RUN, _F], errors=(400, 404)),
        "/tiles/{layer}/{z}/{x}/{y}.pbf": _get(
            "Mapbox Vector Tile of a layer (EPSG:3857, extent 4096); points aggregated at low zoom", "tiles",
            _tile_responses("application/vnd.mapbox-vector-tile", "Vector tile (gzip when accepted)"),
            [layer, _Z, _X, _Y, *_filters(), _RUN], errors=(400, 404, HEAVY)),
        "/tiles/{layer}.json": _get("TileJSON 3.0 of a layer (tile URL carries the filter)", "tiles",
                                    _ok("TileJSON", {"application/json": _OBJ}), [layer, *_filters(), _RUN],
                                    errors=(400, 404)),
        "/heat/{z}/{x}/{y}.png": _get("Kernel-density heat tile of violent calls (256x256 RGBA PNG)", "tiles",
                                      _tile_responses("image/png", "Heat tile"), [_Z, _X, _Y, *_filters()],
                                      errors=(400, HEAVY)),
        "/heat.json": _get("TileJSON 3.0 of the heat tiles", "tiles", _ok("TileJSON", {"application/json": _OBJ}),
                           _filters(), errors=(400, HEAVY)),
        "/export": _get("The exportable layers and formats, with a download link for each pair", "exports",
                        _ok("Layers and formats", {"application/json": _OBJ}), errors=()),
        "/export/{name}": _get(
            "Download a layer as LAYER.EXT: shapefile (zip), GeoPackage, GeoJSON or CSV, streamed", "exports",
            {"200": {"description": "The file (Content-Disposition names it)",
                     "content": {m: {"schema": _ref("schemas", "FeatureCollection") if ext == "geojson"
                                     else {"type": "string", "format": "binary"}} for ext, m in EXPORT_FORMATS.items()}}},
            [_path("name", "Layer id and format extension, e.g. calls.geojson.",
                   {"type": "string", "enum": [f"{lyr}.{ext}" for lyr in LAYERS for ext in EXPORT_FORMATS]}),
             *_filters(), _RUN],
            errors=(400, 404, HEAVY)),
        "/report/{division}": _get(
            "A division's standalone HTML report (NPAs by violent calls, Gi* hot spots, summary table), as "
            "`hotspots report` writes it", "map",
            {"200": {"description": "One self-contained HTML document (Leaflet inlined; opens offline)",
                     "content": {"text/html": {"schema": {"type": "string"}}}}},
            [_path("division", "Division code ('01') or name ('Central').", {"type": "string"}),
             _ref("parameters", "start"), _ref("parameters", "end"), _ref("parameters", "preset")],
            errors=(400, 404, HEAVY)),
        "/reports/model": _get(
            "The model report as a standalone HTML page (reliability diagram, ROC and PR curves against the call-type "
            "baseline, effects in words), as `hotspots model report --html` writes it", "map",
            {"200": {"description": "One self-contained HTML document (inline SVG charts; opens offline)",
                     "content": {"text/html": {"schema": {"type": "string"}}}}},
            [_query("version", "A model version (default: the current model).", {"type": "string"})],
            errors=(400, 404)),
        "/reports/compstat/{division}": _get(
            "A division's CompStat page (windows, weekly trend against a year earlier, 7x24 matrix, top NPA changes), "
            "as `hotspots stats compstat --html` writes it", "map",
            {"200": {"description": "One self-contained HTML document (inline SVG charts; opens offline)",
                     "content": {"text/html": {"schema": {"type": "string"}}}}},
            [_path("division", "Division code ('01') or name ('Central').", {"type": "string"}),
             _query("as_of", "Report date, YYYY-MM-DD (default: the day after the newest call).",
                    {"type": "string", "format": "date"}),
             _query("source", "What is counted (default: recorded violent incidents where any exist).",
                    {"type": "string", "enum": ["incidents", "homicides", "labelled", "expected", "calls"]}),
             _query("origin", "Only real or only synthetic rows.", {"type": "string", "enum": list(ORIGINS)}),
             _query("compare", "year (default) or previous.", {"type": "string", "enum": ["year", "previous"]})],
            errors=(400, 404, HEAVY)),
        "/api/calls": {"post": {
            "summary": "Post new calls for service (live CAD feed)", "tags": ["ingest"],
            "description": (
                "Each call is read as a row of a calls CSV (the same cleaning, rejects and row hash), placed in its "
                "division and NPA, categorised and labelled by the current model "
                "in one transaction; bad rows are listed in `errors` (and kept server-side with their raw JSON) while "
                "the good rows of the batch are stored. A call_id that already exists replaces the stored call when "
                "any field differs (status `updated`, scored again) and is left alone when identical (`unchanged`), so "
                f"a batch may be resent safely. At most {live.MAX_BATCH_ROWS} calls per request by default."),
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("schemas", "CallBatch"), "example": EXAMPLE_BATCH},
                "application/geo+json": {"schema": _ref("schemas", "CallFeatureCollection")}}},
            "responses": {
                "201": {"description": "At least one new call was stored",
                        "content": {"application/json": {"schema": _ref("schemas", "IngestResult")}}},
                "200": {"description": "No new call (updates, unchanged resends or only rejected rows)",
                        "content": {"application/json": {"schema": _ref("schemas", "IngestResult")}}},
                **_errors(400, 401, 403, 413, 415, 429, 503, 500)},
        }},
        "/api": _get("This OpenAPI document", "meta", _ok("OpenAPI 3.0", {MEDIA_TYPE: _OBJ}), errors=()),
        "/api.html": _get("The endpoints as a plain HTML page", "meta",
                          {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}, errors=()),
        "/login": {
            "get": {"summary": "Sign-in page for browsers when reads need a token", "tags": ["meta"], "security": [{}],
                    "description": "Optional `next` query parameter: the local path to return to (other values mean `/`).",
                    "responses": {"200": {"description": "HTML form", "content": {"text/html": {"schema": {"type": "string"}}}}}},
            "post": {"summary": "Check a token and keep it in an HttpOnly, SameSite=Strict cookie (reads only)",
                     "tags": ["meta"], "security": [{}],
                     "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                         "type": "object", "required": ["token"],
                         "properties": {"token": {"type": "string"}, "next": {"type": "string"}}}}}},
                     "responses": {"303": {"description": "Signed in; redirected to `next` (a local path)"},
                                   "400": {"description": "No token given", "content": {"text/html": {"schema": {"type": "string"}}}},
                                   "403": {"description": "Unknown or expired token", "content": {"text/html": {"schema": {"type": "string"}}}}}},
        },
        "/logout": {"get": {"summary": "Forget the sign-in cookie", "tags": ["meta"], "security": [{}],
                            "responses": {"303": {"description": "Signed out; redirected to /login"}}}},
        "/health": {"get": {"summary": "Is the database reachable; schema version", "tags": ["meta"], "security": [{}],
                            "responses": {"200": {"description": "Healthy", "content": {"application/json": {"schema": _ref("schemas", "Health")}}},
                                          "503": {"description": "Database unreachable", "content": {"application/json": {"schema": _ref("schemas", "Health")}}}}}},
    }
    return paths


EXAMPLE_BATCH = {"calls": [{
    "call_id": "C2021-9000001", "received_at": "2021-12-31T23:15:00-05:00", "call_type": "ASSAULT", "priority": 1,
    "lon": -80.8431, "lat": 35.2271, "address": "100 BLOCK OF N TRYON ST", "city": "CHARLOTTE", "zip": "28202"}]}


def _call_properties() -> dict:
    return {
        "call_id": {"type": "string", "maxLength": live.TEXT_LIMITS["call_id"], "description": "CAD event number; unique in a batch"},
        "received_at": {"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}],
                        "description": "RFC 3339 date-time; without an offset the time is local (America/New_York). "
                                       "A full-date (2021-06-01) when only the day is known: stored as that local "
                                       "calendar date (received_at_precision 'date')"},
        "call_type": {"type": "string", "maxLength": live.TEXT_LIMITS["call_type"], "description": "CAD call type (nature code)"},
        "priority": {"type": "integer", "minimum": live.PRIORITY_RANGE[0], "maximum": live.PRIORITY_RANGE[1], "nullable": True},
        "address": {"type": "string", "nullable": True, "maxLength": live.TEXT_LIMITS["address"],
                    "description": "kept private: never served back"},
        "city": {"type": "string", "nullable": True},
        "zip": {"type": "string", "nullable": True, "pattern": r"^\d{5}(-?\d{4})?$"},
        "incident_report_id": {"type": "string", "nullable": True},
    }


def _schemas() -> dict:
    props = _call_properties()
    call = {"type": "object", "required": ["call_id", "received_at", "call_type", "lon", "lat"],
            "properties": {**props, "lon": {"type": "number", "minimum": -180, "maximum": 180, "description": "WGS84 longitude"},
                           "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "WGS84 latitude"}}}
    call_feature = {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
        "type": {"type": "string", "enum": ["Feature"]},
        "id": {"type": "string", "description": "used as call_id when the properties have none"},
        "geometry": {"type": "object", "required": ["type", "coordinates"], "properties": {
            "type": {"type": "string", "enum": ["Point"]},
            "coordinates": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}}}},
        "properties": {"type": "object", "required": ["received_at", "call_type"], "properties": props}}}
    return {
        "Error": {"type": "object", "required": ["code", "description"], "properties": {
            "code": {"type": "string", "description": "e.g. InvalidParameterValue, Unauthorized, NotFound"},
            "description": {"type": "string", "description": "what is wrong and what would be valid"},
            "parameter": {"type": "string", "description": "the parameter (or header, or body member) at fault"},
            "limit": {"type": "object", "description": "a refused heavy request (429, 503): the limit that refused it",
                      "required": ["kind", "scope", "setting", "value", "retry_after_s"], "properties": {
                          "kind": {"type": "string", "enum": ["exports", "reports", "tiles", "stats", "ingest"]},
                          "scope": {"type": "string", "enum": ["client", "kind", "wait", "worker"],
                                    "description": "client: this client's share is taken (429); kind: every slot "
                                                   "and waiting place is taken; wait: no slot freed in time; "
                                                   "worker: this process's heavy threads are taken (503)"},
                          "setting": {"type": "string", "description": "the environment variable, e.g. HOTSPOTS_EXPORTS_CAP"},
                          "value": {"type": "number"},
                          "retry_after_s": {"type": "integer", "minimum": 1}}}}},
        "Feature": {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
            "type": {"type": "string", "enum": ["Feature"]}, "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "geometry": {"type": "object", "nullable": True}, "properties": {"type": "object", "nullable": True}}},
        "FeatureCollection": {"type": "object", "required": ["type", "features"], "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "items": _ref("schemas", "Feature")},
            "numberMatched": {"type": "integer"}, "numberReturned": {"type": "integer"},
            "timeStamp": {"type": "string", "format": "date-time"},
            "links": {"type": "array", "items": {"type": "object"}}}},
        "Call": call,
        "CallFeature": call_feature,
        "CallFeatureCollection": {"type": "object", "required": ["type", "features"], "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "minItems": 1, "maxItems": live.MAX_BATCH_ROWS, "items": _ref("schemas", "CallFeature")}}},
        "CallBatch": {"oneOf": [
            {"type": "object", "required": ["calls"], "properties": {
                "calls": {"type": "array", "minItems": 1, "maxItems": live.MAX_BATCH_ROWS, "items": _ref("schemas", "Call")}}},
            {"type": "array", "minItems": 1, "maxItems": live.MAX_BATCH_ROWS, "items": _ref("schemas", "Call")}]},
        "RowError": {"type": "object", "required": ["index", "field", "message", "reason"], "properties": {
            "index": {"type": "integer", "description": "position of the row in the posted batch (from 0)"},
            "call_id": {"type": "string", "nullable": True}, "field": {"type": "string"},
            "message": {"type": "string"},
            "reason": {"type": "string", "enum": ["missing_id", "duplicate_id", "bad_date", "implausible_date",
                                                  "missing_value", "bad_value", "missing_coordinates", "outside_county",
                                                  "malformed_row"]}}},
        "StoredCall": {"type": "object", "properties": {
            "index": {"type": "integer"}, "call_id": {"type": "string"},
            "status": {"type": "string", "enum": ["created", "updated", "unchanged"]},
            "division_id": {"type": "string", "nullable": True}, "npa_id": {"type": "integer", "nullable": True},
            "category": {"type": "string", "nullable": True}, "p_violent": {"type": "number", "nullable": True},
            "violent": {"type": "boolean", "nullable": True}, "model_version": {"type": "string", "nullable": True}}},
        "IngestResult": {"type": "object", "required": ["batch_id", "received", "created", "updated", "unchanged", "errors"],
                         "properties": {
            "batch_id": {"type": "integer"}, "received": {"type": "integer"},
            "created": {"type": "array", "items": {"type": "string"}},
            "updated": {"type": "array", "items": {"type": "string"}},
            "unchanged": {"type": "array", "items": {"type": "string"}},
            "rejected": {"type": "integer"}, "model_version": {"type": "string", "nullable": True},
            "labelled": {"type": "integer"}, "calls": {"type": "array", "items": _ref("schemas", "StoredCall")},
            "errors": {"type": "array", "items": _ref("schemas", "RowError")},
            "note": {"type": "string"}, "ignored_fields": {"type": "array", "items": {"type": "string"}}}},
        "Health": {"type": "object", "properties": {"status": {"type": "string"}, "schema_version": {"type": "integer"},
                                                    "database": {"type": "string"}}},
    }


@lru_cache(maxsize=2)
def _document(require_read_token: bool) -> dict:
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "cmpd-hotspots", "version": "1.0.0",
                 "description": "Calls for service and incidents of the Charlotte-Mecklenburg Police Department (the demo's "
                                "are synthetic): maps, OGC API - Features, vector and heat tiles, exports and live ingest. "
                                "Errors are JSON documents {code, description, parameter}."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("map", "ogc", "tiles", "exports", "ingest", "meta")],
        # Reads need a token only when the server is configured so (HOTSPOTS_REQUIRE_READ_TOKEN).
        "security": [{"bearer": []}] if require_read_token else [{}, {"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from `hotspots token new`; the server keeps only its hash."}},
            "parameters": _filter_parameters(),
            "schemas": _schemas(),
            "responses": {
                "BadRequest": _error("A parameter or the body is not valid; `parameter` names it"),
                "Unauthorized": {**_error("No token (or a malformed Authorization header)"),
                                 "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="cmpd-hotspots"'}}},
                "Forbidden": _error("The token is unknown or expired"),
                "NotFound": _error("No such collection, feature, area or file"),
                "PayloadTooLarge": _error("The body is larger than the server accepts"),
                "UnsupportedMediaType": _error("The body is not application/json or application/geo+json"),
                "TooManyRequests": {**_error("This client already holds its share of this kind of heavy work; "
                                             "`limit` names the setting"),
                                    "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                                "description": "seconds to wait before trying again"}}},
                "ServiceUnavailable": {**_error("The query ran past the request time limit, the database is unavailable, "
                                                "or every slot for this kind of heavy work is taken (`limit` names it)"),
                                       "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                                   "description": "seconds to wait before trying again"}}},
                "ServerError": _error("Internal error; the reference points to the server log"),
            },
        },
    }
    return doc


def document() -> dict:
    """The OpenAPI document for the current app (its security follows REQUIRE_READ_TOKEN)."""
    return copy.deepcopy(_document(bool(current_app.config.get("REQUIRE_READ_TOKEN"))))


@bp.get("/api")
def openapi_document():
    """The OpenAPI 3.0 document (JSON)."""
    resp = jsonify(document())
    resp.mimetype = MEDIA_TYPE
    return resp


@bp.get("/api.html")
def openapi_html():
    """Every endpoint with its summary and parameters, as a page without any external asset."""
    doc = document()
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = [p if "name" in p else doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                      for p in op.get("parameters", [])]
            rows.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                         "parameters": [p["name"] for p in params],
                         "secured": op.get("security", doc["security"]) == [{"bearer": []}]})
    return render_template("openapi/index.html", rows=rows, title=doc["info"]["title"])
