"""Stage-in, stage-out and standalone transfers: every copy verified by checksum."""

from __future__ import annotations

from typing import Any

from stratoflow.execution.jobs import chunk
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


class StageInOperator(StratoflowOperator):
    """Copy the dataset into the sandbox; return the files in chunks, one per job."""

    ui_color = "#cfe2f3"

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
        site = (context["ti"].xcom_pull(task_ids=PROVISION) or {}).get("site", "local")
        staged = stage_files(
            files, dests, self.store, deployment_id, site, self.task_id, log=self.log
        )
        return {"results_dir": str(target), "files": [s.to_dict() for s in staged]}


class TransferOperator(StratoflowOperator):
    """A DataTransfer node: copy each file of the source dataset to the destination."""

    ui_color = "#cfe2f3"

    def run(self, context: Any) -> dict:
        bound = self.bound(context)
        inputs = bound["inputs"]
        files = resolve(self.step["files"], inputs)
        if resolve(self.step.get("verify_checksum", "both"), inputs) == "none":
            # The user opted out: copy without comparing against declared checksums.
            files = [{"url": f["url"]} for f in files]
        destination = str(resolve(self.step["destination"], inputs)).rstrip("/")
        dests = [f"{destination}/{staged_name(None, f['url'])}" for f in files]
        staged = stage_files(
            files,
            dests,
            self.store,
            bound["deployment_id"],
            "transfer",
            self.task_id,
            log=self.log,
            overwrite=bool(resolve(self.step.get("overwrite"), inputs)),
        )
        return {"destination": destination, "files": [s.to_dict() for s in staged]}
