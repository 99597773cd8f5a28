"""``influent subscription ...`` and ``influent trigger ...``: manage subscriptions and
processing-engine triggers through the query API's configure endpoints."""
from __future__ import annotations

import json

import click
import httpx

from influent.config import Settings


def _call(ctx: click.Context, method: str, path: str, **kwargs) -> httpx.Response:
    settings: Settings = ctx.find_root().obj
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    try:
        resp = httpx.request(method, settings.http_url + path, headers=headers, timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the query API at {settings.http_url}: {exc}")
    if resp.status_code >= 400:
        raise click.ClickException(f"{resp.status_code}: {resp.text.strip()}")
    return resp


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in rows])


# ---- subscriptions -------------------------------------------------------------------------


@click.group("subscription")
def subscription() -> None:
    """Forward matching writes, as line protocol, to a Kafka topic or an HTTP receiver."""


@subscription.command("create")
@click.option("--db", required=True)
@click.option("--name", required=True)
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable; default all).")
@click.option("--where", "predicate", default=None,
              help="Predicate on tags and fields, e.g. \"host = 'a' AND usage > 50\".")
@click.option("--kafka-topic", default=None, help="Destination: this Kafka topic.")
@click.option("--url", default=None, help="Destination: this HTTP URL (InfluxDB 1.x /write).")
@click.pass_context
def subscription_create(ctx: click.Context, db: str, name: str, tables: tuple[str, ...],
                        predicate: str | None, kafka_topic: str | None, url: str | None) -> None:
    """Create a subscription."""
    if bool(kafka_topic) == bool(url):
        raise click.UsageError("give exactly one of --kafka-topic and --url")
    destination = {"kind": "kafka", "topic": kafka_topic} if kafka_topic else {"kind": "http", "url": url}
    body = {"db": db, "name": name, "tables": list(tables) or None, "predicate": predicate,
            "destination": destination}
    _call(ctx, "POST", "/api/v3/configure/subscription", json=body)
    click.echo(f"subscription {db}/{name} created")


@subscription.command("list")
@click.option("--db", default=None, help="Only this database.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def subscription_list(ctx: click.Context, db: str | None, as_json: bool) -> None:
    """List subscriptions."""
    subs = _call(ctx, "GET", "/api/v3/configure/subscription", params={"db": db} if db else {}).json()
    if as_json:
        click.echo(json.dumps(subs, indent=2))
        return
    rows = [[s["db"], s["name"], ",".join(s["tables"] or []) or "*", s["predicate"] or "",
             s["mode"], " ".join(d.get("topic") and f"kafka:{d['topic']}" or d.get("url", "")
                                  for d in s["destinations"])] for s in subs]
    click.echo(_table(rows, ["db", "name", "tables", "predicate", "mode", "destinations"]))


@subscription.command("delete")
@click.option("--db", required=True)
@click.option("--name", required=True)
@click.pass_context
def subscription_delete(ctx: click.Context, db: str, name: str) -> None:
    """Delete a subscription."""
    _call(ctx, "DELETE", "/api/v3/configure/subscription", params={"db": db, "name": name})
    click.echo(f"subscription {db}/{name} deleted")


# ---- triggers ------------------------------------------------------------------------------

TRIGGER_PATH = "/api/v3/configure/processing_engine_trigger"


def _arguments(pairs: tuple[str, ...], option: str = "--arg") -> dict[str, str] | None:
    """KEY=VALUE options as a dict (None when there are none)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
        out[key] = value
    return out or None


@click.group("trigger")
def trigger() -> None:
    """Processing-engine triggers: run InfluxDB 3 plugins on writes, persists, schedules or
    HTTP requests."""


@trigger.command("create")
@click.option("--db", required=True)
@click.option("--name", "trigger_name", required=True)
@click.option("--plugin", "plugin_filename", required=True,
              help="Plugin file (or package directory) under INFLUENT_PLUGIN_DIR.")
@click.option("--spec", "specification", required=True,
              help="table:<t>, all_tables, every:<duration>, cron:<expr>, request:<path>, "
                   "persist:<t>, persist:all_tables.")
@click.option("--arg", "args", multiple=True, help="Trigger argument key=value (repeatable).")
@click.option("--error-behavior", type=click.Choice(["log", "retry", "disable"]), default="log",
              show_default=True)
@click.option("--run-async", is_flag=True, help="Scheduled calls may overlap.")
@click.option("--fire-on-own-writes", is_flag=True, help="On-write: also fire on own writes.")
@click.option("--timeout", "timeout_seconds", type=float, default=300.0, show_default=True,
              help="Time limit of one plugin call, in seconds.")
@click.option("--disabled", is_flag=True, help="Create the trigger disabled.")
@click.pass_context
def trigger_create(ctx: click.Context, db: str, trigger_name: str, plugin_filename: str,
                   specification: str, args: tuple[str, ...], error_behavior: str,
                   run_async: bool, fire_on_own_writes: bool, timeout_seconds: float,
                   disabled: bool) -> None:
    """Create a trigger (InfluxDB 3's create request)."""
    body = {"db": db, "trigger_name": trigger_name, "plugin_filename": plugin_filename,
            "trigger_specification": specification, "trigger_arguments": _arguments(args),
            "trigger_settings": {"run_async": run_async, "error_behavior": error_behavior,
                                 "fire_on_own_writes": fire_on_own_writes,
                                 "timeout_seconds": timeout_seconds},
            "disabled": disabled}
    _call(ctx, "POST", TRIGGER_PATH, json=body)
    click.echo(f"trigger {db}/{trigger_name} created")


@trigger.command("list")
@click.option("--db", default=None, help="Only this database.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def trigger_list(ctx: click.Context, db: str | None, as_json: bool) -> None:
    """List triggers."""
    found = _call(ctx, "GET", TRIGGER_PATH, params={"db": db} if db else {}).json()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    rows = [[t["db"], t["trigger_name"], t["plugin_filename"], t["trigger_specification"],
             "disabled" if t["disabled"] else "enabled", t["trigger_settings"]["error_behavior"]]
            for t in found]
    click.echo(_table(rows, ["db", "name", "plugin", "specification", "state", "on error"]))


@trigger.command("delete")
@click.option("--db", required=True)
@click.option("--name", "trigger_name", required=True)
@click.option("--force", is_flag=True, help="Delete even if the trigger is enabled.")
@click.pass_context
def trigger_delete(ctx: click.Context, db: str, trigger_name: str, force: bool) -> None:
    """Delete a trigger."""
    _call(ctx, "DELETE", TRIGGER_PATH, json={"db": db, "trigger_name": trigger_name, "force": force})
    click.echo(f"trigger {db}/{trigger_name} deleted")


def _switch(action: str):
    @trigger.command(action, help=f"{action.capitalize()} a trigger.")
    @click.option("--db", required=True)
    @click.option("--name", "trigger_name", required=True)
    @click.pass_context
    def command(ctx: click.Context, db: str, trigger_name: str) -> None:
        _call(ctx, "POST", f"{TRIGGER_PATH}/{action}", json={"db": db, "trigger_name": trigger_name})
        click.echo(f"trigger {db}/{trigger_name} {action}d")

    return command


trigger_enable = _switch("enable")
trigger_disable = _switch("disable")
