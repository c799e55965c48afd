"""Stage-in, stage-out and standalone transfers: every copy verified by checksum."""

from __future__ import annotations

from typing import Any

from stratoflow.errors import StagingRefused
from stratoflow.execution.jobs import chunk
from stratoflow.execution.placement import storage_for_url
from stratoflow.execution.staging import (
    results_dir,
    select_outputs,
    site_path,
    stage_files,
    staged_name,
)
from stratoflow.operators.base import StratoflowOperator
from stratoflow.plan.model import PROVISION, resolve
from stratoflow.sites.base import Allocation
from stratoflow.store.models import Task
from stratoflow.triggers.wait import SiteWaitTrigger


def registered(op: StratoflowOperator, context: Any, result: dict) -> dict:
    """``result`` with the dataset its files were registered as (``<template>/<deployment
    id>``; None when no storage endpoint holds them)."""
    from stratoflow.operators.lifecycle import register_and_announce

    deployment_id = op.deployment_id(context)
    meta = {"template": op.plan["name"], "deployment": deployment_id, "kind": "results"}
    if not result["files"]:
        return {**result, "dataset": None}
    dataset = f"{op.plan['name']}/{deployment_id}"
    return {
        **result,
        "dataset": register_and_announce(op, context, op.store, dataset, result["files"], meta),
    }


class StageInOperator(StratoflowOperator):
    """Copy the dataset into the sandbox; return the files in chunks, one per job."""

    ui_color = "#cfe2f3"
    works_as = Task.DMS

    def run(self, context: Any) -> list[list[str]]:
        bound = self.bound(context)
        inputs = bound["inputs"]
        alloc = Allocation.from_dict(context["ti"].xcom_pull(task_ids=PROVISION))
        files = resolve(self.step["files"], inputs)
        dests = [f"{alloc.workdir}/inputs/{staged_name(i, f['url'])}" for i, f in enumerate(files)]
        staged = stage_files(
            files, dests, self.store, bound["deployment_id"], alloc.site, self.task_id, log=self.log
        )
        size = resolve(self.step.get("chunk_size", 1), inputs)
        return chunk([site_path(s.url) for s in staged], size)


class StageOutOperator(StratoflowOperator):
    """Copy the selected job outputs out of the sandbox, to where results are kept."""

    template_fields = ("sources",)
    ui_color = "#cfe2f3"
    works_as = Task.DMS

    def __init__(self, *, sources: list[Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.sources = sources

    def run(self, context: Any) -> dict:
        bound = self.bound(context)
        deployment_id = bound["deployment_id"]
        location = resolve(self.step.get("location", "results"), bound["inputs"])
        target = results_dir(location, deployment_id)
        patterns = resolve(self.step.get("patterns") or [], bound["inputs"])
        files = select_outputs(self.sources, patterns)
        dests = [str(target / f["name"]) for f in files]
        site = Allocation.from_dict(context["ti"].xcom_pull(task_ids=PROVISION)).site
        staged = stage_files(
            files, dests, self.store, deployment_id, site, self.task_id, log=self.log
        )
        result = {"results_dir": str(target), "files": [s.to_dict() for s in staged]}
        return registered(self, context, result)


class TransferOperator(StratoflowOperator):
    """A DataTransfer node: copy each file of the source dataset to the destination.

    When the destination's backend moves files itself in bulk (``bulk_transfer``), every
    file is submitted at once and the task defers to the backend's trigger;
    otherwise each file is copied and verified in the task."""

    ui_color = "#cfe2f3"
    works_as = Task.DMS

    def _files(self, context: Any) -> tuple[list[dict], str, list[str], bool]:
        inputs = self.bound(context)["inputs"]
        files = resolve(self.step["files"], inputs)
        if resolve(self.step.get("verify_checksum", "both"), inputs) == "none":
            # The user opted out: copy without comparing against declared checksums.
            files = [{"url": f["url"]} for f in files]
        destination = str(resolve(self.step["destination"], inputs)).rstrip("/")
        dests = [f"{destination}/{staged_name(None, f['url'])}" for f in files]
        return files, destination, dests, bool(resolve(self.step.get("overwrite"), inputs))

    def run(self, context: Any) -> dict:
        bound = self.bound(context)
        files, destination, dests, overwrite = self._files(context)
        bulk = storage_for_url(dests[0]).bulk_transfer() if dests else None
        if bulk is not None:
            attempt = context["ti"].try_number - 1
            pairs = _pairs(files, dests)
            # The key makes a retried submission adopt the jobs of the same try; a new try
            # resubmits everything with overwrite, and FTS verifies each copy end to end.
            job_ids = bulk.submit(
                pairs,
                key=f"{bound['deployment_id']}:{self.task_id}",
                attempt=attempt,
                overwrite=overwrite or attempt > 0,
            )
            self.log.info(
                "%d files submitted to %s in %d jobs", len(pairs), bulk.service, len(job_ids)
            )
            self.defer(
                trigger=SiteWaitTrigger.from_spec(bulk.wait_for(job_ids)), method_name="bulk_done"
            )
        staged = stage_files(
            files,
            dests,
            self.store,
            bound["deployment_id"],
            "transfer",
            self.task_id,
            log=self.log,
            overwrite=overwrite,
        )
        result = {"destination": destination, "files": [s.to_dict() for s in staged]}
        qos = resolve(self.step.get("qos"), bound["inputs"])
        if qos and dests:
            self._require_replicas(destination, dests, qos, result)
        return registered(self, context, result)

    def _require_replicas(self, destination: str, dests: list[str], qos: dict, result: dict):
        """The storage system keeps the replicas the template asks for; wait until it does."""
        replication = storage_for_url(destination).replication()
        if replication is None:
            raise StagingRefused(
                f"{self.task_id}.qos_expression: the storage at {destination} keeps no QoS"
                " replicas; use a destination whose backend has replication"
            )
        expression, replicas = str(qos["expression"]), int(qos.get("replicas") or 1)
        ids = replication.require_replicas(dests, expression, replicas)
        self.log.info("QoS %r x%d required on %d files; waiting", expression, replicas, len(ids))
        self.defer(
            trigger=SiteWaitTrigger.from_spec(replication.replicas_wait(ids), echo=result),
            method_name="replicas_done",
        )

    def replicas_done(self, context: Any, event: dict | None = None) -> dict:
        if not event:
            return self.execute(context)

        def finish() -> dict:
            if event["status"] != "success":
                _, destination, _, _ = self._files(context)
                replication = storage_for_url(destination).replication()
                service = replication.service if replication else "storage"
                # An impossible requirement never becomes possible by retrying.
                raise StagingRefused(
                    f"{self.task_id}: {service} QoS not satisfied: {sorted(event['qos'].values())}"
                )
            return registered(self, context, {**event["echo"], "qos": event["qos"]})

        return self.guarded(context, finish)

    def bulk_done(self, context: Any, event: dict | None = None) -> dict:
        if not event:
            return self.execute(context)  # resumed without an event: submit (adopt) again

        def finish() -> dict:
            bound = self.bound(context)
            files, destination, dests, _ = self._files(context)
            bulk = storage_for_url(dests[0]).bulk_transfer()
            if bulk is None:  # the catalogue changed under a deferred task
                raise StagingRefused(f"{self.task_id}: {dests[0]} has no bulk transfer now")
            staged = bulk.outcome(_pairs(files, dests), event)
            moved = sum(s.size for s in staged)
            self.store.add_usage(
                bound["deployment_id"], "transfer", self.task_id, bytes_moved=moved
            )
            self.log.info("%s transferred %d files (%d bytes)", bulk.service, len(staged), moved)
            result = {"destination": destination, "files": [s.to_dict() for s in staged]}
            return registered(self, context, result)

        return self.guarded(context, finish)


def _pairs(files: list[dict], dests: list[str]) -> list[dict]:
    return [
        {
            "source": f["url"],
            "destination": d,
            "adler32": f.get("adler32"),
            "sha256": f.get("sha256"),
            "size": f.get("size"),
        }
        for f, d in zip(files, dests, strict=True)
    ]
