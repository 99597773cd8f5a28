"""``influent database ...`` and ``influent table ...``: manage databases and tables through the
query API (InfluxDB 3's configure endpoints; a retention period through InfluxQL's
``CREATE DATABASE ... WITH DURATION``)."""
from __future__ import annotations

import json

import click

from influent.cli_engine import _arguments, _call, _table

FIELD_TYPES = ("utf8", "int64", "uint64", "float64", "bool")


@click.group("database")
def database() -> None:
    """Create, list and delete databases."""


@database.command("create")
@click.argument("name")
@click.option("--retention-period", default=None,
              help="Keep data this long (InfluxQL duration: 30d, 12h, INF); default forever.")
@click.pass_context
def database_create(ctx: click.Context, name: str, retention_period: str | None) -> None:
    """Create database NAME."""
    if retention_period:
        statement = f'CREATE DATABASE "{_quoted(name)}" WITH DURATION {retention_period}'
        body = _call(ctx, "POST", "/query", data={"q": statement}).json()
        error = body.get("error") or (body.get("results") or [{}])[0].get("error")
        if error:
            raise click.ClickException(error)
    else:
        _call(ctx, "POST", "/api/v3/configure/database", json={"db": name})
    click.echo(f"database {name} created")


@database.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def database_list(ctx: click.Context, as_json: bool) -> None:
    """List the databases."""
    rows = _call(ctx, "GET", "/api/v3/configure/database", params={"format": "json"}).json()
    names = [r["iox::database"] for r in rows]
    click.echo(json.dumps(names) if as_json else "\n".join(names))


HARD_DELETE_HELP = ("When the data goes: now, never, default (INFLUENT_HARD_DELETE_DEFAULT after "
                    "the delete) or an RFC 3339 time.")


@database.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--hard-delete-at", default=None, help=HARD_DELETE_HELP)
@click.pass_context
def database_delete(ctx: click.Context, name: str, yes: bool, hard_delete_at: str | None) -> None:
    """Delete database NAME with all its data (soft delete: renamed and hidden now, data
    removed at --hard-delete-at)."""
    if not yes:
        click.confirm(f"delete database {name} and all its data?", abort=True)
    params = {"db": name, **({"hard_delete_at": hard_delete_at} if hard_delete_at else {})}
    _call(ctx, "DELETE", "/api/v3/configure/database", params=params)
    click.echo(f"database {name} deleted")


@click.group("table")
def table() -> None:
    """Create, list and delete tables."""


@table.command("create")
@click.argument("name")
@click.option("--db", required=True)
@click.option("--tag", "tags", multiple=True, help="Tag column (repeatable).")
@click.option("--field", "fields", multiple=True,
              help=f"Field column NAME:TYPE, TYPE one of {', '.join(FIELD_TYPES)} (repeatable).")
@click.pass_context
def table_create(ctx: click.Context, name: str, db: str, tags: tuple[str, ...],
                 fields: tuple[str, ...]) -> None:
    """Create table NAME in a database, with its tag and field columns."""
    parsed = []
    for spec in fields:
        column, _, kind = spec.rpartition(":")
        if not column or kind not in FIELD_TYPES:
            raise click.BadParameter(f"{spec!r}: expected NAME:TYPE with TYPE one of "
                                     f"{', '.join(FIELD_TYPES)}", param_hint="--field")
        parsed.append({"name": column, "type": kind})
    _call(ctx, "POST", "/api/v3/configure/table",
          json={"db": db, "table": name, "tags": list(tags), "fields": parsed})
    click.echo(f"table {db}/{name} created")


@table.command("list")
@click.option("--db", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def table_list(ctx: click.Context, db: str, as_json: bool) -> None:
    """List a database's tables with their columns."""
    tables = _call(ctx, "GET", "/api/v3/configure/table", params={"db": db}).json()
    if as_json:
        click.echo(json.dumps(tables))
        return
    rows = [[t["table_name"], ",".join(t["tags"]),
             ",".join(f"{f['name']}:{f['type']}" for f in t["fields"])] for t in tables]
    click.echo(_table(rows, ["table", "tags", "fields"]))


@table.command("delete")
@click.argument("name")
@click.option("--db", required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--hard-delete-at", default=None, help=HARD_DELETE_HELP)
@click.pass_context
def table_delete(ctx: click.Context, name: str, db: str, yes: bool,
                 hard_delete_at: str | None) -> None:
    """Delete table NAME with all its data (soft delete, as for a database)."""
    if not yes:
        click.confirm(f"delete table {db}/{name} and all its data?", abort=True)
    params = {"db": db, "table": name,
              **({"hard_delete_at": hard_delete_at} if hard_delete_at else {})}
    _call(ctx, "DELETE", "/api/v3/configure/table", params=params)
    click.echo(f"table {db}/{name} deleted")


def _quoted(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


@click.group("token")
def token() -> None:
    """Create, list and delete API tokens (admin or database-scoped)."""


@token.command("create")
@click.option("--name", required=True, help="Token name.")
@click.option("--permission", "permissions", multiple=True,
              help="'db:NAME[,NAME]:read[,write]' or '*' (repeatable); none: an admin token.")
@click.option("--expiry", "expiry_secs", type=int, default=None, help="Seconds until it expires.")
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the whole JSON answer.")
@click.pass_context
def token_create(ctx: click.Context, name: str, permissions: tuple[str, ...],
                 expiry_secs: int | None, description: str | None, as_json: bool) -> None:
    """Create a token; its secret is printed once and cannot be shown again."""
    body = {"token_name": name, **({"expiry_secs": expiry_secs} if expiry_secs else {})}
    if permissions:
        body.update(permissions=list(permissions), description=description)
        created = _call(ctx, "POST", "/api/v3/configure/token", json=body).json()
    else:
        created = _call(ctx, "POST", "/api/v3/configure/token/named_admin", json=body).json()
    if as_json:
        click.echo(json.dumps(created))
        return
    click.echo(f"token {name} created ({', '.join(created['permissions'])}); store it now, "
               f"it is not shown again:", err=True)
    click.echo(created["token"])


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    """List the tokens (never their secrets)."""
    tokens = _call(ctx, "GET", "/api/v3/configure/token").json()
    if as_json:
        click.echo(json.dumps(tokens))
        return
    rows = [[t["name"], ",".join(t["permissions"]), t["created_at"], t["expiry"] or "never"]
            for t in tokens]
    click.echo(_table(rows, ["name", "permissions", "created", "expires"]))


@token.command("delete")
@click.option("--name", required=True)
@click.pass_context
def token_delete(ctx: click.Context, name: str) -> None:
    """Revoke a token (refused by every API replica within a second)."""
    _call(ctx, "DELETE", "/api/v3/configure/token", params={"token_name": name})
    click.echo(f"token {name} deleted")


# ---- plugins: upload and dry runs ------------------------------------------------------------


def _print_dry_run(result: dict) -> None:
    click.echo(json.dumps(result, indent=2))
    if result.get("errors"):
        raise click.ClickException(f"{len(result['errors'])} error(s)")


@click.group("plugin")
def plugin() -> None:
    """Upload processing-engine plugins (stored in the catalog: every worker runs the same)."""


@plugin.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="Plugin name (default: the file's name).")
@click.pass_context
def plugin_upload(ctx: click.Context, path: str, name: str | None) -> None:
    """Upload a single-file plugin."""
    from pathlib import Path

    name = name or Path(path).name
    _call(ctx, "PUT", "/api/v3/plugins/files",
          json={"plugin_name": name, "content": Path(path).read_text()})
    click.echo(f"plugin {name} uploaded")


@click.group("test")
def test() -> None:
    """Dry-run a plugin: see its logs and writes; nothing is written."""


@test.command("wal_plugin")
@click.argument("filename")
@click.option("--database", "--db", "database", required=True)
@click.option("--lp", "input_lp", required=True, help="Line protocol to hand the plugin.")
@click.option("--input-arguments", "pairs", multiple=True, help="KEY=VALUE (repeatable).")
@click.pass_context
def test_wal_plugin(ctx: click.Context, filename: str, database: str, input_lp: str,
                    pairs: tuple[str, ...]) -> None:
    """Call process_writes of FILENAME (uploaded, or in the plugin directory) once."""
    body = {"filename": filename, "database": database, "input_lp": input_lp,
            "input_arguments": _arguments(pairs, "--input-arguments")}
    _print_dry_run(_call(ctx, "POST", "/api/v3/plugin_test/wal", json=body).json())


@test.command("schedule_plugin")
@click.argument("filename")
@click.option("--database", "--db", "database", required=True)
@click.option("--schedule", default=None, help="Cron expression or every:/cron: spec.")
@click.option("--input-arguments", "pairs", multiple=True, help="KEY=VALUE (repeatable).")
@click.pass_context
def test_schedule_plugin(ctx: click.Context, filename: str, database: str, schedule: str | None,
                         pairs: tuple[str, ...]) -> None:
    """Call process_scheduled_call of FILENAME once."""
    body = {"filename": filename, "database": database, "schedule": schedule,
            "input_arguments": _arguments(pairs, "--input-arguments")}
    _print_dry_run(_call(ctx, "POST", "/api/v3/plugin_test/schedule", json=body).json())
