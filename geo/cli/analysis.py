"""`hotspots hotspots`, `emerging`, `accuracy` and `stability`: where violent crime concentrates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import session
from geo.cli.table import count, plural


@click.command("emerging")
@opt.date_from
@opt.date_to
@click.option("--source", type=click.Choice(["incidents", "homicides", "labelled", "expected", "calls"]),
              help="What is counted (geo/sources.py): recorded violent incidents (FBI violent NIBRS codes; the default "
                   "when the period holds any), homicide victims, model-labelled calls, expected violent calls (the "
                   "default otherwise), or calls as --measure says.")
@click.option("--measure", type=click.Choice(["labelled", "expected"]), default="expected", show_default=True,
              help="--source calls: count the calls labelled violent, or sum the model's probabilities.")
@click.option("--origin", type=click.Choice(["real", "synthetic"]),
              help="Only real or only synthetic rows (required when the period holds both).")
@click.option("--step", "unit", type=click.Choice(["month", "week"]), default="month", show_default=True,
              help="Time step: calendar months or Monday-Sunday weeks.")
@click.option("--time-neighbours", "neighbourhood_steps", type=click.IntRange(min=1), default=1, show_default=True,
              help="Earlier steps in each bin's space-time neighbourhood (ArcGIS's Neighborhood Time Step).")
@click.option("--confidence", type=click.Choice(["90", "95", "99"]), default="90", show_default=True,
              help="Confidence (%) at which a bin is a hot or cold spot and a trend counts.")
@click.option("--grid-ft", type=float, help="Square cells of this many feet (EPSG:2264) instead of NPAs.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the areas with their patterns (.geojson, .gpkg).")
@click.option("--save", is_flag=True, help="Store the NPA patterns as an analysis run (kind emerging_npa_hotspots; "
                                          "the map's emerging_npas layer serves it).")
def emerging_cmd(start: str | None, end: str | None, source: str | None, measure: str, origin: str | None, unit: str,
                 neighbourhood_steps: int, confidence: str, grid_ft: float | None, out: Path | None,
                 save: bool = False) -> None:
    """Emerging hot spots as ArcGIS defines them: a space-time cube, Gi* per bin, FDR, Mann-Kendall, 17 patterns.

    Only complete time steps are analysed (a partial first or last one is left out and named);
    at least 10 are needed.
    """
    from geo.emerging import NO_PATTERN, default_source, grid_emerging, npa_emerging, save_npa_emerging

    if save and grid_ft:
        raise click.BadParameter("only NPA emerging hot spots are saved; drop --grid-ft or --save", param_hint="--save")
    engine = session().engine
    # Twelve complete months by default: the cube needs at least 10 complete steps.
    period = opt.analysis_period(start, end, "12 months", tables=("calls", "incidents"))
    counted = (default_source(engine, period, origin) if source is None
               else measure if source == "calls" else source)
    settings = {"source": counted, "unit": unit, "neighbourhood_steps": neighbourhood_steps,
                "confidence": int(confidence) / 100, "origin": origin}
    try:
        if grid_ft:
            run = grid_emerging(engine, period, cell_ft=grid_ft, **settings)
        else:
            run = npa_emerging(engine, period, **settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    cube, unit_name = run.cube, "cells" if grid_ft else "NPAs"
    click.echo(f"source: {cube.source}")
    click.echo(f"time steps: {len(cube.steps)} complete {unit}s, {cube.steps[0].label} to {cube.steps[-1].label} "
               f"(the data spans {cube.data_span[0]} to {cube.data_span[1]})")
    click.echo(f"left out: {cube.describe_left_out()}")
    click.echo(f"neighbours: {'queen-contiguous cells' if grid_ft else 'queen-contiguous NPAs'} and the location "
               f"itself, in the same {unit} and the {neighbourhood_steps} {unit}{'s' if neighbourhood_steps > 1 else ''} "
               f"before; Gi* over {cube.counts.size:,} bins, "
               f"Benjamini-Hochberg FDR, significant at {confidence}% confidence; Mann-Kendall on each location's "
               "Gi* z-scores\n")
    if out:
        run.areas.to_file(out)
    for name, n in run.pattern_counts().items():
        ids = [] if grid_ft or name == NO_PATTERN else run.areas.loc[run.areas["pattern"] == name, "npa_id"].astype(int)
        listed = (": " + ", ".join(map(str, list(ids)[:12])) + (" ..." if len(ids) > 12 else "")) if len(ids) else ""
        click.echo(f"{name:23} {plural(n, unit_name[:-1]):>11}{listed}")
    if out:
        click.echo(f"\nwrote {out}")
    if save:
        click.echo(f"\nsaved as analysis run {save_npa_emerging(engine, run)} (layer emerging_npas)")


@click.command("accuracy")
@click.option("--train-from", help="First day of period T, YYYY-MM-DD (hot spots found on it).")
@click.option("--train-to", help="Last day of period T, YYYY-MM-DD.")
@click.option("--test-from", help="First day of period T+1, YYYY-MM-DD (scored on its recorded violence).")
@click.option("--test-to", help="Last day of period T+1, YYYY-MM-DD. Without the four dates: T+1 is the newest six "
                                "complete months of the stored data and T the six months before.")
@click.option("--source", "sources", multiple=True, type=click.Choice(["incidents", "homicides", "labelled", "expected"]),
              help="Sources to score (repeatable; default all with rows in T).")
@click.option("--grid-ft", type=float, help="Also score square cells of this many feet (EPSG:2264).")
@click.option("--origin", type=click.Choice(["real", "synthetic"]),
              help="Only real or only synthetic rows (required when a period holds both).")
@click.option("--save/--no-save", default=True, show_default=True,
              help="Store the table as an analysis run (kind 'accuracy'; the model report and the map show it).")
def accuracy_cmd(train_from: str | None, train_to: str | None, test_from: str | None, test_to: str | None,
                 sources: tuple[str, ...],
                 grid_ft: float | None, origin: str | None, save: bool) -> None:
    """Hot spots found on period T scored on recorded violent incidents in T+1: hit rate, PAI, RRI per source."""
    from geo.accuracy import accuracy, accuracy_params, format_table, save_accuracy
    from geo.runs import current_model_version

    engine = session().engine
    given = [train_from, train_to, test_from, test_to]
    if any(given) and not all(given):
        raise click.BadParameter("give all four dates, or none for the newest complete year split in two halves",
                                 param_hint="--train-from/--train-to/--test-from/--test-to")
    if all(given):
        train, test = opt.parse_period(train_from, train_to), opt.parse_period(test_from, test_to)
    else:
        year = opt.analysis_period(None, None, "12 months", tables=("calls", "incidents"))
        middle = opt.months_before(year.end_date, 6)
        if middle <= year.start_date:
            raise click.ClickException(f"the stored data from {year.start_date} hold less than two halves of a "
                                       "period to find hot spots on and score them; give the four dates")
        train, test = year.with_days(year.start_date, middle), year.with_days(middle, year.end_date)
        click.echo(f"T: {train.start_date} to {train.end_date - timedelta(days=1)}, T+1: {test.start_date} to "
                   f"{test.end_date - timedelta(days=1)} (the newest complete year's halves)")
    try:
        table = accuracy(engine, train, test, sources=sources or None, grid_ft=grid_ft, origin=origin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    params = accuracy_params(train, test, table, grid_ft, origin)
    click.echo(f"hot spots (Gi*, 99% and 95% hot, FDR) on {train.start_date}..{train.end_date - timedelta(days=1)}, "
               f"scored on recorded violent incidents of {test.start_date}..{test.end_date - timedelta(days=1)}")
    for name, words in params["sources"].items():
        click.echo(f"  {words}" + ("  [no rows in T: left out]" if name in params["skipped"] else ""))
    click.echo("hit rate: share of T+1's violent incidents in the hot areas; PAI = hit rate / area share "
               "(Chainey et al. 2008); RRI = (in hot T+1 / in hot T) / (all T+1 / all T) (Levine 2008)\n")
    for line in format_table(params["rows"]):
        click.echo(line)
    if save:
        click.echo(f"\nsaved as analysis run {save_accuracy(engine, params, current_model_version(engine))}")


@click.command("stability")
@opt.date_from
@opt.date_to
def stability_cmd(start: str | None, end: str | None) -> None:
    """NPAs that stay violent-call hot spots across classifier probability thresholds 0.1-0.6."""
    from geo.hotspots import threshold_stability

    result = threshold_stability(session().engine, opt.analysis_period(start, end, "month"))
    stable = result[result["stability"] == 1.0]
    some = result[(result["stability"] > 0) & (result["stability"] < 1.0)]
    click.echo(f"hot at every threshold ({plural(len(stable), 'NPA')}): " + ", ".join(str(int(n)) for n in stable["npa_id"]))
    click.echo(f"hot at some thresholds only ({plural(len(some), 'NPA')}):")
    for r in some.sort_values("stability", ascending=False).itertuples():
        click.echo(f"  NPA {int(r.npa_id)}: hot at p >= {r.hot_at}")


@click.command("hotspots")
@click.option("--source", type=click.Choice(["incidents", "homicides", "labelled", "expected", "offenses"]),
              help="What is counted (geo/sources.py): recorded violent incidents (the default when the period holds "
                   "any), homicide victims, model-labelled calls, expected violent calls (the default otherwise), "
                   "or CMPD's published violent offense counts per NPA.")
@opt.date_from
@opt.date_to
@click.option("--origin", type=click.Choice(["real", "synthetic"]),
              help="Only real or only synthetic rows (required when the period holds both).")
@click.option("--grid-ft", help="Point sources: square grid cells instead of NPAs: 'auto' (the size chosen from the "
                               "points' locations, as ArcGIS Optimized Hot Spot Analysis does; see docs/methods.md) "
                               "or a side in feet (EPSG:2264).")
@click.option("--per-1000", "per_1000", is_flag=True,
              help="NPAs: Gi* on the value per 1,000 residents (ArcGIS's 'divide by' population); NPAs without "
                   "residents are left out and counted.")
@click.option("--years", help="offenses, homicides: year range, e.g. 2019-2021 [offenses: 2019-2021; "
                              "homicides: every year loaded].")
@click.option("--category", multiple=True, help="offenses: detail categories (default: the Violent Crime roll-up).")
@click.option("--permutations", default=999, show_default=True)
@click.option("--save", is_flag=True, help="Store the result as an analysis run (for the map and exports).")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the NPAs with their classes (.geojson, .gpkg).")
@opt.compute_engine
@opt.scheduler
@opt.dask_workers
def hotspots_cmd(source: str | None, start: str | None, end: str | None, origin: str | None, grid_ft: str | None,
                 per_1000: bool, years: str | None, category: tuple[str, ...], permutations: int, save: bool,
                 out: Path | None, compute: str, scheduler: str | None, dask_workers: int) -> None:
    """Getis-Ord Gi* hot and cold spots of violent crime over the 462 NPAs or grid cells (FDR-corrected)."""
    from geo.compute import dask_context
    from geo.hotspots import grid_hotspots, homicide_hotspots, npa_hotspots, offense_hotspots
    from geo.runs import RunKind, RunSpec, current_model_version, save_cell_results, save_npa_results
    from geo.sources import resolve

    engine = session().engine
    model_version = None
    dask = dask_context(compute, scheduler, dask_workers)
    if grid_ft and source == "offenses":
        raise click.BadParameter("offense counts are published per NPA; grid cells need points", param_hint="--grid-ft")
    if grid_ft and per_1000:
        raise click.BadParameter("rates need a population per area; grid cells have none (use NPAs)",
                                 param_hint="--per-1000")
    if grid_ft is not None:
        grid_ft = grid_ft.strip().lower()
        if grid_ft != "auto":
            try:
                if not float(grid_ft) > 0:
                    raise ValueError
            except ValueError:
                raise click.BadParameter(f"{grid_ft!r}: give 'auto' or a positive number of feet",
                                         param_hint="--grid-ft") from None
    rate = {"value_unit": "per_1000_residents"} if per_1000 else {}
    by_years = source == "offenses" or (source == "homicides" and not grid_ft)
    if not by_years:
        period = opt.analysis_period(start, end, "month", tables=("calls", "incidents"))
        try:
            src = resolve(engine, source, period, origin)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        source = src.name
        click.echo(f"source: {src.describe(origin)}")
    if dask is not None and source not in ("labelled", "expected"):
        raise click.BadParameter("Dask runs the calls analysis (--source labelled or expected); offense counts, "
                                 "incidents and homicides are counted on this machine", param_hint="--engine")
    counted = "violent" if by_years else source
    if dask is not None:
        from geo import scale

        with dask as client:
            try:
                if grid_ft:
                    result = scale.grid_hotspots(engine, client, period, cell_ft=grid_ft, measure=source,
                                                 permutations=permutations)
                else:
                    result = scale.npa_hotspots(engine, client, period, measure=source, permutations=permutations,
                                                per_1000=per_1000)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--grid-ft" if grid_ft else "--source") from exc
    elif grid_ft:
        try:
            result = grid_hotspots(engine, period, cell_ft=grid_ft, source=source, origin=origin,
                                   permutations=permutations)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--grid-ft") from exc
    elif not by_years:
        result = npa_hotspots(engine, period, source=source, origin=origin, permutations=permutations,
                              per_1000=per_1000)
    elif source == "homicides":
        try:
            result, info = homicide_hotspots(engine, opt.parse_years(years), permutations=permutations, per_1000=per_1000)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        params = {**info, "source": "homicides", "permutations": permutations, **rate}
        counted = "homicide victims"
        click.echo(f"source: homicides (CMPD Homicide layer), {info['years'][0]}-{info['years'][1]}: "
                   f"{info['victims']:,} victims, {info['victims_without_npa']:,} without a location left out")
    else:
        span = opt.parse_years(years) or (2019, 2021)
        try:
            result = offense_hotspots(engine, span, list(category) or None, permutations=permutations,
                                      per_1000=per_1000)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        params = {"years": list(span), "categories": list(category) or ["Violent Crime"], "source": "offenses",
                  "permutations": permutations, **rate}
        click.echo("source: offenses: CMPD's published violent offense counts per NPA")
    if not by_years:
        params = {"period": [str(period.start_date), str(period.end_date)], "source": source, "origin": origin,
                  "source_words": src.describe(origin), "permutations": permutations,
                  **({"measure": source} if source in ("labelled", "expected") else {}),
                  **(result.attrs["cell_size"].as_params() if grid_ft else rate)}
        if source in ("labelled", "expected"):
            model_version = current_model_version(engine)
    if grid_ft:
        choice = result.attrs["cell_size"]
        click.echo(f"grid cells: {choice.cell_ft:,.0f} ft ({choice.rule}: {choice.reason})")
    if per_1000:
        left = result.attrs["left_out"]
        click.echo(f"value: {counted} per 1,000 residents; {plural(left['npas_without_residents'], 'NPA')} without "
                   f"residents left out ({count(left['events_in_them'])} {counted} in them)")
    total_of = "event_count" if "event_count" in result else "value"
    if not by_years and not float(result[total_of].sum()):
        opt.refuse_empty(f"violent rows ({src.name}) in any {'cell' if grid_ft else 'NPA'}", period,
                         tables=("calls", "incidents"),
                         where=f" ({origin} rows)" if origin else "")
    for name, n in result["hotspot_class"].value_counts().items():
        total = result.loc[result["hotspot_class"] == name, total_of].sum()
        click.echo(f"{name:28} {plural(n, 'cell') if grid_ft else plural(n, 'NPA'):>10}, {count(total):>9} {counted}")
    hot = result[result["hotspot_class"].str.startswith("Hot")].sort_values("gi_z", ascending=False)
    if len(hot) and not grid_ft:
        shown = "{:,.2f}/1,000" if per_1000 else "{:,.0f}"
        click.echo("\nhottest NPAs: " + ", ".join(f"{int(r.npa_id)} (z {r.gi_z:.1f}, {shown.format(r.value)})"
                                                 for r in hot.head(10).itertuples()))
    if save and grid_ft:
        run_id = save_cell_results(engine, RunSpec(RunKind.CALLS_GRID_HOTSPOTS, params, model_version), result,
                                   result.attrs["cell_size"].cell_ft)
        click.echo(f"saved as analysis run {run_id}")
    elif save:
        kind = source if by_years else "calls"  # point sources share the map's kind; params name the source
        run_id = save_npa_results(engine, RunSpec(RunKind.npa_hotspots(kind), params, model_version), result)
        click.echo(f"saved as analysis run {run_id}")
    if out:
        result.to_file(out)
        click.echo(f"wrote {out}")
