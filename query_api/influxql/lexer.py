"""InfluxQL tokens: a pure scanner ``scan(text, pos) -> Token``.

Regex literals and division share ``/``, so the parser asks for :func:`scan_regex` where the
grammar expects a regex (after ``=~``/``!~``, in FROM and WITH clauses). Positions are string
offsets; :func:`line_char` turns them into InfluxDB's ``line N, char M`` (EOF reports one char
further, as InfluxDB 1.x does).
"""
from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = frozenset("""
ALL ALTER ANALYZE AND ANY AS ASC BEGIN BY CARDINALITY CREATE CONTINUOUS DATABASE DATABASES
DEFAULT DELETE DESC DESTINATIONS DIAGNOSTICS DISTINCT DROP DURATION END EVERY EXACT EXPLAIN
FALSE FIELD FOR FROM GRANT GRANTS GROUP GROUPS IN INF INSERT INTO KEY KEYS KILL LIMIT
MEASUREMENT MEASUREMENTS NAME OFFSET ON OR ORDER PASSWORD POLICIES POLICY PRIVILEGES QUERIES
QUERY READ REPLICATION RESAMPLE RETENTION REVOKE SELECT SERIES SET SHARD SHARDS SHOW SLIMIT SOFFSET
STATS SUBSCRIPTION SUBSCRIPTIONS TAG TO TRUE USER USERS VALUES WHERE WITH WRITE
""".split())

# token kinds besides keywords (which use their upper-case name as kind)
IDENT = "IDENT"
NUMBER = "NUMBER"
INTEGER = "INTEGER"
DURATION = "DURATIONVAL"
STRING = "STRING"
BADSTRING = "BADSTRING"
BADESCAPE = "BADESCAPE"
REGEX = "REGEX"
BADREGEX = "BADREGEX"
BOUNDPARAM = "BOUNDPARAM"
EOF = "EOF"
ILLEGAL = "ILLEGAL"

OPERATORS = ("=~", "!~", "!=", "<>", "<=", ">=", "::", "=", "<", ">", "+", "-", "*", "/", "%",
             "&", "|", "^", "(", ")", ",", ";", ".")

DURATION_UNITS = {"ns": 1, "u": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                  "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
                  "w": 604_800_000_000_000}


@dataclass(frozen=True)
class Token:
    kind: str
    lit: str
    pos: int
    end: int

    def describe(self) -> str:
        """How InfluxDB 1.x names the token in ``found X`` (literal text, else the kind)."""
        if self.kind == EOF:
            return "EOF"
        if self.kind in KEYWORDS:
            return self.kind
        return self.lit if self.lit != "" else self.kind


def line_char(text: str, pos: int, eof: bool = False, quoted: bool = False) -> tuple[int, int]:
    """1-based line and InfluxDB's char number: column + 1, except column + 2 at EOF and
    column + 0 for single-quoted strings (quirks of the 1.x scanner's positions)."""
    line = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    return line, pos - start + (2 if eof else 0 if quoted else 1)


def _is_ident_start(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ch == "_"


def _is_ident_char(ch: str) -> bool:
    return _is_ident_start(ch) or ("0" <= ch <= "9")


def skip_space(text: str, pos: int) -> int:
    """Skip whitespace and ``--`` / ``/* */`` comments."""
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch.isspace():
            pos += 1
        elif text.startswith("--", pos):
            end = text.find("\n", pos)
            pos = n if end < 0 else end + 1
        elif text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            pos = n if end < 0 else end + 2
        else:
            break
    return pos


def _scan_quoted(text: str, pos: int, quote: str) -> tuple[str, int, str | None]:
    """Read a quoted string from ``pos`` (on the opening quote): (value, end, error kind)."""
    out: list[str] = []
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1, None
        if ch == "\n":
            return "".join(out), i, BADSTRING
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt == "n":
                out.append("\n")
            elif nxt in ("\\", '"', "'"):
                out.append(nxt)
            else:
                return "\\" + nxt, i, BADESCAPE
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out), n, BADSTRING


def scan(text: str, pos: int) -> Token:
    """The token starting at (or after whitespace from) ``pos``."""
    pos = skip_space(text, pos)
    n = len(text)
    if pos >= n:
        return Token(EOF, "", n, n)
    ch = text[pos]
    if _is_ident_start(ch):
        end = pos + 1
        while end < n and _is_ident_char(text[end]):
            end += 1
        word = text[pos:end]
        upper = word.upper()
        return Token(upper if upper in KEYWORDS else IDENT, word, pos, end)
    if ch == '"':
        value, end, err = _scan_quoted(text, pos, '"')
        return Token(err or IDENT, value, pos, end)
    if ch == "'":
        value, end, err = _scan_quoted(text, pos, "'")
        return Token(err or STRING, value, pos, end)
    if ch.isdigit() or (ch == "." and pos + 1 < n and text[pos + 1].isdigit()):
        return _scan_number(text, pos)
    if ch == "$":
        end = pos + 1
        while end < n and (_is_ident_char(text[end])):
            end += 1
        return Token(BOUNDPARAM, text[pos + 1:end], pos, end)
    for op in OPERATORS:
        if text.startswith(op, pos):
            return Token(op, op, pos, pos + len(op))
    return Token(ILLEGAL, ch, pos, pos + 1)


def _scan_number(text: str, pos: int) -> Token:
    """``12`` INTEGER, ``1.5``/``.5`` NUMBER, ``10s``/``1h30m``/``100ms`` DURATION (in ns)."""
    n = len(text)
    end = pos
    while end < n and text[end].isdigit():
        end += 1
    if end < n and text[end] == ".":
        end += 1
        while end < n and text[end].isdigit():
            end += 1
        return Token(NUMBER, text[pos:end], pos, end)
    total, cursor = _duration_prefix(text, pos)
    if cursor > pos and not (cursor < n and _is_ident_char(text[cursor])):
        return Token(DURATION, text[pos:cursor], pos, cursor)
    return Token(INTEGER, text[pos:end], pos, end)


def _duration_prefix(text: str, pos: int) -> tuple[int, int]:
    """(ns, end) of the longest run of ``<digits><unit>`` groups at ``pos``."""
    n = len(text)
    total, cursor = 0, pos
    while True:
        digits_end = cursor
        while digits_end < n and text[digits_end].isdigit():
            digits_end += 1
        unit = _unit_at(text, digits_end) if digits_end > cursor else None
        if unit is None:
            return total, cursor
        total += int(text[cursor:digits_end]) * DURATION_UNITS[unit]
        cursor = digits_end + len(unit)


def duration_ns(literal: str) -> int:
    """The value in ns of a DURATION token's text (``1h30m`` -> 5400000000000)."""
    total, end = _duration_prefix(literal, 0)
    if end != len(literal):
        raise ValueError(f"invalid duration {literal}")
    return total


def _unit_at(text: str, pos: int) -> str | None:
    for unit in ("ns", "ms", "u", "µ", "s", "m", "h", "d", "w"):
        if text.startswith(unit, pos):
            return unit
    return None


def scan_regex(text: str, pos: int) -> Token:
    """A ``/regex/`` literal at ``pos`` (after whitespace); ``\\/`` stands for ``/``."""
    pos = skip_space(text, pos)
    if pos >= len(text) or text[pos] != "/":
        return scan(text, pos)
    out: list[str] = []
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "/":
            return Token(REGEX, "".join(out), pos, i + 1)
        if ch == "\\" and i + 1 < n and text[i + 1] == "/":
            out.append("/")
            i += 2
            continue
        if ch == "\n":
            break
        out.append(ch)
        i += 1
    return Token(BADREGEX, "".join(out), pos, i)
