"""A small ArcGIS REST feature layer for the sync tests: a real HTTP server in a thread.

It answers `…/FeatureServer/0/query` the way ArcGIS Server does for the parameters the sync
uses: `where` (`1=1` or `FIELD >= TIMESTAMP 'yyyy-mm-dd hh:mm:ss'`), `orderByFields`,
`resultOffset`/`resultRecordCount` (capped at maxRecordCount, with exceededTransferLimit),
`outFields=*`, `f=json` (attributes, x/y geometry, dates as epoch milliseconds) and `f=geojson`.
Faults are scripted per request: an HTTP status, an ArcGIS error body with HTTP 200, a delay
longer than the client's timeout, a cut-off body, or a hang until released.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

LAYER_PATH = "/arcgis/rest/services/CMPD/CMPD_Incidents/FeatureServer/0"
_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*>=\s*TIMESTAMP\s*'([^']+)'(\s+OR\s+\1\s+IS\s+NULL)?\s*$", re.I)


def epoch_ms(text: str) -> int:
    """'2021-03-14 22:17:00' (UTC) as ArcGIS's epoch milliseconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@dataclass
class Fault:
    """What to do instead of (or before) answering one request."""

    kind: str              # 'http', 'error_json', 'delay', 'truncate', 'hang'
    status: int = 500
    seconds: float = 0.0


@dataclass
class FakeLayer:
    """The layer's records (attributes with epoch-ms dates, and lon/lat) and scripted faults."""

    records: list[dict[str, Any]]
    points: list[tuple[float, float] | None]

    max_record_count: int = 1000
    faults: dict[int, Fault] = field(default_factory=dict)   # request number (0-based) -> fault
    fail_from_offset: dict[int, Fault] = field(default_factory=dict)   # every request at this offset
    requests: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def query(self, params: dict[str, str]) -> dict:
        """The answer ArcGIS would give, as a JSON-able dict."""
        where = params.get("where", "1=1")
        rows = list(zip(self.records, self.points))
        if where.strip() != "1=1":
            m = _WHERE.match(where)
            if not m:
                return {"error": {"code": 400, "message": "Unable to complete operation.",
                                  "details": [f"Invalid where clause: {where}"]}}
            name, stamp, or_null = m.group(1).upper(), epoch_ms(m.group(2)), bool(m.group(3))
            rows = [(r, p) for r, p in rows if (r.get(name) is None and or_null)
                    or (r.get(name) is not None and r[name] >= stamp)]
        order = [part.split() for part in params.get("orderByFields", "").split(",") if part.strip()]
        for name, *direction in reversed(order):
            desc = bool(direction) and direction[0].upper() == "DESC"
            rows.sort(key=lambda rp: (rp[0].get(name.upper()) is None, rp[0].get(name.upper()) or 0), reverse=desc)
        offset = int(params.get("resultOffset", 0))
        count = min(int(params.get("resultRecordCount", self.max_record_count)), self.max_record_count)
        page = rows[offset:offset + count]
        more = offset + count < len(rows)
        if params.get("f") == "geojson":
            return {"type": "FeatureCollection", "exceededTransferLimit": more, "features": [
                {"type": "Feature", "id": r["OBJECTID"],
                 "geometry": None if p is None else {"type": "Point", "coordinates": [p[0], p[1]]},
                 "properties": r} for r, p in page]}
        body = {"objectIdFieldName": "OBJECTID", "geometryType": "esriGeometryPoint",
                "spatialReference": {"wkid": 4326, "latestWkid": 4326},
                "fields": [{"name": k} for k in (self.records[0] if self.records else {})],
                "features": [{"attributes": r, "geometry": None if p is None else {"x": p[0], "y": p[1]}}
                             for r, p in page]}
        if more:
            body["exceededTransferLimit"] = True
        return body


class _Handler(BaseHTTPRequestHandler):
    layer: FakeLayer

    def log_message(self, *args) -> None:   # keep the test output clean
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != LAYER_PATH + "/query":
            self._send(404, {"error": {"code": 404, "message": "Not found"}})
            return
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        layer = self.server.layer   # type: ignore[attr-defined]
        with layer.lock:
            number = len(layer.requests)
            layer.requests.append(params)
            fault = layer.faults.pop(number, None) or layer.fail_from_offset.get(int(params.get("resultOffset", 0)))
        if fault is not None:
            if fault.kind == "http":
                self._send(fault.status, {"error": {"code": fault.status, "message": "Server error"}})
                return
            if fault.kind == "error_json":
                # ArcGIS reports many failures with HTTP 200 and an error object.
                self._send(200, {"error": {"code": fault.status, "message": "Unable to complete operation.",
                                           "details": ["Error performing query operation"]}})
                return
            if fault.kind == "truncate":
                data = json.dumps(layer.query(params)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                return
            if fault.kind == "delay":
                threading.Event().wait(fault.seconds)
            if fault.kind == "hang":
                layer.release.wait(60)
        try:
            self._send(200, layer.query(params))
        except (BrokenPipeError, ConnectionResetError):
            pass   # the client gave up waiting (the timeout case)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeArcGIS:
    """The fake layer served on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, layer: FakeLayer):
        self.layer = layer
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.layer = layer   # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def layer_url(self) -> str:
        """The FeatureServer layer URL (the sync appends /query)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{LAYER_PATH}"

    def __enter__(self) -> "FakeArcGIS":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.layer.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
