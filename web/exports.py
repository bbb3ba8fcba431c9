"""Downloads: `/export/<layer>.<ext>` (zip shapefile, gpkg, geojson, csv) under the shared filters.

The blueprint parses the request and streams what geo.export produces; the formats, field names
and streaming live in geo/export.py (docs/exports.md).
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, url_for

from geo import catalog, export
from geo.catalog import LAYERS, Layer
from geo.filters import Filter, ParameterError
from web import database
from web.admission import heavy
from web.params import int_arg, request_filter

bp = Blueprint("exports", __name__)


@bp.get("/export")
def index():
    """The exportable layers and formats, with a download link for each pair."""
    return jsonify(
        formats={f.ext: {"media_type": f.media_type, "title": f.title} for f in export.FORMATS.values()},
        layers=[{"id": lyr.id, "title": lyr.title,
                 "filters": "shared" if lyr.filter_table else ("bbox, run" if lyr.run_kinds else "bbox"),
                 "links": [{"href": url_for("exports.download", name=f"{lyr.id}.{ext}"), "type": f.media_type,
                            "title": f"{lyr.title} ({f.title})"} for ext, f in export.FORMATS.items()]}
                for lyr in LAYERS.values()],
    )


@bp.get("/export/<name>")
def download(name: str):
    """Stream one layer in one format; 400 naming `layer`, `format` or the filter parameter at fault."""
    layer_name, dot, ext = name.rpartition(".")
    if not dot:
        raise ParameterError("format", f"add a format extension to {name!r}: one of {', '.join(export.FORMATS)}")
    lyr = catalog.layer(layer_name)
    fmt = export.export_format(ext)
    flt = request_filter(lyr.filter_table or "calls")
    run = int_arg("run", lo=1)
    return _stream(lyr, fmt, flt, run)


# Rows per fetch of a streamed download. psycopg2 turns a whole fetch into Python rows without letting
# go of the interpreter lock: a 20,000-row fetch stopped every other thread of the worker (/health,
# cached tiles) for 50-200 ms each time, 2,000 rows a tenth as long, and the download is no slower
# (bench/RESULTS.md). Files built through GDAL keep the library's larger batches.
STREAM_CHUNK_ROWS = 2_000


@heavy("exports")
def _stream(lyr: Layer, fmt: export.ExportFormat, flt: Filter, run: int | None) -> Response:
    # A valid request only takes an export slot, held until the last byte is sent (web/admission.py).
    chunk_rows = current_app.config.get("EXPORT_CHUNK_ROWS") or (STREAM_CHUNK_ROWS if fmt.streamed
                                                                 else export.CHUNK_ROWS)
    job = export.Export(database.engine(), lyr, fmt, flt, run, chunk_rows=chunk_rows).open()
    # content_type, not mimetype: the media type already carries its charset where it has one.
    resp = Response(job.chunks(), content_type=fmt.media_type)
    resp.call_on_close(job.close)
    resp.headers["Content-Disposition"] = _attachment(job.filename)
    if job.size is not None:
        resp.headers["Content-Length"] = str(job.size)
        resp.headers["X-Export-Rows"] = str(job.rows)
    if job.run is not None:
        resp.headers["X-Analysis-Run"] = str(job.run)
    # Filtered downloads of live data: let no shared cache keep an old copy.
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _attachment(filename: str) -> str:
    # Catalog ids are ASCII, but say it both ways (RFC 6266) in case that ever changes.
    return f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"

