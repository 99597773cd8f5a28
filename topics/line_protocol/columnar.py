"""Vectorised parsing of *plain* line protocol lines into Arrow columns.

A plain line has no backslash, tab, carriage return or NUL, and double quotes only around string
field values free of separators; each element then ends exactly at a ``,``, ``=`` or space. A
block of such lines is parsed with whole-block C-level passes, never Python per line:

1. pyarrow's CSV reader splits every line at its spaces: series key (dictionary-encoded while
   reading: series repeat heavily in time series data), field set, timestamp.
2. Key=value lists (the distinct series keys, then the field sets) are split with the CSV reader
   at ``=``. When the rows share the first row's keys (the usual case) each cell is
   ``value,next_key``: checking every cell's suffix proves the row's structure and slicing it off
   yields the values. Otherwise ``bytes.translate`` gives each row's *skeleton* (its sequence of
   ``,`` and ``=``) to group rows by structure, and the key columns group them by shape.
3. Field value columns are typed per column (suffix ``i``/``u``, quotes, boolean spellings,
   else float), converted with Arrow casts and validated with cheap whole-column checks for
   what Arrow accepts beyond the line protocol grammar (``+1``, ``.5``, ``1.``, ``inf``...).

Whatever these passes cannot prove valid goes back to the caller as a *fallback* line for the
exact per-line parser (``grammar``), which also words the error. Measured choices: CSV cost
grows with the number of cells, so the passes keep cells few (3 per line, then one per field).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from topics.line_protocol.model import ARROW_TYPES, MAX_VALUE_BYTES, FieldType, Segment
from topics.line_protocol.grammar import (FALSE_SPELLINGS, FLOAT_SYNTAX, INTEGER_SYNTAX, TRUE_SPELLINGS,
                                          UINTEGER_SYNTAX, line_rule_violation)

DELIMITER = "\x1f"
_KV_TRANSLATE = bytes.maketrans(b",=", DELIMITER.encode() * 2)
_KV_SKELETON_DELETE = bytes(b for b in range(256) if b not in b",=\n")
_FLOAT_CHARS = b"0123456789.eE+-"
_SIGNED_CHARS = b"0123456789-"
_DIGITS = b"0123456789"
_EMPTY = pa.scalar(b"", pa.binary())
_NEWLINE = pa.scalar(b"\n", pa.binary())
_SPACE = pa.scalar(b" ", pa.binary())
_KEY_JOIN = pa.scalar(DELIMITER.encode(), pa.binary())
_TRUE = pa.array([s.encode() for s in TRUE_SPELLINGS], pa.binary())
_BOOLEANS = pa.array([s.encode() for s in TRUE_SPELLINGS + FALSE_SPELLINGS], pa.binary())
_SAMPLES = 8
#: Up to this many distinct series keys per block, they are split in Python (cheaper than the
#: fixed cost of the Arrow passes; bounded per block, never per line).
FEW_SERIES = 128
# Blocks small enough that a message of a few MB is read by all cores. (Always threaded: a serial
# read right after a threaded one was measured to stall.)
_CSV_BLOCK_BYTES = 1 << 19
_TYPE_ORDER: tuple[FieldType, ...] = ("float", "integer", "uinteger", "string", "boolean")
_PATTERNS: dict[FieldType, str] = {  # the grammar's value syntaxes, over whole cells
    "float": f"^{FLOAT_SYNTAX}$",
    "integer": f"^{INTEGER_SYNTAX}$",
    "uinteger": f"^{UINTEGER_SYNTAX}$",
    "string": r'^"[^"\\]*"$',  # plain strings only: escapes and quotes go to the grammar
}


# ---------------------------------------------------------------------------------------------
# Small Arrow helpers


@functools.lru_cache(maxsize=4)
def _cached(kind: str, size: int) -> pa.Array:
    return pa.array(range(size) if kind == "arange" else [0] * size, pa.int32())


def _cache_size(n: int) -> int:
    return max(1 << max(n - 1, 1).bit_length(), 8192)


def arange(n: int) -> pa.Array:
    """0..n-1 as int32 (a slice of a cached array: cheap to call per message)."""
    return _cached("arange", _cache_size(n))[:n]


def full(value: int, n: int) -> pa.Array:
    if value == 0:
        return _cached("zeros", _cache_size(n))[:n]
    return pa.repeat(pa.scalar(value, pa.int32()), n)


def value_offsets(arr: pa.Array) -> pa.Array:
    return pa.Array.from_buffers(pa.int32(), len(arr) + 1, [None, arr.buffers()[1]], offset=arr.offset)


def _offsets_of(chunked: pa.ChunkedArray) -> pa.Buffer:
    """Offsets of the chunks' values laid back to back (for one array over the joined bytes)."""
    ends = pc.cumulative_sum(pc.binary_length(chunked))
    ends = _one_chunk(ends) if isinstance(ends, pa.ChunkedArray) else ends
    return pa.concat_arrays([pa.array([0], pa.int32()), pc.cast(ends, pa.int32())]).buffers()[1]


def value_bytes(arr: pa.Array) -> pa.Buffer:
    """The bytes of all values of a binary/string array, back to back."""
    if len(arr) == 0:
        return pa.py_buffer(b"")
    offsets = value_offsets(arr)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return arr.buffers()[2][start:end]


def read_columns(buf: pa.Buffer | bytes, ncols: int, delimiter: str, encode_first: bool = False,
                 chunked: bool = False) -> list[pa.Array] | list[pa.ChunkedArray] | None:
    """Split newline-terminated rows at ``delimiter`` into ``ncols`` binary columns.

    ``encode_first`` dictionary-encodes the first column while reading (series keys repeat: this
    spares materialising them); ``chunked`` leaves the columns in the reader's blocks (spares a
    copy when the next steps work block by block). None when some row has another number of
    cells.
    """
    names = [str(i) for i in range(ncols)]
    types = {n: pa.binary() for n in names}
    if encode_first:
        types["0"] = pa.dictionary(pa.int32(), pa.binary())
    try:
        table = pacsv.read_csv(
            pa.BufferReader(buf),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_CSV_BLOCK_BYTES,
                                           use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False,
                                             double_quote=False, newlines_in_values=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[],
                                                 strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False, check_utf8=False))
    except pa.ArrowInvalid:
        return None
    if chunked:
        return [table.column(i) for i in range(ncols)]
    return [_one_chunk(table.column(i)) for i in range(ncols)]


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    if column.num_chunks == 1:
        return column.chunk(0)
    if column.num_chunks == 0:
        return pa.array([], column.type)
    return column.combine_chunks()   # unifies the chunks' dictionaries too


def _indices_of(mask: pa.Array) -> pa.Array:
    return pc.cast(pc.indices_nonzero(mask), pa.int32())


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def _utf8(arr: pa.Array) -> pa.Array:
    """Binary -> string without a copy (the input was checked to be UTF-8 as a whole)."""
    return arr.view(pa.string())


# ---------------------------------------------------------------------------------------------
# key=value lists: series keys (``m,k=v,...``) and field sets (``k=v,...``)


@dataclass
class KVGroup:
    """Rows that share a name (measurement, for series keys) and the same keys in order."""
    rows: pa.Array                  # int32 indices into the input, ascending
    name: str | None
    keys: list[str]
    values: list[pa.Array]          # binary, one per key, aligned with ``rows``


@dataclass
class KVSplit:
    groups: list[KVGroup]
    group_of: pa.Array              # int32 per input row: its group, or -1 (odd row)
    position: pa.Array              # int32 per input row: index within its group


def _pairs(skeleton: bytes, named: bool) -> int | None:
    """Number of key=value pairs a row skeleton describes, None if it is not a clean list."""
    half = len(skeleton) // 2
    if named:
        return half if skeleton == b",=" * half else None
    if len(skeleton) % 2 == 1 and skeleton == b"=" + b",=" * half:
        return half + 1
    return None


def _name_ok(name: str) -> bool:
    return 0 < len(name) and len(name.encode()) <= MAX_VALUE_BYTES


def _template(first: bytes, named: bool) -> tuple[bytes | None, list[bytes]] | None:
    """Name and keys of a clean key=value list (no ``=`` in the name, one ``=`` per pair)."""
    name: bytes | None = None
    if named:
        name, sep, rest = first.partition(b",")
        if b"=" in name:
            return None
        pairs = rest.split(b",") if sep else []
    else:
        pairs = first.split(b",")
    keys = []
    for pair in pairs:
        key, sep, value = pair.partition(b"=")
        if not sep or b"=" in value:
            return None
        keys.append(key)
    return name, keys


def _split_one_shape(strings: pa.Array, raw: pa.Buffer, named: bool) -> KVSplit | None:
    """Fast path: every row has the first row's name and keys, in the same order.

    Splitting at ``=`` only leaves cells ``value,next_key``; checking that each cell ends with
    ``,next_key`` (and that the first cell is exactly ``name,first_key``) proves each row is the
    template with other values, without a pass per delimiter kind. None if any row differs.
    """
    n = len(strings)
    template = _template(strings[0].as_py(), named)
    if template is None:
        return None
    name, keys = template
    pairs = len(keys)
    # A few rows spread over the input must agree before betting a pass on it.
    for i in range(n - 1, 0, -max(1, n // _SAMPLES)):
        if _template(strings[i].as_py(), named) != template:
            return None
    cols = read_columns(raw, pairs + 1, "=", chunked=not named)
    if cols is None:
        return None
    head = name + b"," + keys[0] if named and pairs else (name if named else keys[0])
    if not pc.all(pc.equal(cols[0], pa.scalar(head, pa.binary()))).as_py():
        return None
    values = []
    for j in range(1, pairs):
        suffix = b"," + keys[j]
        if not pc.all(pc.ends_with(cols[j], suffix.decode())).as_py():
            return None
        values.append(pc.binary_slice(cols[j], 0, -len(suffix)))
    if pairs:
        values.append(cols[pairs])
    # A tag value holding ',' would end at that comma for the reference parser.
    if named and any(b"," in value_bytes(v).to_pybytes() for v in values):
        return None
    groups: list[KVGroup] = []
    odd: list[pa.Array] = []
    _add_group(arange(n), None if name is None else name.decode(), [k.decode() for k in keys],
               values, named, groups, odd)
    return KVSplit(groups, *locate([g.rows for g in groups], n))


def split_series_few(strings: pa.Array) -> KVSplit:
    """``split_kv(named=True)`` for a handful of distinct series keys: plain Python over at most
    ``FEW_SERIES`` strings costs less than the Arrow calls (same rules, same results)."""
    shapes: dict[tuple[bytes, tuple[bytes, ...]], list[tuple[int, list[bytes]]]] = {}
    for i, s in enumerate(strings.to_pylist()):
        name, sep, rest = s.partition(b",")
        if not name or b"=" in name or len(name) > MAX_VALUE_BYTES:
            continue
        keys, values = [], []
        for pair in rest.split(b",") if sep else []:
            key, eq, value = pair.partition(b"=")
            if not (eq and key and value) or b"=" in value \
                    or len(key) > MAX_VALUE_BYTES or len(value) > MAX_VALUE_BYTES:
                break
            keys.append(key)
            values.append(value)
        else:
            shapes.setdefault((name, tuple(keys)), []).append((i, values))
    groups = [KVGroup(pa.array([i for i, _ in rows], pa.int32()), name.decode(), [k.decode() for k in keys],
                      [pa.array([v[j] for _, v in rows], pa.binary()) for j in range(len(keys))])
              for (name, keys), rows in shapes.items()]
    return KVSplit(groups, *locate([g.rows for g in groups], len(strings)))


def split_kv(strings: pa.Array, named: bool) -> KVSplit:
    """Tokenise key=value lists; group rows by shape. Rows that are not clean go to -1."""
    n = len(strings)
    if n == 0:
        return KVSplit([], full(0, 0), full(0, 0))
    joined = pc.binary_join_element_wise(strings, _EMPTY, _NEWLINE)
    if isinstance(joined, pa.ChunkedArray):
        buffer = pa.py_buffer(b"".join(value_bytes(c) for c in joined.chunks))
        joined = pa.Array.from_buffers(pa.binary(), n, [None, _offsets_of(joined), buffer])
    same = _split_one_shape(strings, value_bytes(joined), named)
    if same is not None:
        return same

    # General path: group rows by skeleton (their sequence of ',' and '='), then by keys.
    raw = value_bytes(joined).to_pybytes()
    skeleton = raw.translate(None, _KV_SKELETON_DELETE)
    translated = pa.py_buffer(raw.translate(_KV_TRANSLATE))
    first = skeleton[:skeleton.index(b"\n") + 1]
    by_skeleton: list[tuple[bytes, pa.Array | None]]
    if skeleton == first * n:
        by_skeleton = [(first[:-1], None)]
    else:
        per_row = pc.split_pattern(pa.array([skeleton], pa.binary()), "\n").flatten()[:n]
        encoded = pc.dictionary_encode(per_row)
        by_skeleton = [(sk.as_py(), _indices_of(pc.equal(encoded.indices, i)))
                       for i, sk in enumerate(encoded.dictionary)]

    groups: list[KVGroup] = []
    odd: list[pa.Array] = []
    for sk, rows in by_skeleton:
        pairs = _pairs(sk, named)
        cols = None
        if pairs is not None:
            ncols = 2 * pairs + (1 if named else 0)
            if rows is None:
                cols = read_columns(translated, ncols, DELIMITER)
            else:
                view = pa.Array.from_buffers(pa.binary(), n, [None, joined.buffers()[1], translated],
                                             offset=joined.offset)
                cols = read_columns(value_bytes(pc.take(view, rows)), ncols, DELIMITER)
        if cols is None:
            odd.append(arange(n) if rows is None else rows)
            continue
        _shape_groups(cols, rows, named, groups, odd)
    return KVSplit(groups, *locate([g.rows for g in groups], n))


def _shape_groups(cols: list[pa.Array], rows: pa.Array | None, named: bool,
                  groups: list[KVGroup], odd: list[pa.Array]) -> None:
    """Split one skeleton's rows by their key columns; validate names and (tag) values."""
    key_at = ([0] + list(range(1, len(cols), 2))) if named else list(range(0, len(cols), 2))
    value_at = list(range(2, len(cols), 2)) if named else list(range(1, len(cols), 2))
    m = len(cols[0])
    uniform = all(pc.all(pc.equal(cols[j], cols[j][0])).as_py() for j in key_at)
    if uniform:
        shapes: list[pa.Array | None] = [None]
    else:
        key = pc.binary_join_element_wise(*[cols[j] for j in key_at], _KEY_JOIN)
        encoded = pc.dictionary_encode(key)
        shapes = [_indices_of(pc.equal(encoded.indices, i)) for i in range(len(encoded.dictionary))]
    for local in shapes:
        first = 0 if local is None else local[0].as_py()
        names = [cols[j][first].as_py().decode() for j in key_at]
        where = rows if local is None else (local if rows is None else pc.take(rows, local))
        where = arange(m) if where is None else where
        values = [cols[j] if local is None else pc.take(cols[j], local) for j in value_at]
        _add_group(where, names[0] if named else None, names[1:] if named else names,
                   values, named, groups, odd)


def _add_group(rows: pa.Array, name: str | None, keys: list[str], values: list[pa.Array],
               named: bool, groups: list[KVGroup], odd: list[pa.Array]) -> None:
    """Validate names (and tag values, for series keys) before accepting a group of rows."""
    if (name is not None and not _name_ok(name)) or not all(_name_ok(k) for k in keys):
        odd.append(rows)
        return
    if named and values:
        # Tag values must be non-empty and within the size limit (checked for all at once).
        together = pa.concat_arrays(values) if len(values) > 1 else values[0]
        lo_hi = pc.min_max(pc.binary_length(together))
        bad = None
        if lo_hi["min"].as_py() == 0 or lo_hi["max"].as_py() > MAX_VALUE_BYTES:
            for v in values:
                lengths = pc.binary_length(v)
                b = pc.or_(pc.equal(lengths, 0), pc.greater(lengths, MAX_VALUE_BYTES))
                bad = b if bad is None else pc.or_(bad, b)
        if bad is not None:
            odd.append(pc.filter(rows, bad))
            keep = pc.invert(bad)
            rows = pc.filter(rows, keep)
            values = [pc.filter(v, keep) for v in values]
            if len(rows) == 0:
                return
    groups.append(KVGroup(rows, name, keys, values))


def locate(row_lists: list[pa.Array], n: int) -> tuple[pa.Array, pa.Array]:
    """Per input row: the index of the list holding it (-1 if none) and its position there."""
    if len(row_lists) == 1 and len(row_lists[0]) == n:
        return full(0, n), arange(n)
    row_lists = [r for r in row_lists if len(r)]
    if not row_lists or n == 0:
        return full(-1, n), full(-1, n)
    rows = pa.concat_arrays([pc.cast(r, pa.int32()) for r in row_lists])
    gids = pa.concat_arrays([full(i, len(r)) for i, r in enumerate(row_lists)])
    pos = pa.concat_arrays([arange(len(r)) for r in row_lists])
    group_of = pc.fill_null(pc.scatter(gids, rows, max_index=n - 1), -1)
    position = pc.fill_null(pc.scatter(pos, rows, max_index=n - 1), -1)
    return group_of, position


# ---------------------------------------------------------------------------------------------
# Field values


@dataclass
class Typed:
    """A column of field value tokens after typing.

    ``uniform`` is set when every row has that type; otherwise ``codes`` gives each row's index
    in ``_TYPE_ORDER`` (-1: not a valid value) and ``values`` holds one full-length array per
    type present (null on rows of other types).
    """
    uniform: FieldType | None
    values: dict[FieldType, pa.Array]
    codes: pa.Array | None = None


def _guess(token: bytes) -> FieldType:
    if token.endswith(b"i"):
        return "integer"
    if token.endswith(b"u"):
        return "uinteger"
    if token.startswith(b'"'):
        return "string"
    if token[:1] in (b"t", b"T", b"f", b"F"):
        return "boolean"
    return "float"


_U8 = {c: pa.scalar(c, pa.uint8()) for c in b".-"}
_ONE = pa.scalar(1, pa.int32())
_DIGIT_0, _DIGIT_9 = ord("0"), ord("9")


def _float_grammar_ok(col: pa.Array) -> bool:
    """Arrow's float parser also takes ``+1``, ``.5``, ``1.``, ``-.5``, ``1.e5``, inf and nan;
    line protocol does not. Call only on tokens Arrow parsed as floats (so none is empty or a
    lone sign). Works on the raw bytes: min/max and first/last byte of each token.
    """
    offsets = value_offsets(col)
    lo, hi = offsets[0].as_py(), offsets[-1].as_py()
    raw = pa.Array.from_buffers(pa.uint8(), hi, [None, col.buffers()[2]])[lo:]
    span = pc.min_max(raw)
    if span["max"].as_py() > _DIGIT_9:       # letters: an exponent, or inf / nan
        data = value_bytes(col).to_pybytes()
        if data.translate(None, _FLOAT_CHARS) or b".e" in data or b".E" in data:
            return False
    if lo:
        offsets = pc.subtract(offsets, pa.scalar(lo, pa.int32()))
    # A valid token starts with '-' or a digit, never '-.', and ends with a digit.
    if pc.min(pc.take(raw, pc.subtract(offsets[1:], _ONE))).as_py() < _DIGIT_0:
        return False
    if span["min"].as_py() >= _DIGIT_0:       # digits only, no sign, no dot
        return True
    starts = offsets[:-1]
    first = pc.take(raw, starts)
    lowest = pc.min(first).as_py()
    if lowest >= _DIGIT_0:
        return True
    if lowest != ord("-") or _any(pc.equal(first, _U8[ord(".")])):
        return False
    second = pc.take(raw, pc.add(pc.filter(starts, pc.equal(first, _U8[ord("-")])), _ONE))
    return pc.min(second).as_py() >= _DIGIT_0


def _try_uniform(col: pa.Array, kind: FieldType) -> pa.Array | None:
    """Type every token of ``col`` as ``kind`` with cheap whole-column checks, or None."""
    try:
        if kind == "float":
            values = pc.cast(_utf8(col), pa.float64())
            return values if _float_grammar_ok(col) else None
        if kind in ("integer", "uinteger"):
            if not pc.all(pc.ends_with(col, "i" if kind == "integer" else "u")).as_py():
                return None
            body = pc.binary_slice(col, 0, -1)
            allowed = _SIGNED_CHARS if kind == "integer" else _DIGITS
            if value_bytes(body).to_pybytes().translate(None, allowed):
                return None
            return pc.cast(_utf8(body), ARROW_TYPES[kind])
        if kind == "boolean":
            if not pc.all(pc.is_in(col, value_set=_BOOLEANS)).as_py():
                return None
            return pc.is_in(col, value_set=_TRUE)
        # string: plain lines only carry quoted values without quotes or backslashes inside
        lengths = pc.binary_length(col)
        if (pc.min(lengths).as_py() < 2 or pc.max(lengths).as_py() > MAX_VALUE_BYTES + 2
                or not pc.all(pc.starts_with(col, '"')).as_py()
                or not pc.all(pc.ends_with(col, '"')).as_py()):
            return None
        body = pc.binary_slice(col, 1, -1)
        data = value_bytes(body).to_pybytes()
        if b'"' in data or b"\\" in data:
            return None
        return _utf8(body)
    except pa.ArrowInvalid:
        return None


def _exact_ints(tokens: pa.Array, kind: FieldType) -> tuple[pa.Array, pa.Array]:
    """Integers of tokens that passed the grammar; out-of-range ones become null + invalid."""
    body = pc.binary_slice(tokens, 0, -1)
    try:
        return pc.cast(_utf8(body), ARROW_TYPES[kind]), pa.repeat(True, len(tokens))
    except pa.ArrowInvalid:  # an out-of-range value: rare, find it the slow way
        lo, hi = (-(1 << 63), (1 << 63) - 1) if kind == "integer" else (0, (1 << 64) - 1)
        ints = [int(t) for t in body.to_pylist()]
        ok = [lo <= v <= hi for v in ints]
        return pa.array([v if k else None for v, k in zip(ints, ok)], ARROW_TYPES[kind]), pa.array(ok)


def type_values(col: pa.Array) -> Typed:
    """Decide each token's type (suffix, quotes, spelling) and convert, validating the grammar."""
    if len(col) == 0:
        return Typed("float", {"float": pa.array([], pa.float64())})
    kind = _guess(col[0].as_py() or b"")
    values = _try_uniform(col, kind)
    if values is not None:
        return Typed(kind, {kind: values})
    return _classify(col)


def _classify(col: pa.Array) -> Typed:
    """Slow path for mixed or invalid columns: one grammar match per type."""
    n = len(col)
    codes = pa.repeat(pa.scalar(-1, pa.int8()), n)
    out: dict[FieldType, pa.Array] = {}
    for code, kind in enumerate(_TYPE_ORDER):
        if kind == "boolean":
            mask = pc.is_in(col, value_set=_BOOLEANS)
        else:
            mask = pc.match_substring_regex(col, _PATTERNS[kind])
        if not _any(mask):
            continue
        tokens = pc.filter(col, mask)
        if kind == "float":
            converted = pc.cast(_utf8(tokens), pa.float64())
        elif kind in ("integer", "uinteger"):
            converted, ok = _exact_ints(tokens, kind)
            if not pc.all(ok).as_py():
                mask = pc.replace_with_mask(mask, mask, ok)
                converted = pc.filter(converted, ok)
        elif kind == "string":
            body = pc.binary_slice(tokens, 1, -1)
            ok = pc.less_equal(pc.binary_length(body), MAX_VALUE_BYTES)
            if not pc.all(ok).as_py():
                mask = pc.replace_with_mask(mask, mask, ok)
                body = pc.filter(body, ok)
            converted = _utf8(body)
        else:
            converted = pc.is_in(tokens, value_set=_TRUE)
        if len(converted) == 0:
            continue
        out[kind] = pc.replace_with_mask(pa.nulls(n, ARROW_TYPES[kind]), mask, converted)
        codes = pc.if_else(mask, pa.scalar(code, pa.int8()), codes)
    return Typed(None, out, codes)


def parse_timestamps(col: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """Tokens -> int64; returns (values with null where invalid, invalid mask or None)."""
    try:
        values = pc.cast(_utf8(col), pa.int64())
        if not value_bytes(col).to_pybytes().translate(None, _SIGNED_CHARS):
            return values, None
    except pa.ArrowInvalid:
        pass
    ok = pc.match_substring_regex(col, r"^-?[0-9]+$")
    tokens = pc.filter(col, ok)
    try:
        converted = pc.cast(_utf8(tokens), pa.int64())
    except pa.ArrowInvalid:
        ints = [int(t) for t in tokens.to_pylist()]
        fits = [-(1 << 63) <= v < (1 << 63) for v in ints]
        ok = pc.replace_with_mask(ok, ok, pa.array(fits))
        converted = pa.array([v for v, f in zip(ints, fits) if f], pa.int64())
    values = pc.replace_with_mask(pa.nulls(len(col), pa.int64()), ok, converted)
    return values, pc.invert(ok)


# ---------------------------------------------------------------------------------------------
# Field sets: shape groups refined by the type of every column


@dataclass
class FieldGroup:
    rows: pa.Array                               # int32 row indices, ascending
    fields: dict[str, tuple[FieldType, pa.Array]]  # key -> (type, values aligned with rows)
    duplicate_keys: bool


def _type_columns(columns: list[pa.Array]) -> list[Typed]:
    """Type the value columns of one field shape.

    Columns whose first token looks like a float are cast together in one pass (the usual bulk
    of the data) and checked against the line protocol grammar together; a column that fails
    is typed on its own.
    """
    typed: list[Typed | None] = [None] * len(columns)
    floats = [j for j, c in enumerate(columns) if len(c) and _guess(c[0].as_py()) == "float"]
    if floats:
        parts = [chunk for j in floats for chunk in _chunks(columns[j])]
        together = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
        try:
            values = pc.cast(_utf8(together), pa.float64())
            ok = _float_grammar_ok(together)
        except pa.ArrowInvalid:
            ok = False
        if ok:
            start = 0
            for j in floats:
                typed[j] = Typed("float", {"float": values.slice(start, len(columns[j]))})
                start += len(columns[j])
    return [t if t is not None else type_values(_one_chunk(c) if isinstance(c, pa.ChunkedArray) else c)
            for t, c in zip(typed, columns)]


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _typed_field_groups(split: KVSplit) -> list[FieldGroup]:
    """Type each field column; split groups whose rows differ in some column's type.

    Rows holding an invalid value belong to no group (the caller sends them to the fallback).
    """
    groups: list[FieldGroup] = []
    for g in split.groups:
        typed = _type_columns(g.values)
        duplicate = len(set(g.keys)) != len(g.keys)
        mixed = [t.codes for t in typed if t.uniform is None]
        if not mixed:
            fields = {k: (t.uniform, t.values[t.uniform]) for k, t in zip(g.keys, typed)}
            groups.append(FieldGroup(g.rows, fields, duplicate))
            continue
        valid = functools.reduce(pc.and_, [pc.greater_equal(c, 0) for c in mixed])
        signature = pc.binary_join_element_wise(*[pc.cast(c, pa.string()) for c in mixed], ",") \
            if len(mixed) > 1 else mixed[0]
        encoded = pc.dictionary_encode(pc.filter(signature, valid))
        for i in range(len(encoded.dictionary)):
            local = pc.take(_indices_of(valid), _indices_of(pc.equal(encoded.indices, i)))
            fields: dict[str, tuple[FieldType, pa.Array]] = {}
            for key, t in zip(g.keys, typed):
                kind = t.uniform or _TYPE_ORDER[pc.take(t.codes, local)[0].as_py()]
                fields[key] = (kind, pc.take(t.values[kind], local))
            groups.append(FieldGroup(pc.take(g.rows, local), fields, duplicate))
    return groups


# ---------------------------------------------------------------------------------------------
# A block of plain lines


@dataclass
class BlockResult:
    segments: list[Segment]
    fallback: list[tuple[int, bytes]]   # (line number, line text) for the exact parser


def parse_plain_block(buf: pa.Buffer | bytes, lines: pa.Array | None, with_time: bool) -> BlockResult | None:
    """Parse newline-separated plain lines that each hold exactly 2 (``with_time``) or 1 spaces.

    ``lines`` are the 1-based line numbers of the rows (None: 1, 2, 3, ...). Returns None when
    some row has another number of spaces (only possible when the caller did not count them).
    """
    cols = read_columns(buf, 3 if with_time else 2, " ", encode_first=True, chunked=True)
    if cols is None:
        return None
    # Field sets stay in the reader's blocks: split_kv joins them block by block anyway.
    cols = [_one_chunk(c) if i != 1 else c for i, c in enumerate(cols)]
    encoded, fieldsets = cols[0], cols[1]
    n = len(fieldsets)
    if lines is None:
        lines = pc.add(arange(n), pa.scalar(1, pa.int32()))

    if len(encoded.dictionary) <= FEW_SERIES:
        ssplit = split_series_few(encoded.dictionary)
    else:
        ssplit = split_kv(encoded.dictionary, named=True)
    fsplit = split_kv(fieldsets, named=False)
    fgroups = _typed_field_groups(fsplit)
    if with_time:
        times, bad_time = parse_timestamps(cols[2])
    else:
        times, bad_time = pa.nulls(n, pa.int64()), None

    if (len(ssplit.groups) == 1 and len(ssplit.groups[0].rows) == len(encoded.dictionary)
            and len(fgroups) == 1 and len(fgroups[0].rows) == n and bad_time is None):
        # One shape and every row valid (the common case): no regrouping needed.
        sgroup, fgroup = ssplit.groups[0], fgroups[0]
        if not fgroup.duplicate_keys and not line_rule_violation(
                sgroup.keys, [(k, t) for k, (t, _) in fgroup.fields.items()]):
            return BlockResult([_segment(sgroup, fgroup, None, encoded.indices, arange(n), times, lines)], [])

    s_group = pc.take(ssplit.group_of, encoded.indices)
    s_pos = pc.take(ssplit.position, encoded.indices)
    # Which (series group, field group) pair each row belongs to; -1 sends it to the fallback.
    f_group, f_pos = locate([g.rows for g in fgroups], n)
    bad = pc.or_(pc.less(s_group, 0), pc.less(f_group, 0))
    if bad_time is not None:
        bad = pc.or_(bad, bad_time)
    combo = pc.if_else(bad, -1, pc.add(pc.multiply(s_group, len(fgroups)), f_group))
    segments: list[Segment] = []
    fallback_rows: list[pa.Array] = []
    if _any(bad):
        fallback_rows.append(_indices_of(bad))
    good_combos = pc.unique(pc.filter(combo, pc.invert(bad))).to_pylist()
    for key in good_combos:
        sg, fg = divmod(key, len(fgroups))
        sgroup, fgroup = ssplit.groups[sg], fgroups[fg]
        whole = len(good_combos) == 1 and not fallback_rows
        rows = None if whole else _indices_of(pc.equal(combo, key))
        if fgroup.duplicate_keys or line_rule_violation(
                sgroup.keys, [(k, t) for k, (t, _) in fgroup.fields.items()]):
            fallback_rows.append(arange(n) if rows is None else rows)
            continue
        segments.append(_segment(sgroup, fgroup, rows, s_pos, f_pos, times, lines))
    fallback = _fallback_lines(cols, lines, fallback_rows)
    return BlockResult(segments, fallback)


def _segment(sgroup: KVGroup, fgroup: FieldGroup, rows: pa.Array | None, s_pos: pa.Array,
             f_pos: pa.Array, times: pa.Array, lines: pa.Array) -> Segment:
    """Materialise the rows of one (series shape, field shape) pair."""
    def pick(arr: pa.Array) -> pa.Array:
        return arr if rows is None else pc.take(arr, rows)

    sp = pick(s_pos)
    tags = {}
    for key, values in zip(sgroup.keys, sgroup.values):
        tags[key] = _utf8(pc.take(values, sp))
    fp = pick(f_pos)
    same_order = rows is None and len(fgroup.rows) == len(f_pos)
    fields = {key: (kind, values if same_order else pc.take(values, fp))
              for key, (kind, values) in fgroup.fields.items()}
    return Segment(sgroup.name, pick(lines), tags, fields, pick(times))


def _fallback_lines(cols: list[pa.Array], lines: pa.Array, rows: list[pa.Array]) -> list[tuple[int, bytes]]:
    """Rebuild the text of rows for the exact parser (cells joined by the spaces they split at)."""
    if not rows:
        return []
    idx = pa.concat_arrays([pc.cast(r, pa.int32()) for r in rows])
    picked = [pc.take(c, idx) for c in cols]
    picked = [_one_chunk(p) if isinstance(p, pa.ChunkedArray) else p for p in picked]
    picked = [p.dictionary_decode() if isinstance(p, pa.DictionaryArray) else p for p in picked]
    text = pc.binary_join_element_wise(*picked, _SPACE)
    return list(zip(pc.take(lines, idx).to_pylist(), text.to_pylist()))
