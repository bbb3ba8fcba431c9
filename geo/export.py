"""Downloads of the served layers: zipped shapefile, GeoPackage, GeoJSON and CSV, streamed from PostGIS.

One path for the web (`/export/<layer>.<ext>`) and the command line (`hotspots export`): the layer
and its public properties come from geo.catalog, the rows from geo.filters, and PostGIS is read
with a server-side cursor in chunks of CHUNK_ROWS, so memory stays flat whatever the layer's size.
CSV lines and GeoJSON Features are written by PostgreSQL and leave chunk by chunk as they are
read. Shapefile and GeoPackage are written by GDAL (pyogrio) from a stream of Arrow batches, one
per chunk, into a temporary directory and sent once complete, so a failure mid-way is an error
response rather than a truncated file. docs/exports.md describes formats and field names.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geo import catalog
from geo.catalog import Layer, Property
from geo.filters import TABLE_COLUMNS, Filter, ParameterError, bbox_predicate, compile_text
from geo.runs import RunKind, SavedRun, get_run, load_table, resolve_run

# Rows per server-side cursor fetch (and per Arrow batch). Each chunk is held a few times over
# (libpq's result, Python rows, the encoded bytes): 20,000 calls keep that under 100 MB, and larger
# chunks were no faster (bench/exports.py).
CHUNK_ROWS = 20_000
# Bytes streamed per piece when sending a finished file.
FILE_BLOCK = 1 << 20
# dBase III text fields hold at most 254 bytes; longer values are cut at a UTF-8 character boundary.
DBF_TEXT_BYTES = 254
FIELDS_FILE = "fields.csv"
# Spreadsheets evaluate a CSV cell that starts with one of these (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportFormat:
    """A download format: file extension, media type, and how it leaves the server."""

    ext: str
    media_type: str
    title: str
    streamed: bool   # True: bytes leave while rows are read; False: a file is built, then sent


FORMATS: dict[str, ExportFormat] = {
    f.ext: f
    for f in (
        ExportFormat("zip", "application/zip",
                     "ESRI Shapefile, zipped (.shp .shx .dbf .prj .cpg and fields.csv)", streamed=False),
        ExportFormat("gpkg", "application/geopackage+sqlite3", "OGC GeoPackage", streamed=False),
        ExportFormat("geojson", "application/geo+json", "GeoJSON FeatureCollection (RFC 7946)", streamed=True),
        ExportFormat("csv", "text/csv; charset=utf-8",
                     "CSV, UTF-8; points as lon/lat columns, polygons as a WKT column", streamed=True),
    )
}

# Shapefile (dBase) field names: at most 10 characters. One name per catalog property, the same
# in every layer; docs/exports.md carries the same table and each zip a fields.csv.
SHAPEFILE_FIELDS: dict[str, str] = {
    "call_id": "call_id",
    "received_at": "recv_at",
    "call_type": "call_type",
    "priority": "priority",
    "category": "category",
    "division_id": "div_id",
    "npa_id": "npa_id",
    "p_violent": "p_violent",
    "violent": "violent",
    "model_version": "model_ver",
    "city": "city",
    "zip": "zip",
    "incident_report_id": "incid_id",
    "date_reported": "date_rptd",
    "date_incident_began": "date_began",
    "highest_nibrs_code": "nibrs_code",
    "highest_nibrs_description": "nibrs_desc",
    "is_crime": "is_crime",
    "clearance_status": "clearance",
    "location": "location",
    "location_type_description": "loc_type",
    "place_type_description": "place_type",
    "received_at_precision": "recv_prec",
    "dispatched_at": "dispatched",
    "enroute_at": "enroute",
    "onscene_at": "onscene",
    "cleared_at": "cleared",
    "units_assigned": "units",
    "primary_unit": "prim_unit",
    "disposition": "dispositn",
    "date_reported_precision": "rptd_prec",
    "data_origin": "origin",
    "name": "name",
    "short_name": "short_name",
    "population": "population",
    "population_year": "pop_year",
    "run_id": "run_id",
    "col": "col",
    "row": "row",
    "cell_ft": "cell_ft",
    "value": "value",
    "gi_z": "gi_z",
    "gi_p": "gi_p",
    "gi_q": "gi_q",
    "gi_p_sim": "gi_p_sim",
    "value_unit": "value_unit",
    "event_count": "event_cnt",
    "hotspot_class": "hs_class",
    "objectid": "objectid",
    "crime_report_id": "report_id",
    "age": "age",
    "gender": "gender",
    "race_ethnicity": "race_eth",
    "weapon": "weapon",
    "circumstances": "circumst",
    "intimate_partner": "ipv",
    "clearance_date": "clear_date",
    "cmpd_patrol_division": "division",
    "npa_source": "npa_source",
    "council_district": "council",
    "commission_district": "commission",
    # emerging_npas
    "pattern": "pattern",
    "trend_z": "trend_z",
    "trend_p": "trend_p",
    "hot_steps": "hot_steps",
    "cold_steps": "cold_steps",
    "steps": "steps",
    "hot_share": "hot_share",
    "cold_share": "cold_share",
    "final_z": "final_z",
    "total": "total",
    "source": "source",
    "source_words": "src_words",
    "time_step": "time_step",
    "neighbourhood_steps": "nbhd_steps",
    "confidence": "confidence",
    "first_step": "first_step",
    "last_step": "last_step",
    "period_start": "per_start",
    "period_end": "per_end",
    "left_out": "left_out",
    "interval": "interval",
    "hour": "hour",
    "calls": "calls",
    "n": "n",
    "median_min": "median_min",
    "p90_min": "p90_min",
    "mean_min": "mean_min",
    "left_out_missing": "lo_missing",
    "left_out_imprecise": "lo_imprec",
    "left_out_out_of_order": "lo_order",
}


def export_format(ext: str) -> ExportFormat:
    """The format for a file extension, or a ParameterError naming `format` with the valid ones."""
    fmt = FORMATS.get(ext.lower())
    if fmt is None:
        raise ParameterError("format", f"unknown format {ext!r}; one of {', '.join(FORMATS)}")
    return fmt


def shapefile_fields(lyr: Layer) -> list[tuple[str, Property]]:
    """(dBase field name, property) for each public property of a layer."""
    out: list[tuple[str, Property]] = []
    used: set[str] = set()
    for p in lyr.public:
        # A property added to the catalog without a documented name still exports (cut to 10
        # characters, numbered if taken); tests/test_export.py fails until the table names it.
        name = SHAPEFILE_FIELDS.get(p.name) or p.name[:10]
        n = 1
        while name in used:
            suffix = f"_{n}"
            name, n = p.name[:10 - len(suffix)] + suffix, n + 1
        used.add(name)
        out.append((name, p))
    return out


def check_filter(lyr: Layer, flt: Filter) -> None:
    """Refuse filter parameters a layer has no fields for (only bbox applies to areas and results)."""
    if lyr.filter_table is not None:
        return
    for name in flt.given:
        if name != "bbox":
            allowed = "bbox and run apply" if lyr.run_kinds else "bbox applies"
            raise ParameterError(name, f"{lyr.id} has no time, division, category or model fields; "
                                       f"only {allowed} to it")


def _where(lyr: Layer, flt: Filter) -> tuple[str, dict]:
    if lyr.filter_table is not None:
        return flt.where(lyr.filter_table)
    if flt.bbox is None:
        return "TRUE", {}
    return compile_text(bbox_predicate(sa.literal_column(lyr.geom), flt.bbox))


def _order(lyr: Layer) -> str:
    # Calls, incidents and homicides leave in time order (the time index serves it); areas by id.
    if lyr.filter_table is not None:
        return f"{TABLE_COLUMNS[lyr.filter_table].time}, {lyr.id_sql}"
    return lyr.id_sql


def _text_sql(p: Property) -> str:
    """A property as the database should hand it over for files: timestamps as ISO 8601 UTC text."""
    if p.format == "date-time":
        # AT TIME ZONE 'UTC' makes the text independent of the session's TimeZone; NULL stays NULL.
        return f"((to_json(({p.sql}) AT TIME ZONE 'UTC') #>> '{{}}') || 'Z')"
    if p.format == "date":
        return f"to_char({p.sql}, 'YYYY-MM-DD')"   # a calendar date: no time, no zone
    return p.sql


def _csv_cell_sql(p: Property) -> str:
    """A property as one CSV cell (text): quoted, formula-safe text; bare numbers and booleans; NULL empty."""
    value = _text_sql(p)
    if p.type != "string":
        # Numbers keep their sign (-80.84 stays a number); float text is PostgreSQL's shortest exact form.
        return f"coalesce(({value})::text, '')"
    if p.format is None:
        # Spreadsheets evaluate a cell starting with = + - @ tab or CR: a leading quote makes it text
        # (OWASP "CSV injection"). Timestamps start with a digit and need no prefix.
        starts = ", ".join(f"chr({ord(c)})" for c in FORMULA_START)
        value = (f"CASE WHEN left({value}, 1) IN ({starts}) "
                 f"THEN '''' || ({value}) ELSE {value} END")
    # Every text cell is quoted (RFC 4180 allows it), so commas, quotes and line breaks need no test.
    return "coalesce('\"' || replace(" + value + ", '\"', '\"\"') || '\"', '')"


def _csv_line_sql(lyr: Layer) -> str:
    # The database writes each CSV line (C code) and Python only joins lines: about twice as fast
    # as turning every value into a Python object and back into text (bench/exports.py).
    cells = [_csv_cell_sql(p) for p in lyr.public]
    if lyr.geometry_type == "Point":
        # Empty cells for a row without a location (homicide victims published without one).
        cells += [f"coalesce(ST_X({lyr.geom})::text, '')", f"coalesce(ST_Y({lyr.geom})::text, '')"]
    else:
        cells.append("'\"' || ST_AsText(" + lyr.geom + ") || '\"'")
    return " || ',' || ".join(cells)


def _geojson_sql(lyr: Layer) -> str:
    # As for CSV, the database writes each Feature and Python joins them.
    props = ", ".join(f"'{p.name}', {_text_sql(p)}" for p in lyr.public)
    return (f"json_build_object('type', 'Feature', 'id', {lyr.id_sql}, "
            f"'geometry', ST_AsGeoJSON({lyr.geom}, 7)::json, 'properties', json_build_object({props}))::text")


def export_sql(lyr: Layer, flt: Filter, fmt: ExportFormat, run_id: int | None = None) -> tuple[str, dict]:
    """The SELECT an export runs, with its bound parameters (identifiers from the catalog only)."""
    if fmt.ext == "geojson":
        columns = [_geojson_sql(lyr)]
    elif fmt.ext == "csv":
        columns = [_csv_line_sql(lyr)]
    else:
        columns = [f'{_text_sql(p)} AS "{p.name}"' for p in lyr.public]
        # Points travel as two floats (cheaper to decode than WKB); polygons as WKB.
        if lyr.geometry_type == "Point":
            columns += [f"ST_X({lyr.geom})", f"ST_Y({lyr.geom})"]
        else:
            columns.append(f"ST_AsBinary({lyr.geom})")
    where, params = _where(lyr, flt)
    params.update(lyr.source.binds(run_id))
    return f"SELECT {', '.join(columns)} FROM {lyr.source.from_sql} WHERE {where} ORDER BY {_order(lyr)}", params


def csv_header(lyr: Layer) -> list[str]:
    """The CSV header: public property names, then lon, lat (points) or wkt (polygons)."""
    geometry = ["lon", "lat"] if lyr.geometry_type == "Point" else ["wkt"]
    return [p.name for p in lyr.public] + geometry


def dbf_text(value: str | None) -> str | None:
    """A text value cut to the 254 bytes a dBase field holds, never inside a UTF-8 character."""
    if value is None:
        return None
    data = value.encode("utf-8")
    if len(data) <= DBF_TEXT_BYTES:
        return value
    return data[:DBF_TEXT_BYTES].decode("utf-8", errors="ignore")


def arrow_schema(lyr: Layer, shapefile: bool):
    """Arrow schema of a file export: types from the catalog (never guessed per chunk), WKB geometry last."""
    import pyarrow as pa

    fields = []
    for name, p in shapefile_fields(lyr) if shapefile else [(p.name, p) for p in lyr.public]:
        if p.format == "date-time":
            # dBase has no time zone (its D type is a bare date): shapefiles get ISO 8601 UTC text.
            kind = pa.string() if shapefile else pa.timestamp("us", tz="UTC")
        elif p.format == "date":
            kind = pa.date32()   # a dBase D field, a GeoPackage DATE
        else:
            kind = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}.get(p.type, pa.string())
        fields.append(pa.field(name, kind))
    fields.append(pa.field("geometry", pa.binary()))
    return pa.schema(fields)


def _arrow_batch(lyr: Layer, schema, rows: Sequence[Sequence], shapefile: bool):
    """One chunk of rows (from export_sql) as an Arrow record batch of `schema`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import shapely

    columns = list(zip(*rows))
    arrays = []
    for field, p, values in zip(schema, lyr.public, columns):
        if field.type == pa.string():
            array = pa.array(values, pa.string())
            if shapefile and (pc.max(pc.binary_length(array)).as_py() or 0) > DBF_TEXT_BYTES:
                array = pa.array([dbf_text(v) for v in values], pa.string())
        elif p.format in ("date-time", "date"):
            array = pa.array(values, pa.string()).cast(field.type)
        else:
            array = pa.array(values, field.type)
        arrays.append(array)
    if lyr.geometry_type == "Point":
        x = np.asarray(columns[-2], dtype="float64")
        y = np.asarray(columns[-1], dtype="float64")
        wkb = shapely.to_wkb(shapely.points(x, y)).astype(object)
        wkb[np.isnan(x)] = None   # no location: a null geometry, not POINT (NaN NaN)
    else:
        wkb = [bytes(b) for b in columns[-1]]
    arrays.append(pa.array(wkb, pa.binary()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def fields_csv(lyr: Layer) -> str:
    """The shapefile field mapping of a layer as CSV (written into each zip as fields.csv)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["field", "property", "type", "description"])
    for field, p in shapefile_fields(lyr):
        kind = {"date-time": "date-time (ISO 8601 text, UTC)", "date": "date (a calendar date)"}.get(p.format, p.type)
        w.writerow([field, p.name, kind, p.description])
    return buf.getvalue()


class Export:
    """One download in progress: `open()` runs the query (and builds files), `chunks()` yields its bytes.

    `close()` (also on leaving a `with` block) returns the connection and deletes temporary files;
    it is safe to call more than once and before the bytes were read.
    """

    def __init__(self, engine: Engine, lyr: Layer, fmt: ExportFormat, flt: Filter, run: int | None = None,
                 *, chunk_rows: int = CHUNK_ROWS, progress: Callable[[int], None] | None = None):
        self.engine = engine
        self.layer = lyr
        self.format = fmt
        self.filter = flt
        self.run = run
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.rows = 0                  # rows written so far (all of them once `chunks()` is exhausted)
        self.size: int | None = None   # bytes, known up front for built files
        self.finished = False
        self._conn: Connection | None = None
        self._result = None
        self._tmpdir: Path | None = None
        self._body: Iterator[bytes] | None = None
        self._handle = None

    @property
    def filename(self) -> str:
        """The download's file name."""
        return f"{self.layer.id}.{self.format.ext}"

    def open(self) -> "Export":
        """Validate, resolve the run, start the query (text formats) or build the file (zip, gpkg)."""
        if self._body is not None:
            return self
        check_filter(self.layer, self.filter)
        try:
            if self.layer.run_kinds or self.run is not None:
                with self.engine.connect() as conn:
                    self.run = resolve_run(conn, self.layer, self.run)
            if self.format.streamed:
                self._body = self._text_body()
            else:
                path = self._build_file()
                self.size = path.stat().st_size
                self._body = self._file_body(path)
        except BaseException:
            self.close()
            raise
        return self

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, piece by piece (call `open()` first)."""
        if self._body is None:
            raise RuntimeError("Export.open() was not called")
        yield from self._body
        self.finished = True
        self.close()

    def close(self) -> None:
        """Return the database connection and delete temporary files."""
        if self._result is not None:
            self._result.close()
            self._result = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> "Export":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------
    def _partitions(self) -> Iterator[Sequence]:
        sql, params = export_sql(self.layer, self.filter, self.format, self.run)
        self._conn = self.engine.connect()
        # stream_results: a named (server-side) cursor, fetched chunk_rows at a time.
        self._result = self._conn.execution_options(stream_results=True, max_row_buffer=self.chunk_rows).execute(
            sa.text(sql), params)
        return self._result.partitions(self.chunk_rows)

    def _counted(self, rows: Sequence) -> None:
        self.rows += len(rows)
        if self.progress and rows:
            self.progress(self.rows)

    # --- CSV and GeoJSON: written while read ------------------------------------------------
    def _text_body(self) -> Iterator[bytes]:
        parts = self._partitions()
        # The first chunk is fetched now, so a failing query is an error before any byte is sent.
        first = next(parts, [])
        csv_format = self.format.ext == "csv"
        encode = self._csv_chunk if csv_format else self._geojson_chunk

        def body() -> Iterator[bytes]:
            if csv_format:
                yield (",".join(csv_header(self.layer)) + "\r\n").encode()
            else:
                yield ('{"type": "FeatureCollection", "name": "%s", "features": [\n' % self.layer.id).encode()
            yield encode(first)
            for part in parts:
                yield encode(part)
            if not csv_format:
                yield b"\n]}\n"

        return body()

    def _csv_chunk(self, rows: Sequence) -> bytes:
        self._counted(rows)
        # RFC 4180 line ends (CRLF) after every line, the last included.
        return "".join(r[0] + "\r\n" for r in rows).encode("utf-8")

    def _geojson_chunk(self, rows: Sequence) -> bytes:
        if not rows:
            return b""
        lead = "" if self.rows == 0 else ",\n"
        self._counted(rows)
        return (lead + ",\n".join(r[0] for r in rows)).encode("utf-8")

    # --- shapefile and GeoPackage: written to a temporary file, then sent ---------------------
    def _build_file(self) -> Path:
        import pyarrow as pa
        from pyogrio.raw import write_arrow

        self._tmpdir = Path(tempfile.mkdtemp(prefix=f"hotspots-export-{self.layer.id}-"))
        shapefile = self.format.ext == "zip"
        target = self._tmpdir / (f"{self.layer.id}.shp" if shapefile else f"{self.layer.id}.gpkg")
        schema = arrow_schema(self.layer, shapefile)
        parts = self._partitions()

        def batches():
            # GDAL pulls batches one at a time while the cursor fetches the next chunk on demand,
            # so one chunk of rows is in memory at once. The empty batch first: a valid file
            # with the layer's fields even when nothing matches.
            yield pa.record_batch([pa.array([], f.type) for f in schema], schema=schema)
            for part in parts:
                if part:
                    yield _arrow_batch(self.layer, schema, part, shapefile)
                    self._counted(part)

        options = {"driver": "ESRI Shapefile", "encoding": "UTF-8"} if shapefile else {"driver": "GPKG"}
        # One GDAL write session fed by a stream of Arrow batches: several times faster than
        # appending data frames chunk by chunk (no reopening, no per-value conversion in Python).
        write_arrow(pa.RecordBatchReader.from_batches(schema, batches()), str(target), layer=self.layer.id,
                    geometry_name="geometry", geometry_type=self.layer.geometry_type, crs="EPSG:4326", **options)
        self._result.close()
        self._conn.close()
        self._result = self._conn = None
        if not shapefile:
            return target
        (self._tmpdir / FIELDS_FILE).write_text(fields_csv(self.layer), encoding="utf-8")
        archive = self._tmpdir / f"{self.layer.id}.zip"
        # Level 1: close to level 6's size on this data in a fraction of the time.
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                zf.write(target.with_suffix(suffix), f"{self.layer.id}{suffix}")
            zf.write(self._tmpdir / FIELDS_FILE, FIELDS_FILE)
        return archive

    def _file_body(self, path: Path) -> Iterator[bytes]:
        handle = self._handle = open(path, "rb")

        def body() -> Iterator[bytes]:
            while block := handle.read(FILE_BLOCK):
                yield block

        return body()


def open_export(engine: Engine, layer_name: str, ext: str, flt: Filter, run: int | None = None,
                **kw) -> Export:
    """Look up layer and format (ParameterError naming `layer`/`format`), check the filter, and open."""
    lyr = catalog.layer(layer_name)
    fmt = export_format(ext)
    return Export(engine, lyr, fmt, flt, run, **kw).open()


def write_export(engine: Engine, layer_name: str, ext: str, flt: Filter, out: Path, run: int | None = None,
                 **kw) -> Export:
    """Write an export to `out` (via a .part file renamed when complete); returns the finished Export.

    `shp` writes the shapefile itself: OUT.shp with its .shx, .dbf, .prj and .cpg (and OUT.fields.csv)
    beside it, the members of the zipped shapefile under OUT's name.
    """
    out = Path(out)
    if ext.lower() == "shp":
        return _write_shapefile(engine, layer_name, flt, out, run, **kw)
    part = out.with_name(out.name + ".part")
    with open_export(engine, layer_name, ext, flt, run, **kw) as job:
        try:
            with open(part, "wb") as f:
                for block in job.chunks():
                    f.write(block)
            part.replace(out)
        finally:
            part.unlink(missing_ok=True)
    return job


def _write_shapefile(engine: Engine, layer_name: str, flt: Filter, out: Path, run: int | None, **kw) -> Export:
    """The zipped shapefile's members written beside `out` (a .shp path), all or none."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        archive = Path(tmp) / "export.zip"
        job = write_export(engine, layer_name, "zip", flt, archive, run, **kw)
        staged = []
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                name = Path(member).name
                suffix = ".fields.csv" if name == FIELDS_FILE else Path(name).suffix
                target = Path(tmp) / (out.stem + suffix)
                target.write_bytes(zf.read(member))
                staged.append(target)
        for path in staged:   # moved only once every member was written
            path.replace(out.parent / path.name)
    return job


# --- one saved analysis run (`hotspots runs export`) --------------------------------------------
# Formats of a run that is a table (counts, CompStat, allocation, accuracy): rows, not features.
TABLE_FORMATS = ("csv", "json")


@dataclass(frozen=True)
class WrittenRun:
    """What `write_run` wrote: the run, the layer it was exported as (None for a table) and the rows."""

    run: SavedRun
    layer: str | None
    rows: int
    out: Path


def _table_cell(value) -> str:
    """One CSV cell of a result table: numbers and booleans bare, text formula-safe, nested values as JSON."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_START) else value
    return str(value)


def _run_rows(engine: Engine, saved: SavedRun) -> list[dict]:
    if saved.kind == RunKind.ACCURACY:
        return list(saved.params.get("rows", []))   # an accuracy run keeps its table in its params
    return load_table(engine, saved.run_id).to_dict("records")


def write_run(engine: Engine, run_id: int, ext: str, out: Path, **kw) -> WrittenRun:
    """Write one saved analysis run to `out`.

    Hot spot runs leave as their layer (hotspot_npas, hotspot_cells) in any export format, exactly
    as `/export/LAYER.EXT?run=RUN`; table runs as CSV or JSON (run, kind, params and rows).
    NoSavedRun when `run_id` is not saved.
    """
    out = Path(out)
    with engine.connect() as conn:
        saved = get_run(conn, run_id)
    layer_name = saved.kind.layer if isinstance(saved.kind, RunKind) else None
    if layer_name is not None:
        job = write_export(engine, layer_name, ext, Filter(), out, run_id, **kw)
        return WrittenRun(saved, layer_name, job.rows, out)
    ext = ext.lower()
    if ext not in TABLE_FORMATS:
        raise ParameterError("format", f"run {run_id} ({saved.kind}) is a table, not map features; "
                                       f"write it as {' or '.join(TABLE_FORMATS)}")
    rows = _run_rows(engine, saved)
    part = out.with_name(out.name + ".part")
    try:
        with open(part, "w", encoding="utf-8", newline="") as f:
            if ext == "json":
                json.dump({"run_id": saved.run_id, "kind": str(saved.kind), "model_version": saved.model_version,
                           "created_at": saved.created_at.isoformat(), "params": saved.params, "rows": rows},
                          f, ensure_ascii=False, indent=1, default=str)
            else:
                columns = list(dict.fromkeys(k for r in rows for k in r))   # first-seen order across rows
                w = csv.writer(f, lineterminator="\r\n")
                w.writerow(columns)
                for r in rows:
                    w.writerow([_table_cell(r.get(c)) for c in columns])
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    return WrittenRun(saved, None, len(rows), out)
