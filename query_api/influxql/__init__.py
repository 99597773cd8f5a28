"""InfluxQL for influent: parse, plan onto DataFusion/Arrow, and answer as InfluxDB 1.x does.

Public API:

* :func:`execute_influxql` -- the ``/query`` (v1) response body for a query text;
* :func:`to_table_rows` -- one statement's result as the v3 ``/api/v3/query_influxql`` rows;
* :func:`query_target` -- statement count and the databases a query names (v3 checks);
* :func:`encode_json` -- serialise a body byte-compatibly with InfluxDB 1.x;
* :class:`InfluxQLSource` -- what the engine reads; :class:`MemorySource` over Arrow tables.

See docs/influxql.md for the supported syntax and the known differences from InfluxDB 1.x.
"""
from query_api.influxql.executor import QueryTarget, execute_influxql, query_target
from query_api.influxql.parser import ParseError, parse_query
from query_api.influxql.results import encode_json, to_table_rows
from query_api.influxql.source import InfluxQLSource, MemorySource, schema_from_arrow

__all__ = ["InfluxQLSource", "MemorySource", "ParseError", "QueryTarget", "encode_json",
           "execute_influxql", "parse_query", "query_target", "schema_from_arrow",
           "to_table_rows"]
