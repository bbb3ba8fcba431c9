"""Demo data: SYNTHETIC calls for service and incidents in CMPD's real column layouts.

CMPD's point-level calls are not available offline, so the demo makes its own. What is real is
what they are calibrated on:

- violent incidents (the taxonomy's FBI violent codes) match CMPD's published monthly 'Violent
  Crime' totals (scaled to the requested volume) and offense mix, and are spread over the 462
  Neighborhood Profile Areas in proportion to Mecklenburg County's per-NPA violent crime counts;
- every other incident carries one of the codes CMPD's Incidents layer really uses, at the
  layer's published frequencies (nibrs_codes.csv), including the non-criminal 800-series reports
  (about 15% of rows) and reports closed as Unfounded (about 3%), with CMPD's clearance statuses
  at the shares of a sample of the layer (clearance.csv);
- property and disorder calls follow the per-NPA property-crime and disorder-call counts, the
  rest population.

Everything else (addresses, times, call types, report numbers) is invented. No row describes a
real person, place or event; every row says so in its DATA_ORIGIN column ('synthetic').

The default period is DEMO_START for DEMO_DAYS: a recent year inside the span of the real
incident samples (2017-2025), so one period shows real and synthetic records side by side. The
published monthly violent counts end in March 2022; a month they do not cover takes the count of
the same month in the latest complete published year (2021 for the demo's 2024).

Tables that drive the generator live in geo/data/: call_natures.csv (CAD call types, their share
of calls, which NPA measure spreads them, time-of-day profile, priority mix), nibrs_codes.csv
(every code generated, CMPD's description, how many reports the layer holds, and which call
types a report of that code is taken from), violent_calls.csv (which call types violent
offenses arrive as), clearance.csv (clearance status and detail by kind of report) and
hour_profiles.csv.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.random import PCG64, Generator
from pyproj import Transformer
from tqdm import tqdm

from geo.spatial import AreaIndex
from geo.taxonomy import Taxonomy, load_taxonomy

DATA = Path(__file__).with_name("data")
# Bump when the generator's output changes, so `make demo` regenerates instead of reusing old files.
GENERATOR_VERSION = 4
BASE_CALLS_PER_YEAR = 500_000  # CMPD logged more than 514,000 interactions in 2020
LOCAL_TZ = "America/New_York"
# The demo year: recent, and inside the real incident samples' span (2017-01 .. 2025-11).
DEMO_START = date(2024, 1, 1)
DEMO_DAYS = 366
# nibrs_codes.csv counts reports in CMPD's Incidents layer from 2017-01 to 2026-06 (9.5 years),
# after the layer's 800-series and unfounded reports are set aside (the 800-series counts are
# that share of the same window). At BASE_CALLS_PER_YEAR the demo makes one year's worth of them.
LAYER_YEARS = 9.5
# Unfounded reports in the whole layer (854,996 rows): 21,392 of the 726,148 reports outside the
# 800-series (704,756 founded ones remain), and 7,962 of the 128,848 800-series rows.
UNFOUNDED_PER_FOUNDED_CRIME = 21_392 / 704_756
UNFOUNDED_SHARE_NON_CRIMINAL = 7_962 / 128_848
# Reports with no call of their own are taken at a desk or online: business hours.
NO_CALL_PROFILE = "day"
DATA_ORIGIN = "synthetic"

INCIDENT_COLUMNS = [
    "INCIDENT_REPORT_ID", "LOCATION", "CITY", "STATE", "ZIP", "X_COORD_PUBLIC", "Y_COORD_PUBLIC",
    "LATITUDE_PUBLIC", "LONGITUDE_PUBLIC", "DIVISION_ID", "CMPD_PATROL_DIVISION", "NPA", "DATE_REPORTED",
    "DATE_INCIDENT_BEGAN", "DATE_INCIDENT_END", "ADDRESS_DESCRIPTION", "LOCATION_TYPE_DESCRIPTION",
    "PLACE_TYPE_DESCRIPTION", "PLACE_DETAIL_DESCRIPTION", "CLEARANCE_STATUS", "CLEARANCE_DETAIL_STATUS",
    "CLEARANCE_DATE", "HIGHEST_NIBRS_CODE", "HIGHEST_NIBRS_DESCRIPTION", "OBJECTID", "YEAR",
]
CALL_COLUMNS = [
    "CALL_ID", "DATE_RECEIVED", "CALL_TYPE", "PRIORITY", "ADDRESS", "CITY", "STATE", "ZIP", "LATITUDE",
    "LONGITUDE", "X_COORD", "Y_COORD", "CMPD_PATROL_DIVISION", "INCIDENT_REPORT_ID",
    # CAD times and outcomes (optional in the layout; the generator simulates the units, see cad_times).
    "DATE_DISPATCHED", "DATE_ENROUTE", "DATE_ONSCENE", "DATE_CLEARED", "UNITS_ASSIGNED", "PRIMARY_UNIT", "DISPOSITION",
]
# The files carry one column more than CMPD's layouts: where each row came from.
FILE_COLUMNS = {"calls": CALL_COLUMNS + ["DATA_ORIGIN"], "incidents": INCIDENT_COLUMNS + ["DATA_ORIGIN"]}
OFFENSE_DETAILS = [
    "Homicide", "Rape", "Attempted Rape", "Armed Robbery", "Strong Arm Robbery", "Aggravated Assault-Gun",
    "Aggravated Assault-Knife", "Aggravated Assault-Other Weapon", "Aggravated Assault-Fists,Feet, etc.",
]
STREETS = [
    "N TRYON ST", "S TRYON ST", "CENTRAL AV", "THE PLAZA", "BEATTIES FORD RD", "FREEDOM DR", "WILKINSON BLVD",
    "SUGAR CREEK RD", "N GRAHAM ST", "STATESVILLE AV", "ALBEMARLE RD", "MONROE RD", "INDEPENDENCE BLVD",
    "PROVIDENCE RD", "PARK RD", "SOUTH BLVD", "NATIONS FORD RD", "ARROWOOD RD", "TYVOLA RD", "WOODLAWN RD",
    "SHARON AMITY RD", "EASTWAY DR", "MILTON RD", "HARRIS BLVD", "UNIVERSITY CITY BLVD", "MALLARD CREEK RD",
    "BROOKSHIRE BLVD", "MOUNT HOLLY RD", "STEELE CREEK RD", "SOUTH TRYON ST", "ASHLEY RD", "WEST BLVD",
    "REMOUNT RD", "LASALLE ST", "ROZZELLES FERRY RD", "OLD PINEVILLE RD", "ARCHDALE DR", "BALLANTYNE COMMONS PKWY",
]
ZIPS = ["28202", "28203", "28204", "28205", "28206", "28207", "28208", "28209", "28210", "28211", "28212",
        "28213", "28214", "28215", "28216", "28217", "28226", "28227", "28262", "28269", "28273", "28277", "28278"]
PLACES = {  # location type -> (place type, place detail) choices
    "Residence/Home": [("Residential", "Single Family Home"), ("Residential", "Apartment/Duplex"), ("Residential", "Yard")],
    "Highway/Road/Alley/Street/Sidewalk": [("Open Area", "Street"), ("Open Area", "Sidewalk")],
    "Parking Lot/Garage": [("Commercial", "Parking Lot"), ("Commercial", "Parking Deck")],
    "Convenience Store": [("Retail", "Convenience Store")],
    "Department/Discount Store": [("Retail", "Department Store")],
    "Restaurant": [("Commercial", "Restaurant")],
    "Bar/Nightclub": [("Commercial", "Bar/Nightclub")],
    "Hotel/Motel/Etc.": [("Commercial", "Hotel/Motel")],
}
CITY_VARIANTS = ["CHAROLTTE", "CHARLOTE", "CHARLOTTE, NC", " charlotte ", "CHARLTTE"]
OUTSIDE_POINTS = [(35.7796, -78.6382), (36.0726, -79.7920), (35.2271, -81.3000), (34.0007, -81.0348)]
BAD_DATES = ["N/A", "2021-02-30 10:00:00", "13/45/2021", "UNKNOWN", "2021-13-01 00:00:00"]
DEFECTS = ["city_variant", "latlon_missing_xy_present", "coords_missing", "outside_county", "bad_date",
           "duplicate_id", "zip_missing", "zip_text", "malformed_row", "division_disagrees"]
# Share of rows given each defect (each dirty row gets exactly one).
DEFECT_RATES = {
    "incidents": {"city_variant": 0.02, "latlon_missing_xy_present": 0.01, "coords_missing": 0.03,
                  "outside_county": 0.001, "bad_date": 0.001, "duplicate_id": 0.001, "zip_missing": 0.03,
                  "zip_text": 0.001, "malformed_row": 0.0005, "division_disagrees": 0.01},
    "calls": {"city_variant": 0.02, "latlon_missing_xy_present": 0.01, "coords_missing": 0.005,
              "outside_county": 0.001, "bad_date": 0.001, "duplicate_id": 0.001, "zip_missing": 0.03,
              "zip_text": 0.001, "malformed_row": 0.0005, "division_disagrees": 0.01},
}
# What the loader does with each defect.
REJECT_REASON = {"coords_missing": "missing_coordinates", "outside_county": "outside_county",
                 "bad_date": "bad_date", "duplicate_id": "duplicate_id", "malformed_row": "malformed_row"}


@dataclass
class SynthResult:
    """Where the files went and how many data rows each has."""

    calls_csv: Path
    incidents_csv: Path
    call_counts_csv: Path
    manifest_json: Path
    n_calls: int
    n_incidents: int


@dataclass
class _World:
    """The real reference data the generator is calibrated on."""

    npa_ids: np.ndarray
    npa_geoms: np.ndarray
    drivers: dict[str, np.ndarray]  # measure -> weight per NPA
    divisions: AreaIndex
    division_names: dict[str, str]
    offenses: pd.DataFrame          # city rows: year, month, category, count


def _latest(path: Path, ids: np.ndarray) -> np.ndarray:
    table = pd.read_csv(path, dtype=str, encoding="utf-8-sig").set_index("id")
    years = sorted((c for c in table.columns if c.startswith("y_")), key=lambda c: int(c[2:]))
    values = table[years].apply(pd.to_numeric, errors="coerce").ffill(axis=1)[years[-1]]
    out = values.reindex([str(i) for i in ids]).to_numpy(dtype=float)
    # A handful of NPAs have no value: give them the smallest observed weight, not zero.
    return np.where(np.isfinite(out) & (out > 0), out, np.nanmin(out[out > 0]) if np.any(out > 0) else 1.0)


def _world(data_dir: Path) -> _World:
    npa = gpd.read_file(data_dir / "npa" / "npa.geojson").to_crs(4326)
    npa["npa_id"] = npa["id"].astype(int)
    npa = npa.sort_values("npa_id").reset_index(drop=True)
    ids = npa["npa_id"].to_numpy()
    metrics = data_dir / "npa_metrics"
    drivers = {
        "violent": _latest(metrics / "violent_crimes.csv", ids),
        "property": _latest(metrics / "property_crimes.csv", ids),
        "disorder": _latest(metrics / "disorder_calls.csv", ids),
        "population": _latest(metrics / "population.csv", ids),
    }
    div = gpd.read_file(data_dir / "divisions" / "CMPD_Police_Divisions.shp").to_crs(4326)
    div["geometry"] = div.geometry.make_valid()
    div = div.sort_values("DIVISION").reset_index(drop=True)
    names = dict(zip(div["DIVISION"], div["DNAME"].str.replace(r"\s+Division$", "", regex=True)))
    offenses = pd.read_csv(data_dir / "offenses" / "Violent_Crime_Offenses.csv", encoding="utf-8-sig",
                           dtype={"CALENDAR_MONTH": int, "CALENDAR_YEAR": int})
    city = offenses[offenses["ROW_TYPE"] == "CMPD Jurisdiction"]
    city = city.groupby(["CALENDAR_YEAR", "CALENDAR_MONTH", "OFFENSE_DESCRIPTION"], as_index=False)["OFFENSE_COUNT"].sum()
    city.columns = ["year", "month", "category", "count"]
    # CMPD's calls come from its own jurisdiction: places are drawn from the part of each NPA inside a
    # CMPD division, and NPAs (almost) wholly policed by the towns' own departments get no calls.
    jurisdiction = shapely.union_all(div.geometry.to_numpy())
    npa_geoms = npa.geometry.to_numpy()
    covered = shapely.intersection(npa_geoms, jurisdiction)
    share = shapely.area(covered) / shapely.area(npa_geoms)
    policed = share > 0.05
    drivers = {k: np.where(policed, v, 0.0) for k, v in drivers.items()}
    geoms = np.where(policed, covered, npa_geoms)
    return _World(ids, geoms, drivers, AreaIndex(div.geometry, div["DIVISION"]), names, city)


@dataclass
class _Tables:
    """The tables in geo/data, checked against the taxonomy."""

    natures: pd.DataFrame      # CAD call types: share, driver, hour profile, priority weights
    violent_calls: pd.DataFrame
    hours: pd.DataFrame
    codes: pd.DataFrame        # every generated NIBRS code: description, reports, call types
    clearance: pd.DataFrame


def _tables(taxonomy: Taxonomy) -> _Tables:
    """Read the generator's tables; every code and call type they use must be one the taxonomy knows."""
    natures = pd.read_csv(DATA / "call_natures.csv", keep_default_na=False)
    violent = pd.read_csv(DATA / "violent_calls.csv", dtype={"nibrs": str})
    hours = pd.read_csv(DATA / "hour_profiles.csv").set_index("profile")
    codes = pd.read_csv(DATA / "nibrs_codes.csv", dtype=str, keep_default_na=False)
    codes["reports"] = codes["reports"].astype(float)
    codes["p_no_call"] = pd.to_numeric(codes["p_no_call"]).fillna(0.0)
    clearance = pd.read_csv(DATA / "clearance.csv", dtype=str, keep_default_na=False)
    clearance["sample_rows"] = clearance["sample_rows"].astype(float)
    known_types = set(natures["call_type"])
    for row in codes.itertuples():
        category, _ = taxonomy.nibrs_category(row.code)
        if category == "unknown":
            raise ValueError(f"nibrs_codes.csv: code {row.code!r} is not in geo/taxonomy.csv")
        if row.code in taxonomy.violent_codes:
            continue  # violent volume and call types come from the published counts and violent_calls.csv
        types = {t for t, _ in _weighted_spec(row.call_types)}
        if not types or types - known_types:
            raise ValueError(f"nibrs_codes.csv: code {row.code!r} needs call types from call_natures.csv; "
                             f"unknown: {sorted(types - known_types) or 'none given'}")
    not_violent = sorted(set(violent["nibrs"]) - taxonomy.violent_codes)
    if not_violent or set(violent["call_type"]) - known_types:
        raise ValueError(f"violent_calls.csv: codes {not_violent} are not violent in geo/taxonomy.csv, or call types "
                         f"{sorted(set(violent['call_type']) - known_types)} are not in call_natures.csv")
    missing = sorted(set(violent["nibrs"]) - set(codes["code"]))
    if missing:
        raise ValueError(f"nibrs_codes.csv: violent codes {missing} have no description")
    return _Tables(natures, violent, hours, codes, clearance)


def _weighted_spec(spec: str) -> list[tuple[str, float]]:
    """'A:0.6;B:0.4' -> [('A', 0.6), ('B', 0.4)] ('' -> [])."""
    return [(name, float(weight)) for name, weight in (p.rsplit(":", 1) for p in spec.split(";"))] if spec else []


def _addresses(rng: Generator, geoms: np.ndarray, per_npa: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_npa` uniform random points inside each polygon (vectorised rejection sampling)."""
    lon = np.empty((len(geoms), per_npa))
    lat = np.empty((len(geoms), per_npa))
    shapely.prepare(geoms)
    for i, g in enumerate(geoms):
        xmin, ymin, xmax, ymax = g.bounds
        got = 0
        while got < per_npa:
            x = rng.uniform(xmin, xmax, per_npa * 4)
            y = rng.uniform(ymin, ymax, per_npa * 4)
            inside = shapely.contains_xy(g, x, y)
            take = min(per_npa - got, int(inside.sum()))
            lon[i, got:got + take] = x[inside][:take]
            lat[i, got:got + take] = y[inside][:take]
            got += take
    return lon, lat


def _pick_weighted(rng: Generator, weights: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _times(rng: Generator, days: pd.DatetimeIndex, day_weights: np.ndarray, profile: pd.Series, n: int) -> pd.DatetimeIndex:
    """n local times: day by weight (weekends scaled by the profile), hour by the profile."""
    weekend = days.day_of_week >= 4  # Friday-Sunday nights carry the weekend effect
    w = day_weights * np.where(weekend, profile["weekend_factor"], 1.0)
    day = _pick_weighted(rng, w, n)
    hour_w = profile[[f"h{h:02d}" for h in range(24)]].to_numpy(dtype=float)
    hour = _pick_weighted(rng, hour_w, n)
    seconds = hour * 3600 + rng.integers(0, 3600, n)
    return pd.DatetimeIndex(days.values[day] + seconds.astype("timedelta64[s]"))


def _calibration_years(by_month: pd.Series, days: pd.DatetimeIndex) -> dict[int, int]:
    """Which published year's months each generated year follows: itself where published, else
    the latest year published in full (the counts end in March 2022, so 2024 follows 2021)."""
    months = by_month.reset_index().groupby("year")["month"].nunique()
    complete = months[months == 12].index
    if not len(complete):
        raise ValueError("Violent_Crime_Offenses.csv has no year with all 12 months of 'Violent Crime' counts")
    latest = int(complete.max())
    return {y: (y if all((y, d.month) in by_month.index for d in days[days.year == y]) else latest)
            for y in sorted(set(days.year))}


def _violent_plan(world: _World, days: pd.DatetimeIndex, rate: float) -> tuple[np.ndarray, pd.DataFrame, dict[int, int]]:
    """Expected violent incidents per day and the offense mix, from CMPD's published counts, and
    the published year each generated year was calibrated on."""
    off = world.offenses
    by_month = off[off["category"] == "Violent Crime"].set_index(["year", "month"])["count"]
    years = _calibration_years(by_month, days)
    per_day = np.array([by_month[(years[d.year], d.month)] / d.days_in_month for d in days])
    used = sorted(set(years.values()))
    mix = off[off["year"].isin(used) & off["category"].isin(OFFENSE_DETAILS)].groupby("category")["count"].sum()
    return per_day * rate, mix.reset_index(), years


def _clearance(rng: Generator, tables: _Tables, taxonomy: Taxonomy, codes: np.ndarray,
               unfounded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CLEARANCE_STATUS and CLEARANCE_DETAIL_STATUS per report, at the layer sample's shares.

    clearance.csv rows apply to one code (e.g. '800'), or else to violent, crime or non_criminal
    reports; reports closed as Unfounded take the 'unfounded' rows.
    """
    table = tables.clearance
    specific = set(table["applies_to"]) - {"violent", "crime", "non_criminal", "unfounded"}
    key = np.array(["unfounded" if unf else c if c in specific else "violent" if c in taxonomy.violent_codes
                    else "crime" if taxonomy.nibrs_category(c)[1] else "non_criminal"
                    for c, unf in zip(codes, unfounded)], dtype=object)
    status = np.empty(len(codes), dtype=object)
    detail = np.empty(len(codes), dtype=object)
    for group, rows in table.groupby("applies_to", sort=True):
        sel = np.flatnonzero(key == group)
        if len(sel):
            pick = _pick_weighted(rng, rows["sample_rows"].to_numpy(), len(sel))
            status[sel] = rows["status"].to_numpy()[pick]
            detail[sel] = rows["detail"].to_numpy()[pick]
    return status, detail


def generate(
    data_dir: Path,
    out_dir: Path,
    *,
    start: date = DEMO_START,
    days: int = DEMO_DAYS,
    n_calls: int = 500_000,
    seed: int = 2264,
    dirty: bool = True,
    progress: bool = False,
) -> SynthResult:
    """Write synthetic calls.csv, incidents.csv, call_counts.csv and manifest.json to out_dir."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = Generator(PCG64(seed))
    bar = tqdm(total=8, desc="demo data", unit="step", disable=not progress)
    world = _world(data_dir)
    taxonomy = load_taxonomy()
    tables = _tables(taxonomy)
    natures, hours = tables.natures, tables.hours
    period = pd.date_range(pd.Timestamp(start), periods=days, freq="D")
    # How many of CMPD's calls per year this run stands for (1.0 at 500,000 calls a year).
    rate = n_calls / (BASE_CALLS_PER_YEAR * days / 365.0)
    lon_addr, lat_addr = _addresses(rng, world.npa_geoms, per_npa=60)
    # Places repeat: Zipf-like weights over each NPA's addresses; violence concentrates harder.
    rank = np.arange(1, 61)
    weights_other = 1.0 / rank ** 0.8
    weights_violent = 1.0 / rank ** 1.3
    nature_of = {t: i for i, t in enumerate(natures["call_type"])}
    bar.update()

    # --- violent incidents and their calls -------------------------------------------------
    per_day, mix, calibration = _violent_plan(world, period, rate)
    n_violent = int(round(per_day.sum())) if n_calls else 0
    n_violent = min(n_violent, n_calls)
    offense = mix["category"].to_numpy()[_pick_weighted(rng, mix["count"].to_numpy(), n_violent)]
    v_npa = _pick_weighted(rng, world.drivers["violent"], n_violent)
    v_addr = _pick_weighted(rng, weights_violent, n_violent)
    v_time = _times(rng, period, per_day, hours.loc["night"], n_violent)
    v_type = np.empty(n_violent, dtype=object)
    v_code = np.empty(n_violent, dtype=object)
    for name, group in tables.violent_calls.groupby("offense", sort=True):
        sel = np.flatnonzero(offense == name)
        if len(sel):
            v_type[sel] = group["call_type"].to_numpy()[_pick_weighted(rng, group["weight"].to_numpy(), len(sel))]
            v_code[sel] = group["nibrs"].iloc[0]
    bar.update()

    # --- every other report: CMPD's codes at the layer's frequencies ----------------------------
    others = tables.codes[~tables.codes["code"].isin(taxonomy.violent_codes)].reset_index(drop=True)
    o_crime = np.array([taxonomy.nibrs_category(c)[1] for c in others["code"]])
    scale = n_calls / (BASE_CALLS_PER_YEAR * LAYER_YEARS)
    n_founded = int(round(others["reports"].sum() * scale))
    code_idx = _pick_weighted(rng, others["reports"].to_numpy(), n_founded)
    founded_crime = int(o_crime[code_idx].sum())
    # Unfounded crime reports come on top of the founded ones, in the crime codes' mix.
    n_unfounded = int(round((n_violent + founded_crime) * UNFOUNDED_PER_FOUNDED_CRIME))
    crime_idx = np.flatnonzero(o_crime)
    code_idx = np.r_[code_idx, crime_idx[_pick_weighted(rng, others["reports"].to_numpy()[crime_idx], n_unfounded)]]
    r_code = others["code"].to_numpy()[code_idx]
    r_unfounded = np.r_[np.zeros(n_founded, dtype=bool), np.ones(n_unfounded, dtype=bool)]
    non_criminal = ~o_crime[code_idx]
    r_unfounded |= non_criminal & (rng.random(len(r_code)) < UNFOUNDED_SHARE_NON_CRIMINAL)
    # A report is taken from a call, or (p_no_call) at a desk or online.
    r_linked = rng.random(len(r_code)) >= others["p_no_call"].to_numpy()[code_idx]
    room = n_calls - n_violent
    if r_linked.sum() > room:  # only in tiny runs: reports beyond the calls have none
        r_linked[np.flatnonzero(r_linked)[room:]] = False
    r_type = np.empty(len(r_code), dtype=object)
    for k, spec in enumerate(others["call_types"]):
        sel = np.flatnonzero(code_idx == k)
        if len(sel):
            pairs = _weighted_spec(spec)
            names = np.array([t for t, _ in pairs], dtype=object)
            r_type[sel] = names[_pick_weighted(rng, np.array([w for _, w in pairs]), len(sel))]
    r_nature = np.array([nature_of[t] for t in r_type], dtype=np.int64)
    bar.update()

    # --- calls without a report fill each call type up to its share ----------------------------
    linked_types = np.r_[np.array([nature_of[t] for t in v_type], dtype=np.int64), r_nature[r_linked]]
    taken = np.bincount(linked_types, minlength=len(natures))
    target = natures["share"].to_numpy() / natures["share"].sum() * n_calls
    n_plain = n_calls - len(linked_types)
    p_idx = _pick_weighted(rng, np.maximum(target - taken, 0.0) + 1e-9, n_plain)
    # Places and times: a call's type sets both; a report without a call keeps its code's first call type's place.
    c_nature = np.r_[r_nature[r_linked], p_idx]
    c_code = np.r_[r_code[r_linked], np.full(n_plain, "", dtype=object)].astype(object)
    c_unfounded = np.r_[r_unfounded[r_linked], np.zeros(n_plain, dtype=bool)]
    c_npa = np.empty(len(c_nature), dtype=np.int64)
    c_time = np.empty(len(c_nature), dtype="datetime64[ns]")
    season = per_day / per_day.mean() if per_day.mean() > 0 else np.ones(len(period))
    mild = 0.8 + 0.2 * season  # non-violent calls follow the season only mildly
    for k, row in natures.iterrows():
        sel = np.flatnonzero(c_nature == k)
        if len(sel):
            c_npa[sel] = _pick_weighted(rng, world.drivers[row["driver"]], len(sel))
            c_time[sel] = _times(rng, period, mild, hours.loc[row["hour_profile"]], len(sel)).values
    c_addr = _pick_weighted(rng, weights_other, len(c_nature))
    o_priority_w = np.array([[float(x) for x in p.split(";")] for p in natures["priority_weights"]])
    bar.update()

    # --- assemble calls ------------------------------------------------------------------------
    call_type = np.r_[v_type, natures["call_type"].to_numpy()[c_nature]].astype(object)
    npa_pos = np.r_[v_npa, c_npa]
    addr = np.r_[v_addr, c_addr]
    when = pd.DatetimeIndex(np.r_[v_time.values, c_time])
    code = np.r_[v_code, c_code].astype(object)
    unfounded = np.r_[np.zeros(n_violent, dtype=bool), c_unfounded]
    pri_rows = o_priority_w[[nature_of[t] for t in call_type]]
    priority = (pri_rows.cumsum(axis=1) < rng.random(len(call_type))[:, None]).sum(axis=1) + 1
    priority = np.where(np.arange(len(call_type)) < n_violent, np.minimum(priority, 2), priority)
    order = np.argsort(when.values, kind="stable")
    call_type, npa_pos, addr, when, code, unfounded, priority = (
        call_type[order], npa_pos[order], addr[order], when[order], code[order], unfounded[order], priority[order])
    lon = lon_addr[npa_pos, addr].round(6)
    lat = lat_addr[npa_pos, addr].round(6)
    npa_id = world.npa_ids[npa_pos]
    division = world.divisions.lookup(lon, lat)
    division = np.where(pd.isna(division), "", division).astype(object)
    to_sp = Transformer.from_crs(4326, 2264, always_xy=True)
    x, y = to_sp.transform(lon, lat)
    address = _block_addresses(npa_pos, addr)
    zip_code = np.array(ZIPS, dtype=object)[(npa_pos * 3) % len(ZIPS)]
    n = len(call_type)
    call_ids = np.char.add(f"C{start.year}-", np.char.zfill(np.arange(1, n + 1).astype(str), 7)).astype(object)
    calls = pd.DataFrame({
        "CALL_ID": call_ids, "DATE_RECEIVED": when.strftime("%Y-%m-%d %H:%M:%S"), "CALL_TYPE": call_type,
        "PRIORITY": priority.astype(str), "ADDRESS": address, "CITY": "CHARLOTTE", "STATE": "NC", "ZIP": zip_code,
        "LATITUDE": lat, "LONGITUDE": lon, "X_COORD": np.round(x, 1), "Y_COORD": np.round(y, 1),
        "CMPD_PATROL_DIVISION": [world.division_names.get(d, "") for d in division], "INCIDENT_REPORT_ID": "",
        "DATA_ORIGIN": DATA_ORIGIN,
    })
    cad, cad_notes = cad_times(seed, when, division, priority, taxonomy.categorise_call_types(pd.Series(call_type)),
                               code != "", world.divisions)
    for column, values in cad.items():
        calls[column] = values
    bar.update()

    # --- incidents: one per linked call, plus the reports that had no call -----------------------
    linked = np.flatnonzero(code != "")
    walk = np.flatnonzero(~r_linked)
    first_type = np.array([nature_of[_weighted_spec(s)[0][0]] for s in others["call_types"]], dtype=np.int64)
    drivers = natures["driver"].to_numpy()[first_type[code_idx[walk]]]
    w_npa = np.empty(len(walk), dtype=np.int64)
    for driver in sorted(set(drivers)):
        sel = np.flatnonzero(drivers == driver)
        w_npa[sel] = _pick_weighted(rng, world.drivers[driver], len(sel))
    w_addr = _pick_weighted(rng, weights_other, len(walk))
    w_time = _times(rng, period, mild, hours.loc[NO_CALL_PROFILE], len(walk))
    began = np.r_[when.values[linked], w_time.values]
    i_code = np.r_[code[linked], r_code[walk]].astype(object)
    i_unfounded = np.r_[unfounded[linked], r_unfounded[walk]]
    i_npa_pos = np.r_[npa_pos[linked], w_npa]
    i_addr = np.r_[addr[linked], w_addr]
    delay = rng.integers(10 * 60, 180 * 60, len(began)).astype("timedelta64[s]")
    reported = began + delay
    i_lon = lon_addr[i_npa_pos, i_addr].round(6)
    i_lat = lat_addr[i_npa_pos, i_addr].round(6)
    i_div = world.divisions.lookup(i_lon, i_lat)
    i_div = np.where(pd.isna(i_div), "", i_div).astype(object)
    ix, iy = to_sp.transform(i_lon, i_lat)
    i_order = np.argsort(reported, kind="stable")
    rep_local = pd.DatetimeIndex(reported)
    stamp = rep_local.strftime("%Y%m%d-%H%M")
    seq = pd.Series(stamp).groupby(stamp).cumcount().to_numpy() + 1
    # CMPD's id layout YYYYMMDD-HHMM-NN, with an S before the sequence: a generated report can never
    # take a real report's id (the demo's year overlaps the real records).
    report_ids = np.char.add(np.char.add(stamp.to_numpy().astype(str), "-S"), np.char.zfill(seq.astype(str), 2)).astype(object)
    calls.loc[linked, "INCIDENT_REPORT_ID"] = report_ids[: len(linked)]
    status, detail = _clearance(rng, tables, taxonomy, i_code, i_unfounded)
    dated = (status != "Open") | (detail != "Open")  # CMPD dates every closed report (and pending validations)
    cleared_at = reported + rng.integers(1, 60 * 86400, len(i_code)).astype("timedelta64[s]")
    ended = np.where(rng.random(len(i_code)) < 0.6, began + rng.integers(60, 7200, len(i_code)).astype("timedelta64[s]"),
                     np.datetime64("NaT"))
    loc_types = np.array(list(PLACES), dtype=object)
    loc_type = loc_types[_pick_weighted(rng, np.array([40, 25, 12, 5, 4, 5, 4, 5]), len(i_code))]
    place = [PLACES[t][k % len(PLACES[t])] for t, k in zip(loc_type, rng.integers(0, 3, len(i_code)))]
    code_names = dict(zip(tables.codes["code"], tables.codes["description"]))

    def utc(values: np.ndarray) -> np.ndarray:
        values = pd.DatetimeIndex(values)
        # In the repeated autumn hour, read local times as standard time (as CAD systems tend to).
        local = values.tz_localize(LOCAL_TZ, ambiguous=np.zeros(len(values), dtype=bool), nonexistent="shift_forward")
        text = local.tz_convert("UTC").strftime("%Y/%m/%d %H:%M:%S+00")
        return np.where(pd.isna(local), "", text).astype(object)

    incidents = pd.DataFrame({
        "INCIDENT_REPORT_ID": report_ids,
        "LOCATION": np.r_[address[linked], _block_addresses(w_npa, w_addr)].astype(object),
        "CITY": "CHARLOTTE", "STATE": "NC",
        "ZIP": np.array(ZIPS, dtype=object)[(i_npa_pos * 3) % len(ZIPS)],
        "X_COORD_PUBLIC": np.round(ix, 1), "Y_COORD_PUBLIC": np.round(iy, 1),
        "LATITUDE_PUBLIC": i_lat, "LONGITUDE_PUBLIC": i_lon,
        "DIVISION_ID": i_div, "CMPD_PATROL_DIVISION": [world.division_names.get(d, "") for d in i_div],
        "NPA": world.npa_ids[i_npa_pos].astype(str),
        "DATE_REPORTED": utc(reported), "DATE_INCIDENT_BEGAN": utc(began), "DATE_INCIDENT_END": utc(ended),
        "ADDRESS_DESCRIPTION": "", "LOCATION_TYPE_DESCRIPTION": loc_type,
        "PLACE_TYPE_DESCRIPTION": [p[0] for p in place], "PLACE_DETAIL_DESCRIPTION": [p[1] for p in place],
        "CLEARANCE_STATUS": status, "CLEARANCE_DETAIL_STATUS": detail,
        "CLEARANCE_DATE": np.where(dated, utc(cleared_at), ""),
        "HIGHEST_NIBRS_CODE": i_code, "HIGHEST_NIBRS_DESCRIPTION": [code_names[c] for c in i_code],
        "OBJECTID": "", "YEAR": rep_local.year.astype(str), "DATA_ORIGIN": DATA_ORIGIN,
    }).iloc[i_order].reset_index(drop=True)
    incidents["OBJECTID"] = np.arange(1, len(incidents) + 1).astype(str)
    bar.update()

    call_counts = _call_counts(calls, npa_id)
    manifest = {"synthetic": True, "generator_version": GENERATOR_VERSION, "seed": seed, "start": start.isoformat(), "days": days,
                "n_calls": n_calls, "violent_incidents": int(np.isin(i_code, sorted(taxonomy.violent_codes)).sum()),
                "unfounded_incidents": int(i_unfounded.sum()),
                "violent_counts_calibrated_on": {str(k): v for k, v in calibration.items()}, "cad": cad_notes,
                "files": {}}
    if dirty:
        calls = _dirty(rng, calls, "calls", "CALL_ID", "DATE_RECEIVED", ("LATITUDE", "LONGITUDE"), ("X_COORD", "Y_COORD"),
                       "ADDRESS", ("CMPD_PATROL_DIVISION",), world, manifest)
        incidents = _dirty(rng, incidents, "incidents", "INCIDENT_REPORT_ID", "DATE_REPORTED",
                           ("LATITUDE_PUBLIC", "LONGITUDE_PUBLIC"), ("X_COORD_PUBLIC", "Y_COORD_PUBLIC"), "LOCATION",
                           ("CMPD_PATROL_DIVISION", "DIVISION_ID"), world, manifest)
    else:
        for name, frame in (("calls", calls), ("incidents", incidents)):
            manifest["files"][name] = {"rows": len(frame), "defects": {d: 0 for d in DEFECTS},
                                       "expected_rejects": {}, "expected_loaded": len(frame)}
    bar.update()

    paths = {name: out_dir / f"{name}.csv" for name in ("calls", "incidents", "call_counts")}
    _write_csv(calls, paths["calls"], FILE_COLUMNS["calls"])
    _write_csv(incidents, paths["incidents"], FILE_COLUMNS["incidents"])
    call_counts.to_csv(paths["call_counts"], index=False, lineterminator="\n")
    manifest_path = out_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    bar.update()
    bar.close()
    return SynthResult(paths["calls"], paths["incidents"], paths["call_counts"], manifest_path,
                       n_calls=_data_rows(paths["calls"]), n_incidents=_data_rows(paths["incidents"]))


# --- CAD times: the calls answered by simulated units (geo/simulate.py) ---------------------------------
# Chance that a call of each category takes two units (one otherwise).
TWO_UNIT_SHARE = {"violent_crime": 0.8, "domestic_violence": 0.7, "crimes_against_persons": 0.5,
                  "mental_health_welfare": 0.4, "drugs_vice": 0.3}
OTHER_TWO_UNIT_SHARE = 0.1
# Call-taking before a call can be dispatched, minutes (mean, exponential), by priority 1, 2, 3+.
CALL_TAKING_MIN = (0.6, 1.2, 2.5)
# Mean Priority 1 drive, minutes, from the smallest division to the largest (by the square root of its
# area): with call-taking and the odd wait, CMPD's published Priority 1 response by division (about 5
# minutes in Eastway to 8.5 in North).
P1_TRAVEL_MIN = (4.0, 6.6)
SLOWER_TRAVEL = 1.35        # drives without lights and siren (Priority 2 and lower)
MAX_ON_SCENE_MIN = 480.0
HELP_TRAVEL_MIN = 5.0       # the further drive of a unit answering in a neighbouring division
# Units on duty: enough for this utilisation at the division-hour's expected load, at least MIN_UNITS ...
UNIT_UTILISATION = 0.55
MIN_UNITS = 2
# ... except in the two busiest divisions on Friday and Saturday nights (20:00-02:00), run short on purpose
# so the data hold queued calls where units run short.
SHORT_UTILISATION = 0.95
SHORT_HOURS = [h % 168 for day in (4, 5) for h in range(day * 24 + 20, day * 24 + 26)]
DISPOSITIONS = (["REPORT TAKEN"], ["ADVISED", "NO REPORT", "GONE ON ARRIVAL", "UNFOUNDED", "ASSISTED"],
                [30, 30, 20, 10, 10])


def cad_times(seed: int, when: pd.DatetimeIndex, division: np.ndarray, priority: np.ndarray, category: np.ndarray,
              reported: np.ndarray, divisions: AreaIndex) -> tuple[dict[str, np.ndarray], dict]:
    """DATE_DISPATCHED .. DATE_CLEARED, UNITS_ASSIGNED, PRIMARY_UNIT, DISPOSITION for calls (local wall time,
    sorted by `when`), from a simulation of each division's units; and notes for the manifest.

    Time on a call is lognormal (heavy right tail) with the configured mean of its category
    (geo/allocation.toml service_minutes, the drive included); a call waits where its division has no
    free unit (Priority 1 first). Calls outside every division carry no CAD times.
    """
    from geo.simulate import SimCalls, simulate
    from geo.staffing import StaffingConfig

    rng = Generator(PCG64([seed, 15]))     # its own stream: the rest of the demo stays as it was
    n = len(when)
    minutes = StaffingConfig.load().minutes
    codes = [str(c) for c in divisions.ids]
    index = {c: i for i, c in enumerate(codes)}
    div = np.array([index.get(d, -1) for d in division], dtype=np.int64)
    inside = div >= 0
    area = np.sqrt(shapely.area(divisions.polygons).astype(float))
    spread = (area - area.min()) / max(area.max() - area.min(), 1e-12)
    p1_travel = P1_TRAVEL_MIN[0] + spread * (P1_TRAVEL_MIN[1] - P1_TRAVEL_MIN[0])
    pri = np.asarray(priority, dtype=np.int64)
    taking = rng.exponential(np.array(CALL_TAKING_MIN)[np.clip(pri, 1, 3) - 1])
    mean_travel = p1_travel[np.maximum(div, 0)] * np.where(pri == 1, 1.0, SLOWER_TRAVEL)
    travel = rng.gamma(4.0, mean_travel / 4.0)                        # cv 0.5
    total = pd.Series(category).map(minutes).fillna(minutes.get("unknown", 30.0)).to_numpy(dtype=float)
    on_scene_mean = np.maximum(total - mean_travel, 5.0)
    # cv 1 before the cap; a scene held longer than MAX_ON_SCENE_MIN is handed to a relief unit.
    on_scene = np.minimum(rng.lognormal(np.log(on_scene_mean) - np.log(2) / 2, np.sqrt(np.log(2))), MAX_ON_SCENE_MIN)
    two = pd.Series(category).map(TWO_UNIT_SHARE).fillna(OTHER_TWO_UNIT_SHARE).to_numpy(dtype=float)
    units = 1 + (rng.random(n) < two)
    # Minutes from the first call's local midnight; hour of the week from that day's weekday.
    day0 = when.min().normalize() if n else pd.Timestamp("2000-01-03")
    received = ((when - day0) / pd.Timedelta(minutes=1)).to_numpy(dtype=float) if n else np.zeros(0)
    ready = received + taking
    order = np.flatnonzero(inside)[np.argsort(ready[inside], kind="stable")]
    start_how = day0.weekday() * 24
    weeks = max((received.max() if n else 0.0) / (7 * 24 * 60), 1.0)
    how = (start_how + (ready[order] // 60).astype(np.int64)) % 168
    busy = units[order] * (travel[order] + on_scene[order]) / 60
    load = np.zeros((len(codes), 168))
    np.add.at(load, (div[order], how), busy)
    load /= weeks                 # unit-hours per hour of the week: the expected busy units
    staffing = np.maximum(np.ceil(load / UNIT_UTILISATION), MIN_UNITS).astype(int)
    busiest = np.argsort(-load.sum(axis=1))[:2]
    for d in busiest:
        staffing[d, SHORT_HOURS] = np.maximum(np.ceil(load[d, SHORT_HOURS] / SHORT_UTILISATION), 1)
    # A division with no unit free borrows one from a touching division (geo/simulate.py's help rule).
    left, right = divisions.tree.query(divisions.polygons, predicate="intersects")
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(left.tolist(), right.tolist()):
        if a != b:
            neighbours.setdefault(a, []).append(b)
    result = simulate(SimCalls(ready[order], div[order], pri[order], travel[order] + on_scene[order], travel[order],
                               units[order]), staffing, start_how, neighbours, HELP_TRAVEL_MIN)
    wait = np.zeros(n)
    wait[order] = result.wait_min
    travel[order] += np.where(result.helped, HELP_TRAVEL_MIN, 0.0)
    # Offsets from the received time only grow, so rounding each to the second keeps their order.
    dispatched = taking + wait
    enroute = dispatched + np.minimum(rng.exponential(np.where(pri == 1, 0.3, 1.0)), travel)
    onscene = dispatched + travel
    cleared = onscene + on_scene
    out: dict[str, np.ndarray] = {}
    for column, offset in (("DATE_DISPATCHED", dispatched), ("DATE_ENROUTE", enroute), ("DATE_ONSCENE", onscene),
                           ("DATE_CLEARED", cleared)):
        at = when + pd.to_timedelta(np.round(offset * 60), unit="s")
        out[column] = np.where(inside, at.strftime("%Y-%m-%d %H:%M:%S"), "").astype(object)
    out["UNITS_ASSIGNED"] = np.where(inside, units.astype(str), "").astype(object)
    shift = np.array(["C", "A", "B", "C"])[np.searchsorted([6, 14, 22], when.hour, side="right")]
    beat = rng.integers(10, 60, n).astype(str)
    out["PRIMARY_UNIT"] = np.where(inside, np.char.add(np.char.add(np.array(division, dtype=str), shift), beat),
                                   "").astype(object)
    closed, other, weights = DISPOSITIONS
    other_pick = np.array(other, dtype=object)[_pick_weighted(rng, np.array(weights), n)]
    out["DISPOSITION"] = np.where(inside, np.where(reported, closed[0], other_pick), "").astype(object)
    p1 = inside & (pri == 1)
    response = pd.Series(onscene[p1]).groupby(np.asarray(division, dtype=object)[p1]).mean()
    notes = {"units_on_duty": {"utilisation": UNIT_UTILISATION, "min_units": MIN_UNITS},
             "short_staffed": {"divisions": [codes[d] for d in busiest], "hours_of_week": SHORT_HOURS,
                               "utilisation": SHORT_UTILISATION},
             "queued_share": round(float(result.queued.mean()), 4) if len(order) else 0.0,
             "helped_share": round(float(result.helped.mean()), 4) if len(order) else 0.0,
             "p1_mean_response_min": {str(k): round(float(v), 2) for k, v in response.items()}}
    return out, notes


def _block_addresses(npa_pos: np.ndarray, addr: np.ndarray) -> np.ndarray:
    """CMPD-style hundred-block addresses, one per (NPA, address slot)."""
    street_no = (addr * 100 + 100) % 9900 + 100
    street = np.array(STREETS, dtype=object)[(npa_pos * 7 + addr) % len(STREETS)]
    return np.char.add(np.char.add(street_no.astype(str), " BLOCK OF "), street.astype(str)).astype(object)


def _data_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh) - 1


def _write_csv(frame: pd.DataFrame, path: Path, columns: list[str]) -> None:
    """Write rows; a row whose '__raw__' is set is written verbatim (a malformed line)."""
    raw = frame.pop("__raw__") if "__raw__" in frame.columns else pd.Series("", index=frame.index)
    body = frame[columns].to_csv(index=False, header=False, lineterminator="\n").splitlines()
    lines = [",".join(columns)] + [r if r else line for line, r in zip(body, raw.fillna(""))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _call_counts(calls: pd.DataFrame, npa_id: np.ndarray) -> pd.DataFrame:
    """CMPD-layout monthly counts of the clean calls, by city and NPA, per call type and in total."""
    when = pd.to_datetime(calls["DATE_RECEIVED"])
    base = pd.DataFrame({"year": when.dt.year, "month": when.dt.month, "npa": npa_id, "type": calls["CALL_TYPE"]})
    city = base.groupby(["year", "month", "type"]).size().reset_index(name="n").assign(rt="CMPD Jurisdiction", g="CMPD", gid=0)
    city_all = base.groupby(["year", "month"]).size().reset_index(name="n").assign(rt="CMPD Jurisdiction", g="CMPD", gid=0, type="All Calls")
    npa = base.groupby(["npa", "year", "month", "type"]).size().reset_index(name="n").assign(rt="Neighborhood Profile Area")
    npa_all = base.groupby(["npa", "year", "month"]).size().reset_index(name="n").assign(rt="Neighborhood Profile Area", type="All Calls")
    for frame in (npa, npa_all):
        frame["g"] = frame["npa"].astype(str)
        frame["gid"] = frame["npa"]
    rows = pd.concat([city_all, city, npa_all, npa], ignore_index=True)
    return pd.DataFrame({
        "OBJECTID": np.arange(1, len(rows) + 1), "ROW_TYPE": rows["rt"], "GEOGRAPHY": rows["g"],
        "GEOGRAPHY_ID": rows["gid"].astype(int), "CALENDAR_YEAR": rows["year"],
        "CALENDAR_MONTH": rows["month"].map("{:02d}".format), "CALL_DESCRIPTION": rows["type"], "CALL_COUNT": rows["n"],
    })


def _dirty(rng: Generator, frame: pd.DataFrame, name: str, id_col: str, date_col: str, latlon: tuple[str, str],
           xy: tuple[str, str], address_col: str, division_cols: tuple[str, ...], world: _World, manifest: dict) -> pd.DataFrame:
    """Give a few percent of rows exactly one defect each, the way real exports are dirty; count them."""
    frame = frame.astype(str)  # defects put text into numeric columns
    frame["__raw__"] = ""
    n = len(frame)
    rates = DEFECT_RATES[name]
    counts = {d: int(round(rates[d] * n)) for d in DEFECTS}
    if sum(counts.values()) > n:
        counts = {d: 0 for d in DEFECTS}
    rows = rng.permutation(n)
    pos = 0
    chosen = {}
    for d in DEFECTS:
        chosen[d] = np.sort(rows[pos:pos + counts[d]])
        pos += counts[d]
    lat_c, lon_c = latlon
    x_c, y_c = xy
    for d, idx in chosen.items():
        if not len(idx):
            continue
        if d == "city_variant":
            frame.loc[frame.index[idx], "CITY"] = np.array(CITY_VARIANTS, dtype=object)[np.arange(len(idx)) % len(CITY_VARIANTS)]
        elif d == "latlon_missing_xy_present":
            frame.loc[frame.index[idx], [lat_c, lon_c]] = ""
        elif d == "coords_missing":
            frame.loc[frame.index[idx], [lat_c, lon_c, x_c, y_c]] = ""
        elif d == "outside_county":
            pts = np.array(OUTSIDE_POINTS)[np.arange(len(idx)) % len(OUTSIDE_POINTS)]
            frame.loc[frame.index[idx], lat_c] = pts[:, 0].astype(str)
            frame.loc[frame.index[idx], lon_c] = pts[:, 1].astype(str)
            frame.loc[frame.index[idx], [x_c, y_c]] = ""
        elif d == "bad_date":
            frame.loc[frame.index[idx], date_col] = np.array(BAD_DATES, dtype=object)[np.arange(len(idx)) % len(BAD_DATES)]
        elif d == "zip_missing":
            frame.loc[frame.index[idx], "ZIP"] = ""
        elif d == "zip_text":
            frame.loc[frame.index[idx], "ZIP"] = "CHARLOTTE"
        elif d == "division_disagrees":
            codes = sorted(world.division_names)
            code_of = {v: k for k, v in world.division_names.items()}
            for i in idx:
                current = code_of.get(frame.iat[i, frame.columns.get_loc(division_cols[0])], "")
                other = codes[(codes.index(current) + 1) % len(codes)] if current in codes else codes[0]
                if "DIVISION_ID" in division_cols:
                    frame.iat[i, frame.columns.get_loc("DIVISION_ID")] = other
                frame.iat[i, frame.columns.get_loc(division_cols[0])] = world.division_names[other]
        elif d == "malformed_row":
            # An address with an unquoted comma: one field too many.
            for i in idx:
                values = [str(frame.iat[i, frame.columns.get_loc(c)]) for c in FILE_COLUMNS[name]]
                col = FILE_COLUMNS[name].index(address_col)
                values[col] = values[col] + ", APT 2"
                frame.iat[i, frame.columns.get_loc("__raw__")] = ",".join(v.replace('"', "") for v in values)
    dup_rows = []
    if len(chosen["duplicate_id"]):
        src = frame.iloc[chosen["duplicate_id"]].copy()
        changed = np.arange(len(src)) % 2 == 1  # half identical repeats, half with a changed field
        src.loc[src.index[changed], "ZIP"] = "28299"
        src["__raw__"] = ""
        dup_rows.append(src)
    # The duplicated originals themselves stay clean; the repeats go right after them.
    if dup_rows:
        frame = pd.concat([frame, *dup_rows]).sort_index(kind="stable").reset_index(drop=True)
    expected = {REJECT_REASON[d]: counts[d] for d in REJECT_REASON if counts[d]}
    manifest["files"][name] = {
        "rows": len(frame), "defects": counts, "expected_rejects": expected,
        "expected_loaded": len(frame) - sum(expected.values()),
    }
    return frame
