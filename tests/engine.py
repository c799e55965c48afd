"""For the suite's waits on runs on the embedded Airflow."""

from __future__ import annotations

import pytest


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
