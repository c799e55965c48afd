"""Field types every kind's schema shares, so one rule holds per idea and cannot drift.

A timeout must be > 0 (zero would mean "give up at once"); an interval, a back-off or a
grace period may be 0 (tests and fast local fakes use that). Counts are integers >= 1.
Every type is strict: YAML's ``true`` is not a count and ``"5"`` is not a duration.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from stratoflow.config import expand, stratoflow_home


def expect(what: str) -> WrapValidator:
    """Word any fault of the wrapped type as ``expected <what>, got <value>``."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except (ValidationError, ValueError):
            raise refused(what, value) from None

    return WrapValidator(wrap)


def refused(what: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError(
        "expected", "expected {what}, got {got}", {"what": what, "got": repr(value)}
    )


def check(test: Callable[[Any], bool], what: str) -> AfterValidator:
    """Once the type's own checks pass, refuse a value ``test`` rejects as ``expected
    <what>``. Unlike :func:`expect`, it leaves the faults of nested items at their paths."""

    def run(value: Any) -> Any:
        if not test(value):
            raise refused(what, value)
        return value

    return AfterValidator(run)


Timeout = Annotated[float, Strict(), Field(gt=0), expect("a number of seconds > 0")]
Interval = Annotated[float, Strict(), Field(ge=0), expect("a number of seconds >= 0")]
Count = Annotated[int, Strict(), Field(ge=1), expect("an integer >= 1")]
PositiveInt = Annotated[int, Strict(), Field(ge=1), expect("a positive integer")]
Flag = Annotated[bool, Strict(), expect("true or false")]
Text = Annotated[str, Strict(), expect("a string")]
NonEmptyText = Annotated[str, Strict(), Field(pattern=r"\S"), expect("a non-empty string")]
Port = Annotated[int, Strict(), Field(gt=0, lt=65536), expect("a TCP port number")]
HttpUrl = Annotated[str, Strict(), Field(pattern=r"^https?://"), expect("an http(s) URL")]
TextList = Annotated[tuple[Text, ...], expect("a list of strings")]


def auto(measure: Callable[[], int]) -> BeforeValidator:
    """Read ``"auto"`` as what ``measure()`` finds on this machine."""
    return BeforeValidator(lambda v: measure() if v == "auto" else v)


def _local_dir(value: Any) -> Path:
    """An absolute directory on the workers; ``{include}``, ``{home}`` and ``~`` expand."""
    if not isinstance(value, str) or not os.path.isabs(os.path.expanduser(expand(value))):
        raise ValueError("not absolute")
    return Path(expand(value)).expanduser().resolve()


LocalDir = Annotated[Path, BeforeValidator(_local_dir), expect("an absolute directory path")]
Roots = tuple[LocalDir, ...]


def home_only() -> tuple[Path, ...]:
    """The default writable root: the Stratoflow home, nothing else."""
    return (stratoflow_home().resolve(),)
