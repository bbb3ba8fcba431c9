"""The call and offense taxonomy: CAD call types and NIBRS codes mapped to categories (taxonomy.csv)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

TAXONOMY_CSV = Path(__file__).with_name("taxonomy.csv")
UNKNOWN = "unknown"
VIOLENT = "violent_crime"


@dataclass(frozen=True)
class Taxonomy:
    """Lookup tables read from taxonomy.csv."""

    categories: dict[str, str]                  # category -> description
    nibrs: dict[str, tuple[str, bool]]          # code -> (category, counts as a crime)
    prefixes: tuple[tuple[str, str, bool], ...] # code prefix -> (category, counts as a crime)
    call_types: dict[str, str]                  # normalised CAD call type -> category

    @property
    def violent_codes(self) -> frozenset[str]:
        """NIBRS codes of FBI violent crimes (the classifier's ground truth)."""
        return frozenset(code for code, (category, _) in self.nibrs.items() if category == VIOLENT)

    def nibrs_category(self, code: str) -> tuple[str, bool]:
        """Category and crime flag of one NIBRS code; unknown codes give ('unknown', False)."""
        code = normalise_code(code)
        if code in self.nibrs:
            return self.nibrs[code]
        for prefix, category, is_crime in self.prefixes:
            if code.startswith(prefix) and len(code) == 3 and code.isdigit():
                return category, is_crime
        return UNKNOWN, False

    def categorise_codes(self, codes: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised nibrs_category: (categories, is_crime) arrays, computed once per distinct code."""
        idx, uniques = pd.factorize(codes.fillna("").astype(str))
        looked = [self.nibrs_category(u) for u in uniques] + [(UNKNOWN, False)]
        cats = np.array([c for c, _ in looked], dtype=object)
        crime = np.array([k for _, k in looked], dtype=bool)
        return cats[idx], crime[idx]

    def categorise_call_types(self, call_types: pd.Series) -> np.ndarray:
        """Category of each CAD call type ('unknown' for types the table lacks)."""
        idx, uniques = pd.factorize(call_types.fillna("").astype(str))
        cats = np.array([self.call_types.get(normalise_call_type(u), UNKNOWN) for u in uniques] + [UNKNOWN], dtype=object)
        return cats[idx]


def normalise_code(code: str) -> str:
    """NIBRS codes compare upper-case without spaces ('13a ' -> '13A')."""
    return re.sub(r"\s+", "", str(code)).upper()


def normalise_call_type(call_type: str) -> str:
    """CAD call types compare upper-case with single spaces."""
    return re.sub(r"\s+", " ", str(call_type)).strip().upper()


@lru_cache(maxsize=4)
def load_taxonomy(path: Path = TAXONOMY_CSV) -> Taxonomy:
    """Read and check taxonomy.csv: every mapped category must be a declared one."""
    categories, nibrs, prefixes, call_types = {}, {}, [], {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for line, row in enumerate(rows, start=2):
        kind, code, category = row["kind"], row["code"], row["category"]
        if kind == "category":
            categories[code] = row["note"]
            continue
        is_crime = row["is_crime"].strip().lower() == "true"
        if kind == "nibrs":
            nibrs[normalise_code(code)] = (category, is_crime)
        elif kind == "nibrs_prefix":
            prefixes.append((code, category, is_crime))
        elif kind == "call_type":
            call_types[normalise_call_type(code)] = category
        else:
            raise ValueError(f"{path}:{line}: kind {kind!r} is not category, nibrs, nibrs_prefix or call_type")
    for line, row in enumerate(rows, start=2):
        if row["kind"] != "category" and row["category"] not in categories:
            raise ValueError(f"{path}:{line}: category {row['category']!r} is not declared; declared: {sorted(categories)}")
    return Taxonomy(categories, nibrs, tuple(prefixes), call_types)


def apply_taxonomy(engine, taxonomy: Taxonomy | None = None) -> dict[str, int]:
    """Recompute the stored categories of calls and incidents (after taxonomy.csv changed).

    Only distinct values are categorised in Python; the update itself is one set-based
    statement per table that touches only rows whose category (or crime flag) changes. Unfounded
    reports stay non-crimes.
    """
    import sqlalchemy as sa

    from geo.ingest.batch import copy_frame

    taxonomy = taxonomy or load_taxonomy()
    changed = {}
    with engine.begin() as conn:
        types = pd.Series([r[0] for r in conn.execute(sa.text("SELECT DISTINCT call_type FROM calls"))], dtype=object)
        codes = pd.Series([r[0] for r in conn.execute(sa.text("SELECT DISTINCT highest_nibrs_code FROM incidents"))], dtype=object)
        conn.exec_driver_sql("CREATE TEMP TABLE tax_call (call_type text, category text) ON COMMIT DROP")
        conn.exec_driver_sql("CREATE TEMP TABLE tax_code (code text, category text, is_crime boolean) ON COMMIT DROP")
        if len(types):
            copy_frame(conn, "tax_call", pd.DataFrame({"call_type": types, "category": taxonomy.categorise_call_types(types)}))
        if len(codes):
            cats, crime = taxonomy.categorise_codes(codes)
            copy_frame(conn, "tax_code", pd.DataFrame({"code": codes, "category": cats, "is_crime": crime}))
        changed["calls"] = conn.execute(sa.text(
            "UPDATE calls c SET category = t.category FROM tax_call t"
            " WHERE c.call_type = t.call_type AND c.category IS DISTINCT FROM t.category")).rowcount
        # A report closed as Unfounded is no crime whatever its code (as the loader stores it).
        is_crime = "(t.is_crime AND upper(coalesce(i.clearance_status, '')) <> 'UNFOUNDED')"
        changed["incidents"] = conn.execute(sa.text(
            f"UPDATE incidents i SET category = t.category, is_crime = {is_crime} FROM tax_code t"
            " WHERE i.highest_nibrs_code IS NOT DISTINCT FROM t.code"
            f" AND (i.category IS DISTINCT FROM t.category OR i.is_crime IS DISTINCT FROM {is_crime})")).rowcount
    return changed


# The three "violent" numbers printed side by side (CLI summary, map panel, model report), in one
# explanation so every place says the same thing about which to trust for what.
VIOLENT_NUMBERS = (
    ("Violent incidents (recorded)",
     "incident reports whose NIBRS code is an FBI violent crime (murder, rape, robbery, aggravated assault) and "
     "that were not closed as Unfounded. What happened, as recorded: trust it for counts and trends, but it "
     "comes days after the call, and only for calls that led to a report."),
    ("Expected violent (calls)",
     "the sum of the classifier's probabilities over the calls: how many of them it expects to turn out violent. "
     "Calibrated on held-out months, it is the estimate to count with when reports are not in yet."),
    ("Labelled violent (calls)",
     "calls whose probability reaches the model's threshold. The threshold is set to catch violent calls, so it "
     "usually flags more calls than turn out violent: use it to pick calls to look at, not to count."),
)


def violent_numbers_lines() -> list[str]:
    """The explanation of the three violent numbers as plain text lines (CLI output)."""
    return ["Three violent numbers, and which to trust:"] + [f"  {name}: {text}" for name, text in VIOLENT_NUMBERS]
