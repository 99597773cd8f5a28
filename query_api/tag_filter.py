"""Tag filters applied before dedup (pure).

A query's top-level ``tag = 'a'`` / ``tag IN ('a', 'b')`` / ``tag = 'a' OR tag = 'b'`` conditions
keep only rows with those tag values. Tags are part of the dedup key and dedup never changes a
row's tags, so dropping the other rows before dedup gives the same answer with far less work:
a query for one host out of a hundred dedups 1 % of the rows. Only tag columns are filtered this
way: fields merge across rows in dedup, so a field condition must see the merged row.

A filter maps a column to the set of values it may take (null never matches). The empty string
is left out: InfluxQL's ``tag = ''`` also matches rows without the tag.
"""
from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

TagFilter = dict[str, frozenset[str]]


def one_column(equalities: Iterable[tuple[str, str]]) -> TagFilter:
    """The filter of an OR of ``column = value`` terms: one column, or nothing to use."""
    pairs = list(equalities)
    columns = {c for c, _ in pairs}
    if len(columns) != 1 or any(v == "" for _, v in pairs):
        return {}
    return {columns.pop(): frozenset(v for _, v in pairs)}


def both(a: TagFilter, b: TagFilter) -> TagFilter:
    """The filter of ``a AND b``."""
    out = dict(a)
    for column, values in b.items():
        out[column] = out[column] & values if column in out else values
    return out


def either(filters: list[TagFilter]) -> TagFilter:
    """What holds for every one of several scans of a table: columns all of them restrict,
    with the union of their values."""
    if not filters:
        return {}
    common = set(filters[0]).intersection(*filters[1:])
    return {c: frozenset().union(*(f[c] for f in filters)) for c in common}


def keep_matching(table: pa.Table, tag_filter: TagFilter, tags: Iterable[str]) -> pa.Table:
    """Rows of ``table`` whose tag columns take allowed values (non-tag columns are ignored;
    a tag column the table lacks is null throughout, so no row of it matches)."""
    wanted = {c: v for c, v in tag_filter.items() if c in set(tags)}
    if not wanted or table.num_rows == 0:
        return table
    mask = None
    for column, values in wanted.items():
        if column not in table.column_names:
            return table.slice(0, 0)
        data = table.column(column)
        if pa.types.is_dictionary(data.type):
            data = data.cast(data.type.value_type)
        hit = pc.fill_null(pc.is_in(data, value_set=pa.array(sorted(values), data.type)), False)
        mask = hit if mask is None else pc.and_(mask, hit)
    return table.filter(mask)
