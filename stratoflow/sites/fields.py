"""Rules for catalogue fields that every kind shares, so they cannot drift apart.

A timeout must be > 0 (zero would mean "give up at once"); an interval, a back-off or a
grace period may be 0 (tests and fast local fakes use that). Counts are integers >= 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stratoflow.errors import Issue


def unknown_fields(path: str, entry: Mapping[str, Any], fields: Iterable[str]) -> list[Issue]:
    known = sorted(fields)
    return [
        Issue(f"{path}.{key}", f"unknown field; expected one of {', '.join(known)}")
        for key in entry
        if key not in known
    ]


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def timeouts(path: str, entry: Mapping[str, Any], keys: Iterable[str]) -> list[Issue]:
    return [
        Issue(f"{path}.{k}", f"expected a number of seconds > 0, got {entry[k]!r}")
        for k in keys
        if entry.get(k) is not None and not (_number(entry[k]) and entry[k] > 0)
    ]


def intervals(path: str, entry: Mapping[str, Any], keys: Iterable[str]) -> list[Issue]:
    return [
        Issue(f"{path}.{k}", f"expected a number of seconds >= 0, got {entry[k]!r}")
        for k in keys
        if entry.get(k) is not None and not (_number(entry[k]) and entry[k] >= 0)
    ]


def counts(path: str, entry: Mapping[str, Any], keys: Iterable[str]) -> list[Issue]:
    return [
        Issue(f"{path}.{k}", f"expected an integer >= 1, got {entry[k]!r}")
        for k in keys
        if entry.get(k) is not None
        and not (isinstance(entry[k], int) and not isinstance(entry[k], bool) and entry[k] >= 1)
    ]
