"""Admission control: which waiting deployments may take capacity now, and where.

Plain Python over plain data; the store runs it inside one write transaction, so two
workers can never admit into the same capacity.

The order is fair share, then first come first served:
- a higher priority (within the site's bounds) goes first;
- then an owner's n-th waiting deployment ranks with every other owner's n-th, after what
  the owner already runs, so one user's 50 submissions do not starve another's single one;
- then the earlier submission.

Nobody jumps the queue at a site: once a deployment that prefers a site cannot fit there,
the deployments behind it may not take that site either (no starvation of big requests).
A deployment may overflow to a later candidate that has room, if that site takes overflow.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Waiting:
    """A deployment waiting for capacity."""

    deployment_id: str
    owner: str  # the fair-share key
    priority: int
    enqueued_at: datetime
    candidates: tuple[str, ...]  # the broker's order, best first
    cores: float
    mem_bytes: int


@dataclass(frozen=True)
class SiteRoom:
    """A site's capacity, what is held there now, and its queue policy."""

    name: str
    cores: float
    mem_bytes: int
    used_cores: float = 0.0
    used_mem: int = 0
    takes_overflow: bool = True
    max_priority: int = 0
    queue_timeout_s: float = 24 * 3600.0

    def fits(self, cores: float, mem_bytes: int) -> bool:
        return cores <= self.cores - self.used_cores + 1e-9 and mem_bytes <= (
            self.mem_bytes - self.used_mem
        )

    def holding(self, cores: float, mem_bytes: int) -> SiteRoom:
        return replace(self, used_cores=self.used_cores + cores, used_mem=self.used_mem + mem_bytes)


@dataclass(frozen=True)
class Admitted:
    site: str
    why: str  # recorded with the deployment: why it went where it went


@dataclass(frozen=True)
class Queued:
    site: str  # the site it waits for (its first candidate)
    position: int  # 1-based, among the deployments waiting for that site
    length: int
    reason: str


@dataclass
class Plan:
    admitted: dict[str, Admitted] = field(default_factory=dict)
    queued: dict[str, Queued] = field(default_factory=dict)
    #: The admitted ones' places: still in line until their next check takes the room,
    #: ahead of everyone queued at that site (a listing without them would be short).
    ready: dict[str, Queued] = field(default_factory=dict)


def effective_priority(w: Waiting, rooms: Mapping[str, SiteRoom]) -> int:
    """The priority asked for, capped by the bound of the site it waits for; a request
    below zero (be nice) is always allowed."""
    room = rooms.get(w.candidates[0]) if w.candidates else None
    return min(w.priority, room.max_priority if room else 0)


def fair_order(
    waiting: Iterable[Waiting], held_by_owner: Mapping[str, int], rooms: Mapping[str, SiteRoom]
) -> list[Waiting]:
    by_time = sorted(waiting, key=lambda w: (w.enqueued_at, w.deployment_id))
    nth: Counter[str] = Counter()
    keyed = []
    for w in by_time:
        share = held_by_owner.get(w.owner, 0) + nth[w.owner]
        nth[w.owner] += 1
        keyed.append(((-effective_priority(w, rooms), share, w.enqueued_at, w.deployment_id), w))
    return [w for _, w in sorted(keyed, key=lambda kw: kw[0])]


def plan(
    waiting: Iterable[Waiting],
    held_by_owner: Mapping[str, int],
    rooms: Mapping[str, SiteRoom],
) -> Plan:
    """Who is admitted now, where and why; and everyone else's place in line."""
    free = dict(rooms)
    blocked: set[str] = set()
    result = Plan()
    ahead: dict[str, list[Waiting]] = defaultdict(list)  # admitted now, by site
    behind: dict[str, list[Waiting]] = defaultdict(list)  # waiting for their first site
    for w in fair_order(waiting, held_by_owner, rooms):
        placed = _place(w, free, blocked)
        if placed is None:
            first = w.candidates[0] if w.candidates else "?"
            blocked.add(first)
            behind[first].append(w)
            continue
        site, why = placed
        free[site] = free[site].holding(w.cores, w.mem_bytes)
        result.admitted[w.deployment_id] = Admitted(site, why)
        ahead[site].append(w)
    for site in sorted({*ahead, *behind}):
        length = len(ahead[site]) + len(behind[site])
        for position, w in enumerate(ahead[site], start=1):
            why = result.admitted[w.deployment_id].why
            result.ready[w.deployment_id] = Queued(
                site, position, length, f"ready at {site}: admitted at its next check ({why})"
            )
        room = rooms.get(site)
        for position, w in enumerate(behind[site], start=len(ahead[site]) + 1):
            result.queued[w.deployment_id] = Queued(
                site, position, length, _waiting_reason(site, position, length, w, room)
            )
    return result


def _place(w: Waiting, free: Mapping[str, SiteRoom], blocked: set[str]) -> tuple[str, str] | None:
    for i, site in enumerate(w.candidates):
        room = free.get(site)
        if room is None or site in blocked:
            continue
        if i > 0 and not room.takes_overflow:
            continue
        if room.fits(w.cores, w.mem_bytes):
            if i == 0:
                return site, f"{site}: first candidate, had room"
            first = w.candidates[0]
            return site, f"{site}: candidate {i + 1}; {first} was full or had a queue"
    return None


def _waiting_reason(
    site: str, position: int, length: int, w: Waiting, room: SiteRoom | None
) -> str:
    free = ""
    if room is not None:
        cores = max(room.cores - room.used_cores, 0)
        free = f"; {cores:g} cores, {max(room.mem_bytes - room.used_mem, 0) / GIB:.1f} GiB free"
    return (
        f"waiting for capacity at {site}: position {position} of {length}"
        f" ({w.cores:g} cores, {w.mem_bytes / GIB:.1f} GiB requested{free})"
    )
