"""The submitter's time bounds (INDIGO's timeoutMins and providerTimeoutMins) on the waits
they cut short: a VM's boot wait, and the wait for a running job."""

from __future__ import annotations

import asyncio
import time

import pytest

from stratoflow.execution.deadlines import attempt_wait, earliest
from stratoflow.sites.base import JobStatus
from stratoflow.sites.waits import WaitSpec


def boot_wait(deadline: float) -> WaitSpec:
    return WaitSpec("server_active", {"ids": ["s1"]}, 1.0, timeout_s=600, deadline=deadline)


def test_earliest_ignores_missing_bounds():
    assert earliest(None, 5.0, 3.0, None) == 3.0
    assert earliest(None, None) is None


def test_a_boot_wait_ends_at_the_earliest_of_the_three_bounds():
    started = 1000.0
    site = boot_wait(started + 600)  # the site's own boot_timeout_s
    assert attempt_wait(site, started, None, None) is site
    assert attempt_wait(site, started, 900, None) is site  # the site's bound comes first

    by_attempt = attempt_wait(site, started, 120, started + 300)  # providerTimeoutMins: 2
    assert by_attempt.deadline == started + 120 and by_attempt.timeout_s == 120
    assert (by_attempt.waiter, by_attempt.kwargs) == (site.waiter, site.kwargs)

    by_deployment = attempt_wait(site, started, 120, started + 60)  # timeoutMins first
    assert by_deployment.deadline == started + 60 and by_deployment.timeout_s == 60

    past = attempt_wait(site, started, None, started - 10)  # already out of time
    assert past.deadline == started - 10 and past.timeout_s == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_job_trigger_ends_at_the_deployment_deadline(monkeypatch):
    from stratoflow.execution import placement
    from stratoflow.triggers.job import JobTrigger

    class StillRunning:
        def job_status(self, alloc, handle):
            return JobStatus(handle=handle, state="running")

    monkeypatch.setattr(placement, "compute_for_site", lambda site: StillRunning())
    alloc = {"site": "s", "kind": "local", "deployment_id": "d", "workdir": "/w", "cores": 1}

    async def first_event(trigger: JobTrigger) -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    started = time.monotonic()
    late = JobTrigger("s", alloc, "h1", poll_interval=0.05, deadline=time.time() + 0.3)
    assert asyncio.run(first_event(late)) == {"handle": "h1", "state": "deadline"}
    assert 0.25 < time.monotonic() - started < 5
    name, kwargs = late.serialize()
    assert kwargs["deadline"] == late.deadline  # a triggerer that takes it over keeps it
