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


def attempt_wait(
    wait: WaitSpec,
    attempt_started: float,
    provider_timeout_s: float | None,
    deadline: float | None,
) -> WaitSpec:
    """``wait`` (a site's boot wait) ending no later than the attempt's time
    (``providerTimeoutMins``, from when the attempt started) and the deployment's
    ``deadline`` (``timeoutMins``). Ending early is a timeout: the attempt is cleaned up
    and the deployment fails over, as for a host that does not boot."""
    attempt_ends = attempt_started + provider_timeout_s if provider_timeout_s else None
    ends = earliest(wait.deadline, attempt_ends, deadline)
    if ends is None or ends == wait.deadline:
        return wait
    return dataclasses.replace(wait, deadline=ends, timeout_s=max(ends - attempt_started, 0.0))
