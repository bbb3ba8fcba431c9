"""Tiles: Mapbox Vector Tiles of the catalog's layers, heat PNGs of violent calls, TileJSON for both.

Routes: /tiles/<layer>/<z>/<x>/<y>.pbf, /tiles/<layer>.json, /heat/<z>/<x>/<y>.png, /heat.json.
Every tile request takes the shared filters (geo/filters.py) where they apply, and `run` for the
hot spot layers. A finished tile is cached in memory (bounded by TILE_CACHE_MB) under a key that
holds its layers' data versions; its ETag is computed from that key before any rendering, so a
revalidation (If-None-Match) costs no query, and a write to a layer changes every ETag of it.
"""

from __future__ import annotations

import gzip
import hashlib
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request

from geo import heat
from geo import tiles as gt
from geo.filters import Filter
from web import admission, database
from web.params import int_arg, request_filter
from web.tile_cache import TileCache

bp = Blueprint("tiles", __name__)

MVT_TYPE = "application/vnd.mapbox-vector-tile"
# Short freshness, then revalidation by ETag (a 304 costs no query): live ingest adds calls.
CACHE_CONTROL = "public, max-age=60"


def _cache() -> TileCache:
    ext = current_app.extensions
    cache = ext.get("tile_cache")
    if cache is None:
        cache = ext.setdefault("tile_cache", TileCache(int(current_app.config["TILE_CACHE_MB"]) * 1024 * 1024))
    return cache


def _accepts_gzip() -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "").lower()


def _etag(key: tuple) -> str:
    return hashlib.sha256(repr((gt.TILES_REVISION, key)).encode()).hexdigest()[:24]


def _not_modified(etag: str) -> bool:
    given = request.headers.get("If-None-Match", "")
    if not given:
        return False
    if given.strip() == "*":
        return True
    # Weak comparison (RFC 9110): W/ prefixes are ignored.
    tags = {t.strip().removeprefix("W/") for t in given.split(",")}
    return f'"{etag}"' in tags


def _tile_filter(t: gt.TileLayer) -> Filter | None:
    return request_filter(t.layer.filter_table) if t.layer.filter_table else None


def _run(t: gt.TileLayer) -> int | None:
    """The hot spot run to draw: `run` if it is a saved run of the layer, else the latest (NoSavedRun: 404)."""
    return database.analysis_run(t.layer, request.args.get("run"))


def _with_conn(engine, fn):
    with engine.connect() as conn:
        return fn(conn)


def _stamp(layers: tuple[str, ...]) -> tuple[int, ...]:
    v = database.versions()
    return tuple(v.get(name, 0) for name in layers)


def _respond(body: bytes | None, etag: str, content_type: str, *, gzipped: bool) -> Response:
    headers = {"ETag": f'"{etag}"', "Cache-Control": CACHE_CONTROL}
    if gzipped:
        headers["Vary"] = "Accept-Encoding"
    if body is None:
        resp = Response(status=304, headers=headers)
        del resp.headers["Content-Type"]
        return resp
    if not body:
        # An empty tile: nothing to draw, and nothing to send.
        resp = Response(status=204, headers=headers)
        del resp.headers["Content-Type"]
        return resp
    if gzipped:
        if _accepts_gzip():
            headers["Content-Encoding"] = "gzip"
        else:
            body = gzip.decompress(body)
    return Response(body, status=200, headers=headers, content_type=content_type)


@bp.get("/tiles/<layer_name>/<z>/<x>/<y>.pbf")
def vector_tile(layer_name: str, z: str, x: str, y: str):
    """One Mapbox Vector Tile of a layer under the request's filters (204 when empty)."""
    t = gt.tile_layer(layer_name)
    zi, xi, yi = gt.parse_tile(z, x, y)
    flt = _tile_filter(t)
    run = _run(t)
    key = ("mvt", t.name, zi, xi, yi, flt.key() if flt else "", run, _stamp(t.version_layers))
    etag = _etag(key)
    if _not_modified(etag):
        return _respond(None, etag, MVT_TYPE, gzipped=True)
    cache = _cache()
    body = cache.get(key)
    if body is None:
        def render() -> bytes:
            return gt.render_mvt_tile(database.engine(), t, zi, xi, yi, flt, run)

        # Only the rendering of a low-zoom tile takes a slot: a cached one (above) never waits.
        data = admission.admitted("tiles", render) if admission.heavy_tile(zi) else render()
        body = gt.gzip_tile(data)
        cache.put(key, body)
    return _respond(body, etag, MVT_TYPE, gzipped=True)


def _query_string(flt: Filter | None, extra: dict | None = None) -> str:
    args = dict(flt.given) if flt else {}
    args.update({k: v for k, v in (extra or {}).items() if v is not None})
    return ("?" + urlencode(args)) if args else ""


def _bounds() -> list[float]:
    """The served area (Mecklenburg County, from the NPA outlines), WGS84."""
    def compute():
        with database.engine().connect() as conn:
            row = conn.execute(sa.text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) AS e FROM neighborhoods) b"
            )).one()
        return [round(v, 5) for v in row] if row[0] is not None else list(gt.MECKLENBURG_BOUNDS)
    return database.memo(("tile_bounds",), ("neighborhoods",), compute)


_AGG_FIELDS = {
    "count": "Number (aggregated cells only): points in the cell",
    "violent": "Number (aggregated cells only): violent ones among them",
    "mean_p": "Number (aggregated calls only): mean model probability that a call is violent",
}
_JSON_TO_TILEJSON = {"string": "String", "integer": "Number", "number": "Number", "boolean": "Boolean"}


def _fields(t: gt.TileLayer) -> dict[str, str]:
    out = {}
    for name in t.fields:
        p = t.layer.property(name)
        kind = _JSON_TO_TILEJSON.get(p.type, "String")
        out[name] = f"{kind}: {p.description}" if p.description else kind
        if t.aggregated:
            out[name] += " (raw points only)"
    if t.aggregated:
        for name, text in _AGG_FIELDS.items():
            if name != "mean_p" or t.layer.filter_table == "calls":
                out[name] = text
    return out


def _tilejson(name: str, description: str, tiles_url: str, vector_layers: list | None, **extra) -> dict:
    lon, lat, zoom = gt.CHARLOTTE_CENTER
    doc = {
        "tilejson": "3.0.0",
        "name": name,
        "description": description,
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": 0,
        "maxzoom": gt.MAX_ZOOM,
        "bounds": _bounds(),
        "center": [lon, lat, zoom],
        "attribution": "CMPD (synthetic demo data in CMPD's layouts); City of Charlotte open data",
    }
    if vector_layers is not None:
        doc["vector_layers"] = vector_layers
    doc.update(extra)
    return doc


@bp.get("/tiles/<layer_name>.json")
def tilejson(layer_name: str):
    """TileJSON 3.0 for a vector tile layer; its tiles URL carries the request's filters."""
    t = gt.tile_layer(layer_name)
    flt = _tile_filter(t)
    run = _run(t) if request.args.get("run") else None
    url = request.url_root.rstrip("/") + f"/tiles/{t.name}/{{z}}/{{x}}/{{y}}.pbf" + _query_string(flt, {"run": run})
    layer_doc = {"id": t.name, "description": t.layer.description, "minzoom": 0, "maxzoom": gt.MAX_ZOOM,
                 "fields": _fields(t)}
    extra = {}
    if t.aggregated:
        extra["aggregation"] = {
            "rule": (f"Below zoom {gt.RAW_MIN_ZOOM} every tile is aggregated; from zoom {gt.RAW_MIN_ZOOM} on, a tile "
                     f"carries raw points (with the fields marked 'raw points only') when it holds at most "
                     f"{gt.MAX_RAW_FEATURES} of them including its buffer, else it stays aggregated."),
            "cell_tile_units": gt.CELL,
            "cells_per_tile_side": gt.EXTENT // gt.CELL,
            "raw_min_zoom": gt.RAW_MIN_ZOOM,
            "max_raw_features": gt.MAX_RAW_FEATURES,
            "aggregated_geometry": "one point at the centre of each occupied cell; only points inside the tile "
                                   "are counted, so the counts of a zoom add up to the filtered total",
        }
    return jsonify(_tilejson(t.layer.title, t.layer.description, url, [layer_doc],
                             extent=gt.EXTENT, buffer=gt.BUFFER, **extra))


def _heat_scale(zi: int, flt: Filter) -> float:
    bw = round(heat.heat_bandwidth_px(zi) * heat.pixel_size(zi), 3)   # zooms sharing a bandwidth share a scale
    return admission.memo_admitted("stats", ("heat_scale", flt.key(), bw), ("calls",),
                                   lambda: _with_conn(database.engine(), lambda c: heat.heat_scale(c, zi, flt)))


@bp.get("/heat/<z>/<x>/<y>.png")
def heat_tile(z: str, x: str, y: str):
    """A 256 x 256 PNG of the kernel density of violent calls under the request's filters."""
    zi, xi, yi = gt.parse_tile(z, x, y)
    flt = request_filter("calls")
    key = ("heat", zi, xi, yi, flt.key(), _stamp(("calls",)))
    etag = _etag(key)
    if _not_modified(etag):
        return _respond(None, etag, "image/png", gzipped=False)
    cache = _cache()
    body = cache.get(key)
    if body is None:
        def render() -> bytes:
            with database.engine().begin() as conn:
                px, py = heat.heat_tile_points(conn, zi, xi, yi, flt)
            # The legend's maximum is only needed (and computed, once per zoom and filter) where calls are.
            scale = _heat_scale(zi, flt) if len(px) else 0.0
            return heat.render_heat(px, py, zi, xi, yi, scale)

        body = admission.admitted("tiles", render) if admission.heavy_tile(zi) else render()
        cache.put(key, body)
    return _respond(body, etag, "image/png", gzipped=False)


@bp.get("/heat.json")
def heat_tilejson():
    """TileJSON 3.0 for the heat tiles, with the colour legend of the request's filters."""
    flt = request_filter("calls")
    url = request.url_root.rstrip("/") + "/heat/{z}/{x}/{y}.png" + _query_string(flt)
    zoom = int_arg("z", 12, lo=0, hi=gt.MAX_ZOOM)
    scale = _heat_scale(zoom, flt)
    return jsonify(_tilejson(
        "Violent call density", "Quartic kernel density of violent calls (classifier labels), 256-pixel PNG tiles.",
        url, None,
        legend={
            "units": "violent calls per square kilometre",
            "zoom": zoom,
            "max_density_per_km2": round(scale, 3),
            "scale": ("colour = sqrt(density / max), where max is the highest density of the filtered calls at "
                      "that zoom's bandwidth, so every tile of a zoom shares this legend; from about zoom 10 on "
                      "the bandwidth is fixed and so is the max; ask with ?z= for another zoom"),
            "bandwidth_m": round(heat.heat_bandwidth_px(zoom) * heat.pixel_size(zoom) / heat.mercator_scale(), 1),
            "transparent_below": heat.TRANSPARENT_BELOW,
            "stops": heat.heat_legend(scale),
        },
        tileSize=heat.HEAT_SIZE,
    ))
