"""InfluxQL parser: query text -> list of statements (recursive descent, InfluxDB 1.x grammar).

Errors read like InfluxDB 1.x's (``found X, expected Y at line L, char C``) because clients and
tests match on them. Operator precedence follows 1.x: OR < AND < comparisons < ``+ - | ^`` <
``* / % &``, all left-associative.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from query_api.influxql import ast, management
from query_api.influxql.deletes import parse_delete_statement
from query_api.influxql.lexer import (BADESCAPE, BADREGEX, BADSTRING, BOUNDPARAM, DURATION, EOF,
                                      IDENT, INTEGER, NUMBER, STRING, Token, duration_ns,
                                      line_char, scan, scan_regex, skip_space)
from query_api.influxql.timeutil import UnknownTimeZone, zone

_PRECEDENCE = {"OR": 1, "AND": 2, "=": 4, "!=": 4, "<>": 4, "=~": 4, "!~": 4, "<": 4, "<=": 4,
               ">": 4, ">=": 4, "+": 5, "-": 5, "|": 5, "^": 5, "*": 6, "/": 6, "%": 6, "&": 6}
_STATEMENT_STARTS = ["SELECT", "DELETE", "SHOW", "CREATE", "DROP", "EXPLAIN", "GRANT", "REVOKE",
                     "ALTER", "SET", "KILL"]
_SHOW_KINDS = ["CONTINUOUS", "DATABASES", "DIAGNOSTICS", "FIELD", "GRANTS", "MEASUREMENT",
               "MEASUREMENTS", "QUERIES", "RETENTION", "SERIES", "SHARD", "SHARDS", "STATS",
               "SUBSCRIPTIONS", "TAG", "USERS"]
_VAR_TYPES = ("float", "integer", "unsigned", "string", "boolean")


class ParseError(ValueError):
    """A syntax error; ``str()`` is the message after InfluxDB's ``error parsing query: ``."""


@dataclass(frozen=True)
class ParsedQuery:
    statements: tuple[ast.Statement, ...]
    texts: tuple[str, ...]  # each statement's source text (for error messages)


#: Recently parsed texts (without parameters): the parse is pure and its result immutable, and
#: a query is often parsed twice (the permission check, then the executor) or sent again.
_PARSED: dict[str, ParsedQuery] = {}
PARSED_KEPT = 512
PARSED_TEXT_LIMIT = 4096


def parse_query(text: str, params: dict[str, Any] | None = None) -> ParsedQuery:
    """Parse ``;``-separated statements, binding ``$name`` placeholders from ``params`` (the
    decoded JSON of the ``params`` request parameter); raises :class:`ParseError`."""
    if params or len(text) > PARSED_TEXT_LIMIT:
        return _Parser(text, params).parse_query()
    found = _PARSED.get(text)
    if found is not None:
        return found
    parsed = _Parser(text, params).parse_query()  # a ParseError is not kept
    if len(_PARSED) >= PARSED_KEPT:
        try:  # the oldest goes (threads may parse too: a lost race only skips an eviction)
            del _PARSED[next(iter(_PARSED))]
        except (KeyError, RuntimeError, StopIteration):
            pass
    _PARSED[text] = parsed
    return parsed


def parse_expr(text: str) -> ast.Expr:
    """Parse one expression (used by tests and by callers building conditions)."""
    p = _Parser(text)
    expr = p.parse_expr()
    p.expect_end()
    return expr


def bound_value(name: str, params: dict[str, Any] | None) -> ast.Expr:
    """The literal a ``$name`` placeholder stands for. Values are JSON scalars (integral
    numbers are integers) or one-key objects naming the type, as InfluxDB 1.x accepts:
    ``{"identifier"|"regex"|"duration"|"string"|"integer"|"float"|"boolean": value}``."""
    if not params or name not in params:
        raise ParseError(f"missing parameter: {name}")
    value = params[name]
    if isinstance(value, dict) and len(value) == 1:
        kind, raw = next(iter(value.items()))
        try:
            if kind == "identifier":
                return ast.VarRef(str(raw))
            if kind == "regex":
                re.compile(str(raw))
                return ast.RegexLit(str(raw))
            if kind == "duration":
                return ast.DurationLit(duration_ns(str(raw)) if isinstance(raw, str) else int(raw))
            if kind == "string":
                return ast.StringLit(str(raw))
            if kind in ("integer", "unsigned"):
                return ast.IntegerLit(int(raw))
            if kind == "float":
                return ast.NumberLit(float(raw))
            if kind == "boolean":
                return ast.BoolLit(bool(raw))
        except (ValueError, re.error) as exc:
            raise ParseError(f"invalid value for parameter {name}: {raw!r}") from exc
        raise ParseError(f"unknown parameter type: {kind}")
    if isinstance(value, bool):
        return ast.BoolLit(value)
    if isinstance(value, int):
        return ast.IntegerLit(value)
    if isinstance(value, float):
        return ast.IntegerLit(int(value)) if value.is_integer() else ast.NumberLit(value)
    if isinstance(value, str):
        return ast.StringLit(value)
    raise ParseError(f"unable to bind parameter with type {type(value).__name__}")


class _Parser:
    def __init__(self, text: str, params: dict[str, Any] | None = None):
        self.text = text
        self.pos = 0
        self.params = params

    # ---- token plumbing ---------------------------------------------------------------------
    def peek(self) -> Token:
        return scan(self.text, self.pos)

    def next(self) -> Token:
        tok = scan(self.text, self.pos)
        self.pos = tok.end
        return tok

    def accept(self, kind: str) -> Token | None:
        tok = self.peek()
        if tok.kind == kind:
            self.pos = tok.end
            return tok
        return None

    def error(self, tok: Token, expected: list[str]) -> ParseError:
        return self._error_at(f"found {tok.describe()}, expected {', '.join(expected)}", tok)

    def _error_at(self, message: str, tok: Token) -> ParseError:
        quoted = tok.kind in (STRING, BADSTRING, BADESCAPE)
        line, char = line_char(self.text, tok.pos, eof=tok.kind == EOF, quoted=quoted)
        return ParseError(f"{message} at line {line}, char {char}")

    def expect(self, kind: str, expected: list[str] | None = None) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise self.error(tok, expected or [kind])
        return tok

    def expect_end(self) -> None:
        tok = self.peek()
        if tok.kind != EOF:
            raise self.error(tok, ["EOF"])

    def next_char(self) -> str:
        pos = skip_space(self.text, self.pos)
        return self.text[pos] if pos < len(self.text) else ""

    def immediate(self, kind: str) -> bool:
        """True (and consumed) when the very next character starts ``kind`` (no whitespace)."""
        if self.text.startswith(kind, self.pos):
            self.pos += len(kind)
            return True
        return False

    # ---- query and statements ---------------------------------------------------------------
    def parse_query(self) -> ParsedQuery:
        statements: list[ast.Statement] = []
        texts: list[str] = []
        need_semi = False
        while True:
            tok = self.peek()
            if tok.kind == EOF:
                return ParsedQuery(tuple(statements), tuple(texts))
            if tok.kind == ";":
                self.next()
                need_semi = False
                continue
            if need_semi:
                raise self.error(tok, [";"])
            start = tok.pos
            statements.append(self.parse_statement())
            texts.append(self.text[start:self.pos].strip())
            need_semi = True

    def parse_statement(self) -> ast.Statement:
        tok = self.next()
        if tok.kind == "SELECT":
            return self.parse_select()
        if tok.kind == "SHOW":
            return self.parse_show()
        if tok.kind in ("CREATE", "DROP") and self.accept("SUBSCRIPTION"):
            return self.parse_subscription(create=tok.kind == "CREATE")
        if tok.kind in ("CREATE", "DROP") and self.peek().kind in management.KEYWORDS:
            return management.parse_management(self, tok.kind)
        if tok.kind == "DELETE" or (tok.kind == "DROP" and self.accept("SERIES")):
            return parse_delete_statement(self, drop_series=tok.kind == "DROP")
        if tok.kind in ("CREATE", "DROP") and self.accept("CONTINUOUS"):
            return self.parse_continuous_query(create=tok.kind == "CREATE")
        if tok.kind in _STATEMENT_STARTS:
            start = tok.pos
            while self.peek().kind not in (";", EOF):
                nxt = self.peek()
                if nxt.kind in (BADSTRING, BADESCAPE):
                    raise self.error(nxt, ["identifier", "string", "number", "bool"])
                self.next()
            return ast.UnsupportedStatement(self.text[start:self.pos].strip())
        raise self.error(tok, _STATEMENT_STARTS)

    # ---- SELECT -----------------------------------------------------------------------------
    def parse_select(self) -> ast.SelectStatement:
        fields = self.parse_fields()
        into = None
        into_tok = self.accept("INTO")
        if into_tok is not None:
            into = replace(self.parse_into(), span=(into_tok.pos, self.pos))
        self.expect("FROM")
        sources = self.parse_sources()
        condition = self.parse_expr() if self.accept("WHERE") else None
        dimensions: tuple[ast.Expr, ...] = ()
        if self.accept("GROUP"):
            self.expect("BY")
            dimensions = self.parse_dimensions()
        fill, fill_given = self.parse_fill()
        descending = False
        if self.accept("ORDER"):
            self.expect("BY")
            descending = self.parse_sort_fields()
        limit = self.parse_optional_int("LIMIT")
        offset = self.parse_optional_int("OFFSET")
        slimit = self.parse_optional_int("SLIMIT")
        soffset = self.parse_optional_int("SOFFSET")
        location = self.parse_location()
        return ast.SelectStatement(fields=fields, sources=sources, condition=condition,
                                   dimensions=dimensions, fill=fill, fill_given=fill_given,
                                   descending=descending, limit=limit, offset=offset,
                                   slimit=slimit, soffset=soffset, location=location,
                                   into=into)

    def parse_into(self) -> ast.IntoTarget:
        """``[db.[rp].]measurement`` or ``[db.[rp].]:MEASUREMENT`` after INTO."""
        marker = ":MEASUREMENT"
        pos = skip_space(self.text, self.pos)
        if self.text[pos:pos + len(marker)].upper() == marker:
            self.pos = pos + len(marker)
            return ast.IntoTarget()
        idents = self.parse_segmented_idents()
        if self.text[self.pos:self.pos + 1 + len(marker)].upper() == "." + marker:
            self.pos += 1 + len(marker)
            db, rp = idents[0], (idents[1] if len(idents) > 1 else "") or None
            return ast.IntoTarget(database=db, retention_policy=rp)
        if len(idents) == 3:
            return ast.IntoTarget(idents[2], idents[0], idents[1] or None)
        if len(idents) == 2:
            return ast.IntoTarget(idents[1], retention_policy=idents[0] or None)
        return ast.IntoTarget(idents[0])

    def parse_fields(self) -> tuple[ast.Field, ...]:
        fields = [self.parse_field()]
        while self.accept(","):
            fields.append(self.parse_field())
        return tuple(fields)

    def parse_field(self) -> ast.Field:
        regex = self.parse_regex()
        expr: ast.Expr = regex if regex is not None else self.parse_expr()
        alias = None
        if self.accept("AS"):
            alias = self.parse_ident()
        return ast.Field(expr=expr, alias=alias)

    def parse_ident(self) -> str:
        tok = self.next()
        if tok.kind != IDENT:
            raise self.error(tok, ["identifier"])
        return tok.lit

    def parse_segmented_idents(self) -> list[str]:
        idents = [self.parse_ident()]
        while True:
            if self.accept(".") is None:
                break
            ch = self.next_char()
            if ch == "/":
                break
            if ch == ".":
                idents.append("")
                continue
            if ch == ":":
                self.pos -= 1
                break
            idents.append(self.parse_ident())
        if len(idents) > 3:
            raise ParseError(f"too many segments in {'.'.join(idents)}")
        return idents

    def parse_sources(self) -> tuple[ast.Measurement, ...]:
        sources = [self.parse_source()]
        while self.accept(","):
            sources.append(self.parse_source())
        return tuple(sources)

    def parse_source(self) -> ast.Measurement | ast.Subquery:
        regex = self.parse_regex()
        if regex is not None:
            return ast.Measurement(regex=regex.pattern)
        if self.accept("("):
            return self.parse_subquery()
        idents = self.parse_segmented_idents()
        if len(idents) == 3:
            return ast.Measurement(database=idents[0], retention_policy=idents[1] or None,
                                   name=idents[2])
        regex = self.parse_regex()
        if len(idents) == 1:
            if regex is not None:
                return ast.Measurement(retention_policy=idents[0] or None, regex=regex.pattern)
            return ast.Measurement(name=idents[0])
        if regex is not None:
            return ast.Measurement(database=idents[0], retention_policy=idents[1] or None,
                                   regex=regex.pattern)
        return ast.Measurement(retention_policy=idents[0] or None, name=idents[1])

    def parse_subquery(self) -> ast.Subquery:
        """``(SELECT ...)`` after its opening parenthesis."""
        self.expect("SELECT", ["SELECT"])
        inner = self.parse_select()
        self.expect(")", [")"])
        return ast.Subquery(inner)

    def parse_regex(self) -> ast.RegexLit | None:
        if self.next_char() != "/":
            return None
        tok = scan_regex(self.text, self.pos)
        if tok.kind == BADREGEX:
            raise self._error_at("bad regex", tok)
        self.pos = tok.end
        try:
            re.compile(tok.lit)
        except re.error as exc:
            raise ParseError(f"error parsing regexp: {exc}") from exc
        return ast.RegexLit(tok.lit)

    def parse_dimensions(self) -> tuple[ast.Expr, ...]:
        dims: list[ast.Expr] = []
        while True:
            regex = self.parse_regex()
            dims.append(regex if regex is not None else self.parse_expr())
            if not self.accept(","):
                return tuple(dims)

    def parse_fill(self) -> tuple[ast.Fill, bool]:
        tok = self.peek()
        if tok.kind != IDENT or tok.lit.lower() != "fill":
            return ast.Fill(), False
        expr = self.parse_expr()
        if not isinstance(expr, ast.Call):
            raise ParseError("fill must be a function call")
        if len(expr.args) != 1:
            raise ParseError("fill requires an argument, e.g.: 0, null, none, previous, linear")
        arg = expr.args[0]
        if isinstance(arg, ast.VarRef) and arg.type is None and arg.name in (
                "null", "none", "previous", "linear"):
            return ast.Fill(mode=arg.name), True
        if isinstance(arg, ast.IntegerLit):
            return ast.Fill(mode="number", value=arg.value), True
        if isinstance(arg, ast.NumberLit):
            return ast.Fill(mode="number", value=arg.value), True
        raise ParseError("expected number argument in fill()")

    def parse_sort_fields(self) -> bool:
        """ORDER BY time [ASC|DESC] (only time sorts in InfluxQL); True when descending."""
        descending = False
        first = True
        while True:
            tok = self.next()
            if tok.kind in ("ASC", "DESC") and first:
                descending = tok.kind == "DESC"
            elif tok.kind == IDENT:
                if tok.lit.lower() != "time":
                    raise ParseError("only ORDER BY time supported at this time")
                nxt = self.peek()
                if nxt.kind in ("ASC", "DESC"):
                    self.next()
                    descending = nxt.kind == "DESC"
            else:
                raise self.error(tok, ["identifier", "ASC", "DESC"])
            first = False
            if not self.accept(","):
                return descending

    def parse_optional_int(self, keyword: str) -> int:
        if not self.accept(keyword):
            return 0
        tok = self.next()
        if tok.kind != INTEGER:
            raise self.error(tok, ["integer"])
        return int(tok.lit)

    def parse_location(self) -> str | None:
        tok = self.peek()
        if tok.kind != IDENT or tok.lit.lower() != "tz":
            return None
        self.next()
        self.expect("(", ["("])
        name = self.next()
        if name.kind != STRING:
            raise self.error(name, ["string"])
        self.expect(")", [")"])
        try:
            zone(name.lit)
        except UnknownTimeZone as exc:
            raise ParseError(str(exc)) from exc
        return name.lit

    # ---- expressions ------------------------------------------------------------------------
    def parse_expr(self, min_prec: int = 1) -> ast.Expr:
        lhs = self.parse_unary()
        while True:
            tok = self.peek()
            op = tok.kind
            prec = _PRECEDENCE.get(op)
            if prec is None or prec < min_prec:
                return lhs
            self.next()
            if op in ("=~", "!~"):
                rhs: ast.Expr | None = self.parse_regex()
                if rhs is None:
                    bound = self.peek()
                    if bound.kind != BOUNDPARAM:
                        raise self.error(bound, ["regex"])
                    self.next()
                    rhs = bound_value(bound.lit, self.params)
                    if not isinstance(rhs, ast.RegexLit):
                        shown = rhs.value if isinstance(rhs, ast.StringLit) else bound.lit
                        raise self._error_at(f"found {shown}, expected regex", bound)
                # comparisons are left-assoc: a =~ /x/ AND ... continues at this level
                lhs = ast.BinaryExpr("!=" if op == "<>" else op, lhs, rhs)
                continue
            rhs = self.parse_expr(prec + 1)
            lhs = ast.BinaryExpr("!=" if op == "<>" else op, lhs, rhs)

    def parse_unary(self) -> ast.Expr:
        tok = self.next()
        kind = tok.kind
        if kind == "(":
            expr = self.parse_expr()
            close = self.next()
            if close.kind != ")":
                raise self.error(close, [")"])
            return ast.ParenExpr(expr)
        if kind == IDENT:
            if self.immediate("("):
                return self.parse_call(tok.lit)
            self.pos = tok.pos
            return self.parse_var_ref()
        if kind == "DISTINCT":
            if self.immediate("("):
                return self.parse_call("distinct")
            nxt = self.next()
            if nxt.kind != IDENT:
                raise self.error(nxt, ["identifier"])
            return ast.Call("distinct", (ast.VarRef(nxt.lit),))
        if kind == STRING:
            return ast.StringLit(tok.lit)
        if kind == NUMBER:
            return ast.NumberLit(float(tok.lit))
        if kind == INTEGER:
            value = int(tok.lit)
            if value > 2 ** 63 - 1:
                return ast.NumberLit(float(value))
            return ast.IntegerLit(value)
        if kind in ("TRUE", "FALSE"):
            return ast.BoolLit(kind == "TRUE")
        if kind == DURATION:
            return ast.DurationLit(duration_ns(tok.lit))
        if kind == "*":
            if self.immediate("::"):
                typ = self.next()
                if typ.kind not in ("FIELD", "TAG"):
                    raise self.error(typ, ["field", "tag"])
                return ast.Wildcard(typ.kind.lower())
            return ast.Wildcard()
        if kind == BOUNDPARAM:
            if not tok.lit:
                raise ParseError("empty bound parameter")
            return bound_value(tok.lit, self.params)
        if kind in ("+", "-"):
            sign = -1 if kind == "-" else 1
            nxt = self.peek()
            if nxt.kind not in (NUMBER, INTEGER, DURATION, "(", IDENT):
                raise self.error(nxt, ["identifier", "number", "duration", "("])
            operand = self.parse_unary()
            if isinstance(operand, ast.NumberLit):
                return ast.NumberLit(operand.value * sign)
            if isinstance(operand, ast.IntegerLit):
                return ast.IntegerLit(operand.value * sign)
            if isinstance(operand, ast.DurationLit):
                return ast.DurationLit(operand.ns * sign)
            return ast.BinaryExpr("*", ast.IntegerLit(sign), operand)
        if kind == BADSTRING:
            raise self.error(tok, ["identifier", "string", "number", "bool"])
        if kind == BADESCAPE:
            raise self._error_at(f"bad escape: {tok.lit}", tok)
        raise self.error(tok, ["identifier", "string", "number", "bool"])

    def parse_call(self, name: str) -> ast.Call:
        name = name.lower()
        args: list[ast.Expr] = []
        regex = self.parse_regex()
        if regex is not None:
            args.append(regex)
        else:
            if self.accept(")"):
                return ast.Call(name, ())
            args.append(self.parse_expr())
        while self.accept(","):
            regex = self.parse_regex()
            args.append(regex if regex is not None else self.parse_expr())
        close = self.next()
        if close.kind != ")":
            raise self.error(close, [")"])
        return ast.Call(name, tuple(args))

    def parse_var_ref(self) -> ast.VarRef:
        segments = self.parse_segmented_idents()
        vtype = None
        if self.immediate("::"):
            typ = self.next()
            if typ.kind == IDENT and typ.lit.lower() in _VAR_TYPES:
                vtype = typ.lit.lower()
            elif typ.kind in ("FIELD", "TAG"):
                vtype = typ.kind.lower()
            else:
                raise self.error(typ, list(_VAR_TYPES) + ["field", "tag"])
        return ast.VarRef(".".join(segments), vtype)

    # ---- SHOW -------------------------------------------------------------------------------
    def parse_show(self) -> ast.Statement:
        tok = self.next()
        kind = tok.kind
        if kind == "DATABASES":
            return ast.ShowDatabases()
        if kind == "RETENTION":
            self.expect("POLICIES")
            return ast.ShowRetentionPolicies(database=self.parse_on())
        if kind == "MEASUREMENTS":
            return self.parse_show_measurements()
        if kind == "TAG":
            nxt = self.next()
            if nxt.kind == "KEYS":
                db = self.parse_on()
                sources = self.parse_optional_from()
                cond = self.parse_expr() if self.accept("WHERE") else None
                limit, offset = self.parse_limit_offset()
                return ast.ShowTagKeys(db, sources, cond, limit, offset)
            if nxt.kind == "VALUES":
                return self.parse_show_tag_values()
            raise self.error(nxt, ["KEYS", "VALUES"])
        if kind == "FIELD":
            nxt = self.next()
            if nxt.kind != "KEYS":
                raise self.error(nxt, ["KEYS"])
            db = self.parse_on()
            sources = self.parse_optional_from()
            limit, offset = self.parse_limit_offset()
            return ast.ShowFieldKeys(db, sources, limit, offset)
        if kind == "SERIES":
            db = self.parse_on()
            sources = self.parse_optional_from()
            cond = self.parse_expr() if self.accept("WHERE") else None
            limit, offset = self.parse_limit_offset()
            return ast.ShowSeries(db, sources, cond, limit, offset)
        if kind == "SUBSCRIPTIONS":
            return ast.ShowSubscriptions()
        if kind == "CONTINUOUS":
            self.expect("QUERIES", ["QUERIES"])
            return ast.ShowContinuousQueries()
        if kind in _SHOW_KINDS:
            start = tok.pos
            while self.peek().kind not in (";", EOF):
                self.next()
            return ast.UnsupportedStatement("SHOW " + self.text[start:self.pos].strip())
        raise self.error(tok, _SHOW_KINDS)

    def parse_subscription(self, create: bool) -> ast.Statement:
        """``CREATE SUBSCRIPTION name ON db.rp DESTINATIONS ALL|ANY 'dest'[, ...]`` or
        ``DROP SUBSCRIPTION name ON db.rp`` (after the SUBSCRIPTION keyword)."""
        name = self.parse_ident()
        self.expect("ON", ["ON"])
        db = self.parse_ident()
        self.expect(".", ["."])
        rp = self.parse_ident()
        if not create:
            return ast.DropSubscription(name, db, rp)
        self.expect("DESTINATIONS", ["DESTINATIONS"])
        mode = self.next()
        if mode.kind not in ("ALL", "ANY"):
            raise self.error(mode, ["ALL", "ANY"])
        destinations = [self.expect(STRING, ["string"]).lit]
        while self.accept(","):
            destinations.append(self.expect(STRING, ["string"]).lit)
        return ast.CreateSubscription(name, db, rp, mode.kind, tuple(destinations))

    def parse_continuous_query(self, create: bool) -> ast.Statement:
        """After ``CREATE|DROP CONTINUOUS``: ``QUERY name ON db`` and, to create,
        ``[RESAMPLE [EVERY d] [FOR d]] BEGIN <select with INTO and GROUP BY time> END``."""
        self.expect("QUERY", ["QUERY"])
        name = self.parse_ident()
        self.expect("ON", ["ON"])
        db = self.parse_ident()
        if not create:
            return ast.DropContinuousQuery(name, db)
        every = for_ = 0
        if self.accept("RESAMPLE"):
            if self.accept("EVERY"):
                every = duration_ns(self.expect(DURATION, ["duration"]).lit)
            if self.accept("FOR"):
                for_ = duration_ns(self.expect(DURATION, ["duration"]).lit)
            if not every and not for_:
                raise self.error(self.peek(), ["EVERY", "FOR"])
        self.expect("BEGIN", ["BEGIN"])
        start = skip_space(self.text, self.pos)
        self.expect("SELECT", ["SELECT"])
        select = self.parse_select()
        end = self.pos
        self.expect("END", ["END"])
        if select.into is None:
            raise ParseError("continuous query requires an INTO clause")
        into_start, into_end = select.into.span
        text = self.text[start:end].strip()
        without_into = (self.text[start:into_start] + self.text[into_end:end]).strip()
        if not any(isinstance(ast.strip_parens(d), ast.Call) and ast.strip_parens(d).name == "time"
                   for d in select.dimensions):
            raise ParseError("continuous query requires a GROUP BY time() clause")
        return ast.CreateContinuousQuery(name, db, select, text, without_into,
                                         self.text[into_start:into_end].strip(), every, for_)

    def parse_on(self) -> str | None:
        if self.accept("ON"):
            return self.parse_ident()
        return None

    def parse_optional_from(self) -> tuple[ast.Measurement, ...]:
        if self.accept("FROM"):
            sources = self.parse_sources()
            if any(isinstance(m, ast.Subquery) for m in sources):
                raise ParseError("subqueries are only allowed in SELECT")
            return sources  # type: ignore[return-value]
        return ()

    def parse_limit_offset(self) -> tuple[int, int]:
        return self.parse_optional_int("LIMIT"), self.parse_optional_int("OFFSET")

    def parse_show_measurements(self) -> ast.ShowMeasurements:
        db = self.parse_on()
        name_op = name_value = None
        if self.accept("WITH"):
            self.expect("MEASUREMENT")
            op = self.next()
            if op.kind not in ("=", "=~", "!=", "!~"):
                raise self.error(op, ["=", "=~"])
            regex = self.parse_regex()
            if regex is not None:
                name_op = "=~" if op.kind in ("=", "=~") else "!~"
                name_value = regex.pattern
            else:
                idents = self.parse_segmented_idents()
                name_op = "=" if op.kind in ("=", "=~") else "!="
                name_value = idents[-1]
        cond = self.parse_expr() if self.accept("WHERE") else None
        limit, offset = self.parse_limit_offset()
        return ast.ShowMeasurements(db, name_op, name_value, cond, limit, offset)

    def parse_show_tag_values(self) -> ast.ShowTagValues:
        db = self.parse_on()
        sources = self.parse_optional_from()
        self.expect("WITH")
        self.expect("KEY")
        op = self.next()
        if op.kind in ("=", "!="):
            regex = self.parse_regex()
            if regex is not None:
                key_op, values = ("=~" if op.kind == "=" else "!~"), (regex.pattern,)
            else:
                key_op, values = op.kind, (self.parse_ident(),)
        elif op.kind in ("=~", "!~"):
            regex = self.parse_regex()
            if regex is None:
                raise self.error(self.peek(), ["regex"])
            key_op, values = op.kind, (regex.pattern,)
        elif op.kind == "IN":
            self.expect("(", ["("])
            names = [self.parse_ident()]
            while self.accept(","):
                names.append(self.parse_ident())
            self.expect(")", [")"])
            key_op, values = "IN", tuple(names)
        else:
            raise self.error(op, ["=", "!=", "=~", "!~", "IN"])
        cond = self.parse_expr() if self.accept("WHERE") else None
        limit, offset = self.parse_limit_offset()
        return ast.ShowTagValues(db, sources, key_op, values, cond, limit, offset)
