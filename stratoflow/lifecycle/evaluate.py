"""Evaluate a policy over the catalogue: which datasets it selects, and each one's plan.

The dry run (``stratoflow policy plan``) and the policy DAG's plan task both call
:func:`plan_policy`, so what the one shows is what the other does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from stratoflow.lifecycle.expression import Endpoint
from stratoflow.lifecycle.planner import Action, DatasetState, plan_dataset
from stratoflow.lifecycle.policy import Policy


class CatalogueReader(Protocol):
    """The reads a plan needs (``stratoflow.store.Store`` implements them)."""

    def datasets(self, pattern: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...
    def dataset_states(self, policy: str, dataset_ids: Sequence[int]) -> Iterable[DatasetState]: ...


@dataclass(frozen=True)
class DatasetPlan:
    state: DatasetState
    actions: Sequence[Action]

    @property
    def name(self) -> str:
        return self.state.dataset.name


def like_pattern(shell: str) -> str:
    """A shell pattern's literal prefix as a SQL LIKE pattern: the store narrows, the
    selector decides (LIKE's own wildcards in names are matched again in Python)."""
    prefix = ""
    for ch in shell:
        if ch in "*?[":
            break
        prefix += ch
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def selected(
    catalogue: CatalogueReader, policy: Policy, limit: int = 1_000_000
) -> list[dict[str, Any]]:
    rows = catalogue.datasets(like_pattern(policy.datasets.name), limit=limit)
    return [r for r in rows if policy.datasets.matches(r["name"], r["meta"] or {})]


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """A plan over 200,000 files makes millions of small objects, none in a cycle: the
    cyclic collector would walk the ever larger heap again and again for nothing (a
    quarter of the time at 200,000 replicas, measured with bench/lifecycle_eval.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan_datasets(
    catalogue: CatalogueReader,
    policy: Policy,
    endpoints: Mapping[str, Endpoint],
    dataset_ids: Sequence[int],
    now: datetime,
) -> list[DatasetPlan]:
    """The plans of the given datasets (the policy DAG's plan task: ids from evaluate)."""
    with cycle_collection_paused():
        return [
            DatasetPlan(state, plan_dataset(policy, endpoints, state, now))
            for state in catalogue.dataset_states(policy.name, dataset_ids)
        ]


def plan_policy(
    catalogue: CatalogueReader,
    policy: Policy,
    endpoints: Mapping[str, Endpoint],
    now: datetime,
) -> list[DatasetPlan]:
    """Every selected dataset's plan, by dataset name."""
    ids = [row["id"] for row in selected(catalogue, policy)]
    return plan_datasets(catalogue, policy, endpoints, ids, now)
