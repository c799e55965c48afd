"""TOSCA scalar-unit parsing: sizes, durations, frequencies, bitrates.

TOSCA writes these as ``<number> <unit>`` strings ("2 GB", "10 m"). The validator and other
modules (plan, broker) need them as plain numbers, so the conversions live in one place.
Units match case-insensitively, as tosca-parser does, but ``kB``/``KB`` are both decimal and
only the ``*iB`` units are binary (TOSCA Simple Profile 1.3, 3.3.6).
"""

from __future__ import annotations

import math
import re

_SCALAR_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]+)\s*$")

SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "tib": 1024**4,
}
TIME_UNITS: dict[str, float] = {
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "ns": 1e-9,
}
FREQUENCY_UNITS: dict[str, float] = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
BITRATE_UNITS: dict[str, float] = {
    "bps": 1.0,
    "kbps": 1e3,
    "kibps": 1024.0,
    "mbps": 1e6,
    "mibps": 1024.0**2,
    "gbps": 1e9,
    "gibps": 1024.0**3,
    "tbps": 1e12,
    "tibps": 1024.0**4,
}

# TOSCA type name -> unit table; used by the validator for typing and constraint comparison.
UNIT_TABLES: dict[str, dict[str, float] | dict[str, int]] = {
    "scalar-unit.size": SIZE_UNITS,
    "scalar-unit.time": TIME_UNITS,
    "scalar-unit.frequency": FREQUENCY_UNITS,
    "scalar-unit.bitrate": BITRATE_UNITS,
}


def _split(value: str, units: dict, kind: str) -> tuple[float, float]:
    m = _SCALAR_RE.match(value) if len(value) < 100 else None
    if not m:
        raise ValueError(f"{value!r} is not a {kind} (expected '<number> <unit>', e.g. '2 GB')")
    number = float(m.group(1))
    factor = units.get(m.group(2).lower())
    if factor is None:
        valid = ", ".join(sorted(units))
        raise ValueError(f"{value!r}: unknown {kind} unit {m.group(2)!r} (valid: {valid})")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite {kind}")
    return number, factor


def parse_scalar(value: object, type_name: str) -> float:
    """Any scalar-unit string -> its value in the base unit (bytes, seconds, Hz, bps)."""
    units = UNIT_TABLES[type_name]
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} is not a {type_name} string such as '2 GB'")
    number, factor = _split(value, units, type_name)
    return number * factor


def parse_size(value: object) -> int:
    """'2 GB' -> 2000000000, '512 MiB' -> 536870912; a plain non-negative int is bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value} is negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size such as '2 GB'")
    if value.strip().isdigit():
        return int(value.strip())
    number, factor = _split(value, SIZE_UNITS, "size")
    return int(round(number * factor))


def parse_duration(value: object) -> float:
    """'30 s' -> 30.0, '10 m' -> 600.0, '1 d' -> 86400.0; plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"duration {value!r} must be a finite non-negative number")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration such as '10 m'")
    try:
        seconds = float(value.strip())
    except ValueError:
        number, factor = _split(value, TIME_UNITS, "duration")
        return number * factor
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration {value!r} must be a finite non-negative number")
    return seconds
