"""`hotspots train`, `model`, `label` and `taxonomy`: the violent-call classifier and the categories."""

from __future__ import annotations

from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import session
from geo.pages import MODEL_PNG


# --- classifier ------------------------------------------------------------------------------
@click.command("train")
@click.option("--test-months", default=3, show_default=True, help="Latest months held out for testing.")
@click.option("--seed", default=0, show_default=True)
@click.option("--threshold", "threshold_rule", type=click.Choice(["f1", "count"]), default="f1", show_default=True,
              help="The label threshold: max F1 on the calibration months, or count-matching (labels as many calls "
                   "as the probabilities expect). Maps of calls default to expected violent (sum of p) either way.")
@click.option("--place-features", is_flag=True,
              help="Add NPA, division and the NPA's cross-fitted violent rate to the features (the map then lags "
                   "violence that moves; docs/methods.md).")
def train_cmd(test_months: int, seed: int, threshold_rule: str, place_features: bool) -> None:
    """Train the violent-call classifier on earlier months, test on later ones, store it.

    Ground truth: the call's incident carries an FBI violent NIBRS code. Features: call type,
    priority, hour and weekday (with --place-features also NPA, division and the NPA's violent
    rate, cross-fitted on the training months).
    Stores the model (joblib, checksummed) and a model_runs row that becomes the current model.
    """
    from geo.classify import ModelError, train

    try:
        result = train(session().engine, test_months=test_months, seed=seed, threshold_rule=threshold_rule,
                       place_features=place_features, echo=click.echo, progress=True)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"model {result.version} stored at {result.path} (sha256 {result.sha256[:12]}...)")
    _print_metrics(result.metrics)


def _print_metrics(metrics: dict) -> None:
    from geo.classify import threshold_lines

    click.echo(f"\n{'':26}{'ROC-AUC':>8}{'PR-AUC':>8}{'R@90%P':>8}{'Brier':>9}{'thresh':>8}{'prec':>7}{'recall':>7}")
    for name in ("model", "gradient_boosting", "call_type_baseline"):
        m = metrics.get(name)
        if m:
            click.echo(f"{name:26}{m['roc_auc']:>8.3f}{m['pr_auc']:>8.3f}{m['recall_at_90_precision']:>8.3f}"
                       f"{m['brier']:>9.4f}{m['threshold']:>8.3f}{m['precision']:>7.3f}{m['recall']:>7.3f}")
    control = metrics.get("shuffled_label_control", {})
    if control:
        click.echo(f"{'shuffled-label control':26}{control['roc_auc']:>8.3f}   (must be near 0.5)")
    m = metrics.get("model")
    if m:
        from geo.pages import recall_at_precision_words

        click.echo(f"R@90%P: {recall_at_precision_words(m)}")
        c = m["confusion"]
        click.echo(f"\nheld-out calls: {m['n']:,}, violent: {m['positives']:,} ({m['base_rate']:.2%})")
        click.echo(f"at threshold {m['threshold']:.3f}: {c['tp']:,} violent calls flagged, {c['fp']:,} false alarms, "
                   f"{c['fn']:,} violent calls missed, {c['tn']:,} correctly not flagged")
        expected, observed = m["expected_vs_observed"]
        click.echo(f"calibration: sum of probabilities {expected:,.0f} vs {observed:,} violent calls observed")
        for b in m["calibration"]:
            click.echo(f"  p in {b['bin']}: {b['n']:>8,} calls, mean p {b['mean_predicted']:.3f}, observed {b['observed']:.3f}")
    for line in threshold_lines(metrics):
        click.echo(line)


@click.group()
def model() -> None:
    """Inspect trained classifiers."""


@model.command("report")
@click.option("--version", help="A model version (default: the current model).")
@click.option("--top", default=12, show_default=True, help="How many effects to list.")
@opt.html_page
@opt.png_page(MODEL_PNG)
def model_report_cmd(version: str | None, top: int, html_path: Path | None, png_path: Path | None) -> None:
    """Metrics of a stored model and its strongest effects in plain words.

    With --html/--png: the same report as a page with charts, written to a file instead.
    """
    from geo.classify import ModelError, load_model, probability_effects

    if html_path or png_path:
        from geo.pages import model_page

        try:
            html = model_page(session().engine, version, top)
        except ModelError as exc:
            raise click.ClickException(str(exc)) from exc
        opt.write_page(html, html_path, png_path, MODEL_PNG)
        return
    try:
        stored = load_model(session().engine, version)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"model {stored.version}: {stored.params.get('train_rows', 0):,} training calls, "
               f"threshold {stored.threshold:.3f}, trained in {stored.params.get('train_seconds', '?')} s")
    _print_metrics(stored.metrics)
    base_rate = stored.metrics["model"]["base_rate"]
    click.echo(f"\nStrongest effects: each alone, on a call otherwise average ({base_rate:.1%} violent), moves the "
               "model's probability")
    for e in probability_effects(stored, top).itertuples():
        click.echo(f"  {e.text}: {'raises' if e.to_p > e.from_p else 'lowers'} it from {e.from_p:.1%} to {e.to_p:.1%}")
    from geo.accuracy import latest_accuracy, report_lines
    from geo.taxonomy import violent_numbers_lines

    click.echo("\n" + "\n".join(report_lines(latest_accuracy(session().engine))))
    click.echo("\n" + "\n".join(violent_numbers_lines()))


@click.command("label")
@click.option("--relabel", is_flag=True, help="Also rescore calls labelled by another model version.")
@click.option("--chunk", default=250_000, show_default=True, help="Calls per transaction.")
@opt.compute_engine
@opt.scheduler
@opt.dask_workers
def label_cmd(relabel: bool, chunk: int, compute: str, scheduler: str | None, dask_workers: int) -> None:
    """Score calls with the current model: probability, label and model version (unlabelled calls only)."""
    from geo.classify import ModelError, label_calls
    from geo.compute import dask_context, label_partitions

    dask = dask_context(compute, scheduler, dask_workers)
    try:
        if dask is None:
            result = label_calls(session().engine, relabel=relabel, chunk_rows=chunk, progress=True,
                                    tz=session().locale.timezone)
        else:
            from geo import scale

            with dask as client:
                engine = session().engine
                # --chunk keeps its meaning: about that many calls per partition (one transaction each).
                parts = label_partitions(engine, chunk)
                result = scale.label_calls(engine, client, relabel=relabel, partitions=parts)
                click.echo(f"Dask: {result.partitions} partitions on {len(client.scheduler_info()['workers'])} workers")
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    rate = f", {result.labelled / result.seconds:,.0f} calls/s" if result.seconds and result.labelled else ""
    click.echo(f"labelled {result.labelled:,} calls with {result.version} ({result.violent:,} labelled violent{rate})")
    if not result.labelled:
        click.echo("nothing to do: every call already has a label (use --relabel after training a new model)")


@click.command("taxonomy")
@click.option("--apply", "apply_", is_flag=True, help="Recompute the stored categories of all calls and incidents.")
@click.option("--kind", type=click.Choice(["all", "call_type", "nibrs"]), default="all", show_default=True)
def taxonomy_cmd(apply_: bool, kind: str) -> None:
    """Print how CAD call types and NIBRS codes map to categories (geo/taxonomy.csv).

    Categories are stored with each call and incident when loaded; after editing the table,
    --apply recomputes them. Codes the table does not know are 'unknown' and are counted.
    """
    from geo.taxonomy import apply_taxonomy, load_taxonomy

    taxonomy = load_taxonomy()
    for category, description in taxonomy.categories.items():
        click.echo(f"{category}: {description}")
        if kind in ("all", "call_type"):
            types = sorted(t for t, c in taxonomy.call_types.items() if c == category)
            if types:
                click.echo("  call types:  " + ", ".join(types))
        if kind in ("all", "nibrs"):
            codes = sorted(code for code, (c, _) in taxonomy.nibrs.items() if c == category)
            codes += [f"{p}xx (other CMPD local codes)" for p, c, _ in taxonomy.prefixes if c == category]
            if codes:
                click.echo("  NIBRS codes: " + ", ".join(codes))
    non_crime = sorted(code for code, (_, crime) in taxonomy.nibrs.items() if not crime)
    click.echo("\nNot counted as crimes: " + ", ".join(non_crime) + ", and CMPD's other 800-series report codes")
    if apply_:
        changed = apply_taxonomy(session().engine, taxonomy)
        click.echo(f"\nrecategorised: {changed['calls']:,} calls, {changed['incidents']:,} incidents")
