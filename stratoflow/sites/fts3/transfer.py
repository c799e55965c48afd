"""FTS3Transfer: bulk submission, bulk polling, cancellation and verified copies via FTS3.

Request economy (what Rucio does against FTS): up to 200 files per job, and one
``GET /jobs/{id1,...,id100}`` per 100 jobs per polling round; per-file details are fetched
only for jobs that did not finish cleanly.

Idempotent submission. ``POST /jobs`` is not idempotent by itself, and a reply lost after
FTS stored the job would make a naive retry submit it twice. Every batch therefore gets a
deterministic submission id (``sid``, a hash of the caller's key, the attempt number, the
batch index and the batch's files) sent with ``id_generator=deterministic``: FTS derives
the job id as uuid5(uuid5(BASE_ID, vo), sid) and answers 409 to a second submission with
the same sid. After an ambiguous failure (5xx, dropped connection, timeout) the backend
looks the job up by its predicted id (``vos_id`` comes from ``/whoami``) before it
resubmits, and adopts a job it finds. For a server that ignores ``id_generator`` (detected
when a returned id differs from the predicted one), the lookup scans the user's recent jobs
for ``job_metadata.sid`` instead.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stratoflow.errors import StagingError
from stratoflow.retry import backoff, retrying
from stratoflow.sites.base import BulkTransfer, StagedFile, Storage
from stratoflow.sites.credentials import credentials
from stratoflow.sites.fts3.errors import (
    FTS3AuthError,
    FTS3QuotaExceeded,
    FTS3Unavailable,
    failure_error,
)
from stratoflow.sites.fts3.jobs import (
    ALL_JOB_STATES,
    FILE_FAILED,
    JOB_TERMINAL,
    SCHEMES,
    FileSpec,
    FTS3Config,
    batch_sid,
    batches,
    file_spec,
    is_retriable_failure,
    predicted_job_id,
)
from stratoflow.sites.waits import WaitSpec

log = logging.getLogger(__name__)

Failure = tuple[str, str, str]  # (source, destination, FTS's reason)


class FTS3Transfer(Storage, BulkTransfer):
    schemes = SCHEMES
    service = "FTS3"

    def __init__(self, name: str = "fts3", config: dict[str, Any] | None = None):
        self.name = name
        self.config = dict(config or {})
        self.cfg = FTS3Config.from_dict(name, self.config)
        self._ctx: Any = None
        self._vo_id: str | None = None
        self._deterministic: bool | None = None  # None: not yet confirmed by a submission

    # ---- plumbing ---------------------------------------------------------------------------

    @property
    def context(self) -> Any:
        if self._ctx is None:
            ctx = credentials().fts3_context(
                self.cfg.conn_id,
                attempts=self.cfg.retry_attempts,
                backoff_s=self.cfg.retry_backoff_s,
            )
            if self.cfg.endpoint and self.cfg.endpoint.rstrip("/") != ctx.endpoint:
                raise StagingError(
                    f"fts3: site {self.name!r} declares endpoint {self.cfg.endpoint} but"
                    f" connection {self.cfg.conn_id!r} points at {ctx.endpoint}"
                )
            self._ctx = ctx
        return self._ctx

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a *safe to repeat* request, retrying transient failures with backoff."""
        import requests
        from fts3.rest.client.exceptions import ServerError, Unauthorized

        unavailable = (ServerError, requests.RequestException)
        try:
            return retrying(
                lambda: fn(*args, **kwargs),
                attempts=self.cfg.retry_attempts,
                backoff_s=self.cfg.retry_backoff_s,
                transient=lambda e: isinstance(e, unavailable),
                on_retry=lambda e, n: log.warning(
                    "fts3: %s: %s (attempt %d), retrying", what, e, n
                ),
            )
        except Unauthorized as e:
            raise self._auth_error(e) from None
        except unavailable as e:
            raise FTS3Unavailable(
                f"fts3: {what} failed {self.cfg.retry_attempts} times at"
                f" {self.context.endpoint}: {type(e).__name__}: {e}"
            ) from None

    def _backoff(self, attempt: int) -> None:
        time.sleep(backoff(attempt + 1, self.cfg.retry_backoff_s))

    def _auth_error(self, e: Exception) -> FTS3AuthError:
        return FTS3AuthError(
            f"fts3: {self.context.endpoint} rejected the credential of connection"
            f" {self.cfg.conn_id!r} ({e}); check the token's audience, scope and expiry"
        )

    def _get_json(self, what: str, path: str) -> Any:
        return json.loads(self._call(what, self.context.get, path))

    # ---- submission -------------------------------------------------------------------------

    def submit(
        self,
        files: Iterable[dict | FileSpec],
        *,
        key: str | None = None,
        attempt: int = 0,
        overwrite: bool | None = None,
    ) -> list[str]:
        """Submit ``files`` in jobs of at most ``max_files_per_job``; return the job ids.

        ``key`` identifies the request across task retries (e.g. ``deployment:step:index``):
        submitting the same files with the same key and attempt adopts the jobs already
        submitted instead of creating new ones. Without a key, only this call's own
        retries are deduplicated. Resubmitting failed files uses ``attempt + 1``.
        """
        specs = [file_spec(f) for f in files]
        if not specs:
            return []
        key = key or f"adhoc:{uuid.uuid4()}"
        job_ids = [
            self._submit_batch(key, attempt, i, batch, overwrite)
            for i, batch in enumerate(batches(specs, self.cfg.max_files_per_job))
        ]
        log.info(
            "fts3: submitted %d files in %d jobs (attempt %d)", len(specs), len(job_ids), attempt
        )
        return job_ids

    def _submit_batch(
        self, key: str, attempt: int, index: int, batch: list[FileSpec], overwrite: bool | None
    ) -> str:
        import requests
        from fts3.rest.client import easy as fts3
        from fts3.rest.client.exceptions import ClientError, ServerError, Unauthorized

        sid = batch_sid(key, attempt, index, batch)
        transfers = [
            fts3.new_transfer(
                f.source,
                f.destination,
                filesize=f.size,
                checksum=f"ADLER32:{f.adler32}" if f.adler32 else "ADLER32",
            )
            for f in batch
        ]
        job = fts3.new_job(
            transfers,
            verify_checksum=self.cfg.verify_checksum,
            overwrite=self.cfg.overwrite if overwrite is None else overwrite,
            retry=self.cfg.retry,
            bring_online=self.cfg.bring_online,
            priority=self.cfg.priority,
            metadata={"stratoflow_key": key, "sid": sid, "batch": index, "attempt": attempt},
            id_generator=fts3.JobIdGenerator.deterministic,
            sid=sid,
        )
        for n in range(self.cfg.retry_attempts):
            try:
                job_id = fts3.submit(self.context, job)
                self._confirm_deterministic(job_id, sid)
                return job_id
            except Unauthorized as e:
                raise self._auth_error(e) from None
            except ClientError as e:
                status = str(e.reason)
                if status == "409":  # this sid was submitted before: adopt that job
                    found = self._find_job(sid)
                    if found:
                        log.info("fts3: batch %s already submitted as job %s", sid, found)
                        return found
                    raise StagingError(
                        f"fts3: FTS reports sid {sid} duplicated but no job carries it"
                    ) from None
                if status == "429":
                    raise FTS3QuotaExceeded(
                        f"fts3: {self.context.endpoint} refused the submission: quota"
                        " exhausted (HTTP 429)"
                    ) from None
                raise StagingError(
                    f"fts3: {self.context.endpoint} refused a job of {len(batch)} files: {e}"
                ) from None
            except (ServerError, requests.RequestException) as e:
                # Ambiguous: FTS may have stored the job and lost the reply. Look before
                # resubmitting; FTS's 409 on a duplicate sid is the backstop for races.
                log.warning(
                    "fts3: submission of batch %s: %s (attempt %d)", sid, type(e).__name__, n + 1
                )
                found = self._find_job(sid)
                if found:
                    log.info("fts3: adopted job %s for batch %s after a lost reply", found, sid)
                    return found
                if n + 1 < self.cfg.retry_attempts:
                    self._backoff(n)
        raise FTS3Unavailable(
            f"fts3: could not submit batch {sid} after {self.cfg.retry_attempts} attempts"
        )

    def _whoami_vo_id(self) -> str:
        if self._vo_id is None:
            me = self._get_json("whoami", "/whoami")
            self._vo_id = (me.get("vos_id") or [None])[0]
            if not self._vo_id:
                raise StagingError("fts3: /whoami returned no vos_id; cannot predict job ids")
        return self._vo_id

    def _confirm_deterministic(self, job_id: str, sid: str) -> None:
        if self._deterministic is None:
            self._deterministic = job_id == predicted_job_id(self._whoami_vo_id(), sid)
            if not self._deterministic:
                log.warning(
                    "fts3: %s ignores id_generator=deterministic; lost replies will be"
                    " resolved by scanning recent jobs",
                    self.context.endpoint,
                )

    def _find_job(self, sid: str) -> str | None:
        """The id of the job submitted with ``sid``, or None if FTS has none."""
        from fts3.rest.client.exceptions import NotFound

        if self._deterministic is not False:
            job_id = predicted_job_id(self._whoami_vo_id(), sid)
            try:
                job = self._get_json("job lookup", f"/jobs/{job_id}")
                if (job.get("job_metadata") or {}).get("sid") == sid:
                    return job_id
            except NotFound:
                pass
            if self._deterministic:
                return None
        # Unconfirmed or non-deterministic server: the user's newest jobs, any state.
        jobs = self._get_json("job scan", f"/jobs?state_in={ALL_JOB_STATES}&limit=500")
        for job in jobs:
            if (job.get("job_metadata") or {}).get("sid") == sid:
                return job["job_id"]
        return None

    # ---- polling, failures, cancel ------------------------------------------------------------

    def _statuses(self, job_ids: Sequence[str], files: bool = False) -> list[dict]:
        """Bulk status through the easy API's ``get_jobs_statuses``, which sends one
        ``GET /jobs/{id1,id2,...}`` (``?files=file_state,...,reason,...`` with ``files``);
        it does not split long lists, so this sends ``poll_ids_per_request`` ids at a time."""
        from fts3.rest.client import easy as fts3
        from fts3.rest.client.exceptions import ClientError, NotFound

        out: list[dict] = []
        ids = list(dict.fromkeys(job_ids))
        for i in range(0, len(ids), self.cfg.poll_ids_per_request):
            chunk = ids[i : i + self.cfg.poll_ids_per_request]
            try:
                got = self._call("job status", fts3.get_jobs_statuses, self.context, chunk, files)
            except (ClientError, NotFound) as e:  # 207/404: unknown ids (purged by FTS?)
                raise StagingError(f"fts3: status of jobs {', '.join(chunk)}: {e}") from None
            out += got if isinstance(got, list) else [got]
        return out

    def poll(self, job_ids: Sequence[str]) -> dict[str, str]:
        """``{job_id: job_state}`` with at most ceil(len/poll_ids_per_request) requests."""
        return {j["job_id"]: j["job_state"] for j in self._statuses(job_ids)}

    def failures(self, job_ids: Sequence[str]) -> dict[str, list[Failure]]:
        """Per-job lists of files that failed or were cancelled, with FTS's reason."""
        return {
            j["job_id"]: [
                (f["source_surl"], f["dest_surl"], f.get("reason") or f["file_state"])
                for f in j.get("files", [])
                if f.get("file_state") in FILE_FAILED
            ]
            for j in self._statuses(job_ids, files=True)
        }

    def file_failures(self, job_id: str) -> list[Failure]:
        files = self._get_json("job files", f"/jobs/{job_id}/files")
        return [
            (f["source_surl"], f["dest_surl"], f.get("reason") or f["file_state"])
            for f in files
            if f.get("file_state") in FILE_FAILED
        ]

    def cancel(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Cancel the jobs still active; return every job's final state."""
        from fts3.rest.client import easy as fts3

        states = self.poll(job_ids)
        for job_id, state in states.items():
            if state not in JOB_TERMINAL:
                try:
                    states[job_id] = self._call("cancel", fts3.cancel, self.context, job_id)[
                        "job_state"
                    ]
                except ValueError:  # 304 (already terminal) comes without a body
                    states[job_id] = self.poll([job_id])[job_id]
                log.info("fts3: cancelled job %s -> %s", job_id, states[job_id])
        return states

    def wait(self, job_ids: Sequence[str], *, timeout_s: float | None = None) -> dict[str, str]:
        """Poll until every job is terminal; on timeout cancel them and raise."""
        deadline = time.monotonic() + (timeout_s or self.cfg.copy_timeout_s)
        while True:
            states = self.poll(job_ids)
            if all(s in JOB_TERMINAL for s in states.values()):
                return states
            if time.monotonic() > deadline:
                self.cancel(job_ids)
                raise StagingError(f"fts3: jobs {', '.join(job_ids)} not done in time; cancelled")
            time.sleep(self.cfg.poll_interval_s)

    # ---- whole requests -----------------------------------------------------------------------

    def stage(
        self, files: Iterable[dict | FileSpec], *, key: str, max_attempts: int = 3
    ) -> list[str]:
        """Transfer ``files``, resubmitting only the files whose copy failed for a
        retriable reason (checksum mismatch, interrupted transfer), up to ``max_attempts``.
        Returns every job id used. Raises ``ChecksumMismatch``/``StagingError`` with FTS's
        reasons when files still fail; a failed copy is never counted as staged."""
        pending = [file_spec(f) for f in files]
        all_ids: list[str] = []
        for attempt in range(max_attempts):
            ids = self.submit(pending, key=key, attempt=attempt)
            all_ids += ids
            states = self.wait(ids)
            bad = [j for j, s in states.items() if s != "FINISHED"]
            failed = [f for fs in self.failures(bad).values() for f in fs] if bad else []
            if not failed:
                return all_ids
            retry = {(s, d) for s, d, r in failed if is_retriable_failure(r)}
            if len(retry) < len(failed) or attempt + 1 == max_attempts:
                raise failure_error(failed, attempt + 1)
            log.warning(
                "fts3: %d files failed (%s); resubmitting only those", len(failed), failed[0][2]
            )
            pending = [f for f in pending if f.pair in retry]
        raise AssertionError("unreachable")

    # ---- bulk transfers in a DAG (the operator defers between submit and outcome) -------------

    def bulk_transfer(self) -> BulkTransfer:
        return self

    def wait_for(self, job_ids: Sequence[str]) -> WaitSpec:
        return WaitSpec(
            "fts3.jobs_done",
            {
                "conn_id": self.cfg.conn_id,
                "job_ids": list(job_ids),
                "poll_ids_per_request": self.cfg.poll_ids_per_request,
                "retry_backoff_s": min(self.cfg.poll_interval_s, 1.0),
            },
            poll_interval_s=self.cfg.poll_interval_s,
        )

    def outcome(self, files: Sequence[dict], event: dict[str, Any]) -> list[StagedFile]:
        """What the trigger's event means: the staged files, or the error naming every
        failed file with FTS's reason (``ChecksumMismatch`` when all are checksum faults)."""
        if event.get("status") != "success":
            failed = [tuple(f) for fs in (event.get("failures") or {}).values() for f in fs]
            if not failed:
                failed = [("", "", f"jobs ended {event.get('states')}")]
            raise failure_error(failed, 1)
        return [
            StagedFile(f["destination"], int(f.get("size") or 0), f.get("adler32"), f.get("sha256"))
            for f in files
        ]

    def file_outcomes(self, files: Sequence[dict], event: dict[str, Any]) -> dict[str, str | None]:
        status = event.get("status")
        if status == "success":
            return {f["destination"]: None for f in files}
        failed = {f[1]: f[2] for fs in (event.get("failures") or {}).values() for f in fs}
        if status != "failed" or not failed:
            # The wait ended otherwise (timeout, error), or FTS named no failed file (as
            # outcome() does then): no copy is known good.
            why = f"FTS3 jobs ended {event.get('states') or event.get('reason') or status}"
            return {f["destination"]: why for f in files}
        # A file no failure names finished: its job FINISHED, or is FINISHEDDIRTY for others.
        return {f["destination"]: failed.get(f["destination"]) for f in files}

    def copy(
        self,
        source_url: str,
        dest_url: str,
        *,
        adler32: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        overwrite: bool = False,
    ) -> StagedFile:
        """One verified third-party copy. FTS compares ADLER32 of source, destination and
        the declared value (``verify_checksum``) and deletes a destination that fails."""
        spec = file_spec(
            {
                "source": source_url,
                "destination": dest_url,
                "adler32": adler32,
                "sha256": sha256,
                "size": size,
            }
        )
        (job_id,) = self.submit([spec], overwrite=overwrite)
        try:
            state = self.wait([job_id])[job_id]
        except BaseException:
            self.cancel([job_id])
            raise
        record = self._get_json("job files", f"/jobs/{job_id}/files")[0]
        if state != "FINISHED" or record.get("file_state") != "FINISHED":
            raise failure_error([(source_url, dest_url, record.get("reason") or state)], 1)
        got = int(record.get("filesize") or size or 0)
        return StagedFile(dest_url, got, spec.adler32, sha256)
