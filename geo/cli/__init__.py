"""The `hotspots` command line: thin click commands over the geo modules, one module per command group.

`main` reads nothing itself: it makes the invocation's context (geo/cli/context.py), which reads
each settings group once, on first use, and holds the one engine. The commands are registered below.
"""

from __future__ import annotations

import click

from geo.cli import analysis, database, exports, loading, model, plan, police, runs, serving, staffing, stats, tokens
from geo.cli.context import DATABASE_DOWN, CliContext, database_failure


class _Commands(click.Group):
    """The command group, reporting a lost or unreachable database as one line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DATABASE_DOWN as exc:
            raise click.ClickException(
                f"{database_failure(exc)}; the transaction in progress was rolled back, nothing of it was stored. "
                "Run the command again once the database is back.") from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """cmpd-hotspots: load CMPD calls and incidents into PostGIS and analyse where violent crime concentrates.

    The database is DATABASE_URL when set, otherwise a private PostGIS cluster under
    HOTSPOTS_VAR_DIR (default ./var) managed by `hotspots db`. Reference layers are read from
    HOTSPOTS_DATA_DIR (default ./data/shapes).
    """
    context = ctx.ensure_object(CliContext)
    ctx.call_on_close(context.close)


# Every command and group, by the module that holds it. A new group: a module under geo/cli and one line here.
COMMANDS: list[click.Command] = [
    database.db,
    loading.load, loading.rejects_cmd, loading.sync_cmd,
    serving.demo_data_cmd, serving.demo_cmd, serving.serve_cmd, serving.summary_cmd,
    model.train_cmd, model.model, model.label_cmd, model.taxonomy_cmd,
    stats.stats,
    analysis.hotspots_cmd, analysis.emerging_cmd, analysis.accuracy_cmd, analysis.stability_cmd,
    plan.allocate_cmd, staffing.simulate_cmd, staffing.whatif_cmd,
    tokens.token,
    exports.export_cmd, exports.report_cmd,
    runs.runs_group,
]
for _command in COMMANDS:
    main.add_command(_command)
# The police metrics (geo/cli/police.py) are subcommands of `stats`.
for _command in police.STATS_COMMANDS:
    stats.stats.add_command(_command)

__all__ = ["main", "COMMANDS", "database_failure", "DATABASE_DOWN"]
