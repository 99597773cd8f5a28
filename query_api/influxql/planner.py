"""Plan a SELECT: expand wildcards, name columns, classify raw vs aggregate, validate.

The plan is pure data (:class:`SelectPlan`) computed from the statement and the sources'
schemas; :mod:`query_api.influxql.select` runs it per measurement. Column names, wildcard
expansion (``*`` = fields and tags sorted by name, minus GROUP BY tags; ``max(*)`` = one call
per suitable field, named ``max_<field>``) and the validation messages follow InfluxDB 1.x.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from query_api.influxql import ast, functions
from query_api.influxql.conditions import NUMERIC_KINDS, TimeRange, split_condition
from query_api.influxql.timeutil import UnknownTimeZone, zone

SELECTORS = functions.names_of("selector")
AGGREGATES = functions.names_of("aggregate")
MULTI = functions.names_of("multi")
TRANSFORMS = functions.names_of("transform")
MATH = functions.names_of("math")
FUNCTIONS = SELECTORS | AGGREGATES | MULTI
#: functions that read numbers only (``max(*)`` skips string and boolean fields for them)
NUMERIC_FUNCTIONS = frozenset(n for n, f in functions.REGISTRY.items() if f.numeric)
_GO_ITERATOR = {"string": "*query.stringInterruptIterator",
                "boolean": "*query.booleanInterruptIterator"}


class PlanError(ValueError):
    """A statement InfluxDB 1.x would reject at planning time (reported per statement)."""


@dataclass(frozen=True)
class Schema:
    """Union of the sources' columns: name -> kind (tag or a field type)."""

    kinds: dict[str, str]

    @property
    def tags(self) -> list[str]:
        return sorted(k for k, v in self.kinds.items() if v == "tag")

    @property
    def fields(self) -> list[str]:
        return sorted(k for k, v in self.kinds.items() if v not in ("tag", "time"))


@dataclass(frozen=True)
class CallSpec:
    key: str                       # internal column holding the call's value, "__c0", ...
    func: str
    field: str                     # the field the call reads
    percentile: float | None = None
    count_distinct: bool = False   # count(distinct(field))
    unit: int = 0                  # integral's unit
    n: int = 0                     # top/bottom/sample: points per window
    tags: tuple[str, ...] = ()     # top/bottom: one point per distinct value of these tags


@dataclass(frozen=True)
class TransformSpec:
    """A transformation over a call's filled values per window (``source`` is a call key) or
    over a raw field's points (``source`` is the field name, ``raw``)."""

    key: str                       # "__t0", ...
    func: str
    source: str
    raw: bool
    unit: int
    n: int = 0


@dataclass(frozen=True)
class OutputColumn:
    name: str
    expr: ast.Expr                 # VarRefs name fields/tags (raw) or call keys (aggregate)


@dataclass(frozen=True)
class SelectPlan:
    aggregate: bool
    columns: tuple[OutputColumn, ...]
    time_name: str
    calls: tuple[CallSpec, ...]
    selector: CallSpec | None      # the single selector whose point time/aux fields are used
    aux: tuple[str, ...]           # fields/tags read from the selector's point
    fields_read: tuple[str, ...]   # raw: a row exists where one of these is not null
    group_tags: tuple[str, ...]
    interval: int                  # GROUP BY time interval in ns (0: none)
    offset: int
    fill: ast.Fill
    time_range: TimeRange
    condition: ast.Expr | None
    descending: bool
    limit: int
    offset_rows: int
    slimit: int
    soffset: int
    location: str | None
    transforms: tuple[TransformSpec, ...] = ()
    extend: int = 0                # ns read before the range (transforms needing a window)
    multi: CallSpec | None = None  # top/bottom/sample: several points per window

    @property
    def distinct(self) -> bool:
        return any(c.func == "distinct" for c in self.calls)


def column_names(fields: list[ast.Field]) -> list[str]:
    """Output names: aliases first, then generated names with ``_1``, ``_2``... on conflicts
    (InfluxDB 1.x ``SelectStatement.ColumnNames``)."""
    names: list[str | None] = [f.alias if f.alias else None for f in fields]
    seen: dict[str, int] = {}
    for name in names:
        if name is not None:
            seen[name] = 1
    for i, f in enumerate(fields):
        if names[i] is not None:
            continue
        name = f.name
        count = seen.get(name)
        if count is not None:
            while True:
                candidate = f"{name}_{count}"
                if candidate not in seen:
                    seen[name] = count + 1
                    name = candidate
                    break
                count += 1
        seen[name] = seen.get(name, 0) + 1
        names[i] = name
    return [n or "" for n in names]


def _calls_in(expr: ast.Expr) -> list[ast.Call]:
    """Top-level calls in ``expr`` (not the calls nested in their arguments)."""
    expr = ast.strip_parens(expr)
    if isinstance(expr, ast.Call):
        if expr.name == "now":
            return []
        if expr.name in MATH:  # element-wise: the calls are in its arguments
            return [c for a in expr.args for c in _calls_in(a)]
        return [expr]
    if isinstance(expr, ast.BinaryExpr):
        return _calls_in(expr.lhs) + _calls_in(expr.rhs)
    return []


def _refs_outside_calls(expr: ast.Expr) -> list[ast.VarRef]:
    expr = ast.strip_parens(expr)
    if isinstance(expr, ast.VarRef):
        return [expr]
    if isinstance(expr, ast.Call) and expr.name in MATH:
        return [r for a in expr.args for r in _refs_outside_calls(a)]
    if isinstance(expr, ast.BinaryExpr):
        return _refs_outside_calls(expr.lhs) + _refs_outside_calls(expr.rhs)
    return []


def _kind_allowed(vtype: str | None, kind: str) -> bool:
    if vtype in (None,):
        return True
    if vtype == "tag":
        return kind == "tag"
    return kind != "tag"


def _expand_fields(fields: tuple[ast.Field, ...], schema: Schema, group_tags: set[str]
                   ) -> list[ast.Field]:
    """Replace ``*``, ``/regex/`` and ``f(*)``/``f(/regex/)`` by concrete fields."""
    out: list[ast.Field] = []
    names = sorted(n for n, k in schema.kinds.items() if k != "time")
    for f in fields:
        expr = ast.strip_parens(f.expr) if isinstance(f.expr, ast.ParenExpr) else f.expr
        if isinstance(expr, ast.Wildcard):
            for n in names:
                kind = schema.kinds[n]
                if kind == "tag" and n in group_tags:
                    continue
                if _kind_allowed(expr.type, kind):
                    out.append(ast.Field(ast.VarRef(n)))
            continue
        if isinstance(expr, ast.RegexLit):
            rx = re.compile(expr.pattern)
            for n in names:
                if schema.kinds[n] == "tag" and n in group_tags:
                    continue
                if rx.search(n):
                    out.append(ast.Field(ast.VarRef(n)))
            continue
        if isinstance(expr, ast.Call) and expr.args and isinstance(
                expr.args[0], (ast.Wildcard, ast.RegexLit)):
            arg = expr.args[0]
            rx = re.compile(arg.pattern) if isinstance(arg, ast.RegexLit) else None
            for n in schema.fields:
                kind = schema.kinds[n]
                if expr.name in NUMERIC_FUNCTIONS and kind not in NUMERIC_KINDS:
                    continue
                if rx is not None and not rx.search(n):
                    continue
                call = ast.Call(expr.name, (ast.VarRef(n),) + expr.args[1:])
                out.append(ast.Field(call, alias=f"{f.alias or expr.name}_{n}"))
            continue
        out.append(f)
    return out


def _with_selector_tags(fields: list[ast.Field]) -> list[ast.Field]:
    """``top(f, tag, N)``/``bottom``: each tag argument is also a column right after the call's
    (1.x output shape)."""
    out: list[ast.Field] = []
    for f in fields:
        out.append(f)
        expr = ast.strip_parens(f.expr)
        if isinstance(expr, ast.Call) and expr.name in ("top", "bottom") and len(expr.args) > 2:
            out.extend(ast.Field(ast.strip_parens(a)) for a in expr.args[1:-1]
                       if isinstance(ast.strip_parens(a), ast.VarRef))
    return out


def _group_by(dims: tuple[ast.Expr, ...], schema: Schema) -> tuple[list[str], int, int]:
    tags: list[str] = []
    interval = offset = 0
    seen_time = False
    for dim in dims:
        dim = ast.strip_parens(dim)
        if isinstance(dim, ast.Call) and dim.name == "time":
            if seen_time:
                raise PlanError("multiple time dimensions not allowed")
            seen_time = True
            if not dim.args or len(dim.args) > 2:
                raise PlanError("time dimension expected 1 or 2 arguments")
            if not isinstance(dim.args[0], ast.DurationLit):
                raise PlanError("time dimension must have duration argument")
            interval = dim.args[0].ns
            if len(dim.args) == 2:
                arg = dim.args[1]
                if isinstance(arg, ast.DurationLit):
                    offset = arg.ns
                elif isinstance(arg, ast.IntegerLit):
                    offset = arg.value
                else:
                    raise PlanError("time dimension offset must be duration or now()")
            if interval < 0:
                raise PlanError("time dimension must have a positive duration")
        elif isinstance(dim, ast.VarRef):
            if dim.name.lower() == "time":
                raise PlanError("time() is a function and expects at least one argument")
            tags.append(dim.name)
        elif isinstance(dim, ast.Wildcard):
            tags.extend(schema.tags)
        elif isinstance(dim, ast.RegexLit):
            rx = re.compile(dim.pattern)
            tags.extend(t for t in schema.tags if rx.search(t))
        elif isinstance(dim, ast.Call):
            raise PlanError("only time() calls allowed in dimensions")
        else:
            raise PlanError("only time and tag dimensions allowed")
    if interval and offset:
        offset %= interval
    return sorted(set(tags)), interval, offset


def _arity_error(name: str, entry: functions.Function, got: int) -> PlanError:
    if entry.max_args > entry.min_args:
        if entry.kind == "multi" or entry.max_args > 2:
            return PlanError(f"invalid number of arguments for {name}, expected at least "
                             f"{entry.min_args}, got {got}")
        return PlanError(f"invalid number of arguments for {name}, expected at least "
                         f"{entry.min_args} but no more than {entry.max_args}, got {got}")
    return PlanError(f"invalid number of arguments for {name}, expected {entry.min_args}, "
                     f"got {got}")


def _check_arity(call: ast.Call) -> functions.Function:
    entry = functions.REGISTRY.get(call.name)
    if entry is None:
        raise PlanError(f"undefined function {call.name}()")
    if not entry.min_args <= len(call.args) <= entry.max_args:
        raise _arity_error(call.name, entry, len(call.args))
    return entry


def _duration_arg(call: ast.Call, i: int, default: int) -> int:
    if len(call.args) <= i:
        return default
    arg = ast.strip_parens(call.args[i])
    if not isinstance(arg, ast.DurationLit):
        raise PlanError(f"second argument to {call.name} must be a duration, got "
                        f"*influxql.{type(arg).__name__}")
    return arg.ns


def _int_arg(call: ast.Call, i: int, what: str) -> int:
    arg = ast.strip_parens(call.args[i])
    if not isinstance(arg, ast.IntegerLit):
        raise PlanError(f"expected integer as last argument in {call.name}(), found {what}"
                        if call.name in ("top", "bottom") else
                        f"second argument to {call.name} must be an integer")
    return arg.value


def _call_spec(call: ast.Call, key: str, schema: Schema) -> CallSpec:
    name = call.name
    if name not in FUNCTIONS:
        raise PlanError(f"undefined function {name}()")
    _check_arity(call)
    arg = ast.strip_parens(call.args[0])
    count_distinct = False
    if name == "count" and isinstance(arg, ast.Call) and arg.name == "distinct":
        if len(arg.args) != 1 or not isinstance(ast.strip_parens(arg.args[0]), ast.VarRef):
            raise PlanError("expected field argument in distinct()")
        arg = ast.strip_parens(arg.args[0])
        count_distinct = True
    if not isinstance(arg, ast.VarRef):
        raise PlanError(f"expected field argument in {name}()")
    kind = schema.kinds.get(arg.name)
    if kind in _GO_ITERATOR and name in NUMERIC_FUNCTIONS:
        raise PlanError(f"unsupported {name} iterator type: {_GO_ITERATOR[kind]}")
    percentile = None
    unit = n = 0
    tags: tuple[str, ...] = ()
    if name == "percentile":
        lit = ast.strip_parens(call.args[1])
        if isinstance(lit, ast.IntegerLit):
            percentile = float(lit.value)
        elif isinstance(lit, ast.NumberLit):
            percentile = lit.value
        else:
            raise PlanError("expected float argument in percentile()")
    elif name == "integral":
        unit = _duration_arg(call, 1, functions.SECOND)
    elif name in ("top", "bottom"):
        last = ast.strip_parens(call.args[-1])
        if not isinstance(last, ast.IntegerLit):
            raise PlanError(f"expected integer as last argument in {name}(), found "
                            f"{_describe(last)}")
        n = last.value
        for extra in call.args[1:-1]:
            extra = ast.strip_parens(extra)
            if not isinstance(extra, ast.VarRef):
                raise PlanError(f"only fields or tags are allowed in {name}(), found "
                                f"{_describe(extra)}")
            tags += (extra.name,)
        if n <= 0:
            raise PlanError(f"limit ({n}) in {name} function must be at least 1")
    elif name == "sample":
        n = _int_arg(call, 1, "")
        if n <= 0:
            raise PlanError(f"sample window must be greater than 1, got {n}")
    return CallSpec(key=key, func=name, field=arg.name, percentile=percentile,
                    count_distinct=count_distinct, unit=unit, n=n, tags=tags)


def _describe(expr: ast.Expr) -> str:
    if isinstance(expr, ast.StringLit):
        return f"'{expr.value}'"
    if isinstance(expr, ast.NumberLit):
        return repr(expr.value)
    if isinstance(expr, ast.VarRef):
        return expr.name
    return type(expr).__name__


def _check_math(fields: list[ast.Field]) -> None:
    for f in fields:
        for node in ast.walk(f.expr):
            if isinstance(node, ast.Call) and node.name in MATH:
                _check_arity(node)


def _transform(call: ast.Call, index: int, interval: int, schema: Schema
               ) -> tuple[TransformSpec, ast.Call | None]:
    """The spec of a transformation and the aggregate call it reads (None: raw field)."""
    _check_arity(call)
    inner = ast.strip_parens(call.args[0])
    name = call.name
    n = 0
    if name == "moving_average":
        n = _int_arg(call, 1, "")
        if n < 2:
            raise PlanError(f"moving_average window must be greater than 1, got {n}")
        unit = 0
    elif name == "cumulative_sum":
        unit = 0
    else:
        unit = _duration_arg(call, 1, functions.transform_default_unit(name, interval))
    key = f"__t{index}"
    if isinstance(inner, ast.VarRef):
        if interval:
            raise PlanError(f"aggregate function required inside the call to {name}")
        kind = schema.kinds.get(inner.name)
        if kind in _GO_ITERATOR:
            raise PlanError(f"unsupported {name} iterator type: {_GO_ITERATOR[kind]}")
        return TransformSpec(key, name, inner.name, True, unit, n), None
    if isinstance(inner, ast.Call):
        if inner.name in MULTI:
            raise PlanError(f"selector function {inner.name}() cannot be combined with other "
                            "functions")
        if inner.name == "distinct":  # several points per window (see docs/influxql.md)
            raise PlanError(f"distinct() inside {name}() is not supported")
        if inner.name not in FUNCTIONS:
            raise PlanError(f"undefined function {inner.name}()" if inner.name not in
                            functions.REGISTRY else f"expected field argument in {name}()")
        if not interval:
            raise PlanError(f"{name} aggregate requires a GROUP BY interval")
        return TransformSpec(key, name, "", False, unit, n), inner
    raise PlanError(f"expected field argument in {name}()")


def _rewrite_calls(expr: ast.Expr, mapping: dict[int, str]) -> ast.Expr:
    """Replace each top-level call (by identity) with a VarRef to its call key."""
    if isinstance(expr, ast.ParenExpr):
        return ast.ParenExpr(_rewrite_calls(expr.expr, mapping))
    if isinstance(expr, ast.Call) and id(expr) in mapping:
        return ast.VarRef(mapping[id(expr)])
    if isinstance(expr, ast.BinaryExpr):
        return ast.BinaryExpr(expr.op, _rewrite_calls(expr.lhs, mapping),
                              _rewrite_calls(expr.rhs, mapping))
    if isinstance(expr, ast.Call) and expr.name in MATH:
        return ast.Call(expr.name, tuple(_rewrite_calls(a, mapping) for a in expr.args))
    return expr


def plan_select(stmt: ast.SelectStatement, schema: Schema, now_ns: int) -> SelectPlan:
    """Build the :class:`SelectPlan`; raises :class:`PlanError` (or a condition error)."""
    location = stmt.location
    if location is not None:
        try:
            zone(location)
        except UnknownTimeZone as exc:
            raise PlanError(str(exc)) from exc
    group_tags, interval, offset = _group_by(stmt.dimensions, schema)
    time_range, residual = split_condition(stmt.condition, now_ns, location)

    # time in the field list only renames the time column
    time_name = "time"
    fields_in: list[ast.Field] = []
    for f in stmt.fields:
        expr = ast.strip_parens(f.expr)
        if isinstance(expr, ast.VarRef) and expr.name.lower() == "time":
            if f.alias:
                time_name = f.alias
            continue
        fields_in.append(f)
    fields = _with_selector_tags(_expand_fields(tuple(fields_in), schema, set(group_tags)))
    names = column_names(fields)

    top_calls = [c for f in fields for c in _calls_in(f.expr)]
    aggregate = bool(top_calls)
    fill = stmt.fill
    if not aggregate:
        _check_math(fields)
        if any(not any(isinstance(n, ast.VarRef) for n in ast.walk(f.expr)) for f in fields):
            raise PlanError("field must contain at least one variable")
        if interval:
            raise PlanError("GROUP BY requires at least one aggregate function")
        if stmt.fill_given:
            arg = fill.mode if fill.mode != "number" else _fill_number(fill.value)
            raise PlanError(f"fill({arg}) must be used with a function")
        columns = tuple(OutputColumn(n, f.expr) for n, f in zip(names, fields))
        read = sorted({r.name for f in fields for r in ast.walk(f.expr)
                       if isinstance(r, ast.VarRef) and schema.kinds.get(r.name) not in
                       (None, "tag", "time") and r.type != "tag"})
        return SelectPlan(aggregate=False, columns=columns, time_name=time_name, calls=(),
                          selector=None, aux=(), fields_read=tuple(read),
                          group_tags=tuple(group_tags), interval=0, offset=0, fill=fill,
                          time_range=time_range, condition=residual,
                          descending=stmt.descending, limit=stmt.limit,
                          offset_rows=stmt.offset, slimit=stmt.slimit, soffset=stmt.soffset,
                          location=location)

    aux_refs = [r for f in fields for r in _refs_outside_calls(f.expr)]
    _check_math(fields)
    multi = [c for c in top_calls if c.name in MULTI]
    if multi and len(top_calls) > 1:
        raise PlanError(f"selector function {multi[0].name}() cannot be combined with other "
                        "functions")
    if any(c.name == "distinct" for c in top_calls) and (len(top_calls) > 1 or aux_refs):
        raise PlanError("aggregate function distinct() cannot be combined with other "
                        "functions or fields")
    if aux_refs and not multi:
        if len(top_calls) > 1:
            if all(c.name in SELECTORS for c in top_calls):
                raise PlanError("mixing multiple selector functions with tags or fields is "
                                "not supported")
            raise PlanError("mixing aggregate and non-aggregate queries is not supported")
        if top_calls[0].name not in SELECTORS:
            raise PlanError("mixing aggregate and non-aggregate queries is not supported")

    mapping: dict[int, str] = {}
    calls: list[CallSpec] = []
    transforms: list[TransformSpec] = []
    for call in top_calls:
        if call.name in TRANSFORMS:
            spec, inner = _transform(call, len(transforms), interval, schema)
            if inner is not None:
                key = f"__c{len(calls)}"
                calls.append(_call_spec(inner, key, schema))
                spec = TransformSpec(spec.key, spec.func, key, False, spec.unit, spec.n)
            transforms.append(spec)
            mapping[id(call)] = spec.key
            continue
        key = f"__c{len(calls)}"
        calls.append(_call_spec(call, key, schema))
        mapping[id(call)] = key
    raw_transforms = [t for t in transforms if t.raw]
    if raw_transforms and (calls or len(raw_transforms) != len(transforms)):
        raise PlanError("mixing aggregate and non-aggregate queries is not supported")
    columns = tuple(OutputColumn(n, _rewrite_calls(f.expr, mapping))
                    for n, f in zip(names, fields))
    selector = (calls[0] if len(calls) == 1 and calls[0].func in SELECTORS and not transforms
                else None)
    aux = tuple(dict.fromkeys(r.name for r in aux_refs))
    extend = interval if any(t.func in functions.NEEDS_PREVIOUS_WINDOW for t in transforms
                             if not t.raw) else 0
    if raw_transforms:
        return SelectPlan(aggregate=False, columns=columns, time_name=time_name, calls=(),
                          selector=None, aux=(),
                          fields_read=tuple(dict.fromkeys(t.source for t in transforms)),
                          group_tags=tuple(group_tags), interval=0, offset=0, fill=fill,
                          time_range=time_range, condition=residual,
                          descending=stmt.descending, limit=stmt.limit,
                          offset_rows=stmt.offset, slimit=stmt.slimit, soffset=stmt.soffset,
                          location=location, transforms=tuple(transforms))
    return SelectPlan(aggregate=True, columns=columns, time_name=time_name, calls=tuple(calls),
                      selector=selector, aux=aux, fields_read=(), group_tags=tuple(group_tags),
                      interval=interval, offset=offset, fill=fill, time_range=time_range,
                      condition=residual, descending=stmt.descending, limit=stmt.limit,
                      offset_rows=stmt.offset, slimit=stmt.slimit, soffset=stmt.soffset,
                      location=location, transforms=tuple(transforms), extend=extend,
                      multi=calls[0] if multi else None)


def _fill_number(value: float | int | None) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
