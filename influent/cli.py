"""The ``influent`` command: worker, API server, local dev stack and user tools."""
from __future__ import annotations

import sys

import click

from influent.config import Settings
from influent.cli_admin import database, plugin, table, test, token
from influent.cli_caches import cache
from influent.cli_datain import import_command, migrate
from influent.cli_engine import subscription, trigger
from influent.cli_lifecycle import retention
from influent.devstack import dev


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj


@click.group()
@click.option("--kafka-bootstrap", envvar=None, default=None, help="Kafka bootstrap servers.")
@click.option("--redis-url", default=None, help="Redis URL of the catalog.")
@click.option("--object-store", default=None, help="Object store URL (file:///dir or s3://bucket).")
@click.option("--http-bind", default=None, help="host:port of the query API.")
@click.option("--topic-prefix", default=None, help="Prefix of every Kafka topic and catalog key.")
@click.option("--partitions", type=int, default=None, help="Partitions of the data topics.")
@click.option("--state-dir", default=None, help="Local state folder.")
@click.pass_context
def main(ctx: click.Context, **overrides) -> None:
    """influent: a time-series database built as a Kafka stream-processing pipeline."""
    ctx.obj = Settings.from_env(**overrides)


@main.command()
@click.option("--worker-id", default=None, help="Name of this worker (its local state folder).")
@click.option("--web-port", type=int, default=None, help="Port of the worker's status web server.")
@click.option("--loglevel", default=None)
@click.pass_context
def worker(ctx: click.Context, worker_id: str | None, web_port: int | None, loglevel: str | None) -> None:
    """Run a Faust worker: ingest (and the other agents) over the write topics."""

    from agents.app import InfluentWorker, create_app

    import asyncio

    from topics.admin import ensure_topics

    settings = _settings(ctx).replace(**{k: v for k, v in (("worker_id", worker_id),
                                                           ("worker_web_port", web_port)) if v})
    asyncio.run(ensure_topics(settings))
    app, drain = create_app(settings)
    worker = InfluentWorker(app, drain, loglevel=loglevel or settings.log_level, quiet=True)
    worker.execute_from_commandline()


@main.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """Run the query API (HTTP) server."""
    import uvicorn

    from query_api.front import SniffingProtocol
    from query_api.server import create_api

    settings = _settings(ctx)
    # one port for HTTP and Arrow Flight (gRPC), as InfluxDB 3 serves them
    uvicorn.run(create_api(settings), host=settings.http_host, port=settings.http_port,
                log_level=settings.log_level, access_log=False, http=SniffingProtocol)


@main.command("parse-lp")
@click.option("--precision", default="ns", show_default=True, help="ns, us, ms, s or auto.")
@click.option("--default-time", type=int, default=None, help="Timestamp (ns) for lines without one.")
def parse_lp_command(precision: str, default_time: int | None) -> None:
    """Validate line protocol on stdin: one JSON object per point or error; exit 1 on any error."""
    from topics.line_protocol import parse_lp_main

    out, status = parse_lp_main(sys.stdin.buffer.read(), precision, default_time)
    for line in out:
        click.echo(line)
    sys.exit(status)


def _auth_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.token}"} if settings.token else {}


@main.command()
@click.argument("query")
@click.option("--db", required=True, help="Database to query.")
@click.option("--influxql", is_flag=True, help="The query is InfluxQL (default SQL).")
@click.option("--format", "fmt", default="pretty", show_default=True,
              type=click.Choice(["pretty", "json", "jsonl", "csv", "parquet"]))
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the result to a file.")
@click.pass_context
def query(ctx: click.Context, query: str, db: str, influxql: bool, fmt: str, output: str | None) -> None:
    """Run a SQL (or InfluxQL) query through the query API and print the result."""
    import httpx

    settings = _settings(ctx)
    path = "/api/v3/query_influxql" if influxql else "/api/v3/query_sql"
    with httpx.stream("POST", settings.http_url + path, json={"db": db, "q": query, "format": fmt},
                      headers=_auth_headers(settings), timeout=300) as resp:
        if resp.status_code != 200:
            resp.read()
            raise click.ClickException(f"{resp.status_code}: {resp.text.strip()}")
        sink = open(output, "wb") if output else sys.stdout.buffer
        try:
            for chunk in resp.iter_bytes():
                sink.write(chunk)
        finally:
            if output:
                sink.close()
            else:
                sink.flush()


class _ByteCount:
    """Stands in for a progress bar when the input's size is unknown; says the total at the end."""

    def __init__(self) -> None:
        self.sent = 0

    def __enter__(self) -> "_ByteCount":
        return self

    def __exit__(self, *exc) -> None:
        click.echo(f"writing: {self.sent} bytes sent", err=True)

    def update(self, n: int) -> None:
        self.sent += n


@main.command()
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--db", required=True, help="Database to write to.")
@click.option("--precision", default="auto", show_default=True)
@click.option("--batch-bytes", default=4 * 1024 * 1024, show_default=True,
              help="Send the input in requests of about this size (whole lines).")
@click.pass_context
def write(ctx: click.Context, source, db: str, precision: str, batch_bytes: int) -> None:
    """Send line protocol from FILE (or stdin) through the write API, with a progress bar."""
    import os

    import httpx

    settings = _settings(ctx)
    total = os.fstat(source.fileno()).st_size if source.seekable() else 0
    url = f"{settings.http_url}/api/v3/write_lp"
    errors = 0
    progress = click.progressbar(length=total, label="writing", file=sys.stderr, show_pos=True) \
        if total else _ByteCount()  # a pipe has no size to show progress against
    with httpx.Client(timeout=300, headers=_auth_headers(settings)) as client, progress as bar:
        while True:
            chunk = source.read(batch_bytes)
            if not chunk:
                break
            chunk += source.readline()  # never split a line between requests
            resp = client.post(url, params={"db": db, "precision": precision}, content=chunk)
            if resp.status_code != 204:
                errors += 1
                click.echo(f"\n{resp.status_code}: {resp.text.strip()}", err=True)
            bar.update(len(chunk))
    if errors:
        raise click.ClickException(f"{errors} request(s) reported errors")


@main.command("partition-template")
@click.option("--db", required=True)
@click.option("--table", default=None, help="Only this table (default: the whole database).")
@click.option("--time-format", default="%Y-%m-%d", show_default=True, help="strftime format of time.")
@click.option("--tag", "tags", multiple=True, help="Tag whose value joins the key (repeatable).")
@click.pass_context
def partition_template(ctx: click.Context, db: str, table: str | None, time_format: str,
                       tags: tuple[str, ...]) -> None:
    """Set how new data of a database or table is split into partitions (IOx-style template)."""
    import asyncio

    from persist.catalog import Catalog
    from persist.partitioning import PartitionTemplate

    settings = _settings(ctx)
    template = PartitionTemplate(time_format, tags)

    async def run() -> None:
        cat = Catalog.connect(settings.redis_url, settings.app_id)
        try:
            await cat.set_partition_template(db, table, template)
        finally:
            await cat.close()

    asyncio.run(run())
    click.echo(f"partition template of {db}{'/' + table if table else ''}: {template.to_json()}")


@main.group()
def catalog() -> None:
    """Inspect and repair the catalog."""


@catalog.command("rebuild")
@click.pass_context
def catalog_rebuild(ctx: click.Context) -> None:
    """Restore every file record from the object store alone (e.g. after losing Redis)."""
    import asyncio

    from persist.catalog import Catalog
    from persist.object_store import open_store
    from persist.rebuild import rebuild_catalog, rebuild_lifecycle

    settings = _settings(ctx.find_root())

    async def run() -> tuple[int, int, int]:
        cat = Catalog.connect(settings.redis_url, settings.app_id)
        try:
            store = open_store(settings)
            tombstones, periods = await rebuild_lifecycle(cat, store)
            return len(await rebuild_catalog(cat, store)), tombstones, periods
        finally:
            await cat.close()

    files, tombstones, periods = asyncio.run(run())
    click.echo(f"restored {files} file records, {tombstones} tombstones and {periods} retention "
               f"periods from {settings.object_store_url}")


main.add_command(dev)
main.add_command(subscription)
main.add_command(trigger)
main.add_command(migrate)
main.add_command(import_command)
main.add_command(database)
main.add_command(table)
main.add_command(cache)
main.add_command(token)
main.add_command(plugin)
main.add_command(test)
main.add_command(retention)

if __name__ == "__main__":
    main()
