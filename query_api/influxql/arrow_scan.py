"""Arrow compute in place of a DataFusion plan for the commonest small shapes of an aggregate
query (pure): a WHERE clause of tag comparisons joined by AND/OR (the TSBS host filters), and
``max``/``min``/``count`` per (series, window). Planning a DataFusion statement costs a few
milliseconds, more than these computations over the rows of a few series; every other shape
keeps the SQL of :mod:`query_api.influxql.select`, and both give the same rows.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql import ast

#: calls computed here (not the selected point's time: plain aggregates over numbers)
ARROW_CALLS = {"max": "max", "min": "min", "count": "count"}
_NUMERIC = (pa.types.is_integer, pa.types.is_floating)


def tag_mask(expr: ast.Expr, table: pa.Table, kinds: dict[str, str]) -> pa.Array | None:
    """The rows where ``expr`` holds, when it only compares tags with string literals (an
    absent tag equals ``''``, as in the SQL form); None for anything else."""
    expr = ast.strip_parens(expr)
    if not isinstance(expr, ast.BinaryExpr):
        return None
    if expr.op in ("AND", "OR"):
        lhs, rhs = tag_mask(expr.lhs, table, kinds), tag_mask(expr.rhs, table, kinds)
        if lhs is None or rhs is None:
            return None
        return pc.and_(lhs, rhs) if expr.op == "AND" else pc.or_(lhs, rhs)
    if expr.op not in ("=", "!="):
        return None
    ref, lit = ast.strip_parens(expr.lhs), ast.strip_parens(expr.rhs)
    if isinstance(ref, ast.StringLit):
        ref, lit = lit, ref
    if not (isinstance(ref, ast.VarRef) and isinstance(lit, ast.StringLit)):
        return None
    if kinds.get(ref.name) != "tag" or ref.type not in (None, "tag"):
        return None
    values = tag_values(table, ref.name)
    return (pc.equal if expr.op == "=" else pc.not_equal)(values, lit.value)


def tag_values(table: pa.Table, name: str) -> pa.ChunkedArray:
    """A tag column as plain strings with ``''`` for rows without the tag."""
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    return pc.fill_null(col, "") if col.null_count else col


def scan(table: pa.Table, lo: int | None, hi: int | None, mask: pa.Array | None,
         columns: dict[str, tuple[str, str | None]]) -> pa.Table:
    """Rows in [lo, hi] where ``mask`` holds, as ``__time`` (int64) and the named columns:
    output name -> (kind, source column): kind ``tag`` (``''`` when absent or null),
    ``const`` (always ``''``) or ``value`` (as stored)."""
    ns = pc.cast(table.column("time"), pa.int64())
    keep = mask
    for bound, test in ((lo, pc.greater_equal), (hi, pc.less_equal)):
        if bound is not None:
            cond = test(ns, bound)
            keep = cond if keep is None else pc.and_(keep, cond)
    if keep is not None:
        table = table.filter(keep)
        ns = pc.cast(table.column("time"), pa.int64())
    out, names = [ns], ["__time"]
    for name, (kind, source) in columns.items():
        if kind == "tag":
            out.append(tag_values(table, source))
        elif kind == "const":
            out.append(pa.repeat(pa.scalar("", pa.string()), table.num_rows))
        else:
            out.append(table.column(source))
        names.append(name)
    return pa.table(out, names=names)


def arrow_call(func: str, count_distinct: bool, point: bool, value_type: pa.DataType) -> bool:
    """Whether :func:`aggregate` computes this call."""
    return (func in ARROW_CALLS and not count_distinct and not point
            and any(test(value_type) for test in _NUMERIC))


def aggregate(table: pa.Table, func: str, value: str, keys: list[str]) -> pa.Table:
    """``func`` of ``value`` per key over the rows where it is not null: keys..., ``__val``."""
    rows = table.select(keys + [value]).filter(pc.is_valid(table.column(value)))
    if rows.num_rows == 0:
        return pa.table([rows.column(k) for k in keys] + [pa.array([], pa.int64())],
                        names=keys + ["__val"])
    done = rows.group_by(keys, use_threads=False).aggregate([(value, ARROW_CALLS[func])])
    return done.rename_columns([c if c in keys else "__val" for c in done.column_names])
