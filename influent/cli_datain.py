"""``influent migrate influxdb1`` and ``influent import``: data from where it lives today."""
from __future__ import annotations

import asyncio
import re
import sys
from datetime import datetime, timezone

import click

from influent.config import Settings

_DURATION = re.compile(r"^(\d+)(ns|us|ms|s|m|h|d|w)$")
_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
          "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}


def parse_duration(text: str) -> int:
    """``10m``, ``1h``, ``7d`` ... in nanoseconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match[1]) == 0:
        raise click.BadParameter(f"{text!r}: expected a duration such as 30m, 1h, 1d")
    return int(match[1]) * _UNITS[match[2]]


def parse_time(text: str | None) -> int | None:
    """RFC 3339 time or integer nanoseconds."""
    if text is None:
        return None
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected RFC 3339 (2024-01-01T00:00:00Z) or ns")
    if stamp.tzinfo is None:
        raise click.BadParameter(f"{text!r}: give a time zone (Z or +hh:mm)")
    delta = stamp - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _report(settings: Settings, counts: dict[tuple[str, str], int], timeout: float,
            start: int | None = None, end: int | None = None) -> bool:
    from influent.datain.report import compare_counts, render_report

    click.echo(f"waiting up to {timeout:.0f}s for influent to show every row ...", err=True)
    rows = compare_counts(settings, counts, timeout, start, end)
    click.echo(render_report(rows))
    return all(r.ok for r in rows)


@click.group()
def migrate() -> None:
    """Copy data from another database into influent."""


@migrate.command("influxdb1")
@click.option("--url", required=True, help="HTTP URL of the InfluxDB 1.x server.")
@click.option("--db", required=True, help="Database to copy.")
@click.option("--rp", default=None, help="Retention policy (default: the database's default).")
@click.option("--measurement", "measurements", multiple=True, help="Only these (repeatable).")
@click.option("--start", default=None, help="Copy points at or after (RFC 3339 or ns).")
@click.option("--end", default=None, help="Copy points before (RFC 3339 or ns).")
@click.option("--target-db", default=None, help="influent database (default: the same name; "
              "a non-default policy becomes <db>/<rp>, as on the v1 endpoints).")
@click.option("--username", "-u", default=None, envvar="INFLUX_USERNAME")
@click.option("--password", "-p", default=None, envvar="INFLUX_PASSWORD")
@click.option("--window", default="1h", show_default=True, help="Time window read per query.")
@click.option("--batch-bytes", default=4 * 1024 * 1024, show_default=True,
              help="Line protocol per Kafka message (gzip'd).")
@click.option("--restart", is_flag=True, help="Forget the checkpoints of an earlier run.")
@click.option("--verify-timeout", default=300.0, show_default=True,
              help="Seconds to wait for the counts to match in the closing report.")
@click.pass_context
def migrate_influxdb1(ctx: click.Context, url: str, db: str, rp: str | None,
                      measurements: tuple[str, ...], start: str | None, end: str | None,
                      target_db: str | None, username: str | None, password: str | None,
                      window: str, batch_bytes: int, restart: bool, verify_timeout: float) -> None:
    """Copy an InfluxDB 1.x database over its HTTP API, resumably, through influent.writes."""
    import httpx
    from aiokafka.errors import KafkaError

    from influent.datain.influxdb1 import InfluxDB1Source, SourceError
    from influent.datain.migrate import MigrationPlan, migrate, target_database
    from persist.admission import database_name_error as validate_db_name

    settings: Settings = ctx.find_root().obj
    source = InfluxDB1Source(url, db, rp, username, password)
    try:
        target = target_db or target_database(db, rp, source.default_rp())
        reason = validate_db_name(target)
        if reason:
            raise click.ClickException(f"influent database {target!r}: {reason} (pass --target-db)")
        plan = MigrationPlan(url=url, db=db, rp=rp, target_db=target, measurements=measurements,
                             start=parse_time(start), end=parse_time(end),
                             window_ns=parse_duration(window), batch_bytes=batch_bytes,
                             username=username, password=password)
        click.echo(f"migrating {url} {db}{'.' + rp if rp else ''} -> influent database {target} "
                   f"(checkpoints: {settings.app_id}:migrate:{plan.job})", err=True)
        bar = click.progressbar(length=1, label="migrating", file=sys.stderr, show_pos=True,
                                item_show_func=lambda p: p.describe() if p else None)
        seen = []
        with bar:
            def show(p) -> None:
                seen[:] = [p]
                bar.length = max(p.windows_total, 1)
                bar.update(p.windows_done - bar.pos, p)
            counts = asyncio.run(migrate(settings, plan, source, show, restart=restart))
        if seen:  # also for logs, where the bar is not drawn
            click.echo(f"copied: {seen[0].windows_done} windows, {seen[0].describe()}", err=True)
    except SourceError as exc:
        raise click.ClickException(f"InfluxDB 1.x: {exc}")
    except (KafkaError, httpx.HTTPError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}")
    finally:
        source.close()
    if not _report(settings, counts, verify_timeout, plan.start, plan.end):
        raise click.ClickException("row counts differ (see the report)")


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--db", default=None, help="Write every point to this database (required for "
              "files without '# CONTEXT-DATABASE:' lines, e.g. 2.x export-lp).")
@click.option("--default-rp", default=None, help="Retention policy whose points land in the "
              "database itself (besides autogen, default and a database's only policy); "
              "others land in <db>/<rp>.")
@click.option("--batch-bytes", default=4 * 1024 * 1024, show_default=True,
              help="Line protocol per Kafka message (gzip'd).")
@click.option("--verify-timeout", default=300.0, show_default=True,
              help="Seconds to wait for the counts to match in the closing report.")
@click.pass_context
def import_command(ctx: click.Context, files: tuple[str, ...], db: str | None,
                   default_rp: str | None, batch_bytes: int, verify_timeout: float) -> None:
    """Import line protocol exported by influx_inspect export (1.x) or influxd inspect
    export-lp (2.x), gzip'd or not, through influent.writes."""
    import httpx
    from aiokafka.errors import KafkaError

    from influent.datain.importer import NoDatabase, import_files

    settings: Settings = ctx.find_root().obj
    bar = click.progressbar(length=1, label="importing", file=sys.stderr,
                            item_show_func=lambda p: p.describe() if p else None)
    seen = []
    with bar:
        def show(p) -> None:
            seen[:] = [p]
            bar.length = max(p.total_bytes, 1)
            bar.update(p.read_bytes - bar.pos, p)
        try:
            result = asyncio.run(import_files(settings, list(files), db, batch_bytes, show,
                                              default_rp))
        except NoDatabase as exc:
            raise click.ClickException(str(exc))
        except KafkaError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}")
    if seen:  # also for logs, where the bar is not drawn
        click.echo(f"sent: {seen[0].describe()}", err=True)
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    for name in sorted(result.databases - {d for d, _ in result.counts}):  # DDL without points
        httpx.post(f"{settings.http_url}/api/v3/configure/database", json={"db": name},
                   headers=headers, timeout=60)
    for line in result.errors[:20]:
        click.echo(f"rejected: {line}", err=True)
    if len(result.errors) > 20:
        click.echo(f"... and {len(result.errors) - 20} more rejected lines "
                   "(all of them are on the rejected topic)", err=True)
    ok = _report(settings, result.counts, verify_timeout)
    if result.errors or not ok:
        raise click.ClickException(f"{len(result.errors)} line(s) rejected"
                                   + ("" if ok else "; row counts differ (see the report)"))
