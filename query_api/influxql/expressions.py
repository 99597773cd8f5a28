"""Evaluate SELECT field expressions over Arrow columns with InfluxQL's arithmetic rules.

InfluxQL differs from SQL here: ``int / int`` is a float, division or modulo by zero gives 0,
``%`` keeps the dividend's sign (Go's truncated remainder), and ``::integer``/``::float``
casts truncate. Nulls propagate.
"""
from __future__ import annotations

from typing import Union

import pyarrow as pa
import pyarrow.compute as pc

from query_api.influxql import ast
from query_api.influxql.functions import MATH

Value = Union[pa.Array, pa.Scalar]


class ExpressionError(ValueError):
    pass


def _is_int(v: Value) -> bool:
    return pa.types.is_integer(v.type)


def _is_num(v: Value) -> bool:
    return pa.types.is_integer(v.type) or pa.types.is_floating(v.type)


def evaluate(expr: ast.Expr, columns: dict[str, pa.Array], length: int) -> pa.Array:
    """Evaluate ``expr`` (VarRefs name keys of ``columns``) to an array of ``length`` rows."""
    value = _eval(expr, columns, length)
    if isinstance(value, pa.Scalar):
        return pa.repeat(value, length) if value.is_valid else pa.nulls(length, value.type)
    return value


def _eval(expr: ast.Expr, columns: dict[str, pa.Array], length: int) -> Value:
    expr = ast.strip_parens(expr)
    if isinstance(expr, ast.VarRef):
        col = columns.get(expr.name)
        if col is None:
            return pa.scalar(None, pa.float64())
        return cast_to(col, expr.type)
    if isinstance(expr, ast.IntegerLit):
        return pa.scalar(expr.value, pa.int64())
    if isinstance(expr, ast.NumberLit):
        return pa.scalar(expr.value, pa.float64())
    if isinstance(expr, ast.DurationLit):
        return pa.scalar(expr.ns, pa.int64())
    if isinstance(expr, ast.StringLit):
        return pa.scalar(expr.value, pa.string())
    if isinstance(expr, ast.BoolLit):
        return pa.scalar(expr.value, pa.bool_())
    if isinstance(expr, ast.BinaryExpr) and expr.op in ast.ARITHMETIC_OPS:
        return arithmetic(expr.op, _eval(expr.lhs, columns, length),
                          _eval(expr.rhs, columns, length))
    if isinstance(expr, ast.Call) and expr.name in MATH:
        return math_call(expr.name, [_eval(a, columns, length) for a in expr.args], length)
    raise ExpressionError(f"unsupported expression in field list: {type(expr).__name__}")


def cast_to(col: Value, vtype: str | None) -> Value:
    """Apply a ``::type`` hint: numeric casts convert (truncating), other mismatches are null."""
    if vtype in (None, "field", "tag"):
        return col
    if vtype == "integer":
        if _is_num(col):
            return pc.cast(col, pa.int64(), safe=False)
        return pa.nulls(len(col), pa.int64()) if isinstance(col, pa.Array) else pa.scalar(None, pa.int64())
    if vtype == "float":
        if _is_num(col):
            return pc.cast(col, pa.float64())
        return pa.nulls(len(col), pa.float64()) if isinstance(col, pa.Array) else pa.scalar(None, pa.float64())
    if vtype == "unsigned":
        if _is_num(col):
            return pc.cast(col, pa.uint64(), safe=False)
        return pa.nulls(len(col), pa.uint64()) if isinstance(col, pa.Array) else pa.scalar(None, pa.uint64())
    wanted = {"string": pa.string(), "boolean": pa.bool_()}[vtype]
    if col.type == wanted:
        return col
    return pa.nulls(len(col), wanted) if isinstance(col, pa.Array) else pa.scalar(None, wanted)


def arithmetic(op: str, lhs: Value, rhs: Value) -> Value:
    """``lhs op rhs`` with InfluxQL typing; non-numeric operands give null."""
    if not (_is_num(lhs) and _is_num(rhs)):
        if op == "+" and pa.types.is_string(lhs.type) and pa.types.is_string(rhs.type):
            return pc.binary_join_element_wise(lhs, rhs, "")
        return pa.scalar(None, pa.float64())
    both_int = _is_int(lhs) and _is_int(rhs)
    if not both_int:
        lhs, rhs = pc.cast(lhs, pa.float64()), pc.cast(rhs, pa.float64())
    if op == "+":
        return pc.add(lhs, rhs)
    if op == "-":
        return pc.subtract(lhs, rhs)
    if op == "*":
        return pc.multiply(lhs, rhs)
    if op == "/":
        num, den = pc.cast(lhs, pa.float64()), pc.cast(rhs, pa.float64())
        zero = pc.equal(den, 0.0)
        safe_den = pc.if_else(zero, 1.0, den)
        return pc.if_else(zero, 0.0, pc.divide(num, safe_den))
    if op == "%":
        zero = pc.equal(rhs, 0)
        one = pa.scalar(1, rhs.type)
        safe = pc.if_else(zero, one, rhs)
        quotient = pc.divide(lhs, safe)
        if not both_int:
            quotient = pc.trunc(quotient)
        rem = pc.subtract(lhs, pc.multiply(quotient, safe))
        return pc.if_else(zero, pa.scalar(0, rem.type), rem)
    if both_int and op in ("&", "|", "^"):
        fn = {"&": pc.bit_wise_and, "|": pc.bit_wise_or, "^": pc.bit_wise_xor}[op]
        return fn(lhs, rhs)
    return pa.scalar(None, pa.float64())


def math_call(name: str, args: list[Value], length: int) -> Value:
    """A math function over numeric operands (anything else gives null, as in 1.x)."""
    if not all(_is_num(a) for a in args):
        return pa.scalar(None, pa.float64())
    if all(isinstance(a, pa.Scalar) for a in args):
        args = [pa.repeat(a, 1) for a in args]
        return MATH[name](*args)[0]
    args = [pa.repeat(a, length) if isinstance(a, pa.Scalar) else a for a in args]
    return MATH[name](*args)
