"""Arrow Flight SQL on influent's Flight server, for SQL tools (ADBC, JDBC, Grafana's Flight SQL
data source, DBeaver): statements, prepared statements with bound parameters, and the metadata
commands a tool sends first.

What is served (read-only, as InfluxDB 3's Flight SQL):

- ``GetFlightInfo``/``GetSchema`` + ``DoGet`` for ``CommandStatementQuery``,
  ``CommandPreparedStatementQuery``, ``CommandGetSqlInfo``, ``CommandGetCatalogs``,
  ``CommandGetDbSchemas``, ``CommandGetTables`` (with ``include_schema``),
  ``CommandGetTableTypes`` (and empty ``CommandGetPrimaryKeys``/``CommandGetXdbcTypeInfo``);
- ``DoAction`` ``CreatePreparedStatement`` / ``ClosePreparedStatement``; ``DoPut`` binds one
  row of parameters to a prepared statement. Updates are refused.

The database comes from the gRPC header ``database`` (also ``bucket-name``, ``bucket``,
``iox-namespace-name``); the catalog is ``public``, the schema ``iox``, as in InfluxDB 3.
SQL runs through the query engine's ``sql`` entry point, the one HTTP uses. ``?`` placeholders
(the ODBC/JDBC/ADBC style) are turned into DataFusion's ``$1``, ``$2``, ...

Prepared-statement handles and statement tickets carry the database, the SQL and the bound
parameters themselves (JSON plus Arrow IPC), so any API replica can serve any step. A statement's
result, computed at ``GetFlightInfo`` to report its schema, is kept for its ``DoGet`` for a
minute in this process; elsewhere (or later) the ``DoGet`` runs the query again.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.flight as flight

from persist.catalog import Catalog
from query_api import flight_sql_proto as proto
from query_api.engine import DatabaseNotFound, arrow_schema

CATALOG = "public"
SCHEMA = "iox"
TABLE_TYPE = "BASE TABLE"
DATABASE_HEADERS = ("database", "bucket-name", "bucket", "iox-namespace-name")

RunSql = Callable[[str, str, dict | None], Awaitable[pa.Table]]
TableSchemas = Callable[[str], Awaitable[dict[str, pa.Schema]]]


def catalog_table_schemas(catalog: Catalog) -> TableSchemas:
    """The Arrow schema of every table of a database, from the catalog (DatabaseNotFound when
    the database does not exist)."""

    async def schemas(db: str) -> dict[str, pa.Schema]:
        if not await catalog.has_database(db):
            raise DatabaseNotFound(f"database not found: {db}")
        return {t: arrow_schema(await catalog.table_schema(db, t)) for t in await catalog.tables(db)}

    return schemas


# ---- pure helpers ----------------------------------------------------------------------------


def database_from_headers(headers: dict[str, list[str]]) -> str | None:
    """The database named by the call's headers; ValueError when two headers disagree."""
    found = {v for name in DATABASE_HEADERS for v in headers.get(name, []) if v}
    if len(found) > 1:
        raise ValueError(f"conflicting database headers: {', '.join(sorted(found))}")
    return found.pop() if found else None


def like_pattern(pattern: str | None) -> re.Pattern | None:
    """A compiled regex for a Flight SQL filter pattern (``%`` any run, ``_`` one character)."""
    if pattern is None:
        return None
    parts = []
    escaped = False
    for ch in pattern:
        if escaped:
            parts.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def number_placeholders(sql: str) -> tuple[str, int]:
    """``?`` placeholders outside literals, identifiers and comments become ``$1``, ``$2``, ...;
    returns the SQL and the number of ``?`` replaced (pure)."""
    out, count, i, n = [], 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i:end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end])
            i = end
        elif ch == "?":
            count += 1
            out.append(f"${count}")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out), count


def params_of(batch: pa.Table) -> dict[str, pa.Scalar]:
    """DataFusion's positional parameters (``$1`` ...) from a bound one-row parameter table."""
    if batch.num_rows != 1:
        raise ValueError(f"a prepared statement binds exactly one row of parameters, "
                         f"got {batch.num_rows}")
    return {str(i + 1): batch.column(i)[0] for i in range(batch.num_columns)}


@dataclass(frozen=True)
class Statement:
    """What a prepared-statement handle or a statement ticket carries."""

    database: str
    sql: str
    params: pa.Table | None = None   # one row, one column per placeholder
    result_id: str = ""

    def encode(self) -> bytes:
        body = {"database": self.database, "sql": self.sql, "result_id": self.result_id}
        if self.params is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self.params.schema) as writer:
                writer.write_table(self.params)
            body["params"] = base64.b64encode(sink.getvalue().to_pybytes()).decode()
        return json.dumps(body).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Statement":
        try:
            body = json.loads(raw)
            params = None
            if body.get("params"):
                params = pa.ipc.open_stream(base64.b64decode(body["params"])).read_all()
            return cls(body["database"], body["sql"], params, body.get("result_id", ""))
        except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            raise ValueError(f"invalid prepared statement handle: {exc}") from exc

    def bound(self) -> dict[str, pa.Scalar] | None:
        return params_of(self.params) if self.params is not None else None


# ---- metadata results ----------------------------------------------------------------------

SQL_INFO_SCHEMA = pa.schema([
    pa.field("info_name", pa.uint32(), nullable=False),
    pa.field("value", pa.dense_union([
        pa.field("string_value", pa.string()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.string())),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ]), nullable=False),
])
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.string(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema([pa.field("catalog_name", pa.string()),
                               pa.field("db_schema_name", pa.string(), nullable=False)])
TABLES_SCHEMA = pa.schema([pa.field("catalog_name", pa.string()),
                           pa.field("db_schema_name", pa.string()),
                           pa.field("table_name", pa.string(), nullable=False),
                           pa.field("table_type", pa.string(), nullable=False)])
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.string(), nullable=False)])
PRIMARY_KEYS_SCHEMA = pa.schema([pa.field("catalog_name", pa.string()),
                                 pa.field("db_schema_name", pa.string()),
                                 pa.field("table_name", pa.string(), nullable=False),
                                 pa.field("column_name", pa.string(), nullable=False),
                                 pa.field("key_name", pa.string()),
                                 pa.field("key_sequence", pa.int32(), nullable=False)])
XDBC_TYPE_INFO_SCHEMA = pa.schema([pa.field("type_name", pa.string(), nullable=False),
                                   pa.field("data_type", pa.int32(), nullable=False)])

# SqlInfo ids (FlightSql.proto) -> (union child, value)
SQL_INFO: dict[int, tuple[int, object]] = {
    0: (0, "influent"),          # FLIGHT_SQL_SERVER_NAME
    1: (0, "0.1.0"),             # FLIGHT_SQL_SERVER_VERSION
    2: (0, pa.__version__),      # FLIGHT_SQL_SERVER_ARROW_VERSION
    3: (1, True),                # FLIGHT_SQL_SERVER_READ_ONLY
    4: (1, True),                # FLIGHT_SQL_SERVER_SQL
    5: (1, False),               # FLIGHT_SQL_SERVER_SUBSTRAIT
    8: (3, 0),                   # FLIGHT_SQL_SERVER_TRANSACTION: none
    9: (1, False),               # FLIGHT_SQL_SERVER_CANCEL
    500: (1, False),             # SQL_DDL_CATALOG
    501: (1, False),             # SQL_DDL_SCHEMA
    502: (1, False),             # SQL_DDL_TABLE
    503: (3, 1),                 # SQL_IDENTIFIER_CASE: case sensitive
    504: (0, '"'),               # SQL_IDENTIFIER_QUOTE_CHAR
    505: (3, 1),                 # SQL_QUOTED_IDENTIFIER_CASE: case sensitive
    506: (1, True),              # SQL_ALL_TABLES_ARE_SELECTABLE
    513: (0, "\\"),              # SQL_SEARCH_STRING_ESCAPE
    515: (1, True),              # SQL_SUPPORTS_COLUMN_ALIASING
    529: (0, "schema"),          # SQL_SCHEMA_TERM
    531: (0, "catalog"),         # SQL_CATALOG_TERM
    532: (1, True),              # SQL_CATALOG_AT_START
}


def sql_info_table(wanted: list[int]) -> pa.Table:
    """One row per known SqlInfo id asked for (all when none are named)."""
    ids = [i for i in (wanted or sorted(SQL_INFO)) if i in SQL_INFO]
    union_type = SQL_INFO_SCHEMA.field("value").type
    children: list[list] = [[] for _ in range(6)]
    type_ids, offsets = [], []
    for info in ids:
        child, value = SQL_INFO[info]
        type_ids.append(child)
        offsets.append(len(children[child]))
        children[child].append(value)
    arrays = [pa.array(values, union_type.field(i).type) for i, values in enumerate(children)]
    value = pa.UnionArray.from_dense(pa.array(type_ids, pa.int8()), pa.array(offsets, pa.int32()),
                                     arrays, [union_type.field(i).name for i in range(6)],
                                     list(union_type.type_codes))
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), value], schema=SQL_INFO_SCHEMA)


def _catalog_matches(cmd) -> bool:
    return not cmd.HasField("catalog") or cmd.catalog == CATALOG


def db_schemas_table(cmd) -> pa.Table:
    rx = like_pattern(cmd.db_schema_filter_pattern if cmd.HasField("db_schema_filter_pattern") else None)
    rows = [SCHEMA] if _catalog_matches(cmd) and (rx is None or rx.match(SCHEMA)) else []
    return pa.Table.from_pydict({"catalog_name": [CATALOG] * len(rows), "db_schema_name": rows},
                                schema=DB_SCHEMAS_SCHEMA)


def tables_table(cmd, tables: dict[str, pa.Schema]) -> pa.Table:
    """``CommandGetTables`` over the database's tables (name -> Arrow schema)."""
    schema_rx = like_pattern(cmd.db_schema_filter_pattern
                             if cmd.HasField("db_schema_filter_pattern") else None)
    table_rx = like_pattern(cmd.table_name_filter_pattern
                            if cmd.HasField("table_name_filter_pattern") else None)
    keep = _catalog_matches(cmd) and (schema_rx is None or schema_rx.match(SCHEMA)) and (
        not cmd.table_types or TABLE_TYPE in cmd.table_types)
    names = sorted(t for t in tables if keep and (table_rx is None or table_rx.match(t)))
    data = {"catalog_name": [CATALOG] * len(names), "db_schema_name": [SCHEMA] * len(names),
            "table_name": names, "table_type": [TABLE_TYPE] * len(names)}
    if not cmd.include_schema:
        return pa.Table.from_pydict(data, schema=TABLES_SCHEMA)
    data["table_schema"] = [tables[t].serialize().to_pybytes() for t in names]
    return pa.Table.from_pydict(data, schema=TABLES_WITH_SCHEMA)


def table_types_table() -> pa.Table:
    return pa.Table.from_pydict({"table_type": [TABLE_TYPE]}, schema=TABLE_TYPES_SCHEMA)


def catalogs_table() -> pa.Table:
    return pa.Table.from_pydict({"catalog_name": [CATALOG]}, schema=CATALOGS_SCHEMA)


# ---- the service ---------------------------------------------------------------------------


class ResultCache:
    """Statement results computed for GetFlightInfo, kept briefly for their DoGet."""

    def __init__(self, max_entries: int = 16, ttl: float = 60.0):
        self.max_entries = max_entries
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[float, pa.Table]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, table: pa.Table) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, table)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return key

    def pop(self, key: str) -> pa.Table | None:
        with self._lock:
            now = time.monotonic()
            for stale in [k for k, (until, _) in self._items.items() if until < now]:
                del self._items[stale]
            entry = self._items.pop(key, None)
        return entry[1] if entry else None


class FlightSqlService:
    """Answers Flight SQL commands; ``call`` runs a coroutine on the API's event loop."""

    def __init__(self, run_sql: RunSql, table_schemas: TableSchemas, call: Callable):
        self.run_sql = run_sql
        self.table_schemas = table_schemas
        self.call = call
        self.results = ResultCache()

    def target_of(self, name: str, cmd, database: str | None) -> tuple[str | None, str]:
        """(database, SQL) a command reads, for the permission check: no database for
        server-wide metadata (SqlInfo, catalogs, schemas, table types), no SQL for metadata."""
        if name == "TicketStatementQuery":
            statement = Statement.decode(cmd.statement_handle)
            return statement.database, statement.sql
        if name in ("CommandPreparedStatementQuery", "CommandPreparedStatementUpdate"):
            statement = Statement.decode(cmd.prepared_statement_handle)
            return statement.database, statement.sql
        if name in ("CommandStatementQuery", "CommandStatementUpdate"):
            return database, cmd.query
        if name in ("CommandGetSqlInfo", "CommandGetCatalogs", "CommandGetDbSchemas",
                    "CommandGetTableTypes", "CommandGetXdbcTypeInfo"):
            return None, ""
        return database, ""

    # -- GetFlightInfo / GetSchema -------------------------------------------------------------
    def flight_info(self, name: str, cmd, descriptor: flight.FlightDescriptor,
                    database: str | None) -> flight.FlightInfo:
        if name in ("CommandStatementQuery", "CommandPreparedStatementQuery"):
            statement = self._statement(name, cmd, database)
            table = self._execute(statement)
            ticket_statement = Statement(statement.database, statement.sql, statement.params,
                                         self.results.put(table))
            ticket = proto.pack(proto.new("TicketStatementQuery",
                                          statement_handle=ticket_statement.encode()))
            return _info(table.schema, descriptor, ticket)
        if name in ("CommandStatementUpdate", "CommandPreparedStatementUpdate"):
            raise flight.FlightServerError("influent's Flight SQL is read-only: write line "
                                           "protocol to /api/v3/write_lp")
        table = self.metadata(name, cmd, database)
        return _info(table.schema, descriptor, proto.pack(cmd))

    def schema(self, name: str, cmd, database: str | None) -> pa.Schema:
        if name in ("CommandStatementQuery", "CommandPreparedStatementQuery"):
            return self._execute(self._statement(name, cmd, database)).schema
        return self.metadata(name, cmd, database).schema

    # -- DoGet -------------------------------------------------------------------------------
    def get(self, name: str, cmd, database: str | None) -> pa.Table:
        if name == "TicketStatementQuery":
            statement = Statement.decode(cmd.statement_handle)
            cached = self.results.pop(statement.result_id) if statement.result_id else None
            return cached if cached is not None else self._execute(statement)
        if name in ("CommandStatementQuery", "CommandPreparedStatementQuery"):
            return self._execute(self._statement(name, cmd, database))
        return self.metadata(name, cmd, database)

    def metadata(self, name: str, cmd, database: str | None) -> pa.Table:
        if name == "CommandGetSqlInfo":
            return sql_info_table(list(cmd.info))
        if name == "CommandGetCatalogs":
            return catalogs_table()
        if name == "CommandGetDbSchemas":
            return db_schemas_table(cmd)
        if name == "CommandGetTableTypes":
            return table_types_table()
        if name == "CommandGetTables":
            tables = self.call(self.table_schemas(_required(database)))
            return tables_table(cmd, tables)
        if name == "CommandGetPrimaryKeys":  # time-series tables have no declared keys
            return PRIMARY_KEYS_SCHEMA.empty_table()
        if name == "CommandGetXdbcTypeInfo":
            return XDBC_TYPE_INFO_SCHEMA.empty_table()
        raise flight.FlightServerError(f"Flight SQL command {name} is not supported")

    # -- DoAction / DoPut ----------------------------------------------------------------------
    def action(self, kind: str, body: bytes, database: str | None) -> list[flight.Result]:
        if kind == "CreatePreparedStatement":
            name, request = _unpack(body)
            if name != "ActionCreatePreparedStatementRequest":
                raise flight.FlightServerError(f"expected ActionCreatePreparedStatementRequest, got {name}")
            sql, count = number_placeholders(request.query)
            statement = Statement(_required(database), sql)
            parameters = pa.schema([pa.field(f"${i + 1}", pa.null()) for i in range(count)])
            dataset = b""
            if count == 0:  # without parameters the result schema is known now
                dataset = self._execute(statement).schema.serialize().to_pybytes()
            result = proto.new("ActionCreatePreparedStatementResult",
                               prepared_statement_handle=statement.encode(),
                               dataset_schema=dataset,
                               parameter_schema=parameters.serialize().to_pybytes())
            return [flight.Result(proto.pack(result))]
        if kind == "ClosePreparedStatement":
            return []  # handles hold no server state
        raise flight.FlightServerError(f"Flight SQL action {kind} is not supported")

    def put(self, name: str, cmd, reader: flight.MetadataRecordBatchReader,
            writer: flight.FlightMetadataWriter) -> None:
        if name != "CommandPreparedStatementQuery":
            raise flight.FlightServerError("influent's Flight SQL is read-only: write line "
                                           "protocol to /api/v3/write_lp")
        statement = Statement.decode(cmd.prepared_statement_handle)
        values = reader.read_all()
        try:
            params_of(values)
        except ValueError as exc:
            raise flight.FlightServerError(str(exc)) from exc
        bound = Statement(statement.database, statement.sql, values)
        # the PutResult's metadata is the bare message (not wrapped in Any), as clients read it
        writer.write(pa.py_buffer(proto.new("DoPutPreparedStatementResult",
                                            prepared_statement_handle=bound.encode())
                                  .SerializeToString()))

    # -- helpers -------------------------------------------------------------------------------
    def _statement(self, name: str, cmd, database: str | None) -> Statement:
        if name == "CommandStatementQuery":
            return Statement(_required(database), number_placeholders(cmd.query)[0])
        return Statement.decode(cmd.prepared_statement_handle)

    def _execute(self, statement: Statement) -> pa.Table:
        try:
            params = statement.bound()
        except ValueError as exc:
            raise flight.FlightServerError(str(exc)) from exc
        return self.call(self.run_sql(statement.database, statement.sql, params))


def _required(database: str | None) -> str:
    if not database:
        raise flight.FlightServerError(
            "no database: set the 'database' (or 'bucket-name', 'bucket') header")
    return database


def _unpack(raw: bytes):
    try:
        return proto.unpack(raw)
    except ValueError as exc:
        raise flight.FlightServerError(str(exc)) from exc


def _info(schema: pa.Schema, descriptor: flight.FlightDescriptor, ticket: bytes) -> flight.FlightInfo:
    return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(ticket, [])], -1, -1)
