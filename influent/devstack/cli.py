"""``influent dev ...``: the click commands over :mod:`influent.devstack.stack`."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import click

from influent.devstack.processes import DevstackError
from influent.config import Settings
from influent.devstack.install import _cds_archive_path, _java, ensure_redis_installed, kafka_classpath, kafka_home
from influent.devstack.stack import STACK, StackLayout, dev_down, dev_status, dev_up
from influent.devstack.supervisor import spawn_supervisor, supervise
from influent.devstack.supervisor_files import supervisor_pid

# ---- CLI ---------------------------------------------------------------------------------


def _settings_from(ctx: click.Context, state_dir: str | None) -> Settings:
    obj = ctx.find_object(Settings)
    if obj is None and isinstance(ctx.obj, dict) and isinstance(ctx.obj.get("settings"), Settings):
        obj = ctx.obj["settings"]
    settings = obj if obj is not None else Settings.from_env()
    if state_dir:
        settings = settings.replace(state_dir=Path(state_dir))
    return settings


def _services_option(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in STACK]
    if unknown:
        raise click.BadParameter(f"unknown service(s) {unknown}; choose from {list(STACK)}")
    return names


_state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False), default=None,
    help="State folder (default: Settings.state_dir, INFLUENT_STATE_DIR or <repo>/.state).")
_services_opt = click.option(
    "--services", default=",".join(STACK), show_default=True,
    help="Comma-separated subset of the stack.")


@click.group("dev")
def dev() -> None:
    """Run influent's local stack: Kafka (KRaft), Redis, the Faust worker and the query API."""


@dev.command("up")
@click.option("--foreground", is_flag=True,
              help="Stay attached; Ctrl-C or SIGTERM stops everything started.")
@_services_opt
@click.option("--controller-port", type=int, default=None,
              help="Kafka KRaft controller port (default: Kafka port + 1).")
@click.option("--timeout", type=float, default=None,
              help="Health-wait seconds per service (default: kafka 90, redis 30, "
                   "worker 120, api 60).")
@_state_dir_option
@click.pass_context
def dev_up_command(ctx: click.Context, foreground: bool, services: str,
                   controller_port: int | None, timeout: float | None,
                   state_dir: str | None) -> None:
    """Start the stack (reusing running services and kept state)."""
    settings = _settings_from(ctx, state_dir)
    names = _services_option(services)
    supervisor = supervisor_pid(StackLayout.of(settings))
    if foreground and supervisor is not None:
        raise click.ClickException(f"the stack is already supervised in the background by pid "
                                   f"{supervisor}; `influent dev down` stops it first")
    if foreground:  # SIGTERM during startup also cleans up (the children die with us anyway)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = dev_up(settings, names, controller_port=controller_port,
                        foreground=foreground, timeout=timeout, echo=click.echo)
    except DevstackError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.Abort() from None
    for label, value in (("HTTP", settings.http_url), ("Kafka", settings.kafka_bootstrap),
                         ("Redis", settings.redis_url), ("objects", settings.object_store_url),
                         ("state", StackLayout.of(settings).root)):
        click.echo(f"{label:<8}{value}")
    if foreground:
        click.echo("running in the foreground, supervised (a service that exits is restarted); "
                   "Ctrl-C stops everything")
        ctx.exit(supervise(settings, result, controller_port=controller_port,
                           echo=_stamped(click.echo)))
    elif supervisor is not None:
        click.echo(f"running in the background, supervised by pid {supervisor}; "
                   f"`influent dev down` stops it")
    else:
        pid = spawn_supervisor(settings, names, controller_port)
        click.echo(f"running in the background, supervised by pid {pid} (log "
                   f"{StackLayout.of(settings).logs / 'supervisor.log'}); "
                   f"`influent dev down` stops it")


def _stamped(echo):
    """``echo`` with a UTC time stamp before each line (restarts are events worth dating)."""
    return lambda line: echo(f"{time.strftime('%H:%M:%S', time.gmtime())} {line}")


@dev.command("supervise", hidden=True)
@_services_opt
@click.option("--controller-port", type=int, default=None)
@_state_dir_option
@click.pass_context
def dev_supervise_command(ctx: click.Context, services: str, controller_port: int | None,
                          state_dir: str | None) -> None:
    """Watch the running stack and restart what exits (``influent dev up`` starts this)."""
    settings = _settings_from(ctx, state_dir)
    try:
        result = dev_up(settings, _services_option(services), controller_port=controller_port,
                        echo=_stamped(click.echo))
    except DevstackError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.exit(supervise(settings, result, controller_port=controller_port, foreground=False,
                       echo=_stamped(click.echo)))


@dev.command("down")
@_services_opt
@_state_dir_option
@click.pass_context
def dev_down_command(ctx: click.Context, services: str, state_dir: str | None) -> None:
    """Stop the services the pid files name (reverse start order); state is kept."""
    dev_down(_settings_from(ctx, state_dir), _services_option(services), echo=click.echo)


@dev.command("status")
@_state_dir_option
@click.pass_context
def dev_status_command(ctx: click.Context, state_dir: str | None) -> None:
    """Print each service's state; exit code 3 when a managed service is not running."""
    settings = _settings_from(ctx, state_dir)
    all_up = True
    for name, entry in dev_status(settings).items():
        state = str(entry["state"])
        pid = f"pid {entry['pid']}" if "pid" in entry else ""
        health = "healthy" if entry["healthy"] else ("" if state == "stopped" else "not answering")
        all_up &= state != "stopped"
        restarts = f"restarts {entry['restarts']}" if entry.get("supervised") else "unsupervised"
        last = f" (last: {entry['last_exit']})" if entry.get("last_exit") else ""
        click.echo(f"{name:<7} {state:<9} {pid:<11} {entry['endpoint']:<28} {health:<14} "
                   f"{restarts}{last}")
    ctx.exit(0 if all_up else 3)


@dev.command("install")
def dev_install_command() -> None:
    """Provision prerequisites: redis-server (apt-get) and the Kafka jars (mvn).
    Idempotent; what is present is reused."""
    try:
        started = time.monotonic()
        click.echo(f"redis-server  {ensure_redis_installed()}")
        classpath = kafka_classpath()
        click.echo(f"kafka jars    {kafka_home() / 'lib'} ({len(classpath.split(os.pathsep))} jars)")
        archive = _cds_archive_path(_java())
        click.echo(f"class data    {archive if archive.exists() else 'not learned yet'}")
        click.echo(f"ready in {time.monotonic() - started:.1f}s")
    except DevstackError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":  # python -m influent.devstack up|down|status|install
    dev()
