"""Helpers shared by test modules: reading and writing source CSVs the way the real files are laid out."""

from __future__ import annotations

import csv
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    """A CSV's rows as dicts (a UTF-8 byte-order mark, as CMPD's files carry, is dropped)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write dict rows (all with the first row's columns) as a CSV; returns the path."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path
