"""Migration pieces without a server (pure): windows, names, times, and 1.x answers rendered
to exact line protocol with the declared field types."""
from __future__ import annotations

import click
import pytest

from influent.cli_datain import parse_duration, parse_time
from influent.datain.influxdb1 import Measurement, Window, series_table, table_lines, windows
from influent.datain.migrate import MigrationPlan, target_database
from topics.line_protocol import parse_lp


def test_windows_are_aligned_so_a_window_keeps_its_bounds_across_runs():
    assert windows(15, 35, 10) == [Window(10, 20), Window(20, 30), Window(30, 40)]
    assert windows(20, 20, 10) == [Window(20, 30)]
    assert windows(-5, 3, 10) == [Window(-10, 0), Window(0, 10)]


def test_target_database_follows_the_policy():
    assert target_database("db", None, "autogen") == "db"
    assert target_database("db", "autogen", "one_year") == "db"
    assert target_database("db", "one_year", "one_year") == "db"
    assert target_database("db", "weekly", "autogen") == "db/weekly"


def test_times_and_durations():
    assert parse_time(None) is None
    assert parse_time("1451606400000000000") == 1451606400000000000
    assert parse_time("2016-01-01T00:00:00Z") == 1451606400000000000
    assert parse_time("2016-01-01T01:00:00.5+01:00") == 1451606400500000000
    assert parse_time("1969-12-31T23:59:59.25Z") == -750_000_000
    with pytest.raises(click.BadParameter):
        parse_time("2016-01-01T00:00:00")  # no zone
    assert parse_duration("10m") == 600 * 10**9 and parse_duration("7d") == 7 * 86400 * 10**9
    for bad in ("0h", "1y", "h"):
        with pytest.raises(click.BadParameter):
            parse_duration(bad)


def test_job_names_the_source_and_the_target():
    plan = MigrationPlan(url="http://old:8086/", db="telegraf", rp=None, target_db="t")
    assert plan.job == "influxdb1:old:8086/telegraf/->t"


def test_a_series_renders_with_the_declared_types():
    m = Measurement("m x", {"f": "float", "i": "integer", "s": "string", "b": "boolean"})
    series = {"name": "m x", "tags": {"host": "a b", "dc": ""},
              "columns": ["time", "b", "f", "i", "s"],
              "values": [[1, True, 1, 9007199254740993, 'say "hi"'],
                         [2, None, 2.5, None, None]]}
    table = series_table(m, series)
    lines = table_lines(m, table, list(series["tags"]))
    assert lines.decode().split("\n") == [
        'm\\ x,host=a\\ b b=true,f=1,i=9007199254740993i,s="say \\"hi\\"" 1',
        "m\\ x,host=a\\ b f=2.5 2"]
    parsed = parse_lp(lines, precision="ns")  # a bare "1" is a float in line protocol
    assert parsed.errors == [] and parsed.tables["m x"].fields == {
        "b": "boolean", "f": "float", "i": "integer", "s": "string"}
