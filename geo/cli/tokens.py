"""`hotspots token`: access tokens for the web API."""

from __future__ import annotations


import click

from geo.cli.context import session


# --- API tokens ------------------------------------------------------------------------------
@click.group()
def token() -> None:
    """Access tokens for the web API (POST /api/calls, and reads with HOTSPOTS_REQUIRE_READ_TOKEN)."""


@token.command("new")
@click.option("--name", required=True, help="Who holds the token, e.g. cad-feed (letters, digits, _ . -).")
@click.option("--days", type=click.IntRange(min=1), help="Expire after this many days (default: never).")
def token_new_cmd(name: str, days: int | None) -> None:
    """Print a new random token once, and the entry to add to HOTSPOTS_API_TOKENS (only its hash)."""
    from geo.auth import TokenConfigError, make_entry, new_token

    secret = new_token()
    try:
        entry = make_entry(name, secret, days)
    except TokenConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    click.echo(f"token (shown once; give it to {name}, it is not stored anywhere):")
    click.echo(f"  {secret}")
    click.echo("entry for HOTSPOTS_API_TOKENS (comma-separate several):")
    click.echo(f"  {entry.entry()}")
    if entry.expires is not None:
        click.echo(f"expires {entry.expires.isoformat()}")


@token.command("list")
def token_list_cmd() -> None:
    """The token entries configured in HOTSPOTS_API_TOKENS: names and expiry (never hashes)."""
    from datetime import datetime, timezone

    from geo.auth import TokenConfigError, parse_tokens

    try:
        entries = parse_tokens(session().server.api_tokens)
    except TokenConfigError as exc:
        raise click.ClickException(f"HOTSPOTS_API_TOKENS: {exc}") from None
    if not entries:
        click.echo("no tokens configured (HOTSPOTS_API_TOKENS is empty): POST /api/calls refuses every request")
    now = datetime.now(timezone.utc)
    for e in entries:
        state = "never expires" if e.expires is None else (
            f"expired {e.expires.isoformat()}" if e.expires <= now else f"expires {e.expires.isoformat()}")
        click.echo(f"{e.name}: {state}")
