"""Subscription predicates (pure): a small InfluxQL-like WHERE language evaluated vectorised
over an accepted Arrow batch with ``pyarrow.compute``.

Grammar (keywords case-insensitive)::

    predicate  := or
    or         := and ("OR" and)*
    and        := term ("AND" term)*
    term       := "(" or ")" | column op literal
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "=~" | "!~"
    column     := identifier | "double quoted identifier"   (e.g. host, "cpu usage", time)
    literal    := 'single quoted string' | number | true | false | /regex/

Semantics follow InfluxQL: a missing tag compares as the empty string, a missing field (null)
never matches, comparing values of different kinds (a string with a number) never matches,
regexes are unanchored (RE2, like Go's regexp), ``time`` compares as integer nanoseconds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import pyarrow as pa
import pyarrow.compute as pc


class PredicateError(ValueError):
    """A predicate that does not parse; the message says where."""


@dataclass(frozen=True)
class Regex:
    pattern: str


Literal = Union[str, int, float, bool, Regex]


@dataclass(frozen=True)
class Comparison:
    column: str
    op: str
    value: Literal


@dataclass(frozen=True)
class Logical:
    op: str  # "AND" | "OR"
    left: "Predicate"
    right: "Predicate"


Predicate = Union[Comparison, Logical]

# ---- parsing -------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<quoted>"(?:[^"\\]|\\.)*")
    | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    | (?P<op>=~|!~|!=|<>|<=|>=|=|<|>)
    | (?P<paren>[()])
    | (?P<regex>/(?:[^/\\]|\\.)*/)
    | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PredicateError(f"unexpected character at char {pos + 1}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup
        out.append(_Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise PredicateError("unexpected end of predicate")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.text.upper() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        pred = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise PredicateError(f"unexpected {tok.text!r} at char {tok.pos + 1}")
        return pred

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self.keyword("OR"):
            left = Logical("OR", left, self.parse_and())
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_term()
        while self.keyword("AND"):
            left = Logical("AND", left, self.parse_term())
        return left

    def parse_term(self) -> Predicate:
        tok = self.take()
        if tok.kind == "paren" and tok.text == "(":
            inner = self.parse_or()
            close = self.take()
            if close.text != ")":
                raise PredicateError(f"expected ')' at char {close.pos + 1}")
            return inner
        if tok.kind == "word" and tok.text.upper() not in ("AND", "OR", "TRUE", "FALSE"):
            column = tok.text
        elif tok.kind == "quoted":
            column = _unescape(tok.text[1:-1])
        else:
            raise PredicateError(f"expected a column name at char {tok.pos + 1}, found {tok.text!r}")
        op_tok = self.take()
        if op_tok.kind != "op":
            raise PredicateError(f"expected a comparison operator at char {op_tok.pos + 1}")
        op = "!=" if op_tok.text == "<>" else op_tok.text
        value = self.parse_literal()
        if op in ("=~", "!~") and not isinstance(value, Regex):
            raise PredicateError(f"{op} needs a /regex/ on its right")
        if isinstance(value, Regex) and op not in ("=~", "!~"):
            raise PredicateError(f"a regex can only be compared with =~ or !~, not {op}")
        return Comparison(column, op, value)

    def parse_literal(self) -> Literal:
        tok = self.take()
        if tok.kind == "string":
            return _unescape(tok.text[1:-1])
        if tok.kind == "number":
            text = tok.text
            return float(text) if any(c in text for c in ".eE") else int(text)
        if tok.kind == "regex":
            pattern = tok.text[1:-1].replace("\\/", "/")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PredicateError(f"invalid regex /{pattern}/: {exc}") from exc
            return Regex(pattern)
        if tok.kind == "word" and tok.text.upper() in ("TRUE", "FALSE"):
            return tok.text.upper() == "TRUE"
        raise PredicateError(f"expected a literal at char {tok.pos + 1}, found {tok.text!r}")


def parse_predicate(text: str | None) -> Predicate | None:
    """The parsed predicate, or None for an empty one (everything matches)."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


def columns_of(pred: Predicate | None) -> set[str]:
    if pred is None:
        return set()
    if isinstance(pred, Comparison):
        return {pred.column}
    return columns_of(pred.left) | columns_of(pred.right)


# ---- evaluation ----------------------------------------------------------------------------

_FUNCS = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
          ">": pc.greater, ">=": pc.greater_equal}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t):
        return "number"
    return "other"


def _literal_kind(value: Literal) -> str:
    if isinstance(value, (str, Regex)):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def _column(batch: pa.RecordBatch | pa.Table, name: str, tags: set[str]) -> pa.Array:
    """The column to compare, as a plain array: tags (and columns absent from the batch,
    which InfluxQL treats as tags) read as '' where missing, timestamps as int64 ns."""
    if name not in batch.column_names:
        return pa.repeat(pa.scalar("", pa.string()), batch.num_rows)
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    if name in tags:
        col = pc.fill_null(col, "")
    return col


def _compare(pred: Comparison, batch: pa.RecordBatch | pa.Table, tags: set[str]) -> pa.Array:
    n = batch.num_rows
    col = _column(batch, pred.column, tags)
    if _kind(col.type) != _literal_kind(pred.value):
        return pa.repeat(pa.scalar(False, pa.bool_()), n)
    if isinstance(pred.value, Regex):
        matched = pc.match_substring_regex(col, pred.value.pattern)
        result = pc.invert(matched) if pred.op == "!~" else matched
    elif pa.types.is_unsigned_integer(col.type) and isinstance(pred.value, int) and pred.value < 0:
        # every uint is greater than a negative number; pyarrow cannot cast the literal
        always = pred.op in ("!=", ">", ">=")
        result = pa.repeat(pa.scalar(always, pa.bool_()), n)
    else:
        result = _FUNCS[pred.op](col, pa.scalar(pred.value))
    return pc.fill_null(result, False)


def evaluate(pred: Predicate | None, batch: pa.RecordBatch | pa.Table, tags: set[str]
             ) -> pa.Array:
    """A boolean mask (no nulls) of the rows of ``batch`` that ``pred`` matches; ``tags`` are
    the batch's tag columns (from the catalog: tags and string fields share the Arrow type)."""
    if pred is None:
        return pa.repeat(pa.scalar(True, pa.bool_()), batch.num_rows)
    if isinstance(pred, Comparison):
        return _compare(pred, batch, tags)
    left, right = evaluate(pred.left, batch, tags), evaluate(pred.right, batch, tags)
    return pc.and_(left, right) if pred.op == "AND" else pc.or_(left, right)


def matching_rows(pred: Predicate | None, batch: pa.RecordBatch | pa.Table, tags: set[str]
                  ) -> pa.RecordBatch | pa.Table:
    """The rows of ``batch`` the predicate matches (the batch itself when it matches all)."""
    if pred is None or batch.num_rows == 0:
        return batch
    return batch.filter(evaluate(pred, batch, tags))
