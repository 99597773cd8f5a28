"""The data model every component shares: column kinds and their Arrow types, reserved and
internal column names, the rules for names, the key separator and the size limits.

This is the one place these are defined; topics, tables, persist, the agents and the query API
import them from here (the bottom layer, with :mod:`influent.config`)."""
from __future__ import annotations

import re
from typing import Literal

import pyarrow as pa

# ---- column kinds -------------------------------------------------------------------------
#: A column is a tag, the time column, or a field of one of the five line protocol types.
TAG = "tag"
TIME = "time"
FieldType = Literal["float", "integer", "uinteger", "string", "boolean"]
FIELD_TYPES: tuple[FieldType, ...] = ("float", "integer", "uinteger", "string", "boolean")

#: Arrow type of each field type, of tags and of the time column.
ARROW_TYPES: dict[FieldType, pa.DataType] = {
    "float": pa.float64(),
    "integer": pa.int64(),
    "uinteger": pa.uint64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}
TAG_ARROW_TYPE = pa.string()
TIME_ARROW_TYPE = pa.timestamp("ns")


def field_type_of(arrow_type: pa.DataType) -> FieldType:
    """The field type a column of ``arrow_type`` is written as (any float, signed or unsigned
    integer width; everything else is a string)."""
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_unsigned_integer(arrow_type):
        return "uinteger"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return "string"

# ---- reserved names -----------------------------------------------------------------------
#: The column that holds each row's timestamp; no tag or field may use the name.
TIME_COLUMN = TIME
#: Internal columns every buffered row carries, for last-write-wins dedup at query time.
#: ORDER_TS: the Kafka message timestamp in ms (orders writes across partitions);
#: ORDER_SEQ: source offset * 2**20 + row index within the message (orders within a partition).
ORDER_TS = "__influent_ts"
ORDER_SEQ = "__influent_seq"
INTERNAL_COLUMNS = (ORDER_TS, ORDER_SEQ)

# ---- names --------------------------------------------------------------------------------
#: Joins the parts of composite keys (Redis hash fields, buffer keys, series keys): the ASCII
#: unit separator, which no database, table, tag or subscription name may contain.
KEY_SEPARATOR = "\x1f"

_DB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
MAX_DB_NAME_BYTES = 64


def validate_db_name(name: str) -> str | None:
    """The reason a database name is invalid (InfluxDB 3 rules), or None when it is valid."""
    if not name:
        return "db name cannot be empty"
    if not name[0].isascii() or not name[0].isalnum():
        return "db name did not start with a number or letter"
    if not _DB_NAME.match(name):
        return ("invalid character in database or rp name: must be ASCII, containing only "
                "letters, numbers, underscores, or hyphens")
    if len(name.encode()) > MAX_DB_NAME_BYTES:
        return f"db name is longer than {MAX_DB_NAME_BYTES} bytes"
    return None


# ---- size limits --------------------------------------------------------------------------
#: Measurement, tag keys and values, field keys and string values are limited to 64 KiB.
MAX_VALUE_BYTES = 65536
#: The largest Kafka message a client produces or fetches (producer request size, consumer
#: per-partition fetch size).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: What one consumer fetch may bring over all its partitions.
MAX_FETCH_BYTES = 2 * MAX_MESSAGE_BYTES
