"""For the suite's waits on runs on the embedded Airflow."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def assert_engine_alive() -> None:
    """Fail at once, with the supervisor's health report, when an embedded Airflow process
    is down for good: the runs being waited for could never finish."""
    from stratoflow import embedded

    why = embedded.engine_problem()
    if why is not None:
        pytest.fail(f"the embedded Airflow cannot progress: {why}", pytrace=False)


def is_queued(deployment) -> bool:
    """Waiting in the admission queue: brokering, with the queue's reason."""
    return (
        deployment is not None
        and deployment.task == "BROKERING"
        and (deployment.status_reason or "").startswith("waiting for capacity")
    )


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.5) -> T:
    """``predicate()``'s first truthy value, polled ``every`` seconds; fails after
    ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value


def component(name: str) -> Any:
    """The supervisor's health record of one Airflow process (pid, state, restarts...)."""
    from stratoflow import embedded

    report = embedded.health_report()
    assert report is not None
    (comp,) = [c for c in report.components if c.name == name]
    return comp
