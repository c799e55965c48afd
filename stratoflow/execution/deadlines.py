"""The submitter's time bounds (INDIGO's ``timeoutMins`` and ``providerTimeoutMins``) as
they apply to one wait: the earliest of the site's own bound, the attempt's and the
deployment's."""

from __future__ import annotations

import dataclasses

from stratoflow.sites.waits import WaitSpec


def earliest(*bounds: float | None) -> float | None:
    """The earliest of the given deadlines (epoch seconds); None if there is none."""
    given = [b for b in bounds if b is not None]
    return min(given) if given else None


def attempt_deadline(
    attempt_started: float, provider_timeout_s: float | None, deadline: float | None
) -> float | None:
    """When a site attempt must be up by: its ``providerTimeoutMins`` from when it started,
    and the deployment's ``deadline`` (``timeoutMins``), whichever comes first."""
    attempt_ends = attempt_started + provider_timeout_s if provider_timeout_s else None
    return earliest(attempt_ends, deadline)


def attempt_wait(
    wait: WaitSpec,
    attempt_started: float,
    provider_timeout_s: float | None,
    deadline: float | None,
) -> WaitSpec:
    """``wait`` (a site's boot wait) ending no later than the attempt's deadline
    (:func:`attempt_deadline`). Ending early is a timeout: the attempt is cleaned up and
    the deployment fails over, as for a host that does not boot."""
    ends = earliest(wait.deadline, attempt_deadline(attempt_started, provider_timeout_s, deadline))
    if ends is None or ends == wait.deadline:
        return wait
    return dataclasses.replace(wait, deadline=ends, timeout_s=max(ends - attempt_started, 0.0))
