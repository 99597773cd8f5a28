"""InfluxQL syntax tree: immutable dataclasses produced by the parser, read by the planner.

Only the statements influent answers are modelled (SELECT, the SHOW family and the
subscription statements); the tree keeps
what InfluxDB 1.x needs to name columns (``Field.name``) and to print errors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

# ---- expressions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VarRef:
    """A column reference; ``type`` is the ``::field``/``::tag``/``::integer``... hint."""

    name: str
    type: str | None = None


@dataclass(frozen=True)
class Wildcard:
    """``*`` (optionally ``*::field`` / ``*::tag``) in a field list, a call or GROUP BY."""

    type: str | None = None


@dataclass(frozen=True)
class Call:
    name: str  # lower case
    args: tuple["Expr", ...] = ()


@dataclass(frozen=True)
class NumberLit:
    value: float


@dataclass(frozen=True)
class IntegerLit:
    value: int


@dataclass(frozen=True)
class StringLit:
    value: str


@dataclass(frozen=True)
class RegexLit:
    pattern: str


@dataclass(frozen=True)
class DurationLit:
    ns: int


@dataclass(frozen=True)
class BoolLit:
    value: bool


@dataclass(frozen=True)
class ParenExpr:
    expr: "Expr"


@dataclass(frozen=True)
class BinaryExpr:
    op: str  # "+", "-", "*", "/", "%", "&", "|", "^", "=", "!=", "<", "<=", ">", ">=", "=~", "!~", "AND", "OR"
    lhs: "Expr"
    rhs: "Expr"


Expr = Union[VarRef, Wildcard, Call, NumberLit, IntegerLit, StringLit, RegexLit, DurationLit,
             BoolLit, ParenExpr, BinaryExpr]

COMPARISON_OPS = frozenset({"=", "!=", "<", "<=", ">", ">=", "=~", "!~"})
ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%", "&", "|", "^"})


def strip_parens(expr: Expr) -> Expr:
    while isinstance(expr, ParenExpr):
        expr = expr.expr
    return expr


def walk(expr: Expr):
    """Every node of ``expr``, depth first, parents before children."""
    yield expr
    if isinstance(expr, BinaryExpr):
        yield from walk(expr.lhs)
        yield from walk(expr.rhs)
    elif isinstance(expr, ParenExpr):
        yield from walk(expr.expr)
    elif isinstance(expr, Call):
        for arg in expr.args:
            yield from walk(arg)


def expr_name(expr: Expr) -> str:
    """The column name InfluxDB 1.x derives from a field expression without an alias: a call's
    function name, a variable's name, or the names inside a binary expression joined by ``_``
    (calls do not contribute their arguments)."""
    expr = strip_parens(expr)
    if isinstance(expr, Call):
        return expr.name
    if isinstance(expr, VarRef):
        return expr.name
    if isinstance(expr, BinaryExpr):
        names: list[str] = []

        def visit(node: Expr) -> None:
            node = strip_parens(node)
            if isinstance(node, VarRef):
                names.append(node.name)
            elif isinstance(node, Call):
                names.append(node.name)
            elif isinstance(node, BinaryExpr):
                visit(node.lhs)
                visit(node.rhs)

        visit(expr)
        return "_".join(names)
    return ""


# ---- statements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    expr: Expr
    alias: str | None = None

    @property
    def name(self) -> str:
        return self.alias if self.alias else expr_name(self.expr)


@dataclass(frozen=True)
class Measurement:
    """A FROM source: ``[db.[rp].]name`` or a regex over measurement names."""

    name: str | None = None
    regex: str | None = None
    database: str | None = None
    retention_policy: str | None = None


@dataclass(frozen=True)
class Subquery:
    """A FROM source that is a SELECT: ``FROM (SELECT ...)``."""

    statement: "SelectStatement"
    database = None
    retention_policy = None


@dataclass(frozen=True)
class IntoTarget:
    """``INTO [db.[rp].]measurement`` or ``INTO [db.[rp].]:MEASUREMENT`` (``name`` None: each
    row goes to the measurement it came from)."""

    name: str | None = None
    database: str | None = None
    retention_policy: str | None = None
    span: tuple[int, int] = field(default=(0, 0), compare=False)  # "INTO ..." in the text


@dataclass(frozen=True)
class Fill:
    mode: str = "null"  # "null" | "none" | "previous" | "linear" | "number"
    value: float | int | None = None


@dataclass(frozen=True)
class SelectStatement:
    fields: tuple[Field, ...]
    sources: tuple[Union[Measurement, Subquery], ...]
    condition: Expr | None = None
    dimensions: tuple[Expr, ...] = ()
    fill: Fill = field(default_factory=Fill)
    fill_given: bool = False
    descending: bool = False
    limit: int = 0
    offset: int = 0
    slimit: int = 0
    soffset: int = 0
    location: str | None = None
    into: IntoTarget | None = None


@dataclass(frozen=True)
class CreateContinuousQuery:
    """``CREATE CONTINUOUS QUERY name ON db [RESAMPLE [EVERY d] [FOR d]] BEGIN select END``;
    ``every``/``for_`` are 0 when not given (the GROUP BY interval)."""

    name: str
    database: str
    select: SelectStatement
    select_text: str
    source_text: str      # the SELECT without its INTO clause
    into_text: str        # "INTO target"
    every: int = 0
    for_: int = 0


@dataclass(frozen=True)
class DropContinuousQuery:
    name: str
    database: str


@dataclass(frozen=True)
class ShowContinuousQueries:
    pass


@dataclass(frozen=True)
class ShowDatabases:
    pass


@dataclass(frozen=True)
class ShowRetentionPolicies:
    database: str | None = None


@dataclass(frozen=True)
class ShowMeasurements:
    database: str | None = None
    name_op: str | None = None        # "=", "!=", "=~", "!~"
    name_value: str | None = None     # a name, or a regex pattern for =~ / !~
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowTagKeys:
    database: str | None = None
    sources: tuple[Measurement, ...] = ()
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowTagValues:
    database: str | None = None
    sources: tuple[Measurement, ...] = ()
    key_op: str = "="                 # "=", "!=", "=~", "!~", "IN"
    key_values: tuple[str, ...] = ()  # names, or one regex pattern
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowFieldKeys:
    database: str | None = None
    sources: tuple[Measurement, ...] = ()
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class ShowSeries:
    database: str | None = None
    sources: tuple[Measurement, ...] = ()
    condition: Expr | None = None
    limit: int = 0
    offset: int = 0


@dataclass(frozen=True)
class CreateSubscription:
    """``CREATE SUBSCRIPTION name ON db.rp DESTINATIONS ALL|ANY 'url'[, ...]``."""

    name: str
    database: str
    retention_policy: str
    mode: str  # "ALL" | "ANY"
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class DropSubscription:
    name: str
    database: str
    retention_policy: str


@dataclass(frozen=True)
class ShowSubscriptions:
    pass


@dataclass(frozen=True)
class UnsupportedStatement:
    """A statement InfluxQL knows but influent does not run (CREATE, DROP, ...)."""

    text: str


Statement = Union[SelectStatement, ShowDatabases, ShowRetentionPolicies, ShowMeasurements,
                  ShowTagKeys, ShowTagValues, ShowFieldKeys, ShowSeries, CreateSubscription,
                  DropSubscription, ShowSubscriptions, UnsupportedStatement,
                  CreateContinuousQuery, DropContinuousQuery, ShowContinuousQueries]
