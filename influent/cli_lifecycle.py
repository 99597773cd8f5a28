"""``influent retention``: retention periods of databases and tables from the command line
(the same catalog entries as ``PUT /api/v3/configure/database``)."""
from __future__ import annotations

import asyncio

import click

from influent.config import Settings


def _run(settings: Settings, action):
    from persist.catalog import Catalog
    from persist.lifecycle_catalog import LifecycleCatalog
    from persist.object_store import open_store

    async def go():
        catalog = Catalog.connect(settings.redis_url, settings.app_id)
        try:
            return await action(catalog, LifecycleCatalog(catalog), open_store(settings))
        finally:
            await catalog.close()

    return asyncio.run(go())


@click.group()
def retention() -> None:
    """Show and change retention periods (rows older than the period are invisible at once;
    the worker's sweep removes their files)."""


@retention.command("set")
@click.argument("db")
@click.argument("period")
@click.option("--table", default=None, help="Set the period of one table (else the database's).")
@click.pass_context
def retention_set(ctx: click.Context, db: str, period: str, table: str | None) -> None:
    """Set the retention PERIOD of DB or of one of its tables: 30d, 12h, "1h 30m" and so on."""
    from persist.visibility import format_duration, parse_duration

    try:
        period_ns = parse_duration(period)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="PERIOD") from exc

    async def action(catalog, lifecycle, store):
        if not await catalog.has_database(db):
            raise click.ClickException(f"database not found: {db}")
        await catalog.set_retention(db, table, period_ns)
        await lifecycle.save_retention_copy(store)

    _run(ctx.find_root().obj, action)
    click.echo(f"retention of {db}{'/' + table if table else ''}: {format_duration(period_ns)}")


@retention.command("clear")
@click.argument("db")
@click.option("--table", default=None, help="Clear the period of one table.")
@click.pass_context
def retention_clear(ctx: click.Context, db: str, table: str | None) -> None:
    """Keep the rows of DB (or one table) forever."""

    async def action(catalog, lifecycle, store):
        await catalog.set_retention(db, table, None)
        await lifecycle.save_retention_copy(store)

    _run(ctx.find_root().obj, action)
    click.echo(f"retention of {db}{'/' + table if table else ''}: none")


@retention.command("show")
@click.pass_context
def retention_show(ctx: click.Context) -> None:
    """Every retention period set, one per line: database[/table] period."""
    from persist.visibility import format_duration

    async def action(catalog, lifecycle, store):
        return await catalog.redis.hgetall(catalog.k_retention())

    for name, value in sorted(_run(ctx.find_root().obj, action).items()):
        click.echo(f"{name.decode().replace(chr(31), '/')}\t{format_duration(int(value))}")
