"""Vectorised parsing of *plain* line protocol lines into Arrow columns.

A plain line has no backslash, tab, carriage return or NUL, and double quotes only around string
field values free of separators; each element then ends exactly at a ``,``, ``=`` or space. Such
lines are parsed with whole-block C-level passes (no Python per line):

1. pyarrow's CSV reader splits each line at its spaces: series key, field set, timestamp.
2. Series keys repeat heavily in time series data, so only the distinct ones are tokenised.
3. ``bytes.translate`` turns ``,`` and ``=`` into one delimiter and the CSV reader tokenises the
   field sets (and the distinct series keys); a second translate keeps only the delimiters, a
   *skeleton* per line, which proves the key/value structure (it groups lines by pair count).
4. Lines are grouped by shape (measurement, tag keys, field keys) by comparing key columns;
   value columns are typed and validated per column (cast, then cheap checks for what Arrow's
   float parser accepts beyond line protocol).

Whatever a pass cannot prove valid goes back to the caller as a *fallback* line for the exact
per-line parser (``lp_syntax``), which also words the error.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from topics.lp_model import ARROW_TYPES, MAX_VALUE_BYTES, FieldType, Segment
from topics.lp_syntax import line_rule_violation

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
_TRUE = pa.array([b"t", b"T", b"true", b"True", b"TRUE"], pa.binary())
_BOOLEANS = pa.array([b"t", b"T", b"true", b"True", b"TRUE", b"f", b"F", b"false", b"False", b"FALSE"],
                     pa.binary())
_SAMPLES = 8
_THREADED_CSV_BYTES = 1 << 18
_USE_THREADS = True
_TYPE_ORDER: tuple[FieldType, ...] = ("float", "integer", "uinteger", "string", "boolean")
_PATTERNS: dict[FieldType, str] = {
    "float": r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$",
    "integer": r"^-?[0-9]+i$",
    "uinteger": r"^[0-9]+u$",
    "string": r'^"[^"\\]*"$',
}


# ---------------------------------------------------------------------------------------------
# Small Arrow helpers


@functools.lru_cache(maxsize=1)
def _arange_cache(size: int) -> pa.Array:
    return pa.array(range(size), pa.int32())


def arange(n: int) -> pa.Array:
    """0..n-1 as int32 (a slice of a cached array: cheap to call per message)."""
    size = 1 << max(n - 1, 1).bit_length()
    return _arange_cache(max(size, 8192))[:n]


def full(value: int, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.int32()), n)


def value_offsets(arr: pa.Array) -> pa.Array:
    return pa.Array.from_buffers(pa.int32(), len(arr) + 1, [None, arr.buffers()[1]], offset=arr.offset)


def value_bytes(arr: pa.Array) -> pa.Buffer:
    """The bytes of all values of a binary/string array, back to back."""
    if len(arr) == 0:
        return pa.py_buffer(b"")
    offsets = value_offsets(arr)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return arr.buffers()[2][start:end]


def read_columns(buf: pa.Buffer | bytes, ncols: int, delimiter: str) -> list[pa.Array] | None:
    """Split newline-terminated rows at ``delimiter`` into ``ncols`` binary columns.

    None when some row has another number of cells (the caller then looks closer).
    """
    names = [str(i) for i in range(ncols)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(buf),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=_USE_THREADS and len(buf) > _THREADED_CSV_BYTES,
                                           block_size=1 << 19),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False,
                                             double_quote=False, newlines_in_values=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.binary() for n in names},
                                                 null_values=[], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False, check_utf8=False))
    except pa.ArrowInvalid:
        return None
    return [table.column(i).combine_chunks() for i in range(ncols)]


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


def _split_one_shape(strings: pa.Array, raw: bytes, named: bool) -> KVSplit | None:
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
    cols = read_columns(raw, pairs + 1, "=")
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


def split_kv(strings: pa.Array, named: bool) -> KVSplit:
    """Tokenise key=value lists; group rows by shape. Rows that are not clean go to -1."""
    n = len(strings)
    if n == 0:
        return KVSplit([], full(0, 0), full(0, 0))
    joined = pc.binary_join_element_wise(strings, _EMPTY, _NEWLINE)
    raw = value_bytes(joined).to_pybytes()
    same = _split_one_shape(strings, raw, named)
    if same is not None:
        return same

    # General path: group rows by skeleton (their sequence of ',' and '='), then by keys.
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
        bad = None
        for v in values:
            lengths = pc.binary_length(v)
            lo_hi = pc.min_max(lengths)
            if lo_hi["min"].as_py() == 0 or lo_hi["max"].as_py() > MAX_VALUE_BYTES:
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


_U8 = {c: pa.scalar(c, pa.uint8()) for c in b".-0"}


def _float_grammar_ok(col: pa.Array, data: bytes) -> bool:
    """Arrow's float parser also takes ``+1``, ``.5``, ``1.``, ``-.5``, ``1.e5``, inf and nan;
    line protocol does not. Call only on tokens Arrow parsed as floats (none empty or a lone
    sign), ``data`` being their bytes back to back.
    """
    if data.translate(None, _FLOAT_CHARS):
        return False              # letters: inf, nan, infinity
    if (b"e" in data and b".e" in data) or (b"E" in data and b".E" in data):
        return False
    if b"." not in data and b"+" not in data:
        return True
    # A valid token starts with '-' or a digit, never '-.', and ends with a digit.
    offsets = value_offsets(col)
    base = offsets[0].as_py()
    if base:
        offsets = pc.subtract(offsets, base)
    raw = pa.Array.from_buffers(pa.uint8(), len(data), [None, pa.py_buffer(data)])
    starts = offsets[:-1]
    if pc.min(pc.take(raw, pc.subtract(offsets[1:], 1))).as_py() < ord("0"):
        return False
    first = pc.take(raw, starts)
    lowest = pc.min(first).as_py()
    if lowest >= ord("0"):
        return True
    if lowest != ord("-") or _any(pc.equal(first, _U8[ord(".")])):
        return False
    second = pc.take(raw, pc.add(pc.filter(starts, pc.equal(first, _U8[ord("-")])), 1))
    return pc.min(second).as_py() >= ord("0")


def _try_uniform(col: pa.Array, kind: FieldType, check_floats: bool = True) -> pa.Array | None:
    """Type every token of ``col`` as ``kind`` with cheap whole-column checks, or None.

    ``check_floats=False`` leaves the float grammar check to the caller (who batches columns).
    """
    try:
        if kind == "float":
            values = pc.cast(_utf8(col), pa.float64())
            if check_floats and not _float_grammar_ok(col, value_bytes(col).to_pybytes()):
                return None
            return values
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


def type_values(col: pa.Array, check_floats: bool = True) -> Typed:
    """Decide each token's type (suffix, quotes, spelling) and convert, validating the grammar."""
    if len(col) == 0:
        return Typed("float", {"float": pa.array([], pa.float64())})
    kind = _guess(col[0].as_py() or b"")
    values = _try_uniform(col, kind, check_floats)
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


def _check_float_grammar(tokens: list[pa.Array], typed: list[Typed]) -> None:
    """Run the float grammar check once over all float columns; redo the columns that fail."""
    floats = [j for j, t in enumerate(typed) if t.uniform == "float"]
    if not floats:
        return
    together = pa.concat_arrays([tokens[j] for j in floats]) if len(floats) > 1 else tokens[floats[0]]
    if _float_grammar_ok(together, value_bytes(together).to_pybytes()):
        return
    for j in floats:
        if not _float_grammar_ok(tokens[j], value_bytes(tokens[j]).to_pybytes()):
            typed[j] = _classify(tokens[j])


def _typed_field_groups(split: KVSplit) -> list[FieldGroup]:
    """Type each field column; split groups whose rows differ in some column's type.

    Rows holding an invalid value belong to no group (the caller sends them to the fallback).
    """
    groups: list[FieldGroup] = []
    for g in split.groups:
        typed = [type_values(v, check_floats=False) for v in g.values]
        _check_float_grammar(g.values, typed)
        duplicate = len(set(g.keys)) != len(g.keys)
        mixed = [t.codes for t in typed if t.uniform is None]
        if not mixed:
            groups.append(FieldGroup(g.rows, {k: (t.uniform, t.values[t.uniform]) for k, t in zip(g.keys, typed)},
                                     duplicate))
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
    cols = read_columns(buf, 3 if with_time else 2, " ")
    if cols is None:
        return None
    series, fieldsets = cols[0], cols[1]
    n = len(series)
    if lines is None:
        lines = pc.add(arange(n), pa.scalar(1, pa.int32()))

    encoded = pc.dictionary_encode(series)
    ssplit = split_kv(encoded.dictionary, named=True)
    s_group = pc.take(ssplit.group_of, encoded.indices)
    s_pos = pc.take(ssplit.position, encoded.indices)

    fsplit = split_kv(fieldsets, named=False)
    fgroups = _typed_field_groups(fsplit)

    if with_time:
        times, bad_time = parse_timestamps(cols[2])
    else:
        times, bad_time = pa.nulls(n, pa.int64()), None

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
    text = pc.binary_join_element_wise(*picked, _SPACE)
    return list(zip(pc.take(lines, idx).to_pylist(), text.to_pylist()))
