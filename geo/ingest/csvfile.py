"""Reading a source CSV as text, keeping each row's line number and the rows that do not parse."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from geo.ingest.batch import IngestError


@dataclass
class SourceTable:
    """A CSV read as strings: the rows, their 1-based line numbers, and malformed rows."""

    frame: pd.DataFrame           # every column as text; missing cells are ""
    lines: np.ndarray             # line number in the file of each row of `frame`
    malformed: list[tuple[int, str, str]]  # (line, raw text, detail)
    encoding: str


def _header(path: Path, encoding: str) -> list[str]:
    with open(path, newline="", encoding=encoding) as fh:
        try:
            names = next(csv.reader(fh))
        except StopIteration:
            raise IngestError(f"{path}: the file is empty (no header row)") from None
    # A UTF-8 byte-order mark, as in CMPD's published CSVs, must not end up in the first name.
    return [n.strip().lstrip("\ufeff").strip().upper() for n in names]


def _find_lines(path: Path, texts: list[str], encoding: str) -> list[int]:
    """Line numbers of the given raw lines (in order of appearance; one pass over the file)."""
    wanted: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        wanted.setdefault(text, []).append(i)
    found = [-1] * len(texts)
    with open(path, encoding=encoding, newline="") as fh:
        for number, line in enumerate(fh, start=1):
            slots = wanted.get(line.rstrip("\r\n"))
            if slots:
                found[slots.pop(0)] = number
    return found


def _columns(path: Path, required: list[str]) -> tuple[list[str], str]:
    """Header names (upper-case, BOM stripped) and the file's encoding; fail naming missing columns."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    encoding = "utf-8"
    try:
        names = _header(path, "utf-8-sig")
        with open(path, encoding="utf-8") as fh:
            for _ in iter(lambda: fh.read(1 << 22), ""):
                pass
    except UnicodeDecodeError:
        # Exports saved from Excel on Windows are often cp1252, not UTF-8.
        encoding = "cp1252"
        names = _header(path, encoding)
    missing = [c for c in required if c not in names]
    if missing:
        raise IngestError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(names) or 'none'}. "
            f"Expected at least: {', '.join(required)}"
        )
    if len(set(names)) != len(names):
        raise IngestError(f"{path}: duplicate column names in header: {names}")
    return names, encoding


# Bytes per record batch when streaming a file (about 130,000 calls).
BLOCK_BYTES = 16 << 20


def _options(names: list[str], encoding: str, on_invalid, include: list[str] | None = None, threads: bool = True):
    read = pacsv.ReadOptions(column_names=names, skip_rows=1, encoding=encoding, block_size=BLOCK_BYTES, use_threads=threads)
    parse = pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=False)
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False,
        include_columns=include,
    )
    return read, parse, convert


def _read(path: Path, names: list[str], encoding: str, include: list[str] | None) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    bad: list[tuple[int | None, str, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number, row.text, f"expected {row.expected_columns} fields, found {row.actual_columns}"))
        return "skip"

    table = pacsv.read_csv(path, *_options(names, encoding, on_invalid, include))
    # With multithreaded parsing Arrow may not know a bad row's line number: look those up.
    unknown = [i for i, (number, _, _) in enumerate(bad) if number is None]
    text_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    looked_up = _find_lines(path, [bad[i][1] for i in unknown], text_encoding) if unknown else []
    numbers = [number for number, _, _ in bad]
    for i, line in zip(unknown, looked_up):
        numbers[i] = line
    return table, sorted((numbers[i], text, detail) for i, (_, text, detail) in enumerate(bad))


def _lines(n_rows: int, malformed: list[tuple[int, str, str]]) -> np.ndarray:
    """Line numbers of the well-formed rows: every data line but the malformed ones."""
    all_lines = np.arange(2, n_rows + len(malformed) + 2, dtype=np.int64)
    return np.setdiff1d(all_lines, np.array([m[0] for m in malformed], dtype=np.int64), assume_unique=True)[:n_rows]


def read_source_csv(path: Path, required: list[str]) -> SourceTable:
    """Read `path` with every column as text; fail naming the missing columns if any are absent.

    Line numbers assume one record per physical line (true of CMPD's exports); a row with the
    wrong number of fields becomes a malformed row, not a failure of the whole file.
    """
    names, encoding = _columns(path, required)
    table, malformed = _read(Path(path), names, encoding, None)
    frame = table.to_pandas()
    frame = frame.astype({c: "object" for c in frame.columns}) if len(frame) == 0 else frame
    return SourceTable(frame=frame, lines=_lines(len(frame), malformed), malformed=malformed, encoding=encoding)


@dataclass
class SourceScan:
    """First pass over a large file: the id column, line numbers and malformed rows."""

    names: list[str]
    encoding: str
    ids: pd.Series
    lines: np.ndarray
    malformed: list[tuple[int, str, str]]


def scan_source_csv(path: Path, required: list[str], id_column: str) -> SourceScan:
    """Read only the id column (every row is still parsed, so malformed rows are found)."""
    names, encoding = _columns(path, required)
    table, malformed = _read(Path(path), names, encoding, [id_column])
    ids = table.column(id_column).to_pandas()
    return SourceScan(names, encoding, ids, _lines(len(ids), malformed), malformed)


def iter_source_batches(path: Path, scan: SourceScan) -> Iterator[pd.DataFrame]:
    """The well-formed rows again, every column as text, in record batches of about 16 MB.

    The same parser options skip the same malformed rows as the scan, so batch rows line up with
    `scan.ids` and `scan.lines` by position.
    """
    reader = pacsv.open_csv(path, *_options(scan.names, scan.encoding, lambda row: "skip"))
    for batch in reader:
        if batch.num_rows:
            yield batch.to_pandas()


def raw_rows(frame: pd.DataFrame, mask: np.ndarray) -> list[str]:
    """The original cells of the masked rows, re-joined as CSV text, for ingest_rejects.raw."""
    sub = frame.loc[mask]
    if sub.empty:
        return []
    out = []
    for values in sub.itertuples(index=False, name=None):
        out.append(",".join(_csv_cell(v) for v in values))
    return out


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
