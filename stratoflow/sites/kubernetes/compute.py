"""The kubernetes site: a namespace per deployment, a pod per job attempt.

Data lives on a filesystem shared with the pods (``workdir``, mounted into each pod by
hostPath at the same path), laid out like the local site's sandbox::

    <workdir>/deployments/<deployment_id>/
        artifacts/                         job artifacts (scripts)
        jobs/<step>/<index>/attempt-<n>/   spec.json job.log status.json out.tmp/ tmp/
        outputs/<step>/<index>/            committed outputs (atomic rename of out.tmp)

The cluster is the truth about a running pod; the files are the truth about a finished
one (``status.json`` is written once, under the job's lock), so a retried task or a trigger
in another process reaches the same verdict and commits outputs at most once.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.retry import retrying
from stratoflow.sites.base import (
    Allocation,
    Capacity,
    Compute,
    HostRequest,
    ResourceLedger,
    TaggedResource,
)
from stratoflow.sites.credentials import credentials
from stratoflow.sites.kubernetes.api import KubeApi
from stratoflow.sites.kubernetes.config import (
    L_DEPLOYMENT,
    L_KEY,
    L_MANAGED,
    L_SITE,
    KubernetesConfig,
    dns_label,
    label_value,
)
from stratoflow.sites.kubernetes.jobs import PodJobs
from stratoflow.sites.sandbox import safe_name

log = logging.getLogger(__name__)
MIB = 1 << 20
NODE = "namespace"  # one namespace per deployment: its record's node name


class _NamespaceChanged(Exception):
    """The namespace went away (or was going) between our create and our read: try again."""


class KubernetesCompute(PodJobs, Compute):
    kind = "kubernetes"

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        super().__init__(name, dict(config or {}))
        self.cfg = KubernetesConfig.from_dict(name, self.config)  # no network: cheap
        self._conn_prefix = ""
        self._api: KubeApi | None = None

    def capacity(self) -> Capacity:
        return Capacity(self.cfg.cores, self.cfg.memory)

    def _kube(self) -> KubeApi:
        if self._api is None:
            client, self._conn_prefix = credentials().kubernetes_api(self.cfg.conn_id)
            self._api = KubeApi(self.name, self.cfg.conn_id, client, self.cfg)
        return self._api

    def namespace_for(self, key: str) -> str:
        prefix = self.cfg.namespace_prefix
        if prefix is None:
            self._kube()
            prefix = self._conn_prefix
        return dns_label(f"{prefix}-{key}") if prefix else dns_label(key)

    def sandbox(self, deployment_id: str) -> Path:
        return self.cfg.workdir / "deployments" / safe_name(deployment_id, "deployment id")

    # ---- provisioning -------------------------------------------------------------

    def provision(
        self, deployment_id: str, hosts: list[HostRequest], ledger: ResourceLedger
    ) -> Allocation:
        cores = sum(h.count * h.num_cpus for h in hosts) or 1
        mem = sum(h.count * h.mem_bytes for h in hosts) or MIB
        if cores > self.cfg.cores or mem > self.cfg.memory:
            raise SiteError(
                f"kubernetes: deployment {deployment_id} needs {cores} cores and {mem // MIB}"
                f" MiB but site {self.name!r} offers {self.cfg.cores} cores and"
                f" {self.cfg.memory // MIB} MiB in total; it can never fit here"
            )
        sandbox = self.sandbox(deployment_id)
        # Write-ahead: the record (and its key, which names the namespace) exists before
        # any API call, so a crash or a lost reply leaves something teardown can find.
        rec = ledger.intend_resource(
            deployment_id, self.name, "namespace", NODE, 0, data={"sandbox": str(sandbox)}
        )
        if rec.site != self.name:
            raise SiteError(
                f"kubernetes: resource {rec.key} of deployment {deployment_id} is still"
                f" {rec.state} at site {rec.site!r}; tear that down before provisioning here"
            )
        adopting = rec.state == "created"
        name = ""
        reserved = False
        try:
            name = rec.external_id if adopting and rec.external_id else self.namespace_for(rec.key)
            ns = self._ensure_namespace(name, deployment_id, rec.key)
            for sub in ("artifacts", "jobs", "outputs"):
                (sandbox / sub).mkdir(parents=True, exist_ok=True)
            reserved = ledger.reserve(
                self.name, deployment_id, cores, mem, self.cfg.cores, self.cfg.memory
            )
            if not reserved:
                raise SiteError(
                    f"kubernetes: insufficient capacity at site {self.name!r} for"
                    f" deployment {deployment_id} ({cores} cores, {mem // MIB} MiB): other"
                    " deployments hold the rest; retry later"
                )
            if not adopting:
                ledger.mark_resource_created(
                    rec.key, name, {"namespace": name, "uid": ns.metadata.uid}
                )
        except Exception as e:
            if not adopting:  # remove only what this attempt may have made, then report
                self._undo(deployment_id, name, rec.key, sandbox, ledger, reserved)
            if isinstance(e, SiteError):
                raise
            raise SiteError(f"kubernetes site {self.name!r}: provision failed: {e}") from e
        return Allocation(
            site=self.name,
            kind=self.kind,
            deployment_id=deployment_id,
            workdir=str(sandbox),
            cores=cores,
            # The instances share the namespace; pods get their addresses per job.
            hosts=[
                {"node": h.node, "index": i, "id": name, "namespace": name, "address": None}
                for h in hosts
                for i in range(h.count)
            ],
            data={
                "namespace": name,
                "sandbox": str(sandbox),
                "artifacts_dir": str(sandbox / "artifacts"),
                "outputs_dir": str(sandbox / "outputs"),
                "mem_bytes": mem,
            },
        )

    def _ensure_namespace(self, name: str, deployment_id: str, key: str) -> Any:
        kube = self._kube()
        labels = {
            L_MANAGED: "stratoflow",
            L_DEPLOYMENT: label_value(deployment_id),
            L_KEY: key,
            L_SITE: label_value(self.name),
        }
        annotations = {"stratoflow.io/deployment": deployment_id}

        def create_or_adopt() -> Any:
            created = kube.create_namespace(name, labels, annotations)
            if created is not None:
                return created
            # AlreadyExists: our own earlier try (maybe one whose reply was lost), unless the
            # key label says otherwise. Never adopt a namespace we cannot prove is ours.
            ns = kube.read_namespace(name)
            if ns is None:
                raise _NamespaceChanged("it finished terminating in between")
            if (ns.metadata.labels or {}).get(L_KEY) != key:
                raise SiteError(
                    f"kubernetes site {self.name!r}: namespace {name} exists but is not"
                    f" labelled {L_KEY}={key}; refusing to adopt it"
                )
            if ns.status and ns.status.phase == "Terminating":
                # An earlier attempt's cleanup is still running: wait, then create afresh.
                if not kube.wait_namespace_gone(name, self.cfg.teardown_wait_s):
                    raise SiteError(
                        f"kubernetes site {self.name!r}: namespace {name} is still terminating"
                    )
                raise _NamespaceChanged("an earlier attempt's namespace was terminating")
            return ns

        try:
            return retrying(
                create_or_adopt,
                attempts=self.cfg.retry_attempts,
                backoff_s=self.cfg.retry_backoff_s,
                transient=lambda e: isinstance(e, _NamespaceChanged),
            )
        except _NamespaceChanged as e:
            raise SiteError(
                f"kubernetes site {self.name!r}: namespace {name} keeps changing ({e})"
            ) from e

    def _delete_ours(self, name: str, key: str | None, deployment_id: str) -> bool:
        """Ask to delete namespace ``name`` if its labels prove it is ours; False if gone."""
        kube = self._kube()
        ns = kube.read_namespace(name)
        if ns is None:
            return False
        labels = ns.metadata.labels or {}
        if labels.get(L_DEPLOYMENT) != label_value(deployment_id) or (
            key is not None and labels.get(L_KEY) != key
        ):
            log.warning("kubernetes %s: not deleting %s: labels are not ours", self.name, name)
            return False
        return kube.delete_namespace(name)

    def _undo(
        self,
        deployment_id: str,
        name: str,
        key: str,
        sandbox: Path,
        ledger: ResourceLedger,
        reserved: bool,
    ) -> None:
        try:
            if name and self._api is not None:  # no client, no API call: nothing to remove
                self._delete_ours(name, key, deployment_id)
            ledger.mark_resource_deleted(key)
        except Exception as e:  # the reaper finds the labelled namespace and finishes this
            ledger.mark_resource_failed(key, f"cleanup after a failed provision failed: {e}")
        self._remove_sandbox(deployment_id, sandbox)
        if reserved:
            ledger.release(self.name, deployment_id)

    @staticmethod
    def _remove_sandbox(deployment_id: str, sandbox: Path) -> None:
        # Only ever delete something shaped like a sandbox we made, whatever a record says.
        if sandbox.name == deployment_id and sandbox.parent.name == "deployments":
            shutil.rmtree(sandbox, ignore_errors=True)

    def teardown(
        self, deployment_id: str, ledger: ResourceLedger, alloc: Allocation | None = None
    ) -> None:
        records = [
            r
            for r in ledger.resources(deployment_id)
            if r.kind == "namespace" and r.site == self.name
        ]
        errors: list[str] = []
        for r in records:
            name = r.external_id or self.namespace_for(r.key)
            try:
                if r.state != "deleting":
                    ledger.mark_resource_deleting(r.key)
                self._delete_ours(name, r.key, deployment_id)
                if self._kube().wait_namespace_gone(name, self.cfg.teardown_wait_s):
                    ledger.mark_resource_deleted(r.key)
                else:  # deletion is accepted; the reaper confirms it later
                    log.warning("kubernetes %s: namespace %s still terminating", self.name, name)
            except SiteError as e:
                errors.append(str(e))
        if alloc is not None and alloc.data.get("namespace") and not records:
            try:  # no record (lost store?) but the allocation names it: still ours by label
                self._delete_ours(alloc.data["namespace"], None, deployment_id)
            except SiteError as e:
                errors.append(str(e))
        if errors:  # keep the sandbox: pods may still be writing; the task retries
            raise SiteError("; ".join(errors))
        self._remove_sandbox(deployment_id, self.sandbox(deployment_id))
        ledger.release(self.name, deployment_id)

    def list_tagged(self) -> list[TaggedResource]:
        """Every namespace this site labelled, with the idempotency key it carries."""
        selector = f"{L_MANAGED}=stratoflow,{L_SITE}={label_value(self.name)}"
        return [
            TaggedResource(
                "namespace",
                ns.metadata.name,
                (ns.metadata.labels or {}).get(L_KEY, ""),
                ns.metadata.creation_timestamp,
            )
            for ns in self._kube().list_namespaces(selector)
        ]

    def delete_tagged(self, resource: TaggedResource) -> None:
        """Delete a namespace, but only one that carries this site's labels."""
        kube = self._kube()
        ns = kube.read_namespace(resource.external_id)
        if ns is None:
            return  # gone already
        labels = ns.metadata.labels or {}
        if labels.get(L_MANAGED) != "stratoflow" or labels.get(L_SITE) != label_value(self.name):
            return  # not ours: never delete what we did not label
        kube.delete_namespace(resource.external_id)
        if not kube.wait_namespace_gone(resource.external_id, self.cfg.teardown_wait_s):
            raise SiteError(
                f"kubernetes site {self.name!r}: namespace {resource.external_id} still"
                " terminating; the next reaper run looks again"
            )
        deployment_id = (ns.metadata.annotations or {}).get("stratoflow.io/deployment")
        if deployment_id:  # its pods are gone, so nothing writes the sandbox any more
            try:
                self._remove_sandbox(deployment_id, self.sandbox(deployment_id))
            except SiteError:
                pass  # an id that is no safe path component never had a sandbox
