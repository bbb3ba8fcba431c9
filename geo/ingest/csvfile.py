"""Reading a source CSV as text, keeping each row's line number and the rows that do not parse."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
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
    has_nul: bool = False         # some cell holds a NUL character (see nul_rows)


def _header(path: Path, encoding: str) -> list[str]:
    with open(path, newline="", encoding=encoding) as fh:
        try:
            names = next(csv.reader(fh))
        except StopIteration:
            raise IngestError(f"{path}: the file is empty (no header row)") from None
    for position, name in enumerate(names, start=1):
        if "\x00" in name:
            raise IngestError(f"{path}: header column {position} ({name!r}) contains a NUL character; "
                              "the header must be plain column names")
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


# Bytes looked at to tell a text file from a binary one, and the share of control bytes
# (other than tab, CR, LF) above which it is binary: a CSV has essentially none, random or
# compressed data about 12%. A NUL or two inside a field of a real CSV stays far below.
_SNIFF_BYTES = 1 << 16
_BINARY_SHARE = 0.05
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13)) + b"\x7f"


def _undecodable_line(path: Path, encoding: str) -> tuple[int, int, bool] | None:
    """(line, offending byte, whether other lines hold valid non-ASCII text) of the first line
    that does not decode, or None. Only run once a whole-file decode has failed."""
    first = None
    other_text = False
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                if first is None:
                    first = (number, line[exc.start])
                continue
            other_text = other_text or not line.isascii()
    return None if first is None else (*first, other_text)


def _decodes(path: Path, encoding: str) -> bool | None:
    """Whether the file holds a NUL character once decoded; None if it does not decode."""
    has_nul = False
    try:
        with open(path, encoding=encoding, newline="") as fh:
            for block in iter(lambda: fh.read(1 << 22), ""):
                has_nul = has_nul or "\x00" in block
    except UnicodeDecodeError:
        return None
    return has_nul


def _encoding(path: Path) -> tuple[str, bool]:
    """The file's text encoding and whether it holds NUL characters; IngestError if it is not CSV text."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith(b"\x1f\x8b"):
        raise IngestError(f"{path}: the file is gzip-compressed, not a CSV; decompress it first (gunzip)")
    if head.startswith(b"PK\x03\x04"):
        raise IngestError(f"{path}: the file is a zip archive (an Excel .xlsx workbook?), not a CSV; save it as CSV")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" and some Windows tools write UTF-16 with a byte-order mark.
        has_nul = _decodes(path, "utf-16")
        if has_nul is None:
            raise IngestError(f"{path}: starts with a UTF-16 byte-order mark but is not valid UTF-16 text")
        return "utf-16", has_nul
    control = sum(head.count(b) for b in _CONTROL)
    if head and control / len(head) > _BINARY_SHARE:
        raise IngestError(
            f"{path}: not a CSV text file ({control / len(head):.0%} of its first {len(head):,} bytes are control "
            "characters): a binary file, or UTF-16 without a byte-order mark? Save it as CSV UTF-8"
        )
    has_nul = _decodes(path, "utf-8")
    if has_nul is not None:
        return "utf-8", has_nul
    line, byte, other_text = _undecodable_line(path, "utf-8") or (0, 0, False)
    if other_text:
        # Re-reading such a file as Windows-1252 would turn its UTF-8 text into mojibake.
        raise IngestError(
            f"{path}: line {line} is not UTF-8 (byte 0x{byte:02x}) while other lines are: the file mixes "
            "encodings; save it again as CSV UTF-8"
        )
    # Exports saved from Excel on Windows are often cp1252, not UTF-8.
    has_nul = _decodes(path, "cp1252")
    if has_nul is None:
        line, byte, _ = _undecodable_line(path, "cp1252") or (0, 0, False)
        raise IngestError(
            f"{path}: not a CSV text file: line {line} is neither UTF-8 nor Windows-1252 (byte 0x{byte:02x})"
        )
    return "cp1252", has_nul


def _columns(path: Path, required: list[str]) -> tuple[list[str], str, bool]:
    """Header names (upper-case, BOM stripped), the file's encoding and whether it holds NULs;
    fail naming missing columns."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    encoding, has_nul = _encoding(path)
    names = _header(path, "utf-8-sig" if encoding == "utf-8" else encoding)
    missing = [c for c in required if c not in names]
    if missing:
        raise IngestError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(names) or 'none'}. "
            f"Expected at least: {', '.join(required)}"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise IngestError(f"{path}: duplicate column name(s) in header: {', '.join(duplicated)}")
    return names, encoding, has_nul


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

    try:
        table = pacsv.read_csv(path, *_options(names, encoding, on_invalid, include))
    except pa.ArrowInvalid as exc:
        raise IngestError(f"{path}: could not be read as CSV ({exc})") from exc
    # With multithreaded parsing Arrow may not know a bad row's line number: look those up.
    unknown = [i for i, (number, _, _) in enumerate(bad) if number is None]
    text_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    looked_up = _find_lines(path, [bad[i][1] for i in unknown], text_encoding) if unknown else []
    numbers = [number for number, _, _ in bad]
    for i, line in zip(unknown, looked_up):
        numbers[i] = line
    # NUL cannot be stored in PostgreSQL text: U+FFFD marks where it was.
    return table, sorted((numbers[i], text.replace("\x00", "\ufffd"), detail) for i, (_, text, detail) in enumerate(bad))


def _lines(n_rows: int, malformed: list[tuple[int, str, str]]) -> np.ndarray:
    """Line numbers of the well-formed rows: every data line but the malformed ones."""
    all_lines = np.arange(2, n_rows + len(malformed) + 2, dtype=np.int64)
    return np.setdiff1d(all_lines, np.array([m[0] for m in malformed], dtype=np.int64), assume_unique=True)[:n_rows]


def read_source_csv(path: Path, required: list[str]) -> SourceTable:
    """Read `path` with every column as text; fail naming the missing columns if any are absent.

    Line numbers assume one record per physical line (true of CMPD's exports); a row with the
    wrong number of fields becomes a malformed row, not a failure of the whole file.
    """
    names, encoding, has_nul = _columns(path, required)
    table, malformed = _read(Path(path), names, encoding, None)
    frame = table.to_pandas()
    frame = frame.astype({c: "object" for c in frame.columns}) if len(frame) == 0 else frame
    return SourceTable(frame=frame, lines=_lines(len(frame), malformed), malformed=malformed, encoding=encoding,
                       has_nul=has_nul)


@dataclass
class SourceScan:
    """First pass over a large file: the id column, line numbers and malformed rows."""

    names: list[str]
    encoding: str
    ids: pd.Series
    lines: np.ndarray
    malformed: list[tuple[int, str, str]]
    has_nul: bool = False
    columns: dict[str, pd.Series] = field(default_factory=dict)  # the `also` columns the file has


def scan_source_csv(path: Path, required: list[str], id_column: str, also: list[str] = ()) -> SourceScan:
    """Read only the id column and the `also` columns present (every row is still parsed, so
    malformed rows are found); the time columns are judged over the whole file this way."""
    names, encoding, has_nul = _columns(path, required)
    extra = [c for c in dict.fromkeys(also) if c in names and c != id_column]
    table, malformed = _read(Path(path), names, encoding, [id_column, *extra])
    ids = table.column(id_column).to_pandas()
    columns = {c: table.column(c).to_pandas() for c in extra}
    return SourceScan(names, encoding, ids, _lines(len(ids), malformed), malformed, has_nul, columns)


def iter_source_batches(path: Path, scan: SourceScan) -> Iterator[pd.DataFrame]:
    """The well-formed rows again, every column as text, in record batches of about 16 MB.

    The same parser options skip the same malformed rows as the scan, so batch rows line up with
    `scan.ids` and `scan.lines` by position.
    """
    try:
        reader = pacsv.open_csv(path, *_options(scan.names, scan.encoding, lambda row: "skip"))
        for batch in reader:
            if batch.num_rows:
                yield batch.to_pandas()
    except pa.ArrowInvalid as exc:
        raise IngestError(f"{path}: could not be read as CSV ({exc})") from exc


def nul_rows(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Rows with a NUL character in some cell (PostgreSQL text cannot hold one) and, per such row,
    a detail naming the columns. Checked only for files whose scan found a NUL."""
    columns = [frame[c].fillna("").astype(str).str.contains("\x00", regex=False).to_numpy() for c in frame.columns]
    if not columns:
        return np.zeros(len(frame), dtype=bool), []
    cells = np.column_stack(columns)
    mask = cells.any(axis=1)
    names = np.array(frame.columns, dtype=object)
    details = [f"NUL character in {', '.join(names[row])}" for row in cells[mask]]
    return mask, details


def shown_cell(value: object, limit: int = 40) -> str:
    """A source cell quoted for a reject detail, cut short (a cell may be a megabyte of junk)."""
    text = "" if value is None else str(value).strip().replace("\x00", "\ufffd")
    return repr(text if len(text) <= limit else text[:limit] + "...")


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
    # NUL cannot be stored in PostgreSQL text: U+FFFD marks where it was.
    text = "" if value is None else str(value).replace("\x00", "\ufffd")
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
