"""OGC API - Features Part 1 Core (GeoJSON and HTML) with queryables, under /ogc.

The blueprint negotiates the format, parses parameters into a geo.features.Selection, and wraps
the GeoJSON text PostGIS builds in a FeatureCollection without decoding it (HTML pages decode
their one page to draw a table).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, render_template, request, url_for

from geo import catalog
from geo import features as gf
from geo.catalog import LAYERS, Layer
from geo.filters import ParameterError
from geo.runs import NoSavedRun
from web import database
from web.errors import ApiError
from web.params import int_arg, request_filter

bp = Blueprint("features", __name__, url_prefix="/ogc")

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
]
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
DEFAULT_LIMIT = 100


def _format() -> str:
    """'json' or 'html': `f` wins, else the Accept header; JSON for clients that do not say."""
    f = request.args.get("f")
    if f is not None:
        f = f.strip().lower()
        if f in ("json", "geojson"):
            return "json"
        if f == "html":
            return "html"
        raise ParameterError("f", f"{request.args['f']!r} is not a format; use json or html")
    best = request.accept_mimetypes.best_match([GEOJSON, JSON, HTML])
    # A browser asks for text/html first and takes */* only at a lower quality.
    return "html" if best == HTML else "json"


def _link(href: str, rel: str, type_: str, title: str = "") -> dict:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def _url(endpoint: str, **values) -> str:
    return url_for(f"features.{endpoint}", _external=True, **values)


def _self_links(endpoint: str, fmt: str, json_type: str = JSON, **values) -> list[dict]:
    """self and alternate links of a page in both formats."""
    j = _link(_url(endpoint, **values, f="json"), "self" if fmt == "json" else "alternate", json_type, "this document as JSON")
    h = _link(_url(endpoint, **values, f="html"), "self" if fmt == "html" else "alternate", HTML, "this document as HTML")
    return [j, h] if fmt == "json" else [h, j]


def _json(body: dict, mimetype: str = JSON, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=mimetype)


def _layer(collection_id: str) -> Layer:
    """The catalog layer; an unknown one is the app's UnknownLayer 404, naming the path's `collectionId`."""
    try:
        return catalog.layer(collection_id)
    except catalog.UnknownLayer as exc:
        raise ApiError(404, str(exc), "collectionId", extra={"layer": exc.name}) from None


def _shown_run(lyr: Layer) -> int | None:
    """The run a collection's description shows: its latest, or None while none is saved (not an error)."""
    try:
        return database.analysis_run(lyr, None)
    except NoSavedRun:
        return None


def _with_conn(fn):
    with database.engine().connect() as conn:
        return fn(conn)


def _extent(lyr: Layer, run_id: int | None) -> dict:
    return database.memo(("ogc_extent", lyr.id, run_id), (lyr.version_layer,),
                         lambda: _with_conn(lambda c: gf.extent(c, lyr, run_id)))


def _collection(lyr: Layer, fmt: str) -> dict:
    run_id = _shown_run(lyr)
    body = {
        "id": lyr.id,
        "title": lyr.title,
        "description": lyr.description,
        "links": [
            _link(_url("collection", collection_id=lyr.id, f="json"), "self" if fmt == "json" else "alternate", JSON),
            _link(_url("collection", collection_id=lyr.id, f="html"), "self" if fmt == "html" else "alternate", HTML),
            _link(_url("items", collection_id=lyr.id, f="json"), "items", GEOJSON, f"{lyr.title} as GeoJSON"),
            _link(_url("items", collection_id=lyr.id, f="html"), "items", HTML, f"{lyr.title} as HTML"),
            _link(_url("queryables", collection_id=lyr.id), REL_QUERYABLES, "application/schema+json",
                  "properties that can filter the items"),
        ],
        "extent": _extent(lyr, run_id),
        "itemType": "feature",
        "crs": [gf.CRS84],
        "storageCrs": gf.CRS84,
    }
    if lyr.run_kinds:
        body["run"] = run_id
    return body


@bp.get("", strict_slashes=False)
def landing():
    """Landing page: what the service is and where its API, conformance and data are."""
    fmt = _format()
    body = {
        "title": "CMPD hot spots",
        "description": "Calls for service, incident reports, CMPD divisions, neighborhoods and hot spot "
                       "results of the cmpd-hotspots server (the demo's calls and incidents are synthetic).",
        "links": [
            *_self_links("landing", fmt),
            _link(request.url_root.rstrip("/") + "/api", "service-desc", OPENAPI, "the API definition (OpenAPI 3.0)"),
            _link(_url("conformance"), "conformance", JSON, "conformance classes implemented"),
            _link(_url("collections"), "data", JSON, "the collections"),
        ],
    }
    if fmt == "html":
        return render_template("features/landing.html", body=body)
    return _json(body)


@bp.get("/conformance")
def conformance():
    """The conformance classes the service implements."""
    fmt = _format()
    body = {"links": _self_links("conformance", fmt), "conformsTo": CONFORMANCE}
    if fmt == "html":
        return render_template("features/conformance.html", body=body)
    return _json(body)


@bp.get("/collections")
def collections():
    """Every served layer, with its extent."""
    fmt = _format()
    body = {"links": _self_links("collections", fmt), "collections": [_collection(lyr, fmt) for lyr in LAYERS.values()]}
    if fmt == "html":
        return render_template("features/collections.html", body=body)
    return _json(body)


@bp.get("/collections/<collection_id>")
def collection(collection_id: str):
    """One collection's description."""
    lyr = _layer(collection_id)
    fmt = _format()
    body = _collection(lyr, fmt)
    if fmt == "html":
        return render_template("features/collection.html", body=body)
    return _json(body)


@bp.get("/collections/<collection_id>/queryables")
def queryables(collection_id: str):
    """JSON Schema of the properties that filter the collection's items (`name=value`)."""
    lyr = _layer(collection_id)
    fmt = _format()
    body = gf.queryables_schema(lyr, _url("queryables", collection_id=lyr.id))
    if fmt == "html":
        return render_template("features/queryables.html", body=body, collection_id=lyr.id)
    return _json(body, "application/schema+json")


def _page_url(collection_id: str, args: dict, **changes) -> str:
    return _url("items", collection_id=collection_id, **{**args, **changes})


@bp.get("/collections/<collection_id>/items")
def items(collection_id: str):
    """A page of features in feature-id order, with numberMatched, paging links and filters."""
    lyr = _layer(collection_id)
    fmt = _format()
    gf.check_parameters(lyr, request.args)
    cap = int(current_app.config["ITEMS_MAX_LIMIT"])
    # Above the cap the limit is lowered, not refused: clients (QGIS, GDAL) ask for large pages.
    limit = int_arg("limit", min(DEFAULT_LIMIT, cap), lo=1, hi=cap, clamp_hi=True)
    offset = int_arg("offset", 0, lo=0)
    filt = request_filter(lyr.filter_table) if lyr.filter_table else None
    run_id = database.analysis_run(lyr, request.args.get("run"))
    sel = gf.parse_selection(lyr, request.args, filt, run_id)

    with database.engine().connect() as conn:
        matched = database.memo(("ogc_count", lyr.id, sel.key()), (lyr.version_layer,),
                                lambda: gf.count_items(conn, lyr, sel))
        features, returned = gf.items_page(conn, lyr, sel, limit, offset)

    args = {k: v for k, v in request.args.items() if k not in ("f", "limit", "offset")}
    if lyr.run_kinds and run_id is not None:
        args["run"] = str(run_id)  # later pages stay on this run even if a newer one is saved meanwhile
    json_type = GEOJSON
    links = [
        _link(_page_url(lyr.id, args, limit=limit, offset=offset, f="json"),
              "self" if fmt == "json" else "alternate", json_type, "this page as GeoJSON"),
        _link(_page_url(lyr.id, args, limit=limit, offset=offset, f="html"),
              "self" if fmt == "html" else "alternate", HTML, "this page as HTML"),
    ]
    page_type = json_type if fmt == "json" else HTML
    if offset + returned < matched:
        links.append(_link(_page_url(lyr.id, args, limit=limit, offset=offset + limit, f=fmt), "next", page_type, "next page"))
    if offset > 0:
        links.append(_link(_page_url(lyr.id, args, limit=limit, offset=max(0, offset - limit), f=fmt), "prev",
                           page_type, "previous page"))
    links.append(_link(_url("collection", collection_id=lyr.id), "collection", JSON, lyr.title))
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    if fmt == "html":
        rows = json.loads("[" + features + "]")
        return render_template("features/items.html", layer=lyr, features=rows, links=links, matched=matched,
                               returned=returned, offset=offset, limit=limit, time_stamp=stamp,
                               columns=[p.name for p in lyr.public])
    head = json.dumps({"type": "FeatureCollection", "numberMatched": matched, "numberReturned": returned,
                       "timeStamp": stamp, "links": links}, ensure_ascii=False)
    body = head[:-1] + ',"features":[' + features + "]}"
    resp = Response(body, mimetype=GEOJSON)
    resp.headers["Content-Crs"] = f"<{gf.CRS84}>"
    return resp


@bp.get("/collections/<collection_id>/items/<feature_id>")
def item(collection_id: str, feature_id: str):
    """One feature by id (404 when the collection has none with that id)."""
    lyr = _layer(collection_id)
    fmt = _format()
    for name in request.args:
        if name not in ("f", "run"):
            raise ParameterError(name, f"unknown parameter {name!r} for a single feature; use f (and run for hot spot layers)")
    if "run" in request.args and not lyr.run_kinds:
        raise ParameterError("run", "run applies to the hot spot result layers (hotspot_cells, hotspot_npas)")
    run_id = database.analysis_run(lyr, request.args.get("run"))
    with database.engine().connect() as conn:
        text = gf.get_item(conn, lyr, feature_id, run_id)
    if text is None:
        raise ApiError(404, f"{lyr.id} has no feature {feature_id!r}", "featureId")
    extra = {"run": str(run_id)} if lyr.run_kinds and run_id is not None else {}
    links = [
        _link(_url("item", collection_id=lyr.id, feature_id=feature_id, f="json", **extra),
              "self" if fmt == "json" else "alternate", GEOJSON),
        _link(_url("item", collection_id=lyr.id, feature_id=feature_id, f="html", **extra),
              "self" if fmt == "html" else "alternate", HTML),
        _link(_url("collection", collection_id=lyr.id), "collection", JSON, lyr.title),
    ]
    if fmt == "html":
        return render_template("features/item.html", layer=lyr, feature=json.loads(text), links=links)
    body = text[:-1] + ',"links":' + json.dumps(links, ensure_ascii=False) + "}"
    resp = Response(body, mimetype=GEOJSON)
    resp.headers["Content-Crs"] = f"<{gf.CRS84}>"
    return resp
