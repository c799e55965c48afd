"""The admission order: fair share between owners, FIFO within one, priorities within the
site's bounds, no queue jumping at a full site, overflow only where the site allows it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from stratoflow.admission import GIB, SiteRoom, Waiting, plan

T0 = datetime(2026, 12, 4, tzinfo=UTC)


def waiting(name: str, owner: str, t: int, *, cores: float = 1, sites=("local",), prio=0):
    return Waiting(name, owner, prio, T0 + timedelta(seconds=t), tuple(sites), cores, GIB)


def room(name: str = "local", cores: float = 2, used: float = 0, **kw) -> SiteRoom:
    return SiteRoom(name, cores, 64 * GIB, used_cores=used, **kw)


def admission_order(queue, rooms, held=None):
    """Admit one at a time, as teardowns free room, and return who went in which order.
    Each site keeps its own policy (bounds, overflow); exactly one core is free each time."""
    queue, held, order = list(queue), dict(held or {}), []
    while queue:
        free = {n: replace(r, used_cores=r.cores - 1) for n, r in rooms.items()}
        decided = plan(queue, held, free)
        (first,) = decided.admitted  # exactly one slot is free each time
        order.append(first)
        owner = next(w.owner for w in queue if w.deployment_id == first)
        held[owner] = held.get(owner, 0) + 1  # it runs on: it counts against its owner
        queue = [w for w in queue if w.deployment_id != first]
    return order


def test_one_owner_is_first_come_first_served():
    queue = [waiting(f"a{i}", "alice", i) for i in range(4)]
    assert admission_order(queue, {"local": room()}) == ["a0", "a1", "a2", "a3"]


def test_a_single_submission_is_not_starved_by_fifty():
    queue = [waiting(f"a{i}", "alice", i) for i in range(6)] + [waiting("b0", "bob", 10)]
    # alice already runs 2 (her first two); bob runs nothing
    order = admission_order(queue[2:], {"local": room()}, held={"alice": 2})
    assert order.index("b0") == 0, order
    # and from an empty site: bob's first ranks with alice's first
    assert admission_order(queue, {"local": room()})[:3] == ["a0", "b0", "a1"]


def test_priority_counts_only_up_to_the_site_bound():
    queue = [waiting("low", "alice", 0), waiting("high", "bob", 1, prio=50)]
    assert admission_order(queue, {"local": room()}) == ["low", "high"]  # bound 0: ignored
    bounded = {"local": room(max_priority=10)}
    assert admission_order(queue, bounded) == ["high", "low"]
    # Within the bound, the higher one goes first; beyond it, both count as the bound.
    capped = [waiting("ten", "alice", 0, prio=10), waiting("fifty", "bob", 1, prio=50)]
    assert admission_order(capped, bounded) == ["ten", "fifty"]
    over = [waiting("five", "alice", 0, prio=5), waiting("nine", "bob", 1, prio=9)]
    assert admission_order(over, bounded) == ["nine", "five"]
    nice = [waiting("nice", "alice", 0, prio=-5), waiting("plain", "bob", 1)]
    assert admission_order(nice, {"local": room()}) == ["plain", "nice"]


def test_nobody_jumps_a_big_request_at_a_full_site():
    big = waiting("big", "alice", 0, cores=2)
    small = waiting("small", "bob", 1, cores=1)
    decided = plan([big, small], {}, {"local": room(cores=2, used=1)})
    assert decided.admitted == {}
    assert decided.queued["big"].position == 1 and decided.queued["small"].position == 2
    assert decided.queued["small"].reason == (
        "waiting for capacity at local: position 2 of 2"
        " (1 cores, 1.0 GiB requested; 1 cores, 64.0 GiB free)"
    )


def test_overflow_goes_to_a_later_candidate_only_if_it_takes_overflow():
    w = waiting("w", "alice", 0, sites=("local", "cloud"))
    full = room(cores=1, used=1)
    decided = plan([w], {}, {"local": full, "cloud": room("cloud", cores=8)})
    assert decided.admitted["w"].site == "cloud"
    assert "candidate 2; local was full or had a queue" in decided.admitted["w"].why
    closed = room("cloud", cores=8, takes_overflow=False)
    assert plan([w], {}, {"local": full, "cloud": closed}).admitted == {}
