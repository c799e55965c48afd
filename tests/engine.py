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
