"""``LineBuilder``, the class InfluxDB 3 injects into every plugin's globals (pure).

Plugins build points with it and hand them to ``influxdb3_local.write``. It renders exactly as
InfluxDB 3's does, so plugins produce the same lines on both: tags and fields in the order
they were added (a repeated key keeps its first position), tag keys, field keys and the
measurement validated rather than escaped (no space/comma/``=`` in keys, no space in the
measurement), tag values escaped (``\\``, ``,``, ``=``, space), integral floats as ``N.0``,
ints ``Ni``, uints ``Nu``, bools ``t``/``f``, strings quoted with ``\\`` and ``"`` escaped.
"""
from __future__ import annotations


class InfluxDBError(Exception):
    """Base of the errors LineBuilder raises."""


class InvalidMeasurementError(InfluxDBError):
    pass


class InvalidKeyError(InfluxDBError):
    pass


class InvalidLineError(InfluxDBError):
    pass


def _check_key(key: str, what: str) -> None:
    if not key:
        raise InvalidKeyError(f"{what} key cannot be empty")
    for char, name in ((" ", "spaces"), (",", "commas"), ("=", "equals signs")):
        if char in key:
            raise InvalidKeyError(f"{what} key '{key}' cannot contain {name}")


def _escape(text: str, specials: str) -> str:
    text = text.replace("\\", "\\\\") if "\\" in specials else text
    for char in specials.replace("\\", ""):
        text = text.replace(char, "\\" + char)
    return text


def _float_text(value: float) -> str:
    return f"{int(value)}.0" if value % 1 == 0 else str(value)


class LineBuilder:
    """One point of line protocol, built step by step; ``build()`` returns the line."""

    def __init__(self, measurement: str):
        if " " in measurement:
            raise InvalidMeasurementError("Measurement name cannot contain spaces")
        self.measurement = measurement
        self.tags: dict[str, str] = {}
        self.fields: dict[str, str] = {}
        self._timestamp_ns: int | None = None

    def tag(self, key: str, value: str) -> "LineBuilder":
        _check_key(key, "tag")
        self.tags[key] = str(value)
        return self

    def int64_field(self, key: str, value: int) -> "LineBuilder":
        _check_key(key, "field")
        self.fields[key] = f"{value}i"
        return self

    def uint64_field(self, key: str, value: int) -> "LineBuilder":
        _check_key(key, "field")
        if value < 0:
            raise ValueError(f"uint64 field '{key}' cannot be negative")
        self.fields[key] = f"{value}u"
        return self

    def float64_field(self, key: str, value: float) -> "LineBuilder":
        _check_key(key, "field")
        self.fields[key] = _float_text(value)
        return self

    def string_field(self, key: str, value: str) -> "LineBuilder":
        _check_key(key, "field")
        self.fields[key] = '"' + _escape(value, '\\"') + '"'
        return self

    def bool_field(self, key: str, value: bool) -> "LineBuilder":
        _check_key(key, "field")
        self.fields[key] = "t" if value else "f"
        return self

    def time_ns(self, timestamp_ns: int) -> "LineBuilder":
        self._timestamp_ns = timestamp_ns
        return self

    def build(self) -> str:
        line = _escape(self.measurement, ", ")
        if self.tags:
            line += "," + ",".join(f"{k}={_escape(v, chr(92) + ',= ')}" for k, v in self.tags.items())
        if not self.fields:
            raise InvalidLineError(f"At least one field is required: {line}")
        line += " " + ",".join(f"{_escape(k, chr(92) + ',= ')}={v}" for k, v in self.fields.items())
        if self._timestamp_ns is not None:
            line += f" {self._timestamp_ns}"
        return line


#: The names a plugin sees as globals, as in InfluxDB 3.
PLUGIN_GLOBALS = {"LineBuilder": LineBuilder, "InfluxDBError": InfluxDBError,
                  "InvalidMeasurementError": InvalidMeasurementError,
                  "InvalidKeyError": InvalidKeyError, "InvalidLineError": InvalidLineError}
