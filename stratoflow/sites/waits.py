"""Waits a site hands to the triggerer: what to poll, and what its end means.

A site that must wait (servers booting, bulk transfer jobs, QoS replicas) returns a
:class:`WaitSpec`. One generic trigger (:mod:`stratoflow.triggers.wait`) builds the named
:class:`Waiter` from the spec's JSON kwargs and polls it until it reports an end, a poll
fails for good, or the absolute deadline passes. So a new kind writes a small plain-Python
poll, never an Airflow trigger, and the same poll serves a synchronous wait as well.

Each kind declares its waiters by name (``"<kind>.<what>"``, in ``SiteKind.waiters``) with
a ``module:Class`` target that is imported on first use, like the kinds' own classes:
naming a waiter costs no client library import.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from stratoflow.errors import SiteError


class Waiter(ABC):
    """One condition to wait on. Built from JSON-able kwargs (they travel through the
    trigger's ``serialize``); blocking calls are fine (the trigger runs them in a thread).
    It only reads, so the triggerer may run it twice."""

    @abstractmethod
    def poll(self) -> dict[str, Any] | None:
        """One round: None while not done, else the event payload (with a ``status``)."""

    def is_transient(self, exc: BaseException) -> bool:
        """True when ``exc`` from :meth:`poll` only delays the next poll (5xx, a lost
        reply). After ``max_errors`` of them in a row the wait fails with the last one."""
        return False

    def on_timeout(self) -> dict[str, Any]:
        """The event payload when the deadline passes first."""
        return {"status": "timeout"}

    def close(self) -> None:
        """Release clients; called once the wait ends, however it ends."""
        return None


@dataclass(frozen=True)
class WaitSpec:
    """What to wait for: a registered waiter, its kwargs, how often, and until when.

    ``deadline`` is absolute (epoch seconds) so that a re-run trigger keeps the original
    bound; ``timeout_s`` is how long it was, for the task's own defer timeout.
    """

    waiter: str
    kwargs: dict[str, Any]
    poll_interval_s: float
    timeout_s: float | None = None
    max_errors: int = 10
    deadline: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.deadline is None and self.timeout_s is not None:
            object.__setattr__(self, "deadline", time.time() + self.timeout_s)


def make_waiter(name: str, kwargs: dict[str, Any]) -> Waiter:
    """The waiter a kind declared under ``name`` (``SiteKind.waiters``), built from kwargs."""
    from stratoflow.sites.catalogue import kinds  # importing it registers the built-in kinds
    from stratoflow.sites.kinds import load

    waiters = {w: target for kind in kinds().values() for w, target in kind.waiters.items()}
    if name not in waiters:
        raise SiteError(f"no waiter named {name!r} (known: {', '.join(sorted(waiters))})")
    return load(waiters[name])(**kwargs)


class WaitLoop:
    """The rounds of one wait, shared by the trigger (async) and :func:`wait_until_done`."""

    def __init__(self, spec: WaitSpec, waiter: Waiter | None = None):
        self.spec = spec
        self.waiter = waiter or make_waiter(spec.waiter, spec.kwargs)
        self.errors = 0

    def round(self) -> dict[str, Any] | None:
        """One poll: the final event, or None to sleep ``poll_interval_s`` and go again."""
        try:
            event = self.waiter.poll()
            self.errors = 0
        except Exception as exc:
            self.errors += 1
            if not self.waiter.is_transient(exc) or self.errors >= self.spec.max_errors:
                raise
            event = None
        if event is None and self.spec.deadline is not None and time.time() >= self.spec.deadline:
            return self.waiter.on_timeout()
        return event

    def close(self) -> None:
        self.waiter.close()


def wait_until_done(
    spec: WaitSpec, waiter: Waiter | None = None, sleep: Any = time.sleep
) -> dict[str, Any]:
    """The same wait, in this thread: for callers that may block (``provision``). A site
    may pass its own ``waiter`` to reuse a client it already holds."""
    loop = WaitLoop(spec, waiter)
    try:
        while (event := loop.round()) is None:
            sleep(spec.poll_interval_s)
        return event
    finally:
        loop.close()
