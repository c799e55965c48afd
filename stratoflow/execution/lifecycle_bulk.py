"""A policy run's copies into endpoints whose service moves files itself, many per job
(FTS3), as Rucio's conveyor hands them to FTS: the execute step records each copy
(destination COPYING and locked, transfer QUEUED) and leaves it queued; here the queued
copies are grouped per service, submitted in bulk, waited on in the triggerer (the policy
DAG's execute task defers), and each file's outcome recorded on its own.

A failed file leaves its destination BAD and counts towards the rule's STUCK state, as a
failed copy does anywhere; its source is re-verified where the storage can read it back.
"""

from __future__ import annotations

from typing import Any

from stratoflow.errors import StagingRefused
from stratoflow.execution.lifecycle_transport import SiteTransport
from stratoflow.execution.policies import load_policy_set
from stratoflow.lifecycle.execute import verify_replica
from stratoflow.lifecycle.model import FileRecord
from stratoflow.sites.base import BulkTransfer
from stratoflow.sites.waits import WaitSpec

_PAIR_FIELDS = ("source", "destination", "adler32", "sha256", "size")


def _transport() -> SiteTransport:
    return SiteTransport(load_policy_set().endpoints)


def _service(transport: SiteTransport, batch: list[dict[str, Any]]) -> BulkTransfer | None:
    return transport.bulk_for(batch[0]["queued"]["destination"])


def queued_batches(outcomes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The queued copies of a run's outcomes, one batch per bulk service (the site of the
    destination endpoint), in the order they were queued."""
    transport = _transport()
    batches: dict[str, list[dict[str, Any]]] = {}
    for o in outcomes:
        q = o.get("queued")
        if not q:
            continue
        batches.setdefault(transport.site_of(q["destination"]) or "", []).append(o)
    return list(batches.values())


def submit_batch(batch: list[dict[str, Any]], *, key: str, attempt: int) -> WaitSpec:
    """Submit the batch's copies (the same key and attempt adopt the jobs a lost reply
    created); the wait to defer on."""
    transport = _transport()
    bulk = _service(transport, batch)
    if bulk is None:  # the catalogue changed since the copies were queued
        raise StagingRefused(
            f"{batch[0]['queued']['destination']}: its endpoint's site has no bulk transfer"
            " now (the site catalogue changed); the next run copies it file by file"
        )
    pairs = [{k: o["queued"][k] for k in _PAIR_FIELDS} for o in batch]
    # overwrite: a destination left BAD by an earlier failure is replaced, and the service
    # verifies every copy end to end.
    job_ids = bulk.submit(pairs, key=key, attempt=attempt, overwrite=True)
    return bulk.wait_for(job_ids)


def finish_batch(store: Any, batch: list[dict[str, Any]], event: dict[str, Any]) -> list[dict]:
    """Record each copy of the batch as the wait's final event says; the outcomes."""
    transport = _transport()
    bulk = _service(transport, batch)
    pairs = [{k: o["queued"][k] for k in _PAIR_FIELDS} for o in batch]
    service = bulk.service if bulk else "bulk transfer"
    results = bulk.file_outcomes(pairs, event) if bulk else {}
    done = []
    for o in batch:
        q = o["queued"]
        why = results.get(q["destination"], "no outcome for this file")
        outcome = {k: v for k, v in o.items() if k != "queued"}
        if why is None:
            store.finish_transfer(q["transfer_id"], ok=True)
            done.append({**outcome, "ok": True, "note": f"{service}: {q['destination']}"})
            continue
        store.finish_transfer(q["transfer_id"], ok=False, reason=f"{service}: {why}")
        note = f"{service}: {why}"
        source = store.replica(q["source_replica_id"])
        if source is not None:
            f = FileRecord(
                q["file_id"], o["dataset_id"], o["file"], q["size"], q["adler32"], q["sha256"]
            )
            _ok, checked = verify_replica(store, transport, source, f)
            note += f" (source {checked})"
        done.append({**outcome, "ok": False, "note": note})
    return done
