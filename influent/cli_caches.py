"""``influent cache ...``: Last Value Caches and Distinct Value Caches through the query API
(InfluxDB 3's ``/api/v3/configure/last_cache`` and ``/distinct_cache``; the listing reads
``system.last_caches`` and ``system.distinct_caches``)."""
from __future__ import annotations

import click

from influent.cli_engine import _call, _table
from persist.visibility import parse_duration


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _seconds(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text) if text.isdigit() else parse_duration(text) // 10**9
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("cache")
def cache() -> None:
    """Create, list and delete last value and distinct value caches."""


@cache.group("create")
def create() -> None:
    """Create a cache."""


@create.command("last")
@click.argument("name", required=False)
@click.option("--db", required=True)
@click.option("--table", required=True)
@click.option("--key-columns", default=None, help="Comma-separated key columns (default: the tags).")
@click.option("--value-columns", default=None,
              help="Comma-separated value columns (default: every other column).")
@click.option("--count", type=int, default=None, help="Rows kept per key (1-10, default 1).")
@click.option("--ttl", default=None, help="Time to live: seconds or 30m, 4h ... (default 4h).")
@click.pass_context
def create_last(ctx: click.Context, name: str | None, db: str, table: str,
                key_columns: str | None, value_columns: str | None, count: int | None,
                ttl: str | None) -> None:
    """Create a last value cache on a table (NAME generated when omitted)."""
    body = {"db": db, "table": table, "name": name, "key_columns": _columns(key_columns),
            "value_columns": _columns(value_columns), "count": count, "ttl": _seconds(ttl)}
    made = _call(ctx, "POST", "/api/v3/configure/last_cache",
                 json={k: v for k, v in body.items() if v is not None}).json()
    click.echo(f"last cache {made['name']} created on {table}")


@create.command("distinct")
@click.argument("name", required=False)
@click.option("--db", required=True)
@click.option("--table", required=True)
@click.option("--columns", required=True, help="Comma-separated tag or string columns, outermost first.")
@click.option("--max-cardinality", type=int, default=None, help="Combinations kept (default 100000).")
@click.option("--max-age", default=None, help="Drop combinations not seen for this long (default 1d).")
@click.pass_context
def create_distinct(ctx: click.Context, name: str | None, db: str, table: str, columns: str,
                    max_cardinality: int | None, max_age: str | None) -> None:
    """Create a distinct value cache on a table (NAME generated when omitted)."""
    body = {"db": db, "table": table, "name": name, "columns": _columns(columns),
            "max_cardinality": max_cardinality, "max_age": _seconds(max_age)}
    made = _call(ctx, "POST", "/api/v3/configure/distinct_cache",
                 json={k: v for k, v in body.items() if v is not None}).json()
    click.echo(f"distinct cache {made['name']} created on {table}")


@cache.command("delete")
@click.argument("kind", type=click.Choice(["last", "distinct"]))
@click.argument("name")
@click.option("--db", required=True)
@click.option("--table", required=True)
@click.pass_context
def delete(ctx: click.Context, kind: str, name: str, db: str, table: str) -> None:
    """Delete cache NAME of a table."""
    _call(ctx, "DELETE", f"/api/v3/configure/{kind}_cache",
          params={"db": db, "table": table, "name": name})
    click.echo(f"{kind} cache {name} deleted")


@cache.command("list")
@click.option("--db", required=True)
@click.pass_context
def list_caches(ctx: click.Context, db: str) -> None:
    """List the caches of a database."""
    def query(sql: str) -> list[dict]:
        return _call(ctx, "GET", "/api/v3/query_sql", params={"db": db, "q": sql,
                                                             "format": "json"}).json()

    rows = [["last", r["table"], r["name"], ",".join(r["key_column_names"]),
             ",".join(r.get("value_column_names") or ["*"]), f"count={r['count']} ttl={r['ttl']}s"]
            for r in query("SELECT * FROM system.last_caches ORDER BY \"table\", name")]
    rows += [["distinct", r["table"], r["name"], ",".join(r["column_names"]), "",
              f"max_cardinality={r['max_cardinality']} max_age={r['max_age_seconds']}s"]
             for r in query("SELECT * FROM system.distinct_caches ORDER BY \"table\", name")]
    click.echo(_table(rows, ["kind", "table", "name", "keys/columns", "values", "limits"])
               if rows else "no caches")
