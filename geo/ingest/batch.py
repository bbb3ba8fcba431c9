"""What every loader shares: the batch record, rejects kept with reasons, COPY into a staging table.

A load runs in one transaction: the batch row, the upserted records and the rejects commit
together or not at all, so a failure part-way leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine


class IngestError(RuntimeError):
    """A whole-file problem (missing columns, unreadable file): nothing was written."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks; IngestError if there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadReport:
    """Counts a load ends with: read, loaded (inserted/updated/unchanged), rejected by reason."""

    kind: str
    source_file: str
    sha256: str
    batch_id: int | None = None
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: Counter = field(default_factory=Counter)
    fixes: Counter = field(default_factory=Counter)
    notes: dict = field(default_factory=dict)
    already_loaded_batch: int | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)  # seconds per stage, for benchmarks

    def mark(self, stage: str, timer: "Timer") -> None:
        """Record the seconds since the previous mark under `stage`."""
        now = timer.elapsed
        self.timings[stage] = round(now - sum(self.timings.values()), 3)

    @property
    def rows_loaded(self) -> int:
        """Rows that are in the table after this load (new, changed or identical)."""
        return self.inserted + self.updated + self.unchanged

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict:
        """JSON-able form, stored in ingest_batches.report."""
        return {
            "kind": self.kind,
            "source_file": self.source_file,
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": dict(sorted(self.rejected.items())),
            "fixes": dict(sorted(self.fixes.items())),
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "timings": self.timings,
        }

    def summary_lines(self) -> list[str]:
        """Human-readable summary for the CLI."""
        if self.already_loaded_batch is not None:
            return [
                f"{self.kind}: {self.source_file} was already loaded (batch {self.already_loaded_batch}); "
                "nothing changed. Use --force to re-read it."
            ]
        rate = f", {self.rows_read / self.seconds:,.0f} rows/s" if self.seconds > 0 else ""
        lines = [
            f"{self.kind}: {self.source_file} (batch {self.batch_id}, {self.seconds:.1f} s{rate})",
            f"  read {self.rows_read:,}  loaded {self.rows_loaded:,} "
            f"(new {self.inserted:,}, changed {self.updated:,}, unchanged {self.unchanged:,})  "
            f"rejected {self.rows_rejected:,}",
        ]
        for reason, n in sorted(self.rejected.items()):
            lines.append(f"    rejected {reason}: {n:,}")
        for fix, n in sorted(self.fixes.items()):
            lines.append(f"    fixed {fix}: {n:,}")
        for key, value in self.notes.items():
            if key == "times":
                for column, seen in value.items():
                    counts = ", ".join(f"{seen[k]:,} {label}" for k, label in
                                       (("date", "dates"), ("time", "timed"), ("report_id", "time from report id"))
                                       if seen.get(k))
                    ms = f"; {seen['epoch_ms']:,} epoch ms" if seen.get("epoch_ms") else ""
                    lines.append(f"    {column}: read as {seen['read_as']} ({counts or 'no values'}{ms})")
                continue
            lines.append(f"    {key}: {value:,}" if isinstance(value, int) else f"    {key}: {value}")
        return lines


class Rejects:
    """Rows set aside with a reason code and a message naming the field and value."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []

    def add(self, lines: np.ndarray, raw: list[str] | pd.Series, reason: str, detail: list[str] | pd.Series | str) -> None:
        """Record rejected rows (their source line numbers, raw text, reason and detail)."""
        n = len(lines)
        if n == 0:
            return
        detail_values = [detail] * n if isinstance(detail, str) else list(detail)
        self._parts.append(
            pd.DataFrame({"line": np.asarray(lines, dtype=np.int64), "raw": list(raw), "reason": reason, "detail": detail_values})
        )

    def add_malformed(self, malformed: list[tuple[int, str, str]]) -> None:
        """Record the rows a reader could not split into fields: (line, raw text, what is wrong)."""
        self.add(np.array([m[0] for m in malformed], dtype=np.int64), [m[1] for m in malformed],
                 "malformed_row", [m[2] for m in malformed])

    def set_aside(self, frame: pd.DataFrame, lines: np.ndarray, alive: np.ndarray, mask: np.ndarray, reason: str,
                  detail: str | Callable[[np.ndarray], list[str]]) -> None:
        """Reject the rows of `mask` still `alive` in a batch and mark them dead, so a row keeps its first
        reason; `detail` is a message, or a function of the rejected rows' mask giving one per row."""
        # csvfile imports this module (for IngestError): read its helper at call time.
        from geo.ingest.csvfile import raw_rows

        mask = mask & alive
        if not mask.any():
            return
        self.add(lines[mask], raw_rows(frame, mask), reason, detail(mask) if callable(detail) else detail)
        alive[mask] = False

    def frame(self) -> pd.DataFrame:
        """All rejects, ordered by line."""
        if not self._parts:
            return pd.DataFrame({"line": pd.Series([], dtype=np.int64), "raw": [], "reason": [], "detail": []})
        return pd.concat(self._parts, ignore_index=True).sort_values("line", kind="stable")

    def counts(self) -> Counter:
        """Number of rejects per reason."""
        return Counter(self.frame()["reason"].tolist())


def start_report(engine: Engine, kind: str, source_file: Path | str, sha256: str, *, force: bool) -> LoadReport:
    """The report a load starts with; `already_loaded_batch` is set (and the load should stop) when a
    finished batch already loaded this exact file and `force` is not given."""
    report = LoadReport(kind=kind, source_file=str(source_file), sha256=sha256)
    if not force:
        report.already_loaded_batch = previous_batch(engine, kind, sha256)
    return report


def previous_batch(engine: Engine, kind: str, sha256: str) -> int | None:
    """Id of a finished batch that already loaded this exact file, if any."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT max(batch_id) FROM ingest_batches "
                "WHERE kind = :k AND source_sha256 = :s AND finished_at IS NOT NULL"
            ),
            {"k": kind, "s": sha256},
        ).scalar()


def start_batch(conn: Connection, report: LoadReport) -> int:
    """Insert the ingest_batches row for this load (inside the load's transaction)."""
    return conn.execute(
        sa.text(
            "INSERT INTO ingest_batches (kind, source_file, source_sha256) VALUES (:k, :f, :s) RETURNING batch_id"
        ),
        {"k": report.kind, "f": report.source_file, "s": report.sha256},
    ).scalar_one()


def finish_batch(conn: Connection, report: LoadReport) -> None:
    """Write the final counts and report to the batch row."""
    conn.execute(
        sa.text(
            "UPDATE ingest_batches SET finished_at = clock_timestamp(), rows_read = :r, rows_loaded = :l,"
            " rows_rejected = :j, report = CAST(:rep AS jsonb) WHERE batch_id = :b"
        ),
        {
            "r": report.rows_read,
            "l": report.rows_loaded,
            "j": report.rows_rejected,
            "rep": json.dumps(report.as_dict()),
            "b": report.batch_id,
        },
    )


def copy_frame(conn: Connection, table: str, frame: pd.DataFrame | pa.Table) -> None:
    """COPY a frame into `table` (columns by name) as CSV; NULL is an unquoted empty field."""
    data = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    buf = io.BytesIO()
    pacsv.write_csv(data, buf, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buf.seek(0)
    columns = ", ".join(f'"{c}"' for c in data.column_names)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buf, size=1 << 20)
    finally:
        cursor.close()


def _merge_insert(table: str, stage: str, key: str, cols: list[str], changed_if: str, also_set: list[str]) -> str:
    """INSERT the staged rows; on a key conflict update only rows for which `changed_if` holds."""
    sets = [f"{c} = EXCLUDED.{c}" for c in cols if c != key] + list(also_set)
    return (f"INSERT INTO {table} AS t ({', '.join(cols)}) SELECT {', '.join(cols)} FROM {stage}"
            f" ON CONFLICT ({key}) DO UPDATE SET {', '.join(sets)} WHERE {changed_if}")


def merge_staged(conn: Connection, table: str, stage: str, key: str, cols: list[str], *, changed_if: str,
                 also_set: list[str] = ()) -> tuple[int, int]:
    """INSERT the staged rows; on a key conflict update only rows for which `changed_if` holds.

    Returns (inserted, updated); rows neither inserted nor updated were identical.
    """
    inserted, updated = conn.exec_driver_sql(
        f"WITH up AS ({_merge_insert(table, stage, key, cols, changed_if, also_set)} RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
    ).one()
    return int(inserted), int(updated)


def merge_staged_keys(conn: Connection, table: str, stage: str, key: str, cols: list[str], *, changed_if: str,
                      also_set: list[str] = ()) -> dict:
    """merge_staged, saying which rows: key -> True (inserted) or False (updated); identical rows are absent."""
    rows = conn.exec_driver_sql(
        f"{_merge_insert(table, stage, key, cols, changed_if, also_set)} RETURNING t.{key}, (xmax = 0) AS inserted"
    ).all()
    return {k: bool(inserted) for k, inserted in rows}


def store_rejects(conn: Connection, report: LoadReport, rejects: Rejects) -> None:
    """Insert rejects for this batch; a reload of the same file adds none twice."""
    frame = rejects.frame()
    report.rejected = Counter(frame["reason"].tolist())
    if frame.empty:
        return
    conn.exec_driver_sql(
        "CREATE TEMP TABLE stage_rejects (line integer, raw text, reason text, detail text) ON COMMIT DROP"
    )
    copy_frame(conn, "stage_rejects", frame[["line", "raw", "reason", "detail"]])
    conn.execute(
        sa.text(
            "INSERT INTO ingest_rejects (batch_id, kind, source_file, source_sha256, line, raw, reason, detail) "
            "SELECT :b, :k, :f, :s, line, raw, reason, detail FROM stage_rejects "
            "ON CONFLICT (source_sha256, line) DO NOTHING"
        ),
        {"b": report.batch_id, "k": report.kind, "f": report.source_file, "s": report.sha256},
    )


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
